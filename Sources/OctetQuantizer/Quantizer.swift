import OctetCore
import OctetModels

/// Post-training int8 quantization of a float `Model` with calibrated activation ranges, following
/// docs/quantization.md.
///
/// Each layer of the float graph's `LayerPlan` (OctetModels), the plan calibration observed through
/// `FloatExecutor(fuseResidualAdd: false)`, becomes one integer node under the layer's name:
/// conv (+ batch_norm) (+ relu/relu6) a `conv2d` node named by its last member, add (+ relu) an
/// `add` node likewise; max pool, global average pool, flatten and the linear classifier map one
/// to one.
///
/// Offline arithmetic, which the NumPy golden script mirrors step by step:
/// - BatchNorm and the conv bias are folded in Double: f = γ / √(σ² + ε), w' = w · f,
///   b' = (b − μ) · f + β (ε widened from Float).
/// - Activation parameters: `ActivationQuantization(range:hi:)` on the Float range (Float math).
/// - Weight scale per output channel: `symmetricWeightScale(maxAbs: Float(max |w'|))` (Float), raised
///   to |b'| / (s_in · 2^30) (rounded up to a Float) when that is larger, so the bias fits;
///   w_q = clamp(round(w' / s_w), −127, 127) in Double, rounding half away from zero.
/// - Bias: round(b' / (s_in · s_w)) in Double, saturated to Int32; then −z_in · Σ w_q folded in,
///   saturated again.
/// - Requantization: `RequantMultiplier(real:)` of M = s_in · s_w / s_out in Double (convs),
///   s_in / (s_out · H · W) (global average pool), s_w[c] / max s_w (classifier, whose logits keep
///   the scale s_in · max s_w); `AddMultipliers(realA: s_a / s_o, realB: s_b / s_o)`.
public enum Quantizer {
  /// Quantizes `model` with the activation ranges of `range(name)` (lo, hi), which must hold the
  /// graph input ("input") and the output of every integer node except max pool and flatten,
  /// which keep their input's quantization. `weightBits` 7 quantizes weights to [-63, 63]
  /// (docs/quantization.md §2: exact for AVX2's vpmaddubsw, at some accuracy cost).
  public static func quantize(
    model: Model, weightBits: WeightBits = .eight, range: @escaping (String) -> (lo: Float, hi: Float)?
  ) throws -> QuantizationResult {
    try quantize(model: model, options: QuantizationOptions(weightBits: weightBits), range: range)
  }

  /// Quantizes `model` with the model-only techniques of `options` (see `QuantizationOptions`).
  public static func quantize(
    model: Model, options: QuantizationOptions, range: @escaping (String) -> (lo: Float, hi: Float)?
  ) throws -> QuantizationResult {
    // Cross-layer equalization changes the float model; `range` must hold the equalized model's
    // ranges (calibrate `CrossLayerEqualization.apply(to: model).model`, which is deterministic).
    let model = options.equalization ? try CrossLayerEqualization.apply(to: model).model : model
    var builder = try Builder(model: model, range: range)
    builder.options = options
    builder.weightMax = options.weightBits.maxMagnitude
    try builder.resolveA16Layers()
    try builder.run()
    let qmodel = QuantizedModel(info: model.info, nodes: builder.nodes, output: builder.output)
    try qmodel.validate()
    var counts: [String: Int] = [:]
    // The 16-bit twins (docs/quantization.md §17) are the same layers, not more of them.
    for n in qmodel.nodes where !MixedPrecision.isTwin(n.name) { counts[n.op.rawValue, default: 0] += 1 }
    var report = QuantizationReport(
      nodesByOperator: counts,
      floatNodesCovered: qmodel.nodes.filter { !MixedPrecision.isTwin($0.name) }.reduce(0) { $0 + $1.fused.count },
      leftInFloat: [], warnings: builder.warnings)
    let a16 = qmodel.nodes.filter { ($0.inputBits == 16 || $0.weightBits == 16) && !MixedPrecision.isTwin($0.name) }
    if !a16.isEmpty { report.a16Layers = a16.map { .init(name: $0.name, precision: $0.precision) } }
    return QuantizationResult(model: qmodel, report: report)
  }

