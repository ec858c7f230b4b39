import COpenBLAS
import Foundation
import OctetCore
import OctetFloat
import OctetInt8
import OctetModels
import Synchronization

/// The knobs of AdaRound (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training
/// Quantization", 2020). docs/quantization.md §18.
public struct AdaRoundParameters: Sendable, Equatable {
  /// Where a layer's inputs x̃ come from: the float network (`float`, the default: measured better,
  /// docs/quantization.md §18) or the int8 network (`quantized`: the layers before it already
  /// refined, so that their errors would be compensated).
  public enum Inputs: String, Sendable, CaseIterable { case quantized, float }

  public var inputs: Inputs = .float
  /// Adam steps per layer.
  public var iterations = 500
  /// Output positions per minibatch.
  public var batchSize = 256
  /// Output positions sampled per layer, spread over the images (fewer when a layer's patches are
  /// large: at most `floatsPerLayer` floats of samples per layer).
  public var maxPositions = 2048
  public var floatsPerLayer = 4 << 20
  /// λ of the rounding regularizer Σ 1 − |2h − 1|^β.
  public var regularization: Float = 0.01
  /// β is annealed linearly from `betaStart` to `betaEnd` after the warm-up (a fraction of the
  /// iterations without the regularizer).
  public var betaStart: Float = 20
  public var betaEnd: Float = 2
  public var warmup: Float = 0.2
  public var learningRate: Float = 0.01
  public var seed: UInt64 = 0xADA_2020
  /// Bytes of samples held at once; the layers are refined in passes over the images that fit it.
  public var memoryBudget = 384 << 20

  public init() {}
}

/// What AdaRound did to one layer.
public struct AdaRoundLayerResult: Sendable, Equatable {
  public var name: String
  /// Sampled output positions (four fifths fit the rounding, one fifth is held out when there are
  /// at least 50).
  public var positions: Int
  /// Mean squared output error per position (summed over channels) on the held-out positions, with
  /// round-to-nearest weights and with the learned rounding (which is kept only when lower).
  public var lossNearest: Double
  public var lossAdaRound: Double
  /// Weights whose integer differs from round-to-nearest.
  public var changedWeights: Int
  public var weights: Int
  /// Channels left at round-to-nearest because the re-folded bias would break the headroom of §14.
  public var revertedChannels: Int
  /// Why the layer was left as it was (nil: refined, or kept because nearest was no worse).
  public var skipped: String?
  /// True when the learned rounding was kept (it lowered the error on the samples).
  public var refined: Bool { skipped == nil && changedWeights > 0 }
}

/// Progress of `AdaRound.refine`.
public enum AdaRoundProgress: Sendable {
  /// Collecting the activations of `layers` (indices into all refined layers) in pass `pass`.
  case collecting(pass: Int, passes: Int, image: Int, images: Int)
  /// Layer `index` (0-based) of `count` is done.
  case layer(index: Int, count: Int, result: AdaRoundLayerResult)
}

public enum AdaRoundError: Error, CustomStringConvertible {
  case invalid(String)
  public var description: String {
    switch self {
    case .invalid(let m): "AdaRound: \(m)"
    }
  }
}

