import Foundation
import OctetCore
import OctetFloat
import OctetInt8
import OctetModels
import Synchronization

/// What running one layer at 16 bits does to the whole integer network (`MixedPrecision.gains`).
public struct A16Gain: Codable, Sendable, Equatable {
  /// The layer (int8 node name) run at 16 bits, every other layer as the 8-bit model has it.
  public var layer: String
  /// Mean over the images of KL(float softmax ‖ int8 softmax), in nats, with this layer at 16 bits.
  public var kl: Double
  /// The 8-bit model's mean KL minus `kl`: how much closer to float the network gets.
  public var gain: Double
  /// Multiply-adds per image the layer adds at 16 bits: its own, plus its producer's when the
  /// producer's 16-bit twin must be computed for it (`MixedPrecision.choose`).
  public var cost: Int

  public init(layer: String, kl: Double, gain: Double, cost: Int) {
    self.layer = layer
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
    float: Model, eightBit: QuantizedModel, candidates: [String], inputs: [Tensor],
    trial: ([String]) throws -> QuantizedModel, producers: [String: String], threads: Int,
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
    progress(0, candidates.count + 1)
    let base = try meanKL(of: eightBit, floatLogs: floatLogs, inputs: inputs, threads: threads)
    progress(1, candidates.count + 1)
    var result: [(gain: A16Gain, order: Int)] = []
    for (order, layer) in candidates.enumerated() {
      let kl = try meanKL(of: trial([layer]), floatLogs: floatLogs, inputs: inputs, threads: threads)
      var cost = macs[layer] ?? 0
      if let producer = producers[layer] { cost += macs[producer] ?? 0 }
      result.append((A16Gain(layer: layer, kl: kl, gain: base - kl, cost: cost), order))
      progress(order + 2, candidates.count + 1)
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
  /// `gains`, taken by `choose` under `budget`.
  public static func choose(budget: Double, gains: [A16Gain], macs: [String: Int], producers: [String: String])
    throws(BudgetError) -> [String]
  {
    try choose(budget: budget, ranking: gains.filter { $0.gain > 0 }.map(\.layer), macs: macs, producers: producers)
  }
}