  /// BatchNorm (and the conv bias) folded into an OIHW convolution, in Double:
  /// `w'[o, …] = w[o, …] · f[o]`, `b'[o] = (b[o] − μ[o]) · f[o] + β[o]`, `f = γ / √(σ² + ε)`.
  public static func foldBatchNorm(
    weights: [Float], bias: [Float]?, gamma: [Float], beta: [Float], mean: [Float], variance: [Float],
    epsilon: Float
  ) -> (weights: [Double], bias: [Double]) {
    let o = gamma.count
    let perChannel = weights.count / o
    var w = weights.map(Double.init)
    var b = [Double](repeating: 0, count: o)
    let eps = Double(epsilon)
    for c in 0..<o {
      let factor = Double(gamma[c]) / (Double(variance[c]) + eps).squareRoot()
      for i in 0..<perChannel { w[c * perChannel + i] *= factor }
      b[c] = (Double(bias?[c] ?? 0) - Double(mean[c])) * factor + Double(beta[c])
    }
    return (w, b)
  }

  /// Round half away from zero, as Swift's `.rounded()` and the contract require.
  static func roundToInt64(_ x: Double) -> Int64 {
    let r = x.rounded()
    if r >= 9.2e18 { return .max }
    if r <= -9.2e18 { return .min }
    return Int64(r)
  }

  static func saturatingInt32(_ x: Int64) -> (value: Int32, saturated: Bool) {
    if x > Int64(Int32.max) { return (.max, true) }
    if x < Int64(Int32.min) { return (.min, true) }
    return (Int32(x), false)
  }

  /// The per-channel part §2 and §5 share between 8-bit and 16-bit-input layers: for weights laid
  /// out `[O, perChannel]`, each channel's symmetric scale (`max|w| / weightMax`, raised for a dead
  /// channel so that `|b| / (s_in · s_w)` stays within `2^biasBits`), its integer weights, their sum
  /// and Σ|w_q|, and the rounded (not yet zero-point-folded) bias `round(b / (s_in · s_w))`. The
  /// all-zero and raised-scale warnings are appended here.
  static func quantizeChannelsCommon(
    weights w: [Double], bias b: [Double], outChannels o: Int, input: ActivationQuantization, node: String,
    weightMax: Int64, biasBits: Int, warnings: inout [QuantizationWarning]
  ) throws -> (weights: [Int64], scales: [Float], bias: [Int64], sums: [Int64], sumAbs: [Int64]) {
    let perChannel = w.count / o
    var q = [Int64](repeating: 0, count: w.count)
    var scales = [Float](repeating: 1, count: o)
    var bias = [Int64](repeating: 0, count: o)
    var sums = bias
    var sumAbs = bias
    var zeroChannels: [Int] = []
    var raised: [Int] = []
    let bound = Double(Int64(1) << biasBits)
    for c in 0..<o {
      let row = c * perChannel
      var maxAbs = 0.0
      for i in 0..<perChannel { maxAbs = max(maxAbs, abs(w[row + i])) }
      guard maxAbs.isFinite, Float(maxAbs).isFinite else {
        throw QuantizerError.layer(
          node, "output channel \(c) has a weight of magnitude \(maxAbs) after BatchNorm folding")
      }
      if maxAbs == 0 { zeroChannels.append(c) }
      var s = symmetricWeightScale(maxAbs: Float(maxAbs), levels: Float(weightMax))
      // docs/quantization.md §5: |b_q| must stay within 2^biasBits so that the accumulator cannot
      // wrap. A dead channel (weights ~0 after folding, a large BatchNorm shift) gets a coarser
      // weight scale instead of a saturated bias: its weights barely matter, its bias does.
      let scaleFloor = abs(b[c]) / (Double(input.scale) * bound)
      if Double(s) < scaleFloor {
        var raisedScale = Float(scaleFloor)
        if Double(raisedScale) < scaleFloor { raisedScale = raisedScale.nextUp }
        s = raisedScale
        raised.append(c)
      }
      scales[c] = s
      for i in 0..<perChannel {
        let v = min(max(roundToInt64(w[row + i] / Double(s)), -weightMax), weightMax)
        q[row + i] = v
        sums[c] += v
        sumAbs[c] += abs(v)
      }
      bias[c] = roundToInt64(b[c] / (Double(input.scale) * Double(s)))
    }
    if !zeroChannels.isEmpty {
      warnings.append(
        .init(
          node: node,
          message: "all-zero weights in output channel(s) \(channelList(zeroChannels)) (weight scale 1, weights 0)",
          kind: .allZeroWeights, channels: zeroChannels))
    }
    if !raised.isEmpty {
      let why =
        biasBits == 30
        ? "fits in 2^30 (near-zero weights, large bias)" : "fits in 2^\(biasBits) (16-bit input)"
      warnings.append(
        .init(
          node: node,
          message: "weight scale raised so that |bias| \(why) in output channel(s) \(channelList(raised))",
          kind: .weightScaleRaised, channels: raised))
    }
    return (q, scales, bias, sums, sumAbs)
  }