/// Learned rounding of the weights of every convolution (dense, grouped, depthwise) and of the
/// classifier, layer by layer in network order. Only which integer each weight rounds to changes
/// (floor or ceiling of w / s_w, within ±weightMax); scales, multipliers and the arithmetic stay;
/// the int32 bias is re-folded for the new Σ w_q (§5). docs/quantization.md §18.
public enum AdaRound {
  /// Refines `quantized` (quantized from `model` with round-to-nearest weights) on `imageCount`
  /// network inputs `image(i)`, each `[1, S, S, 3]`, read once per pass (streamed; never all held).
  ///
  /// `threads` images are read and run at once while a pass collects its samples, and then
  /// `threads` of the pass's layers are optimized at once, each on one thread (one OpenBLAS thread):
  /// every image's samples land in a slot fixed by its index and every layer depends only on its own
  /// samples, so the result is the same for every thread count.
  public static func refine(
    float model: Model, quantized: QuantizedModel, weightBits: WeightBits, imageCount: Int,
    image: @Sendable (Int) throws -> Tensor, parameters p: AdaRoundParameters = .init(), threads: Int = 1,
    progress: (@Sendable (AdaRoundProgress) -> Void)? = nil
  ) throws -> (model: QuantizedModel, layers: [AdaRoundLayerResult]) {
    guard imageCount > 0 else { throw AdaRoundError.invalid("no calibration images") }
    guard p.iterations > 0, p.batchSize > 0, p.maxPositions > 0 else {
      throw AdaRoundError.invalid("iterations, batch size and positions must be positive")
    }
    let plan: LayerPlan
    do { plan = try LayerPlan(model: model) } catch { throw QuantizerError.plan(error) }
    var current = quantized
    let weightMax = Int(weightBits.maxMagnitude)
    var targets: [Target] = []
    var skipped: [String: String] = [:]
    for (index, node) in quantized.nodes.enumerated() where node.op == .conv2d || node.op == .linear {
      guard let layer = plan.layers.first(where: { $0.name == node.name }) else {
        skipped[node.name] = "no float layer of this name"
        continue
      }
      switch Target.make(node: node, index: index, layer: layer, model: model, weightMax: weightMax) {
      case .success(let t): targets.append(t)
      case .failure(let reason): skipped[node.name] = reason.message
      }
    }
    let count = targets.count + skipped.count
    var results: [AdaRoundLayerResult] = []
    var done = 0
    for (name, reason) in skipped.sorted(by: { $0.key < $1.key }) {
      let r = AdaRoundLayerResult(
        name: name, positions: 0, lossNearest: 0, lossAdaRound: 0, changedWeights: 0, weights: 0,
        revertedChannels: 0, skipped: reason)
      results.append(r)
      progress?(.layer(index: done, count: count, result: r))
      done += 1
    }

    // Passes: consecutive layers whose samples fit the memory budget together.
    for t in targets.indices { targets[t].choosePositions(images: imageCount, parameters: p) }
    var passes: [[Int]] = []
    var bytes = 0
    for t in targets.indices {
      let b = targets[t].sampleBytes
      if passes.isEmpty || bytes + b > p.memoryBudget {
        passes.append([])
        bytes = 0
      }
      passes[passes.count - 1].append(t)
      bytes += b
    }

    let floatExecutor = try FloatExecutor(model: model, fuseResidualAdd: false)
    let threads = max(1, threads)
    // One OpenBLAS thread: the sums, hence the learned rounding, do not depend on the thread count.
    let blasThreads = openblas_get_num_threads()
    openblas_set_num_threads(1)
    defer { openblas_set_num_threads(blasThreads) }
    for (passIndex, pass) in passes.enumerated() {
      let samples = pass.map { Samples(target: targets[$0], images: imageCount) }
      try collect(
        pass: passIndex, of: passes.count, samples: samples, float: floatExecutor,
        int8: p.inputs == .quantized ? current : nil, imageCount: imageCount, image: image, seed: p.seed,
        threads: threads, progress: progress)
      // The pass's layers, most work first, `threads` at once; each alone on its thread.
      let order = pass.indices.sorted { targets[pass[$0]].optimizeCost(p) > targets[pass[$1]].optimizeCost(p) }
      let passTargets = pass.map { targets[$0] }
      struct LayerState {
        var next = 0
        var done: Int
        var outcomes: [OptimizeOutcome?]
      }
      let state = Mutex(LayerState(done: done, outcomes: Array(repeating: nil, count: pass.count)))
      DispatchQueue.concurrentPerform(iterations: min(threads, pass.count)) { _ in
        while true {
          let s: Int? = state.withLock { st in
            guard st.next < order.count else { return nil }
            defer { st.next += 1 }
            return order[st.next]
          }
          guard let s else { break }
          let r = passTargets[s].optimize(samples[s], parameters: p)
          samples[s].release()
          state.withLock { st in
            st.outcomes[s] = r
            progress?(.layer(index: st.done, count: count, result: r.result))
            st.done += 1
          }
        }
      }
      let outcomes = state.withLock { st in
        done = st.done
        return st.outcomes
      }
      for (s, t) in pass.enumerated() {
        guard var r = outcomes[s] else { preconditionFailure("every layer of the pass was optimized") }
        if let (weights, bias, reverted) = r.apply {
          current.nodes[targets[t].nodeIndex].weights = weights
          current.nodes[targets[t].nodeIndex].bias = bias
          r.result.revertedChannels = reverted
        }
        results.append(r.result)
      }
    }
    try current.validate()
    return (current, results)
  }

