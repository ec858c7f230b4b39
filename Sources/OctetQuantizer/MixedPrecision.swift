import OctetCore
import OctetModels

/// Integer-only mixed precision (docs/quantization.md §17): which layers run with a 16-bit input,
/// chosen by hand (`QuantizationOptions.a16Layers`) or under a multiply-add budget (`choose`).
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

  /// The layers that can run with a 16-bit input in this version (§17): convolutions whose input is
  /// another convolution's output, in network order.
  public static func candidates(in model: Model) throws -> [String] {
    let plan = try LayerPlan(model: model)
    let producers = try producers(in: model)
    return plan.layers.map(\.name).filter { producers[$0] != nil }
  }
}
