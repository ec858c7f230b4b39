import OctetCore
import OctetModels

/// Post-training int8 quantization of a float `Model` with calibrated activation ranges, following
/// docs/quantization.md.
///
/// Fusion is the float executor's with `fuseResidualAdd: false`, so the integer graph's tensors
/// are the ones calibration observed, under the same names: conv (+ batch_norm) (+ relu/relu6) is
/// one `conv2d` node named by its last member, add (+ relu) one `add` node likewise; max pool,
/// global average pool, flatten and the linear classifier map one to one.
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
    var builder = try Builder(model: model, range: range)
    builder.weightMax = weightBits.maxMagnitude
    try builder.run()
    let qmodel = QuantizedModel(info: model.info, nodes: builder.nodes, output: builder.output)
    try qmodel.validate()
    var counts: [String: Int] = [:]
    for n in qmodel.nodes { counts[n.op.rawValue, default: 0] += 1 }
    let report = QuantizationReport(
      nodesByOperator: counts, floatNodesCovered: qmodel.nodes.reduce(0) { $0 + $1.fused.count },
      leftInFloat: [], warnings: builder.warnings)
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

  /// Per-output-channel int8 weights, scales and zero-point-folded int32 biases for weights laid out
  /// `[O, perChannel]`, reading an input quantized with `input`. docs/quantization.md §2, §5.
  static func quantizeChannels(
    weights w: [Double], bias b: [Double], outChannels o: Int, input: ActivationQuantization, node: String,
    weightMax: Int64 = 127, warnings: inout [QuantizationWarning]
  ) throws -> (weights: [Int8], scales: [Float], bias: [Int32]) {
    let perChannel = w.count / o
    var q = [Int8](repeating: 0, count: w.count)
    var scales = [Float](repeating: 1, count: o)
    var bias = [Int32](repeating: 0, count: o)
    var zeroChannels: [Int] = []
    var saturated: [Int] = []
    var overflowRisk: [Int] = []
    var raised: [Int] = []
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
      // docs/quantization.md §5: |b_q| must stay within 2^30 so that the accumulator cannot wrap.
      // A dead channel (weights ~0 after folding, a large BatchNorm shift) gets a coarser weight
      // scale instead of a saturated bias: its weights barely matter, its bias does.
      let scaleFloor = abs(b[c]) / (Double(input.scale) * 1_073_741_824.0)
      if Double(s) < scaleFloor {
        var raisedScale = Float(scaleFloor)
        if Double(raisedScale) < scaleFloor { raisedScale = raisedScale.nextUp }
        s = raisedScale
        raised.append(c)
      }
      scales[c] = s
      var sum: Int64 = 0
      var sumAbs: Int64 = 0
      for i in 0..<perChannel {
        let v = min(max(roundToInt64(w[row + i] / Double(s)), -weightMax), weightMax)
        q[row + i] = Int8(v)
        sum += v
        sumAbs += abs(v)
      }
      let (bq, s1) = saturatingInt32(roundToInt64(b[c] / (Double(input.scale) * Double(s))))
      var (folded, s2) = saturatingInt32(Int64(bq) - Int64(input.zeroPoint) * sum)
      if s1 || s2 { saturated.append(c) }
      // |acc| <= |b| + 255 · Σ|w_q| must stay below 2^31 (docs/quantization.md §14).
      // A bias that saturated (a near-zero channel with a large BatchNorm shift: s_w is tiny) is
      // clamped further, to leave the products room, so the int32 sum can never wrap.
      let headroom = max(Int64(Int32.max) - 255 * sumAbs, 0)
      if Int64(folded).magnitude > headroom {
        overflowRisk.append(c)
        folded = Int32(max(min(Int64(folded), headroom), -headroom))
      }
      bias[c] = folded
    }
    func list(_ channels: [Int]) -> String {
      channels.count <= 8
        ? "\(channels)"
        : "\(channels.prefix(8).map(String.init).joined(separator: ", ")), … (\(channels.count) in all)"
    }
    if !zeroChannels.isEmpty {
      warnings.append(
        .init(
          node: node,
          message: "all-zero weights in output channel(s) \(list(zeroChannels)) (weight scale 1, weights 0)",
          kind: .allZeroWeights, channels: zeroChannels))
    }
    if !raised.isEmpty {
      warnings.append(
        .init(
          node: node,
          message: "weight scale raised so that |bias| fits in 2^30 (near-zero weights, large bias) in output channel(s) \(list(raised))",
          kind: .weightScaleRaised, channels: raised))
    }
    // A saturated bias is always clamped for headroom too: one warning for both.
    let onlySaturated = saturated.filter { !overflowRisk.contains($0) }
    if !onlySaturated.isEmpty {
      warnings.append(
        .init(
          node: node, message: "bias saturated to int32 in output channel(s) \(list(onlySaturated))",
          kind: .biasSaturated, channels: onlySaturated))
    }
    if !overflowRisk.isEmpty {
      warnings.append(
        .init(
          node: node,
          message:
            "|bias| + 255·Σ|w| exceeds int32 (a large bias over a tiny weight scale); bias clamped to ±(2^31 − 1 − 255·Σ|w|) so the accumulator cannot overflow, in output channel(s) \(list(overflowRisk))",
          kind: .biasClamped, channels: overflowRisk))
    }
    return (q, scales, bias)
  }

  /// A requantization multiplier with the node named in its error, and a warning when it is below
  /// what 31 bits at shift 62 represent at full precision.
  static func multiplier(
    _ real: Double, node: String, what: String, channel: Int? = nil, warnings: inout [QuantizationWarning]
  ) throws -> RequantMultiplier
  {
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

/// Walks the float graph once, in order, fusing and quantizing as the float executor plans it.
struct Builder {
  let model: Model
  /// 127 (8-bit weights) or 63 (7-bit).
  var weightMax: Int64 = 127
  let range: (String) -> (lo: Float, hi: Float)?
  var nodes: [QuantizedNode] = []
  var warnings: [QuantizationWarning] = []
  var output = ""

  // Per produced tensor: its quantization and per-image shape ([H, W, C] or [C]).
  var quantization: [String: ActivationQuantization] = [:]
  var shape: [String: [Int]] = [:]
  /// Float node name → the integer tensor holding its value (fused members map to the last one).
  var tensorOf: [String: String] = [:]
  var consumers: [String: [String]] = [:]
  var nodeByName: [String: Node] = [:]

  init(model: Model, range: @escaping (String) -> (lo: Float, hi: Float)?) throws {
    self.model = model
    self.range = range
    try model.graph.validate()
    for node in model.graph.nodes {
      for input in node.inputs { consumers[input, default: []].append(node.name) }
    }
    nodeByName = Dictionary(uniqueKeysWithValues: model.graph.nodes.map { ($0.name, $0) })
  }

  func soleConsumer(_ name: String) -> Node? {
    guard name != model.graph.output, let c = consumers[name], c.count == 1 else { return nil }
    return nodeByName[c[0]]
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

  func source(_ name: String, _ layer: String) throws -> (
    tensor: String, q: ActivationQuantization, shape: [Int]
  ) {
    guard let t = tensorOf[name], let q = quantization[t], let s = shape[t] else {
      throw QuantizerError.layer(layer, "input '\(name)' is not computed before it")
    }
    return (t, q, s)
  }

  mutating func emit(_ node: QuantizedNode, shape s: [Int]) {
    for member in node.fused { tensorOf[member] = node.name }
    quantization[node.name] = node.output
    shape[node.name] = s
    nodes.append(node)
  }

  mutating func run() throws {
    let size = model.info.inputSize
    let inputQ = try calibrated(Graph.inputName)
    tensorOf[Graph.inputName] = Graph.inputName
    emit(
      QuantizedNode(name: Graph.inputName, op: .quantizeInput, inputs: [], fused: [], output: inputQ),
      shape: [size, size, 3])

    var consumed: Set<String> = []
    var unsupported: [String] = []
    for node in model.graph.nodes where !consumed.contains(node.name) {
      let name = node.name
      switch node.op {
      case .conv2d:
        var fused = [name]
        var activation: OperatorKind? = nil
        var bn: Node? = nil
        var produced = name
        if let next = soleConsumer(produced), next.op == .batchNorm {
          bn = next
          produced = next.name
          fused.append(next.name)
        }
        if let next = soleConsumer(produced), next.op == .relu || next.op == .relu6 {
          activation = next.op
          produced = next.name
          fused.append(next.name)
        }
        consumed.formUnion(fused)
        try conv(node, bn: bn, activation: activation, fused: fused)
      case .add:
        var fused = [name]
        var activation: OperatorKind? = nil
        if let next = soleConsumer(name), next.op == .relu || next.op == .relu6 {
          activation = next.op
          fused.append(next.name)
        }
        consumed.formUnion(fused)
        try add(node, activation: activation, fused: fused)
      case .maxPool:
        let (t, q, s) = try source(node.inputs[0], name)
        guard s.count == 3 else {
          throw QuantizerError.layer(name, "expects an NHWC input, gets per-image shape \(s)")
        }
        let k = node.kernel ?? [1, 1]
        let st = node.stride ?? k
        let pads = node.resolvedPadding(height: s[0], width: s[1])
        var n = QuantizedNode(name: name, op: .maxPool, inputs: [t], fused: [name], output: q)
        n.kernel = k
        n.stride = st
        n.padding = pads
        n.inputQuantization = [q]
        let oh = (s[0] + pads[0] + pads[2] - k[0]) / st[0] + 1
        let ow = (s[1] + pads[1] + pads[3] - k[1]) / st[1] + 1
        guard oh > 0, ow > 0 else {
          throw QuantizerError.layer(name, "input \(s[0])x\(s[1]) is too small to pool")
        }
        emit(n, shape: [oh, ow, s[2]])
      case .globalAveragePool:
        let (t, q, s) = try source(node.inputs[0], name)
        guard s.count == 3 else {
          throw QuantizerError.layer(name, "expects an NHWC input, gets per-image shape \(s)")
        }
        let out = try calibrated(name)
        var n = QuantizedNode(name: name, op: .globalAveragePool, inputs: [t], fused: [name], output: out)
        n.inputQuantization = [q]
        // M = s_in / (s_out · H · W): the mean's 1/(H·W) rides in the multiplier. docs/quantization.md §10.
        n.requant = try Quantizer.multiplier(
          Double(q.scale) / (Double(out.scale) * Double(s[0] * s[1])), node: name,
          what: "average-pool multiplier", warnings: &warnings)
        emit(n, shape: [1, 1, s[2]])
      case .flatten:
        let (t, q, s) = try source(node.inputs[0], name)
        emit(
          QuantizedNode(name: name, op: .flatten, inputs: [t], fused: [name], output: q),
          shape: [s.reduce(1, *)])
      case .linear:
        try linear(node)
      case .batchNorm, .relu, .relu6:
        // Only reached when not fused into a convolution or an add.
        unsupported.append("\(name) (\(node.op.rawValue) after '\(node.inputs.first ?? "?")', not fusable)")
      }
    }
    if !unsupported.isEmpty {
      throw QuantizerError.unsupported(
        node: unsupported[0],
        reason:
          "the integer runtime fuses batch_norm and relu/relu6 into the convolution or add before them; "
          + "\(unsupported.count) node(s) cannot be: \(unsupported.joined(separator: "; "))")
    }
    guard let out = tensorOf[model.graph.output] else {
      throw QuantizerError.layer(model.graph.output, "the graph output is never computed")
    }
    guard nodes.last?.name == out, nodes.last?.op == .linear else {
      throw QuantizerError.unsupported(
        node: model.graph.output, reason: "the integer graph must end in the linear classifier")
    }
    output = out
  }

  mutating func conv(_ node: Node, bn: Node?, activation: OperatorKind?, fused: [String]) throws {
    let name = fused.last!
    let (t, inQ, s) = try source(node.inputs[0], node.name)
    guard s.count == 3 else {
      throw QuantizerError.layer(node.name, "expects an NHWC input, gets per-image shape \(s)")
    }
    guard let wt = model.weights[node.weight ?? ""], wt.shape.count == 4 else {
      throw QuantizerError.layer(node.name, "weight '\(node.weight ?? "?")' is missing or not OIHW")
    }
    let groups = node.groups ?? 1
    let (o, ig, kh, kw) = (wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3])
    guard ig * groups == s[2], o % groups == 0, (node.kernel ?? [kh, kw]) == [kh, kw] else {
      throw QuantizerError.layer(
        node.name, "weight shape \(wt.shape) with \(groups) groups does not fit an input of \(s[2]) channels")
    }
    guard (node.dilation ?? [1, 1]) == [1, 1] else {
      throw QuantizerError.unsupported(node: node.name, reason: "dilated convolutions are not supported")
    }
    let w = try floats(node.weight, node.name)
    let b = node.bias != nil ? try floats(node.bias, node.name, count: o) : nil
    let folded: (weights: [Double], bias: [Double])
    if let bn {
      folded = Quantizer.foldBatchNorm(
        weights: w, bias: b, gamma: try floats(bn.weight, bn.name, count: o),
        beta: try floats(bn.bias, bn.name, count: o),
        mean: try floats(bn.runningMean, bn.name, count: o),
        variance: try floats(bn.runningVariance, bn.name, count: o),
        epsilon: bn.epsilon ?? 1e-5)
    } else {
      folded = (w.map(Double.init), (b ?? [Float](repeating: 0, count: o)).map(Double.init))
    }
    let outQ = try calibrated(name)
    let (wq, scales, bias) = try Quantizer.quantizeChannels(
      weights: folded.weights, bias: folded.bias, outChannels: o, input: inQ, node: name, weightMax: weightMax,
      warnings: &warnings)

    // OIHW → [O, kh, kw, I/g], the order the runtime gathers a receptive field in.
    var ohwi = [Int8](repeating: 0, count: wq.count)
    for oc in 0..<o {
      for i in 0..<ig {
        for y in 0..<kh {
          for x in 0..<kw { ohwi[((oc * kh + y) * kw + x) * ig + i] = wq[((oc * ig + i) * kh + y) * kw + x] }
        }
      }
    }
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
    let bounds: (lo: Int32, hi: Int32)
    switch activation {
    case .relu: bounds = outQ.clampBounds(min: 0)
    case .relu6: bounds = outQ.clampBounds(min: 0, max: 6)
    default: bounds = outQ.clampBounds()
    }
    let pads = node.resolvedPadding(height: s[0], width: s[1])
    let stride = node.stride ?? [1, 1]
    let oh = (s[0] + pads[0] + pads[2] - kh) / stride[0] + 1
    let ow = (s[1] + pads[1] + pads[3] - kw) / stride[1] + 1
    guard oh > 0, ow > 0 else {
      throw QuantizerError.layer(node.name, "input \(s[0])x\(s[1]) is too small for this convolution")
    }

    var n = QuantizedNode(name: name, op: .conv2d, inputs: [t], fused: fused, output: outQ)
    n.inChannels = s[2]
    n.outChannels = o
    n.kernel = [kh, kw]
    n.stride = stride
    n.padding = pads
    n.groups = groups
    n.inputQuantization = [inQ]
    n.clamp = [Int(bounds.lo), Int(bounds.hi)]
    n.weights = ohwi
    n.bias = bias
    n.multipliers = multipliers
    n.shifts = shifts
    n.weightScales = scales
    emit(n, shape: [oh, ow, o])
  }

  mutating func add(_ node: Node, activation: OperatorKind?, fused: [String]) throws {
    let name = fused.last!
    guard node.inputs.count == 2 else { throw QuantizerError.layer(node.name, "add takes two inputs") }
    let a = try source(node.inputs[0], node.name)
    let b = try source(node.inputs[1], node.name)
    guard a.shape == b.shape else { throw QuantizerError.layer(node.name, "adds \(a.shape) to \(b.shape)") }
    let outQ = try calibrated(name)
    var n = QuantizedNode(name: name, op: .add, inputs: [a.tensor, b.tensor], fused: fused, output: outQ)
    n.inputQuantization = [a.q, b.q]
    do {
      n.addMultipliers = try AddMultipliers(
        realA: Double(a.q.scale) / Double(outQ.scale), realB: Double(b.q.scale) / Double(outQ.scale))
    } catch { throw QuantizerError.layer(name, "residual add multipliers: \(error)") }
    let bounds: (lo: Int32, hi: Int32)
    switch activation {
    case .relu: bounds = outQ.clampBounds(min: 0)
    case .relu6: bounds = outQ.clampBounds(min: 0, max: 6)
    default: bounds = outQ.clampBounds()
    }
    n.clamp = [Int(bounds.lo), Int(bounds.hi)]
    emit(n, shape: a.shape)
  }

  /// The classifier keeps int32 logits at s_in · max s_w: channel c is requantized by
  /// s_w[c] / max s_w ≤ 1, with no clamp. docs/quantization.md §11.
  mutating func linear(_ node: Node) throws {
    let name = node.name
    let (t, inQ, s) = try source(node.inputs[0], name)
    let features = s.reduce(1, *)
    guard let wt = model.weights[node.weight ?? ""], wt.shape.count == 2, wt.shape[1] == features else {
      throw QuantizerError.layer(name, "weight '\(node.weight ?? "?")' does not map \(features) features")
    }
    let o = wt.shape[0]
    let w = try floats(node.weight, name).map(Double.init)
    let b =
      node.bias != nil
      ? try floats(node.bias, name, count: o).map(Double.init) : [Double](repeating: 0, count: o)
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
      name: name, op: .linear, inputs: [t], fused: [name],
      output: ActivationQuantization(scale: logitScale, zeroPoint: 0))
    n.inChannels = features
    n.outChannels = o
    n.inputQuantization = [inQ]
    n.weights = wq
    n.bias = bias
    n.multipliers = multipliers
    n.shifts = shifts
    n.weightScales = scales
    emit(n, shape: [o])
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
