import OctetCore
import OctetModels

/// The 16-bit layers of a model (docs/quantization.md §17): `a16` read a 16-bit input (their
/// producer's 16-bit twin), `w16` have 16-bit weights. A layer in `w16` only is a8w16 (§17.2); one
/// in `a16` is a16w16 or a16w8 as `QuantizationOptions.a16WeightBits` says, a16w16 when also in `w16`.
public struct SixteenBitLayers: Sendable, Equatable, Codable {
  public var a16: [String]
  public var w16: [String]

  public init(a16: [String] = [], w16: [String] = []) {
    self.a16 = a16
    self.w16 = w16
  }

  public var isEmpty: Bool { a16.isEmpty && w16.isEmpty }
}

/// Integer-only mixed precision (docs/quantization.md §17): which layers run with a 16-bit input or
/// 16-bit weights, chosen by hand (`QuantizationOptions.a16Layers`, `w16Layers`) or under a
/// multiply-add budget (`choose`).
public enum MixedPrecision {
  /// The integer node that holds the 16-bit twin of tensor `name` (§17): `<name>@int16`.
  public static func twinName(_ name: String) -> String { name + twinSuffix }
  public static let twinSuffix = "@int16"
  public static func isTwin(_ name: String) -> Bool { name.hasSuffix(twinSuffix) }

  public enum BudgetError: Error, CustomStringConvertible, Equatable {
    case budgetOutOfRange(Double)
    case unknownLayer(String)

    public var description: String {
      switch self {
      case .budgetOutOfRange(let b):
        "the 16-bit budget \(b) is outside [0, 1]: it is the fraction of the network's multiply-adds that may run at 16 bits"
      case .unknownLayer(let name):
        "layer '\(name)' of the sensitivity ranking has no multiply-add count; rank layers of the same model"
      }
    }
  }

  /// The layers to run at 16 bits: walking `ranking` (most sensitive first), each layer is taken
  /// when the multiply-adds taken so far plus its own stay ≤ `budget` · (Σ of every value of
  /// `macs`), and skipped otherwise (a later, cheaper one may still fit). A layer's own cost is its
  /// multiply-adds plus, when `producers` names the layer whose 16-bit twin it reads and no layer
  /// taken before reads that twin, the producer's: the twin computes the producer again (§17).
  /// Returned in ranking order. `budget` must be in [0, 1]; every ranked layer (and producer) must
  /// have a count in `macs`. Pass a ranking restricted to `candidates(in:)` so that every chosen
  /// layer can be quantized.
  public static func choose(
    budget: Double, ranking: [String], macs: [String: Int], producers: [String: String] = [:]
  ) throws(BudgetError) -> [String] {
    guard budget >= 0, budget <= 1 else { throw .budgetOutOfRange(budget) }
    let total = macs.values.reduce(0, +)
    let allowed = budget * Double(total)
    var used = 0
    var chosen: [String] = []
    var twins: Set<String> = []
    for name in ranking where !chosen.contains(name) {
      guard var cost = macs[name] else { throw .unknownLayer(name) }
      let producer = producers[name]
      if let producer, !twins.contains(producer) {
        guard let twin = macs[producer] else { throw .unknownLayer(producer) }
        cost += twin
      }
      if Double(used + cost) <= allowed {
        used += cost
        chosen.append(name)
        if let producer { twins.insert(producer) }
      }
    }
    return chosen
  }

  /// For each layer of `candidates(in:)`, the layer whose output it reads (whose 16-bit twin it
  /// would read at a16).
  public static func producers(in model: Model) throws -> [String: String] {
    let plan = try LayerPlan(model: model)
    var result: [String: String] = [:]
    for layer in plan.layers {
      guard case .conv = layer.operation, layer.inputs[0] != LayerInput.graphInput,
        case .conv = plan.layers[layer.inputs[0]].operation
      else { continue }
      result[layer.name] = plan.layers[layer.inputs[0]].name
    }
    return result
  }

  /// The layers that can have 16-bit weights on their 8-bit input, a8w16 (§17.2): every convolution
  /// but one that reads the image's exact pixels (§12), in network order.
  public static func weightCandidates(in model: Model, exactInput: Bool) throws -> [String] {
    let plan = try LayerPlan(model: model)
    return plan.layers.filter { layer in
      guard case .conv = layer.operation else { return false }
      return !(exactInput && layer.inputs[0] == LayerInput.graphInput)
    }.map(\.name)
  }

  /// The layers that can run with a 16-bit input in this version (§17): convolutions whose input is
  /// another convolution's output, in network order.
  public static func candidates(in model: Model) throws -> [String] {
    let plan = try LayerPlan(model: model)
    let producers = try producers(in: model)
    return plan.layers.map(\.name).filter { producers[$0] != nil }
  }
}