  /// Up to eight channel numbers, then the count.
  static func channelList(_ channels: [Int]) -> String {
    channels.count <= 8
      ? "\(channels)"
      : "\(channels.prefix(8).map(String.init).joined(separator: ", ")), … (\(channels.count) in all)"
  }

  /// Per-output-channel int8 weights, scales and zero-point-folded int32 biases for weights laid out
  /// `[O, perChannel]`, reading an input quantized with `input`. docs/quantization.md §2, §5.
  static func quantizeChannels(
    weights w: [Double], bias b: [Double], outChannels o: Int, input: ActivationQuantization, node: String,
    weightMax: Int64 = 127, warnings: inout [QuantizationWarning]
  ) throws -> (weights: [Int8], scales: [Float], bias: [Int32]) {
    let common = try quantizeChannelsCommon(
      weights: w, bias: b, outChannels: o, input: input, node: node, weightMax: weightMax, biasBits: 30,
      warnings: &warnings)
    var bias = [Int32](repeating: 0, count: o)
    var saturated: [Int] = []
    var overflowRisk: [Int] = []
    for c in 0..<o {
      let (bq, s1) = saturatingInt32(common.bias[c])
      var (folded, s2) = saturatingInt32(Int64(bq) - Int64(input.zeroPoint) * common.sums[c])
      if s1 || s2 { saturated.append(c) }
      // |acc| <= |b| + 255 · Σ|w_q| must stay below 2^31 (docs/quantization.md §14).
      // A bias that saturated (a near-zero channel with a large BatchNorm shift: s_w is tiny) is
      // clamped further, to leave the products room, so the int32 sum can never wrap.
      let headroom = max(Int64(Int32.max) - 255 * common.sumAbs[c], 0)
      if Int64(folded).magnitude > headroom {
        overflowRisk.append(c)
        folded = Int32(max(min(Int64(folded), headroom), -headroom))
      }
      bias[c] = folded
    }
    // A saturated bias is always clamped for headroom too: one warning for both.
    let onlySaturated = saturated.filter { !overflowRisk.contains($0) }
    if !onlySaturated.isEmpty {
      warnings.append(
        .init(
          node: node, message: "bias saturated to int32 in output channel(s) \(channelList(onlySaturated))",
          kind: .biasSaturated, channels: onlySaturated))
    }
    if !overflowRisk.isEmpty {
      warnings.append(
        .init(
          node: node,
          message:
            "|bias| + 255·Σ|w| exceeds int32 (a large bias over a tiny weight scale); bias clamped to ±(2^31 − 1 − 255·Σ|w|) so the accumulator cannot overflow, in output channel(s) \(channelList(overflowRisk))",
          kind: .biasClamped, channels: overflowRisk))
    }
    return (common.weights.map { Int8($0) }, common.scales, bias)
  }

  /// Per-output-channel weights (±`weightMax`: 127 or 32767), scales and zero-point-folded 64-bit
  /// biases of a layer with a 16-bit input (docs/quantization.md §17): as §2 and §5, but the bias
  /// is kept in 64 bits and a dead channel's weight scale is raised only when |b_q| would pass 2^40.
  static func quantizeChannelsWide(
    weights w: [Double], bias b: [Double], outChannels o: Int, input: ActivationQuantization, node: String,
    weightMax: Int64, warnings: inout [QuantizationWarning]
  ) throws -> (weights: [Int64], scales: [Float], bias: [Int64]) {
    let common = try quantizeChannelsCommon(
      weights: w, bias: b, outChannels: o, input: input, node: node, weightMax: weightMax, biasBits: 40,
      warnings: &warnings)
    let bound: Int64 = 1 << 40
    let bias = (0..<o).map { c in
      min(max(common.bias[c], -bound), bound) - Int64(input.zeroPoint) * common.sums[c]
    }
    return (common.weights, common.scales, bias)
  }

