import Foundation
import OctetCore
import OctetFloat
import OctetInt8
import OctetModels
import Synchronization

/// Empirical bias correction (docs/quantization.md §19): per output channel of every conv2d and
/// linear node, the mean difference over the calibration images between the float layer's
/// pre-activation output and the int8 layer's accumulator (`s_in · s_w[c] · acc`, before
/// requantization and the fused ReLU/ReLU6 clamp), folded into the int32 bias:
/// `b_q[c] += round(mean_diff[c] / (s_in · s_w[c]))`, kept within §14's accumulator bound.
///
/// Layers are corrected one after the other in network order, and each one's int8 input comes from
/// the integer reference executor running the corrected layers before it, so the correction also
/// removes the mean of the error that reaches the layer.
///
/// Both means are linear in the layer's input: `E[y[c]] = b[c] + Σ_k w[c, k] · E[x_k]`, where
/// `x_k` is the input value under kernel tap k (ky, kx, input channel) averaged over every output
/// position. So the pass needs, per layer, only the per-tap input means: float ones from one pass of
/// the float model over the images (summed per image in Double, added in image order, so the result
/// does not depend on the thread count), int8 ones summed exactly in Int64. Memory: the integer
/// run keeps every image's live uint8 tensors (the reference executor runs all images node by
/// node), about 1.6 MB an image for EfficientNet-Lite0; nothing float is kept but the tap sums.
public enum BiasCorrection {
  public static let pass = DataDrivenPass(name: "bias_correction") { float, quantized, inputs, progress in
    try correct(float: float, quantized: quantized, inputs: inputs, progress: progress).model
  }

  /// What the pass did to one layer.
  public struct LayerCorrection: Sendable, Equatable {
    public var layer: String
    /// Channels whose bias changed.
    public var changed: Int
    /// The largest |change| of a channel's bias, in units of s_in · s_w[c].
    public var maxChange: Int64
    /// Channels whose corrected bias was clamped to §14's bound.
    public var clamped: Int
  }

  /// A conv2d or linear node's window over its input `[H, W, C]` (linear: 1 x 1 x features).
  struct Window {
    var height: Int, width: Int, channels: Int
    var kernelH: Int, kernelW: Int
    /// Per kernel row ky, the input rows it reads over all output rows (padding left out); per kx, the columns.
    var rows: [[Int]], columns: [[Int]]
    /// Output positions per image.
    var positions: Int
    var taps: Int { kernelH * kernelW * channels }

    init(node: QuantizedNode, inputShape s: [Int]) {
      // A conv2d over a flat [F] input is a hidden fully-connected layer (docs/quantization.md §24).
      if node.op == .linear || s.count == 1 {
        (height, width, channels) = (1, 1, s.reduce(1, *))
        (kernelH, kernelW) = (1, 1)
        rows = [[0]]
        columns = [[0]]
        positions = 1
        return
      }
      (height, width, channels) = (s[0], s[1], s[2])
      let k = node.kernel!
      let st = node.stride!
      let p = node.padding!
      (kernelH, kernelW) = (k[0], k[1])
      let (oh, ow) = WindowShape.outputSize(height: s[0], width: s[1], kernel: k, stride: st, padding: p)
      positions = oh * ow
      let (h, w) = (s[0], s[1])
      rows = (0..<k[0]).map { ky in (0..<oh).map { $0 * st[0] - p[0] + ky }.filter { $0 >= 0 && $0 < h } }
      columns = (0..<k[1]).map { kx in (0..<ow).map { $0 * st[1] - p[1] + kx }.filter { $0 >= 0 && $0 < w } }
    }

    /// Taps that fall in the padding, per (ky, kx), over one image.
    func padded(_ ky: Int, _ kx: Int) -> Int { positions - rows[ky].count * columns[kx].count }

    /// Adds one image's input values under each tap, `[kh, kw, C]`, to `sums`.
    func addTapSums<T, S>(_ x: UnsafeBufferPointer<T>, into sums: inout [S], _ convert: (T) -> S)
    where S: AdditiveArithmetic {
      let c = channels
      sums.withUnsafeMutableBufferPointer { sums in
        for ky in 0..<kernelH {
          for kx in 0..<kernelW {
            let base = (ky * kernelW + kx) * c
            for iy in rows[ky] {
              for ix in columns[kx] {
                let at = (iy * width + ix) * c
                for ch in 0..<c { sums[base + ch] += convert(x[at + ch]) }
              }
            }
          }
        }
      }
    }
  }

  /// A layer's float weights and bias: conv OIHW with BatchNorm folded (as the quantizer folds
  /// them), linear `[O, I]`.
  struct FloatLayer {
    var weights: [Double]
    var bias: [Double]
  }

