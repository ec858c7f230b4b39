import Foundation
import OctetCore

/// Builds the QDQ graph node by node (`ONNXExporter`): ONNX nodes, initializers, and the
/// quantization of every uint8 tensor made so far.
struct QDQGraphBuilder {
  let model: QuantizedModel
  var nodes: [Onnx_NodeProto] = []
  var initializers: [Onnx_TensorProto] = []
  /// Quantization of each integer node's uint8 output, by Octet node name.
  var quantization: [String: ActivationQuantization] = [:]
  /// Every ONNX tensor name used, to refuse a model whose node names would collide.
  var names: Set<String> = [Graph.inputName]
  /// Flattened tensors: a convolution reading one is a fully-connected layer before the classifier.
  var flat: Set<String> = []

  init(model: QuantizedModel) { self.model = model }

  mutating func add(_ node: QuantizedNode) throws(ONNXExportError) {
    switch node.op {
    case .quantizeInput:
      var x = Graph.inputName
      if let pixels = node.pixelInput {
        // docs/quantization.md §25, exact input: p = round(x · 255 · std_c + 255 · mean_c), scale 1, zero point 0.
        let scaled = try fresh("input.pixels_scaled")
        try initializer("\(scaled).factor", .float, dims: [1, 3, 1, 1], bytes: Self.bytes(pixels.std.map { 255 * $0 }))
        append("Mul", [x, "\(scaled).factor"], [scaled], name: scaled)
        let shifted = try fresh("input.pixels")
        try initializer(
          "\(shifted).offset", .float, dims: [1, 3, 1, 1], bytes: Self.bytes(pixels.mean.map { 255 * $0 }))
        append("Add", [scaled, "\(shifted).offset"], [shifted], name: shifted)
        x = shifted
      }
      try quantize(x, node.output, output: ONNXExporter.inputTensor, node: node.name)
    case .conv2d:
      if flat.contains(node.inputs[0]) {
        throw ONNXExportError(
          "node '\(node.name)' is a fully-connected layer before the classifier (docs/quantization.md §24), "
            + "which QDQ export does not write in this version")
      }
      var x = try dequantizedInput(node, 0)
      let (w, b) = try weightsAndBias(node)
      if node.borderClasses != nil, let pixels = model.nodes.first?.pixelInput {
        // Exact input (§12): the weights apply to p − 255 · mean_c, which is 0 where ONNX pads.
        let centered = try fresh("\(node.name).centered_input")
        try initializer(
          "\(centered).mean", .float, dims: [1, 3, 1, 1], bytes: Self.bytes(pixels.mean.map { 255 * $0 }))
        append("Sub", [x, "\(centered).mean"], [centered], name: centered)
        x = centered
      }
      let conv = try fresh("\(node.name).conv")
      let k = node.kernel!.map(Int64.init)
      append(
        "Conv", [x, w, b], [conv], name: conv,
        attributes: [
          .ints("kernel_shape", k), .ints("strides", node.stride!.map(Int64.init)),
          .ints("pads", node.padding!.map(Int64.init)), .ints("dilations", [1, 1]),
          .int("group", Int64(node.groups ?? 1)),
        ])
      try quantize(try activation(conv, node), node.output, output: node.name, node: node.name)
    case .add:
      let a = try dequantizedInput(node, 0)
      let b = try dequantizedInput(node, 1)
      let sum = try fresh("\(node.name).add")
      append("Add", [a, b], [sum], name: sum)
      try quantize(try activation(sum, node), node.output, output: node.name, node: node.name)
    case .maxPool:
      let x = try dequantizedInput(node, 0)
      let pooled = try fresh("\(node.name).max_pool")
      append(
        "MaxPool", [x], [pooled], name: pooled,
        attributes: [
          .ints("kernel_shape", node.kernel!.map(Int64.init)), .ints("strides", node.stride!.map(Int64.init)),
          .ints("pads", node.padding!.map(Int64.init)),
        ])
      try quantize(pooled, node.output, output: node.name, node: node.name)
    case .globalAveragePool:
      let x = try dequantizedInput(node, 0)
      let pooled = try fresh("\(node.name).global_average_pool")
      append("GlobalAveragePool", [x], [pooled], name: pooled)
      try quantize(pooled, node.output, output: node.name, node: node.name)
    case .flatten:
      // Octet's tensors are NHWC and flatten in that order; the ONNX tensor is NCHW.
      let input = node.inputs[0]
      guard let q = quantization[input], q == node.output else {
        throw ONNXExportError("node '\(node.name)': flatten must keep its input's quantization")
      }
      let nhwc = try fresh("\(node.name).nhwc")
      append(
        "Transpose", [ONNXExporter.tensorName(of: input)], [nhwc], name: nhwc,
        attributes: [.ints("perm", [0, 2, 3, 1])])
      try claim(node.name)
      append("Flatten", [nhwc], [node.name], name: node.name, attributes: [.int("axis", 1)])
      quantization[node.name] = q
      flat.insert(node.name)
    case .linear:
      let x = try dequantizedInput(node, 0)
      let (w, b) = try weightsAndBias(node)
      guard node.name == model.output else {
        throw ONNXExportError(
          "node '\(node.name)': a linear layer that is not the graph's output has no uint8 output to export")
      }
      try claim(node.name)
      append("Gemm", [x, w, b], [node.name], name: node.name, attributes: [.int("transB", 1)])
    case .lookup, .mul, .concat, .averagePool:
      throw ONNXExportError(
        "node '\(node.name)' (\(node.op.rawValue), docs/quantization.md §20-§23) is not written by QDQ export in this version; "
          + "export takes convolutions, adds, pools and the classifier")
    }
  }