  /// A requantization multiplier with the node named in its error, and a warning when it is below
  /// what 31 bits at shift 62 represent at full precision.
  static func multiplier(
    _ real: Double, node: String, what: String, channel: Int? = nil, warnings: inout [QuantizationWarning]
  ) throws -> RequantMultiplier {
    let m: RequantMultiplier
    do { m = try RequantMultiplier(real: real) } catch {
      throw QuantizerError.layer(node, "\(what): \(error)")
    }
    if m.shift == 62 && m.multiplier < 1 << 30 {
      warnings.append(
        .init(
          node: node, message: "\(what) \(real) is below 2^-32: clamped to m = \(m.multiplier) at shift 62",
          kind: .tinyMultiplier, channels: channel.map { [$0] } ?? []))
    }
    return m
  }
}

/// Quantizes the layers of the float graph's `LayerPlan` (the fusion, names and shapes the float
/// executor and calibration use), one after the other.
struct Builder {
  let model: Model
  let plan: LayerPlan
  /// 127 (8-bit weights) or 63 (7-bit).
  var weightMax: Int64 = 127
  var options = QuantizationOptions()
  let range: (String) -> (lo: Float, hi: Float)?
  var nodes: [QuantizedNode] = []
  var warnings: [QuantizationWarning] = []
  var output = ""

  /// Per produced tensor (layer name): its quantization.
  var quantization: [String: ActivationQuantization] = [:]
  /// The layers whose input runs at 16 bits, and the tensors that therefore also get a 16-bit twin
  /// (docs/quantization.md §17).
  var a16Layers: Set<String> = []
  var sixteenBitTensors: Set<String> = []
  /// The layers of `options.w16Layers`: 16-bit weights (a8w16, §17.2; a16w16 when also a16).
  var w16Layers: Set<String> = []

  init(model: Model, range: @escaping (String) -> (lo: Float, hi: Float)?) throws {
    self.model = model
    self.range = range
    try model.graph.validate()
    do { plan = try LayerPlan(model: model) } catch { throw QuantizerError.plan(error) }
  }

  /// The calibrated quantization of tensor `name`. docs/quantization.md §1.
  mutating func calibrated(_ name: String) throws -> ActivationQuantization {
    guard let r = range(name) else { throw QuantizerError.missingRange(tensor: name) }
    guard r.lo.isFinite, r.hi.isFinite, r.lo <= r.hi else {
      throw QuantizerError.invalidRange(tensor: name, lo: r.lo, hi: r.hi)
    }
    if min(r.lo, 0) == max(r.hi, 0) {
      warnings.append(
        .init(
          node: name,
          message: "calibrated range is [0, 0]: scale 1, zero point 0 (the tensor was always zero)",
          kind: .zeroRange))
    }
    return ActivationQuantization(range: r.lo, hi: r.hi)
  }

  func floats(_ name: String?, _ layer: String, count: Int? = nil) throws -> [Float] {
    guard let name, let t = model.weights[name] else {
      throw QuantizerError.layer(layer, "tensor '\(name ?? "?")' is missing")
    }
    if let count, t.elementCount != count {
      throw QuantizerError.layer(layer, "tensor '\(name)' has \(t.elementCount) values, expected \(count)")
    }
    let v = t.floats()
    guard v.allSatisfy(\.isFinite) else {
      throw QuantizerError.layer(layer, "tensor '\(name)' holds NaN or infinite values")
    }
    return v
  }

  /// Input `i` of `layer`: its tensor name, quantization and per-image shape.
  func source(_ layer: PlannedLayer, _ i: Int) -> (tensor: String, q: ActivationQuantization, shape: [Int]) {
    let t = plan.inputName(layer, i)
    return (t, quantization[t]!, layer.inputShapes[i])
  }

  mutating func emit(_ node: QuantizedNode) {
    quantization[node.name] = node.output
    nodes.append(node)
  }