  /// Runs the pass: the corrected model and, per conv2d/linear node in network order, what changed.
  public static func correct(
    float: Model, quantized: QuantizedModel, inputs: CalibrationInputs,
    progress: @Sendable (PassProgress) -> Void = { _ in }
  ) throws -> (model: QuantizedModel, layers: [LayerCorrection]) {
    guard inputs.count > 0 else {
      throw QuantizerError.unsupported(node: "(model)", reason: "bias correction needs at least one image")
    }
    let floatLayers = try Quantizer.floatLayers(model: float)
    if let wide = quantized.nodes.first(where: \.isWide) {
      throw QuantizerError.layer(wide.name, "bias correction works on 8-bit layers; this one runs at 16 bits (§19)")
    }
    // An exact-input stem (§12) reads pixels and has a bias per border class: it is left as it is.
    let targets = quantized.nodes.filter { ($0.op == .conv2d || $0.op == .linear) && $0.borderClasses == nil }
    for node in targets where floatLayers[node.name] == nil {
      throw QuantizerError.layer(node.name, "the float model has no conv or linear layer of this name")
    }
    let int8 = try Int8ReferenceExecutor(model: quantized)
    let inputSize = int8.inputShape.reduce(1, *)

    // 1. Float tap sums of every target's input over all images, and the quantized inputs.
    let executor = try FloatExecutor(model: float, fuseResidualAdd: false)
    var consumerList: [String: [Int]] = [:]
    // A flatten keeps its input's values: the classifier's taps are the pooled features.
    let byName = Dictionary(quantized.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    func source(_ name: String) -> String {
      if let n = byName[name], n.op == .flatten { return source(n.inputs[0]) }
      return name
    }
    for (i, node) in targets.enumerated() { consumerList[source(node.inputs[0]), default: []].append(i) }
    let consumers = consumerList
    struct FloatState {
      var next = 0
      var done = 0
      var failure: Error?
      var pending: [Int: [[Double]]] = [:]
      var merged = 0
      var sums: [[Double]]? = nil
    }
    let state = Mutex(FloatState())
    // Every image's uint8 input, written by image index.
    let quantizedInputs = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: inputs.count * inputSize)
    defer { quantizedInputs.deallocate() }
    nonisolated(unsafe) let inputBuffer = quantizedInputs
    let stage = "bias correction: float statistics"
    progress(PassProgress(stage: stage, done: 0, total: inputs.count))
    DispatchQueue.concurrentPerform(iterations: min(inputs.threads, inputs.count)) { _ in
      while true {
        let index: Int? = state.withLock { s in
          guard s.failure == nil, s.next < inputs.count else { return nil }
          defer { s.next += 1 }
          return s.next
        }
        guard let index else { break }
        do {
          let input = try inputs.load(index)
          let q = int8.quantizeInput(input)
          precondition(q.count == inputSize)
          for i in 0..<inputSize { inputBuffer[index * inputSize + i] = q[i] }
          var sums = [[Double]](repeating: [], count: targets.count)
          let observe = { (name: String, tensor: Tensor) in
            guard let list = consumers[name] else { return }
            for t in list {
              let window = Window(node: targets[t], inputShape: Array(tensor.shape.dropFirst()))
              var s = [Double](repeating: 0, count: window.taps)
              tensor.scalars.withUnsafeBufferPointer { window.addTapSums($0, into: &s, Double.init) }
              sums[t] = s
            }
          }
          observe(Graph.inputName, input)
          _ = executor.run(input, observe: observe)
          state.withLock { s in
            s.pending[index] = sums
            // Added in image order: the same Double sums whatever the number of threads.
            while let next = s.pending.removeValue(forKey: s.merged) {
              if s.sums == nil {
                s.sums = next
              } else {
                for t in next.indices { for k in next[t].indices { s.sums![t][k] += next[t][k] } }
              }
              s.merged += 1
            }
            s.done += 1
            progress(PassProgress(stage: stage, done: s.done, total: inputs.count))
          }
        } catch {
          state.withLock { $0.failure = $0.failure ?? error }
        }
      }
    }
    let (failure, floatSums) = state.withLock { ($0.failure, $0.sums) }
    if let failure { throw failure }
    guard let floatSums else { preconditionFailure("every image was merged") }
    if let missing = targets.indices.first(where: { floatSums[$0].isEmpty }) {
      throw QuantizerError.layer(
        targets[missing].name,
        "bias correction: the float model does not compute its input '\(targets[missing].inputs[0])'")
    }

    // 2. The integer run, correcting each layer before it runs.
    let images = inputs.count
    var corrections: [LayerCorrection] = []
    var newBiases: [String: [Int32]] = [:]
    let layerStage = "bias correction: layers"
    progress(PassProgress(stage: layerStage, done: 0, total: targets.count))
    let targetIndex = Dictionary(uniqueKeysWithValues: targets.enumerated().map { ($1.name, $0) })
    _ = try int8.run(
      quantized: Array(quantizedInputs), batch: images, threads: inputs.threads
    ) { name, input in
      guard let t = targetIndex[name] else { return nil }
      let node = targets[t]
      let window = Window(node: node, inputShape: Array(input.shape.dropFirst()))
      let intSums = integerTapSums(input, window: window, images: images, threads: inputs.threads)
      let (bias, record) = try corrected(
        node: node, float: floatLayers[name]!, floatSums: floatSums[t], intSums: intSums, window: window,
        images: images)
      corrections.append(record)
      newBiases[name] = bias
      progress(PassProgress(stage: layerStage, done: t + 1, total: targets.count))
      return bias
    }
    var model = quantized
    for i in model.nodes.indices { if let b = newBiases[model.nodes[i].name] { model.nodes[i].bias = b } }
    try model.validate()
    return (model, corrections)
  }