  /// Runs the float network (and, for `int8` inputs, the int8 model) on every image, `threads`
  /// images at once, and writes each image's sampled rows into its slot of every layer's samples.
  static func collect(
    pass: Int, of passes: Int, samples: [Samples], float floatExecutor: FloatExecutor, int8 model: QuantizedModel?,
    imageCount: Int, image: @Sendable (Int) throws -> Tensor, seed: UInt64, threads: Int,
    progress: (@Sendable (AdaRoundProgress) -> Void)?
  ) throws {
    let floatNames = Set(samples.flatMap { [$0.target.name] + (model == nil ? [$0.target.input] : []) })
    let int8Names = Set(samples.map(\.target.input))
    struct CollectState {
      var next = 0
      var done = 0
      var failure: Error?
    }
    let state = Mutex(CollectState())
    progress?(.collecting(pass: pass, passes: passes, image: 0, images: imageCount))
    DispatchQueue.concurrentPerform(iterations: min(threads, imageCount)) { _ in
      do {
        // A runner per thread: an observable runner keeps per-run state.
        let runner: (any Int8Runner)? =
          if let model { try Int8Runtime.make(model: model, threads: 1, observable: true) } else { nil }
        while true {
          let index: Int? = state.withLock { s in
            guard s.failure == nil, s.next < imageCount else { return nil }
            defer { s.next += 1 }
            return s.next
          }
          guard let i = index else { break }
          let x = try image(i)
          guard x.rank == 4, x.shape[0] == 1, Array(x.shape.dropFirst()) == floatExecutor.inputShape else {
            throw AdaRoundError.invalid(
              "image \(i) has shape \(x.shape), expected [1, \(floatExecutor.inputShape.map(String.init).joined(separator: ", "))]"
            )
          }
          var floats: [String: Tensor] = [:]
          if floatNames.contains(Graph.inputName) { floats[Graph.inputName] = x }
          _ = floatExecutor.run(x) { name, t in if floatNames.contains(name) { floats[name] = t } }
          var int8: [String: QuantizedTensor] = [:]
          if let runner {
            _ = runner.run(x) { name, t in if int8Names.contains(name) { int8[name] = t } }
          }
          for s in samples {
            let t = s.target
            guard let y = floats[t.name] else { throw AdaRoundError.invalid("float output '\(t.name)' not observed") }
            let source: PatchSource
            if runner != nil {
              guard let q = int8[t.input] else {
                throw AdaRoundError.invalid("int8 tensor '\(t.input)' not observed")
              }
              source = .quantized(q.values, zeroPoint: q.quantization.zeroPoint, scale: q.quantization.scale)
            } else {
              guard let f = floats[t.input] else {
                throw AdaRoundError.invalid("float tensor '\(t.input)' not observed")
              }
              source = .float(f.scalars)
            }
            s.fill(image: i, source: source, output: y.scalars, seed: seed)
          }
          state.withLock { s in
            s.done += 1
            progress?(.collecting(pass: pass, passes: passes, image: s.done - 1, images: imageCount))
          }
        }
      } catch {
        state.withLock { $0.failure = $0.failure ?? error }
      }
    }
    if let failure = state.withLock({ $0.failure }) { throw failure }
  }
}

enum PatchSource {
  case float([Float])
  case quantized([UInt8], zeroPoint: Int32, scale: Float)
}

struct SkipReason: Error { var message: String }