  mutating func run() throws {
    // batch_norm that no convolution takes (docs/quantization.md §15); a relu/relu6 that no
    // convolution or add takes is a lookup table (§20).
    let unsupported = plan.layers.compactMap { layer -> String? in
      switch layer.operation {
      case .batchNorm:
        "\(layer.name) (\(layer.node.op.rawValue) after '\(layer.node.inputs.first ?? "?")', not fusable)"
      default: nil
      }
    }
    if !unsupported.isEmpty {
      throw QuantizerError.unsupported(
        node: unsupported[0],
        reason:
          "the integer runtime fuses batch_norm into the convolution before it; "
          + "\(unsupported.count) node(s) cannot be: \(unsupported.joined(separator: "; "))")
    }
    if options.exactInput {
      // docs/quantization.md §12: the integer graph reads the uint8 pixels; the `input` range is not needed.
      let readers = plan.layers.filter { $0.inputs.contains(LayerInput.graphInput) }
      for layer in readers {
        guard case .conv(let c) = layer.operation, c.attributes.groups == 1 else {
          throw QuantizerError.unsupported(
            node: layer.name,
            reason: "exact input quantization folds the normalization into the convolutions that read the input; "
              + "'\(layer.name)' reads it and is not an ungrouped convolution")
        }
      }
      let pre = model.info.preprocessing
      let pixels = PixelNormalization(mean: pre.mean, std: pre.std)
      guard pixels.isValid else {
        throw QuantizerError.unsupported(
          node: Graph.inputName,
          reason:
            "exact input quantization needs 3 finite means and 3 positive stds, the model has \(pre.mean), \(pre.std)")
      }
      var node = QuantizedNode(
        name: Graph.inputName, op: .quantizeInput, inputs: [], fused: [],
        output: ActivationQuantization(scale: 1, zeroPoint: 0))
      node.pixelInput = pixels
      emit(node)
    } else {
      let inputQ = try calibrated(Graph.inputName)
      emit(QuantizedNode(name: Graph.inputName, op: .quantizeInput, inputs: [], fused: [], output: inputQ))
    }

    for layer in plan.layers {
      let name = layer.name
      switch layer.operation {
      case .conv(let c):
        try conv(layer, c)
      case .add(let activation):
        try add(layer, activation: activation)
      case .maxPool(let kernel, let stride, let padding):
        let (t, q, _) = source(layer, 0)
        var n = QuantizedNode(name: name, op: .maxPool, inputs: [t], fused: layer.members, output: q)
        n.kernel = kernel
        n.stride = stride
        n.padding = padding
        n.inputQuantization = [q]
        emit(n)
      case .globalAveragePool:
        let (t, q, s) = source(layer, 0)
        let out = try calibrated(name)
        var n = QuantizedNode(name: name, op: .globalAveragePool, inputs: [t], fused: layer.members, output: out)
        n.inputQuantization = [q]
        // M = s_in / (s_out · H · W): the mean's 1/(H·W) rides in the multiplier. docs/quantization.md §10.
        n.requant = try Quantizer.multiplier(
          Double(q.scale) / (Double(out.scale) * Double(s[0] * s[1])), node: name,
          what: "average-pool multiplier", warnings: &warnings)
        emit(n)
      case .flatten:
        let (t, q, _) = source(layer, 0)
        emit(QuantizedNode(name: name, op: .flatten, inputs: [t], fused: layer.members, output: q))
      case .linear(let l) where layer.name != plan.layers[plan.output].name:
        try hiddenLinear(layer, l)
      case .linear(let l):
        try linear(layer, l)
      case .unary, .mul, .concat, .averagePool, .activation:
        try onnxOperator(layer)
      case .batchNorm:
        preconditionFailure("refused above")
      }
    }
    let out = plan.layers[plan.output].name
    guard nodes.last?.name == out, nodes.last?.op == .linear else {
      throw QuantizerError.unsupported(
        node: model.graph.output, reason: "the integer graph must end in the linear classifier")
    }
    output = out
  }