  // MARK: Tensors

  /// Claims an ONNX tensor name; a collision (node names that clash with the exporter's suffixes) is
  /// refused rather than written as a wrong graph.
  mutating func claim(_ name: String) throws(ONNXExportError) {
    guard names.insert(name).inserted else {
      throw ONNXExportError("ONNX tensor name '\(name)' would be used twice; rename the model's nodes")
    }
  }

  mutating func fresh(_ name: String) throws(ONNXExportError) -> String {
    try claim(name)
    return name
  }

  mutating func append(
    _ op: String, _ inputs: [String], _ outputs: [String], name: String, attributes: [Onnx_AttributeProto] = []
  ) {
    var node = Onnx_NodeProto()
    node.opType = op
    node.input = inputs
    node.output = outputs
    node.name = name
    node.attribute = attributes
    nodes.append(node)
  }

  mutating func initializer(_ name: String, _ type: Onnx_TensorProto.DataType, dims: [Int], bytes: Data)
    throws(ONNXExportError)
  {
    try claim(name)
    var t = Onnx_TensorProto()
    t.name = name
    t.dataType = Int32(type.rawValue)
    t.dims = dims.map(Int64.init)
    t.rawData = bytes
    initializers.append(t)
  }

  /// Little-endian raw bytes of `values` (ONNX's raw_data layout; this host is little-endian).
  static func bytes<T: FixedWidthInteger>(_ values: [T]) -> Data {
    values.withUnsafeBytes { Data($0) }
  }

  static func bytes(_ values: [Float]) -> Data {
    values.withUnsafeBytes { Data($0) }
  }

  /// The scalar scale and uint8 zero point initializers of a per-tensor quantization, made once per
  /// uint8 tensor and named after it.
  mutating func activationParameters(_ tensor: String, _ q: ActivationQuantization) throws(ONNXExportError) -> (
    String, String
  ) {
    let scale = "\(tensor).scale"
    let zeroPoint = "\(tensor).zero_point"
    if !names.contains(scale) {
      try initializer(scale, .float, dims: [], bytes: Self.bytes([q.scale]))
      try initializer(zeroPoint, .uint8, dims: [], bytes: Self.bytes([UInt8(q.zeroPoint)]))
    }
    return (scale, zeroPoint)
  }

