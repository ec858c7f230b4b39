import Foundation
import OctetCore
import OctetFloat
import OctetInt8
import OctetModels
import Synchronization

/// What running one layer at 16 bits does to the whole integer network (`MixedPrecision.gains`).
public struct A16Gain: Codable, Sendable, Equatable {
  /// What goes to 16 bits: the layer's input (a16, with its producer's twin) or its weights (a8w16).
  public enum Kind: String, Codable, Sendable {
    case input = "a16"
    case weights = "w16"
  }

  /// The layer (int8 node name) run at 16 bits, every other layer as the 8-bit model has it.
  public var layer: String
  public var kind: Kind = .input
  /// Mean over the images of KL(float softmax ‖ int8 softmax), in nats, with this layer at 16 bits.
  public var kl: Double
  /// The 8-bit model's mean KL minus `kl`: how much closer to float the network gets.
  public var gain: Double
  /// Multiply-adds per image the layer adds at 16 bits: its own, plus its producer's when the
  /// producer's 16-bit twin must be computed for it (`MixedPrecision.choose`).
  public var cost: Int

  public init(layer: String, kind: Kind = .input, kl: Double, gain: Double, cost: Int) {
    self.layer = layer
    self.kind = kind
    self.kl = kl
    self.gain = gain
    self.cost = cost
  }
}

extension MixedPrecision {
  /// Measures, for every layer of `candidates`, the whole integer network with that one layer at 16
  /// bits (`trial([layer])`: the model one-step quantization would write with it) against the float
  /// network on `inputs` (`[N, S, S, 3]` each), on the fast kernels (equal to the reference). The
  /// result is the 8-bit model's mean KL (`eightBit`) and, per candidate, the mean KL with it at
  /// 16 bits; ranked by gain per multiply-add, the most first, then network order. Unlike the
  /// sensitivity ranking (one layer alone in int8 inside the float network), this sees what 16 bits
  /// change in the network that runs: the 8-bit input the layer no longer reads, its weights'
  /// rounding, and what the data-driven passes had corrected in it. Deterministic: images are summed
  /// in order, whatever the threads.
  public static func gains(
    float: Model, eightBit: QuantizedModel, candidates: [String], weightCandidates: [String] = [],
    inputs: [Tensor], trial: A16Trial, producers: [String: String], threads: Int,
    progress: @Sendable (_ done: Int, _ total: Int) -> Void = { _, _ in }
  ) throws -> (eightBit: Double, gains: [A16Gain]) {
    guard !inputs.isEmpty else { throw SensitivityError.noImages }
    let executor = try FloatExecutor(model: float)
    let reference = Mutex([[Double]?](repeating: nil, count: inputs.count))
    concurrentForEach(inputs.count, threads: threads) { i in
      let p = logSoftmaxRows(executor.run(inputs[i]))
      reference.withLock { $0[i] = p }
    }
    let floatLogs = reference.withLock { $0.map { $0! } }
    let macs = try LayerCost.macs(of: eightBit)
    let trials =
      candidates.map { (layer: $0, kind: A16Gain.Kind.input) }
      + weightCandidates.map { (layer: $0, kind: A16Gain.Kind.weights) }
    progress(0, trials.count + 1)
    let base = try meanKL(of: eightBit, floatLogs: floatLogs, inputs: inputs, threads: threads)
    progress(1, trials.count + 1)
    var result: [(gain: A16Gain, order: Int)] = []
    for (order, t) in trials.enumerated() {
      let layers = t.kind == .input ? SixteenBitLayers(a16: [t.layer]) : SixteenBitLayers(w16: [t.layer])
      let kl = try meanKL(of: trial(layers), floatLogs: floatLogs, inputs: inputs, threads: threads)
      var cost = macs[t.layer] ?? 0
      if t.kind == .input, let producer = producers[t.layer] { cost += macs[producer] ?? 0 }
      result.append((A16Gain(layer: t.layer, kind: t.kind, kl: kl, gain: base - kl, cost: cost), order))
      progress(order + 2, trials.count + 1)
    }
    let ranked = result.sorted { a, b in
      let ra = a.gain.gain / Double(max(a.gain.cost, 1))
      let rb = b.gain.gain / Double(max(b.gain.cost, 1))
      if ra != rb { return ra > rb }
      return a.order < b.order
    }
    return (base, ranked.map(\.gain))
  }

  /// Mean over the images of KL(float ‖ int8) for `model` run on the fast kernels.
  static func meanKL(of model: QuantizedModel, floatLogs: [[Double]], inputs: [Tensor], threads: Int) throws -> Double {
    let runner = try Int8Runtime.make(model: model, threads: 1)
    let sums = Mutex([Double](repeating: 0, count: inputs.count))
    let rows = Mutex([Int](repeating: 0, count: inputs.count))
    concurrentForEach(inputs.count, threads: threads) { i in
      let q = logSoftmaxRows(runner.run(inputs[i], observe: nil).dequantized())
      let p = floatLogs[i]
      let classes = runner.model.nodes.last?.outChannels ?? max(p.count, 1)
      var kl = 0.0
      for c in p.indices where p[c] > -.infinity { kl += exp(p[c]) * (p[c] - q[c]) }
      sums.withLock { $0[i] = kl }
      rows.withLock { $0[i] = p.count / max(classes, 1) }
    }
    let total = sums.withLock { $0.reduce(0, +) }
    let images = rows.withLock { $0.reduce(0, +) }
    return finite(max(0, total / Double(max(images, 1))))
  }

  /// The layers to run at 16 bits from measured gains: those that help (gain > 0), in the order of
  /// `gains`, each taken when the multiply-adds taken so far plus its own stay ≤ `budget` · (Σ of
  /// every value of `macs`), as `choose(budget:ranking:)` does. A layer's own multiply-adds count
  /// once, whether it is taken for its input, its weights or both (then it is a16w16); an input
  /// also costs its producer's twin, once per producer.
  public static func choose(budget: Double, gains: [A16Gain], macs: [String: Int], producers: [String: String])
    throws(BudgetError) -> SixteenBitLayers
  {
    guard budget >= 0, budget <= 1 else { throw .budgetOutOfRange(budget) }
    let allowed = budget * Double(macs.values.reduce(0, +))
    var used = 0
    var chosen = SixteenBitLayers()
    var paid: Set<String> = []
    var twins: Set<String> = []
    for g in gains where g.gain > 0 {
      let name = g.layer
      guard let own = macs[name] else { throw .unknownLayer(name) }
      var cost = paid.contains(name) ? 0 : own
      var producer: String? = nil
      switch g.kind {
      case .weights:
        if chosen.w16.contains(name) { continue }
      case .input:
        if chosen.a16.contains(name) { continue }
        if let p = producers[name], !twins.contains(p) {
          guard let twin = macs[p] else { throw .unknownLayer(p) }
          cost += twin
          producer = p
        }
      }
      guard Double(used + cost) <= allowed else { continue }
      used += cost
      paid.insert(name)
      if let producer { twins.insert(producer) }
      if g.kind == .weights { chosen.w16.append(name) } else { chosen.a16.append(name) }
    }
    return chosen
  }
}