  /// Checks `options.a16Layers` against the plan: each must name a convolution whose input is
  /// another convolution's output (the producers that can write a 16-bit twin, §17).
  mutating func resolveA16Layers() throws {
    var byName: [String: PlannedLayer] = [:]
    for layer in plan.layers { byName[layer.name] = layer }
    if options.equalization, let first = (options.a16Layers + options.w16Layers).first {
      // A 16-bit twin has no per-channel clamps (§7.1) in this version.
      throw QuantizerError.layer(first, "16-bit layers and cross-layer equalization cannot be combined yet")
    }
    /// The convolution `name` names, or an error naming it; `what` completes "only convolutions can …".
    func convolution(_ name: String, _ what: String) throws -> PlannedLayer {
      guard let layer = byName[name] else {
        throw QuantizerError.layer(
          name, "is not a layer of this model; 16-bit layers are named by their integer node (e.g. '_blocks.7._bn2')")
      }
      guard case .conv = layer.operation else { throw QuantizerError.layer(name, "only convolutions can \(what)") }
      return layer
    }
    for name in options.a16Layers {
      let layer = try convolution(name, "run with a 16-bit input (docs/quantization.md §17)")
      let producer = layer.inputs[0]
      guard producer != LayerInput.graphInput, case .conv = plan.layers[producer].operation else {
        throw QuantizerError.layer(
          name,
          "its input '\(plan.inputName(layer, 0))' is not a convolution's output; only those have a 16-bit "
            + "twin in this version (docs/quantization.md §17)")
      }
      a16Layers.insert(name)
      sixteenBitTensors.insert(plan.inputName(layer, 0))
    }
    for name in options.w16Layers {
      let layer = try convolution(name, "have 16-bit weights (docs/quantization.md §17.2)")
      if options.exactInput && plan.inputName(layer, 0) == Graph.inputName {
        throw QuantizerError.layer(name, "reads the image's exact pixels (§12); its weights stay 8-bit")
      }
      w16Layers.insert(name)
    }
  }

  /// The calibrated 16-bit quantization of tensor `name` (§17).
  func calibrated16(_ name: String) throws -> ActivationQuantization {
    guard let r = range(name) else { throw QuantizerError.missingRange(tensor: name) }
    return ActivationQuantization.int16(range: r.lo, hi: r.hi)
  }