  /// `QuantizeLinear(x)` to uint8 with `q`, into the tensor `output` (Octet node `node`'s output).
  mutating func quantize(_ x: String, _ q: ActivationQuantization, output: String, node: String)
    throws(ONNXExportError)
  {
    try claim(output)
    let (scale, zeroPoint) = try activationParameters(output, q)
    append("QuantizeLinear", [x, scale, zeroPoint], [output], name: "\(output).quantize")
    quantization[node] = q
  }

  /// A `DequantizeLinear` of input `index` of `node`, one per reading node (ONNX Runtime's QDQ
  /// fusion wants each DequantizeLinear to feed one operator). The node's input quantization must
  /// be its producer's output quantization.
  mutating func dequantizedInput(_ node: QuantizedNode, _ index: Int) throws(ONNXExportError) -> String {
    let input = node.inputs[index]
    guard let q = quantization[input] else {
      throw ONNXExportError("node '\(node.name)' reads '\(input)', which has no uint8 output to dequantize")
    }
    if let expected = node.inputQuantization?[index], expected != q {
      throw ONNXExportError(
        "node '\(node.name)' reads '\(input)' at scale \(expected.scale), zero point \(expected.zeroPoint), but '\(input)' is quantized at scale \(q.scale), zero point \(q.zeroPoint)"
      )
    }
    let tensor = ONNXExporter.tensorName(of: input)
    let (scale, zeroPoint) = try activationParameters(tensor, q)
    let output = try fresh("\(node.name).dequantize_input\(index)")
    append("DequantizeLinear", [tensor, scale, zeroPoint], [output], name: output)
    return output
  }

  /// The dequantized int8 weights (ONNX layout: conv OIHW, linear [O, I]; per-channel axis 0) and
  /// int32 bias (scale s_in · s_w[c]) of a conv2d or linear node (docs/quantization.md §5).
  mutating func weightsAndBias(_ node: QuantizedNode) throws(ONNXExportError) -> (String, String) {
    let o = node.outChannels!
    let perChannel = node.weightsPerChannel
    let zIn = Int64(node.inputQuantization![0].zeroPoint)
    let sIn = node.inputQuantization![0].scale
    var weights = node.weights
    var dims = [o, perChannel]
    if node.op == .conv2d {
      // OHWI → OIHW.
      let (kh, kw) = (node.kernel![0], node.kernel![1])
      let i = node.inChannels! / (node.groups ?? 1)
      dims = [o, i, kh, kw]
      for c in 0..<o {
        let base = c * perChannel
        for y in 0..<kh {
          for x in 0..<kw {
            for ch in 0..<i {
              weights[base + (ch * kh + y) * kw + x] = node.weights[base + (y * kw + x) * i + ch]
            }
          }
        }
      }
    }
    let w = "\(node.name).weight"
    try initializer(w, .int8, dims: dims, bytes: Self.bytes(weights))
    try initializer("\(w)_scale", .float, dims: [o], bytes: Self.bytes(node.weightScales))
    try initializer("\(w)_zero_point", .int8, dims: [o], bytes: Self.bytes([Int8](repeating: 0, count: o)))
    let wOut = try fresh("\(w).dequantize")
    append("DequantizeLinear", [w, "\(w)_scale", "\(w)_zero_point"], [wOut], name: wOut, attributes: [.int("axis", 0)])

    if node.borderClasses != nil, let pixels = model.nodes.first?.pixelInput {
      // Exact input (§12): `bias` is the full-window class, b'/s_w − Σ_k w_q[k] · 255 · mean_c rounded,
      // for weights on p; the Conv reads p − 255 · mean_c, so its bias is s_w · (bias + Σ_k w_q[k] ·
      // 255 · mean_c), a float (the mean term is not a whole number of units).
      let i = node.inChannels!
      let b = "\(node.name).bias"
      var real: [Float] = []
      for c in 0..<o {
        var sum = Double(node.bias[c])
        for k in 0..<perChannel {
          sum += Double(node.weights[c * perChannel + k]) * 255 * Double(pixels.mean[k % i])
        }
        real.append(Float(Double(node.weightScales[c]) * sum))
      }
      try initializer(b, .float, dims: [o], bytes: Self.bytes(real))
      return (wOut, b)
    }

    // Octet stores b_q' = b_q − z_in · Σ w_q (§5); QDQ's bias is b_q at scale s_in · s_w[c].
    var bias: [Int32] = []
    bias.reserveCapacity(o)
    for c in 0..<o {
      let sum = node.weights[c * perChannel..<(c + 1) * perChannel].reduce(Int64(0)) { $0 + Int64($1) }
      let b = Int64(node.bias[c]) + zIn * sum
      guard let b32 = Int32(exactly: b) else {
        throw ONNXExportError(
          "node '\(node.name)': channel \(c)'s bias \(b) with the input zero point unfolded does not fit int32")
      }
      bias.append(b32)
    }
    let b = "\(node.name).bias"
    try initializer(b, .int32, dims: [o], bytes: Self.bytes(bias))
    try initializer("\(b)_scale", .float, dims: [o], bytes: Self.bytes(node.weightScales.map { sIn * $0 }))
    try initializer("\(b)_zero_point", .int32, dims: [o], bytes: Self.bytes([Int32](repeating: 0, count: o)))
    let bOut = try fresh("\(b).dequantize")
    append("DequantizeLinear", [b, "\(b)_scale", "\(b)_zero_point"], [bOut], name: bOut, attributes: [.int("axis", 0)])
    return (wOut, bOut)
  }