/// One layer to refine: geometry, the float (BatchNorm-folded) weights in the int8 node's layout
/// ([O, kh, kw, I/g]), the float bias, the weight scales and the round-to-nearest floor.
struct Target {
  var name: String
  var input: String
  var nodeIndex: Int
  var inH: Int, inW: Int, inC: Int
  var outH: Int, outW: Int, outC: Int
  var groups: Int
  var kh: Int, kw: Int
  var stride: [Int], padding: [Int]
  var activation: FusedActivation?
  var weights: [Float]
  var bias: [Float]
  var scales: [Float]
  var nearest: [Int8]
  var oldBias: [Int32]
  var zeroPoint: Int32
  var weightMax: Int
  var positionsPerImage = 1
  var sampleCount = 0

  var icg: Int { inC / groups }
  var ocg: Int { outC / groups }
  var kg: Int { kh * kw * icg }
  /// Floats of one sampled row: all groups' patches, then the target outputs.
  var rowFloats: Int { groups * kg + outC }

  static func make(node: QuantizedNode, index: Int, layer: PlannedLayer, model: Model, weightMax: Int) -> Result<
    Target, SkipReason
  > {
    func floats(_ name: String?) -> [Float]? { name.flatMap { model.weights[$0]?.floats() } }
    guard let inQ = node.inputQuantization?.first else { return .failure(.init(message: "no input quantization")) }
    var t = Target(
      name: node.name, input: node.inputs[0], nodeIndex: index, inH: 1, inW: 1, inC: 0, outH: 1, outW: 1, outC: 0,
      groups: 1, kh: 1, kw: 1, stride: [1, 1], padding: [0, 0, 0, 0], activation: nil, weights: [], bias: [],
      scales: node.weightScales, nearest: node.weights, oldBias: node.bias, zeroPoint: inQ.zeroPoint,
      weightMax: weightMax)
    var folded: (weights: [Double], bias: [Double])
    switch layer.operation {
    case .conv(let c):
      guard let w = floats(c.attributes.weight) else { return .failure(.init(message: "float weights missing")) }
      let o = c.outChannels
      let b = floats(c.attributes.bias)
      if let bn = c.batchNorm {
        let a = bn.attributes
        guard let g = floats(a.weight), let be = floats(a.bias), let m = floats(a.runningMean),
          let v = floats(a.runningVariance)
        else { return .failure(.init(message: "BatchNorm tensors missing")) }
        folded = Quantizer.foldBatchNorm(
          weights: w, bias: b, gamma: g, beta: be, mean: m, variance: v, epsilon: a.epsilon)
      } else {
        folded = (w.map(Double.init), (b ?? [Float](repeating: 0, count: o)).map(Double.init))
      }
      let s = layer.inputShapes[0]
      (t.inH, t.inW, t.inC) = (s[0], s[1], s[2])
      (t.outH, t.outW, t.outC) = (c.outHeight, c.outWidth, o)
      (t.groups, t.kh, t.kw) = (c.attributes.groups, c.kernelH, c.kernelW)
      (t.stride, t.padding, t.activation) = (c.attributes.stride, c.padding, c.activation)
      // OIHW → [O, kh, kw, I/g], as the quantizer lays out the int8 weights.
      let (ig, kh, kw) = (t.icg, t.kh, t.kw)
      var ohwi = [Double](repeating: 0, count: folded.weights.count)
      for oc in 0..<o {
        for i in 0..<ig {
          for y in 0..<kh {
            for x in 0..<kw {
              ohwi[((oc * kh + y) * kw + x) * ig + i] = folded.weights[((oc * ig + i) * kh + y) * kw + x]
            }
          }
        }
      }
      folded.weights = ohwi
    case .linear(let l):
      guard let w = floats(l.attributes.weight) else { return .failure(.init(message: "float weights missing")) }
      let b = floats(l.attributes.bias) ?? [Float](repeating: 0, count: l.outFeatures)
      folded = (w.map(Double.init), b.map(Double.init))
      (t.inC, t.outC) = (l.inFeatures, l.outFeatures)
    default:
      return .failure(.init(message: "not a convolution or linear layer"))
    }
    guard folded.weights.count == node.weights.count, node.weightScales.count == t.outC, node.bias.count == t.outC
    else { return .failure(.init(message: "the int8 node's weights do not match the float layer's shape")) }
    // The int8 weights must be round-to-nearest of these float weights at the node's scales: a
    // technique that changed the weights (equalization, a folded input normalization) must hand
    // AdaRound the float model it quantized.
    let perChannel = folded.weights.count / t.outC
    for c in 0..<t.outC {
      let s = Double(node.weightScales[c])
      for i in 0..<perChannel {
        let q = min(
          max(Quantizer.roundToInt64(folded.weights[c * perChannel + i] / s), -Int64(weightMax)), Int64(weightMax))
        if q != Int64(node.weights[c * perChannel + i]) {
          return .failure(
            .init(
              message:
                "the int8 weights are not round-to-nearest of the float model's (another technique changed them, or the weight bits differ): left as they are"
            ))
        }
      }
    }
    t.weights = folded.weights.map(Float.init)
    t.bias = folded.bias.map(Float.init)
    return .success(t)
  }