  /// Every image's input values under each tap, `[kh, kw, C]`, summed exactly (padding excluded).
  static func integerTapSums(_ input: QuantizedTensor, window: Window, images: Int, threads: Int) -> [Int64] {
    let perImage = input.values.count / images
    let chunks = max(1, min(threads, images))
    let partial = Mutex([[Int64]]())
    input.values.withUnsafeBufferPointer { all in
      nonisolated(unsafe) let all = all
      DispatchQueue.concurrentPerform(iterations: chunks) { t in
        var sums = [Int64](repeating: 0, count: window.taps)
        for n in stride(from: t, to: images, by: chunks) {
          window.addTapSums(
            UnsafeBufferPointer(rebasing: all[(n * perImage)..<((n + 1) * perImage)]), into: &sums, Int64.init)
        }
        partial.withLock { $0.append(sums) }
      }
    }
    // Integer sums: the order they are added in does not matter.
    return partial.withLock { parts in
      parts.dropFirst().reduce(into: parts[0]) { total, p in for k in total.indices { total[k] += p[k] } }
    }
  }

  /// The corrected biases of `node` and what changed.
  static func corrected(
    node: QuantizedNode, float: FloatLayer, floatSums: [Double], intSums: [Int64], window: Window, images: Int
  ) throws -> ([Int32], LayerCorrection) {
    let o = node.outChannels!
    let groups = node.groups ?? 1
    let icg = node.inChannels! / groups
    let ocg = o / groups
    let (kh, kw) = (window.kernelH, window.kernelW)
    let c = window.channels
    let inQ = node.inputQuantization![0]
    let z = Int64(inQ.zeroPoint)
    let positions = Double(window.positions * images)
    guard floatSums.count == window.taps, intSums.count == window.taps, c == node.inChannels! else {
      throw QuantizerError.layer(node.name, "bias correction: the float and int8 inputs have different shapes")
    }
    // Padded taps read z_in in the integer kernels (and 0 in float).
    var q = intSums
    for ky in 0..<kh {
      for kx in 0..<kw {
        let pad = Int64(window.padded(ky, kx) * images) * z
        for ch in 0..<c { q[(ky * kw + kx) * c + ch] += pad }
      }
    }
    let per = node.weightsPerChannel
    var bias = node.bias
    var record = LayerCorrection(layer: node.name, changed: 0, maxChange: 0, clamped: 0)
    for oc in 0..<o {
      let g = oc / ocg
      var floatDot = 0.0
      var intDot: Int64 = 0
      var sumAbs: Int64 = 0
      for ky in 0..<kh {
        for kx in 0..<kw {
          for i in 0..<icg {
            let tap = (ky * kw + kx) * c + g * icg + i
            // Float OIHW [O, I/g, kh, kw] (linear [O, I]); int8 [O, kh, kw, I/g].
            floatDot += float.weights[((oc * icg + i) * kh + ky) * kw + kx] * floatSums[tap]
            let w = Int64(node.weights[oc * per + (ky * kw + kx) * icg + i])
            intDot += w * q[tap]
            sumAbs += abs(w)
          }
        }
      }
      let scale = Double(inQ.scale) * Double(node.weightScales[oc])
      let floatMean = float.bias[oc] + floatDot / positions
      let intMean = Double(bias[oc]) + Double(intDot) / positions
      let shift = Quantizer.roundToInt64((floatMean - scale * intMean) / scale)
      guard shift != 0 else { continue }
      // §14: |bias| + 255 · Σ|w_q| must stay below 2^31.
      let headroom = max(Int64(Int32.max) - 255 * sumAbs, 0)
      var value = Int64(bias[oc]) + shift
      if value.magnitude > headroom {
        value = max(min(value, headroom), -headroom)
        record.clamped += 1
      }
      if value != Int64(bias[oc]) {
        record.changed += 1
        record.maxChange = max(record.maxChange, abs(value - Int64(bias[oc])))
      }
      bias[oc] = Int32(value)
    }
    return (bias, record)
  }
}

extension Quantizer {
  /// The float weights and bias of every conv2d and linear node, by integer node name, as the
  /// quantizer reads them (BatchNorm folded in Double, docs/quantization.md §4).
  static func floatLayers(model: Model) throws -> [String: BiasCorrection.FloatLayer] {
    let builder = try Builder(model: model) { _ in nil }
    var layers: [String: BiasCorrection.FloatLayer] = [:]
    for layer in builder.plan.layers {
      switch layer.operation {
      case .conv(let c):
        let f = try builder.foldedConv(layer, c)
        layers[layer.name] = .init(weights: f.weights, bias: f.bias)
      case .linear(let l):
        let f = try builder.floatLinear(layer, l)
        layers[layer.name] = .init(weights: f.weights, bias: f.bias)
      default: break
      }
    }
    return layers
  }
}