  /// The node's fused activation (docs/quantization.md §7) on the float tensor `x`, before its
  /// `QuantizeLinear`: nothing when the clamp is the whole uint8 range (the QuantizeLinear saturates
  /// there: ReLU with z_out = 0, ReLU6 with 6 / s_out ≥ 255 − z_out), `Relu` for [z_out, 255], else a
  /// `Clip` to the clamp's real bounds; per-channel clamps (§7.1) a `Max` and a `Min` over channels.
  mutating func activation(_ x: String, _ node: QuantizedNode) throws(ONNXExportError) -> String {
    let (s, z) = (node.output.scale, node.output.zeroPoint)
    func real(_ code: Int) -> Float { s * Float(Int32(code) - z) }
    if !node.channelClampLo.isEmpty {
      let o = node.outChannels!
      let lo = try fresh("\(node.name).clamp_lo")
      let hi = try fresh("\(node.name).clamp_hi")
      try initializer(
        "\(lo).value", .float, dims: [1, o, 1, 1], bytes: Self.bytes(node.channelClampLo.map { real(Int($0)) }))
      try initializer(
        "\(hi).value", .float, dims: [1, o, 1, 1], bytes: Self.bytes(node.channelClampHi.map { real(Int($0)) }))
      append("Max", [x, "\(lo).value"], [lo], name: lo)
      append("Min", [lo, "\(hi).value"], [hi], name: hi)
      return hi
    }
    guard let clamp = node.clamp, clamp != [0, 255] else { return x }
    let out = try fresh("\(node.name).activation")
    if clamp == [Int(z), 255] {
      append("Relu", [x], [out], name: out)
    } else {
      try initializer("\(out).min", .float, dims: [], bytes: Self.bytes([real(clamp[0])]))
      try initializer("\(out).max", .float, dims: [], bytes: Self.bytes([real(clamp[1])]))
      append("Clip", [x, "\(out).min", "\(out).max"], [out], name: out)
    }
    return out
  }
}

extension Onnx_AttributeProto {
  static func int(_ name: String, _ value: Int64) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    a.type = .int
    a.i = value
    return a
  }

  static func ints(_ name: String, _ values: [Int64]) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    a.type = .ints
    a.ints = values
    return a
  }
}