  mutating func choosePositions(images: Int, parameters p: AdaRoundParameters) {
    let wanted = max(1, min(p.maxPositions, p.floatsPerLayer / rowFloats))
    positionsPerImage = min(outH * outW, max(1, (wanted + images - 1) / images))
    sampleCount = images * positionsPerImage
  }

  /// Bytes of the samples of this layer (rows, then the split copies the optimizer makes).
  var sampleBytes: Int { sampleCount * rowFloats * 4 }

  /// About the multiply-adds `optimize` spends (forward and backward per iteration), to start the
  /// largest layers of a pass first.
  func optimizeCost(_ p: AdaRoundParameters) -> Int { p.iterations * min(p.batchSize, sampleCount) * outC * kg }
}

/// The sampled rows of one layer: each row holds the layer's input patch for one output position
/// (all groups, [kh, kw, I/g] each, real values; padding is real 0) and the float network's output
/// there (all channels, after the fused activation). Image `i`'s rows are rows
/// `i · positionsPerImage ..< (i + 1) · positionsPerImage`, whichever thread fills them and when.
final class Samples: @unchecked Sendable {
  private(set) var rows: UnsafeMutableBufferPointer<Float>
  let count: Int
  let target: Target

  init(target: Target, images: Int) {
    self.target = target
    count = images * target.positionsPerImage
    rows = .allocate(capacity: count * target.rowFloats)
    rows.initialize(repeating: 0)
  }

  deinit { rows.deallocate() }

  /// Frees the rows (the optimizer has copied them).
  func release() {
    rows.deallocate()
    rows = .allocate(capacity: 0)
  }

  /// Writes image `image`'s rows; distinct images write disjoint rows, so threads may fill
  /// different images at once.
  func fill(image: Int, source: PatchSource, output: [Float], seed: UInt64) {
    let t = target
    var g = SeededGenerator(
      seed: seed ^ (UInt64(t.nodeIndex) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(image) &* 0xD1B5_4A32_D192_ED03))
    let positions = t.outH * t.outW
    var at = image * t.positionsPerImage * t.rowFloats
    for j in 0..<t.positionsPerImage {
      // Every position when there are few; else a seeded draw (with replacement) per image and layer.
      let pos = t.positionsPerImage == positions ? j : Int.random(in: 0..<positions, using: &g)
      let (oy, ox) = (pos / t.outW, pos % t.outW)
      for group in 0..<t.groups {
        for ky in 0..<t.kh {
          let iy = oy * t.stride[0] - t.padding[0] + ky
          for kx in 0..<t.kw {
            let ix = ox * t.stride[1] - t.padding[1] + kx
            guard iy >= 0 && iy < t.inH && ix >= 0 && ix < t.inW else {
              at += t.icg  // padding: the rows start at 0
              continue
            }
            let base = (iy * t.inW + ix) * t.inC + group * t.icg
            switch source {
            case .float(let f):
              for i in 0..<t.icg { rows[at + i] = f[base + i] }
            case .quantized(let q, let z, let s):
              for i in 0..<t.icg { rows[at + i] = s * Float(Int32(q[base + i]) - z) }
            }
            at += t.icg
          }
        }
      }
      let o = pos * t.outC
      for c in 0..<t.outC { rows[at + c] = output[o + c] }
      at += t.outC
    }
  }
}