  mutating func conv(_ layer: PlannedLayer, _ c: ConvLayer) throws {
    let name = layer.name
    let node = layer.node
    let (t8, inQ8, _) = source(layer, 0)
    let a16 = a16Layers.contains(name)
    // 16-bit weights: a8w16 (§17.2), or a16w16 for a layer in both lists.
    let w16 = w16Layers.contains(name)
    let t = a16 ? MixedPrecision.twinName(t8) : t8
    let inQ = a16 ? quantization[t]! : inQ8
    let (o, ig, kh, kw) = (c.outChannels, c.inChannels / c.attributes.groups, c.kernelH, c.kernelW)
    guard c.attributes.dilation == [1, 1] else {
      throw QuantizerError.unsupported(node: node.name, reason: "dilated convolutions are not supported")
    }
    let folded = try foldedConv(layer, c)
    let outQ = try calibrated(name)
    let exact = options.exactInput && t == Graph.inputName
    var wq: [Int64]
    let scales: [Float]
    var bias: [Int32] = []
    var bias64: [Int64] = []
    var border: (classes: BorderClasses, bias: [Int32])?
    if exact {
      let s = layer.inputShapes[0]
      let e = try Quantizer.exactInputConv(
        weights: folded.weights, bias: folded.bias, outChannels: o, kernel: [kh, kw], stride: c.attributes.stride,
        padding: c.padding, inHeight: s[0], inWidth: s[1], preprocessing: model.info.preprocessing, node: name,
        weightMax: weightMax, warnings: &warnings)
      (wq, scales, bias) = (e.weights.map(Int64.init), e.scales, e.bias)
      border = (e.classes, e.borderBias)
    } else if a16 || w16 {
      let weightMax16 = w16 ? A16WeightBits.sixteen.maxMagnitude : options.a16WeightBits.maxMagnitude
      (wq, scales, bias64) = try Quantizer.quantizeChannelsWide(
        weights: folded.weights, bias: folded.bias, outChannels: o, input: inQ, node: name, weightMax: weightMax16,
        warnings: &warnings)
    } else {
      let q8: [Int8]
      (q8, scales, bias) = try Quantizer.quantizeChannels(
        weights: folded.weights, bias: folded.bias, outChannels: o, input: inQ, node: name, weightMax: weightMax,
        warnings: &warnings)
      wq = q8.map(Int64.init)
    }

    // OIHW → [O, kh, kw, I/g], the order the runtime gathers a receptive field in.
    var ohwi = [Int64](repeating: 0, count: wq.count)
    for oc in 0..<o {
      for i in 0..<ig {
        for y in 0..<kh {
          for x in 0..<kw { ohwi[((oc * kh + y) * kw + x) * ig + i] = wq[((oc * ig + i) * kh + y) * kw + x] }
        }
      }
    }
    wq = []
    var multipliers = [Int32](repeating: 0, count: o)
    var shifts = multipliers
    var clampedChannels: [Int] = []
    for c in 0..<o {
      let m: RequantMultiplier
      do {
        m = try RequantMultiplier(
          inputScale: Double(inQ.scale), weightScale: Double(scales[c]), outputScale: Double(outQ.scale))
      } catch { throw QuantizerError.layer(name, "output channel \(c): \(error)") }
      if m.shift == 62 && m.multiplier < 1 << 30 { clampedChannels.append(c) }
      multipliers[c] = m.multiplier
      shifts[c] = m.shift
    }
    if !clampedChannels.isEmpty {
      warnings.append(
        .init(
          node: name,
          message: "\(clampedChannels.count) output channel multiplier(s) below 2^-32, clamped at shift 62",
          kind: .tinyMultiplier, channels: clampedChannels))
    }
    let bounds = outQ.clampBounds(c.activation)
    var n = QuantizedNode(name: name, op: .conv2d, inputs: [t], fused: layer.members, output: outQ)
    n.inChannels = c.inChannels
    n.outChannels = o
    n.kernel = [kh, kw]
    n.stride = c.attributes.stride
    n.padding = c.padding
    n.groups = c.attributes.groups
    n.inputQuantization = [inQ]
    n.clamp = [Int(bounds.lo), Int(bounds.hi)]
    if let clampMax = c.clampMax {
      // A ReLU6 after cross-layer equalization: channel c clamps at its own bound (§7.1); the node's
      // clamp is the hull, so the fast kernels' clamp contains every channel's.
      let upper = try floats(clampMax, layer.members.last!, count: o)
      let perChannel = upper.map { outQ.clampBounds(min: 0, max: $0) }
      n.channelClampLo = perChannel.map { UInt8($0.lo) }
      n.channelClampHi = perChannel.map { UInt8($0.hi) }
      n.clamp = [Int(n.channelClampLo.min()!), Int(n.channelClampHi.max()!)]
    }
    if (a16 && options.a16WeightBits == .sixteen) || w16 {
      n.weightBits = 16
      n.weights16 = ohwi.map { Int16($0) }
    } else {
      n.weights = ohwi.map { Int8($0) }
    }
    if a16 || w16 {
      if a16 { n.inputBits = 16 }
      n.bias64 = bias64
    } else {
      n.bias = bias
    }
    n.multipliers = multipliers
    n.shifts = shifts
    n.weightScales = scales
    if let border {
      n.borderClasses = border.classes
      n.borderBias = border.bias
    }
    emit(n)
    guard sixteenBitTensors.contains(name) else { return }
    // The 16-bit twin (§17): the same layer, its accumulator requantized to int16.
    let outQ16 = try calibrated16(name)
    var twin = n
    twin.name = MixedPrecision.twinName(name)
    twin.output = outQ16
    twin.outputBits = 16
    if !a16 && !w16 {
      twin.bias64 = bias.map(Int64.init)
      twin.bias = []
    }
    let bounds16: (lo: Int32, hi: Int32)
    switch c.activation {
    case .relu: bounds16 = outQ16.clampBounds16(min: 0)
    case .relu6: bounds16 = outQ16.clampBounds16(min: 0, max: 6)
    case nil: bounds16 = outQ16.clampBounds16()
    }
    twin.clamp = [Int(bounds16.lo), Int(bounds16.hi)]
    for c in 0..<o {
      do {
        let m = try RequantMultiplier(
          inputScale: Double(inQ.scale), weightScale: Double(scales[c]), outputScale: Double(outQ16.scale))
        twin.multipliers[c] = m.multiplier
        twin.shifts[c] = m.shift
      } catch { throw QuantizerError.layer(twin.name, "output channel \(c): \(error)") }
    }
    emit(twin)
  }

  /// The convolution's float weights (OIHW) and bias with its BatchNorm folded (docs/quantization.md §4).
  func foldedConv(_ layer: PlannedLayer, _ c: ConvLayer) throws -> (weights: [Double], bias: [Double]) {
    let node = layer.node
    let o = c.outChannels
    let w = try floats(c.attributes.weight, node.name)
    let b = c.attributes.bias != nil ? try floats(c.attributes.bias, node.name, count: o) : nil
    if let bn = c.batchNorm {
      let a = bn.attributes
      return Quantizer.foldBatchNorm(
        weights: w, bias: b, gamma: try floats(a.weight, bn.name, count: o),
        beta: try floats(a.bias, bn.name, count: o),
        mean: try floats(a.runningMean, bn.name, count: o),
        variance: try floats(a.runningVariance, bn.name, count: o),
        epsilon: a.epsilon)
    }
    return (w.map(Double.init), (b ?? [Float](repeating: 0, count: o)).map(Double.init))
  }

  /// The classifier's float weights `[O, I]` and bias.
  func floatLinear(_ layer: PlannedLayer, _ l: LinearLayer) throws -> (weights: [Double], bias: [Double]) {
    let o = l.outFeatures
    let w = try floats(l.attributes.weight, layer.name).map(Double.init)
    let b =
      l.attributes.bias != nil
      ? try floats(l.attributes.bias, layer.name, count: o).map(Double.init) : [Double](repeating: 0, count: o)
    return (w, b)
  }

  mutating func add(_ layer: PlannedLayer, activation: FusedActivation?) throws {
    let name = layer.name
    let a = source(layer, 0)
    let b = source(layer, 1)
    let outQ = try calibrated(name)
    var n = QuantizedNode(name: name, op: .add, inputs: [a.tensor, b.tensor], fused: layer.members, output: outQ)
    n.inputQuantization = [a.q, b.q]
    do {
      n.addMultipliers = try AddMultipliers(
        realA: Double(a.q.scale) / Double(outQ.scale), realB: Double(b.q.scale) / Double(outQ.scale))
    } catch { throw QuantizerError.layer(name, "residual add multipliers: \(error)") }
    let bounds = outQ.clampBounds(activation)
    n.clamp = [Int(bounds.lo), Int(bounds.hi)]
    emit(n)
  }

  /// The classifier keeps int32 logits at s_in · max s_w: channel c is requantized by
  /// s_w[c] / max s_w ≤ 1, with no clamp. docs/quantization.md §11.
  mutating func linear(_ layer: PlannedLayer, _ l: LinearLayer) throws {
    let name = layer.name
    let (t, inQ, _) = source(layer, 0)
    let features = l.inFeatures
    let o = l.outFeatures
    let (w, b) = try floatLinear(layer, l)
    let (wq, scales, bias) = try Quantizer.quantizeChannels(
      weights: w, bias: b, outChannels: o, input: inQ, node: name, weightMax: weightMax, warnings: &warnings)
    let maxScale = scales.max() ?? 1
    var multipliers = [Int32](repeating: 0, count: o)
    var shifts = multipliers
    for c in 0..<o {
      let m = try Quantizer.multiplier(
        Double(scales[c]) / Double(maxScale), node: name, what: "logit multiplier of class \(c)", channel: c,
        warnings: &warnings)
      multipliers[c] = m.multiplier
      shifts[c] = m.shift
    }
    let logitScale = inQ.scale * maxScale
    guard logitScale.isFinite, logitScale > 0 else {
      throw QuantizerError.layer(
        name, "logit scale \(inQ.scale) · \(maxScale) is not a positive finite number")
    }
    var n = QuantizedNode(
      name: name, op: .linear, inputs: [t], fused: layer.members,
      output: ActivationQuantization(scale: logitScale, zeroPoint: 0))
    n.inChannels = features
    n.outChannels = o
    n.inputQuantization = [inQ]
    n.weights = wq
    n.bias = bias
    n.multipliers = multipliers
    n.shifts = shifts
    n.weightScales = scales
    emit(n)
  }
}

/// The weight range: 8-bit [-127, 127] (the default), or 7-bit [-63, 63], whose adjacent pairs can
/// never saturate AVX2's vpmaddubsw (255 * 126 < 2^15), so CPUs without VNNI run them on the
/// faster kernel (docs/quantization.md §2).
public enum WeightBits: Int, Sendable, CaseIterable {
  case seven = 7
  case eight = 8

  public var maxMagnitude: Int64 { self == .eight ? 127 : 63 }
}

extension QuantizerError {
  /// A plan error (fusion, names, shapes) as the quantizer reports it: the same text.
  static func plan(_ error: GraphPlanError) -> QuantizerError {
    switch error {
    case .layer(let name, let message): .layer(name, message)
    }
  }
}

extension ActivationQuantization {
  /// The output clamp of a layer with a fused activation (docs/quantization.md §7).
  func clampBounds(_ activation: FusedActivation?) -> (lo: Int32, hi: Int32) {
    switch activation {
    case .relu: clampBounds(min: 0)
    case .relu6: clampBounds(min: 0, max: 6)
    case nil: clampBounds()
    }
  }
}
