import Foundation
import OctetCore

/// The ONNX operators Octet imports, one function per family.
extension ONNXGraphBuilder {
  /// Operators the IR cannot express (and every op outside the set, see docs/cli.md).
  func unsupported(_ node: Onnx_NodeProto, _ why: String = "") -> ONNXError {
    ONNXError(
      "node '\(node.name.isEmpty ? (node.output.first ?? "?") : node.name)' (\(node.opType), opset \(opset)) is not supported yet\(why.isEmpty ? "" : ": " + why)"
    )
  }

  func fail(_ node: Onnx_NodeProto, _ message: String) -> ONNXError {
    ONNXError("node '\(node.name.isEmpty ? (node.output.first ?? "?") : node.name)' (\(node.opType)): \(message)")
  }

  mutating func map(_ node: Onnx_NodeProto) throws(ONNXError) {
    guard node.domain.isEmpty || node.domain == "ai.onnx" else {
      throw unsupported(node, "operator domain '\(node.domain)'")
    }
    switch node.opType {
    case "Constant":
      guard node.output.count == 1 else { throw fail(node, "has \(node.output.count) outputs") }
      values[node.output[0]] = .constant(try ONNXImporter.constant(of: node, name: label(node)))
    case "Identity", "Dropout":
      // Dropout at inference is the identity; its mask output must not be read.
      guard node.input.count >= 1, !node.input[0].isEmpty else { throw fail(node, "has no input") }
      if node.output.count > 1, !node.output[1].isEmpty, readers[node.output[1], default: 0] > 0 {
        throw unsupported(node, "its mask output is read")
      }
      values[node.output[0]] = try value(node.input[0], of: node)
    case "Conv": try conv(node)
    case "Pad": try pad(node)
    case "BatchNormalization": try batchNorm(node)
    case "Relu": try elementwise(node, .relu)
    case "Clip": try clip(node)
    case "Add": try add(node)
    case "MaxPool": try maxPool(node)
    case "AveragePool": try averagePool(node)
    case "GlobalAveragePool": try globalAveragePool(node, keepDims: true)
    case "ReduceMean": try reduceMean(node)
    case "Flatten", "Reshape": try flatten(node)
    case "Gemm": try gemm(node)
    case "MatMul": try matMul(node)
    case "Sigmoid": try elementwise(node, .sigmoid)
    case "HardSwish": try elementwise(node, .hardSwish)
    case "HardSigmoid": try hardSigmoid(node)
    case "LeakyRelu": try leakyRelu(node)
    case "Mul": try mul(node)
    case "Concat": try concat(node)
    default: throw unsupported(node)
    }
  }

  func label(_ node: Onnx_NodeProto) -> String {
    node.name.isEmpty ? (node.output.first ?? "?") : node.name
  }

  // MARK: Values and attributes

  func value(_ name: String, of node: Onnx_NodeProto) throws(ONNXError) -> ONNXValue {
    guard let v = values[name] else { throw fail(node, "reads '\(name)', which is not computed yet") }
    return v
  }

  /// An activation input (not a constant, not a pending Pad).
  func activation(_ node: Onnx_NodeProto, _ index: Int = 0) throws(ONNXError) -> (node: String, layout: ONNXLayout) {
    guard index < node.input.count, !node.input[index].isEmpty else { throw fail(node, "input \(index) is missing") }
    switch try value(node.input[index], of: node) {
    case .activation(let n, let layout): return (n, layout)
    case .padded(_, _, _, let pad):
      throw unsupported(node, "it reads the output of Pad '\(pad)'; Octet folds a Pad into a Conv only")
    case .constant:
      throw unsupported(node, "input '\(node.input[index])' is a constant where Octet computes an activation")
    }
  }

  func spatial(_ node: Onnx_NodeProto, _ index: Int = 0) throws(ONNXError) -> (node: String, c: Int, h: Int, w: Int) {
    let (n, layout) = try activation(node, index)
    guard case .spatial(let c, let h, let w) = layout else {
      throw fail(node, "expects an NCHW input, gets \(layout.description)")
    }
    return (n, c, h, w)
  }

  /// A constant input; nil when the optional input is absent.
  func constant(_ node: Onnx_NodeProto, _ index: Int) throws(ONNXError) -> ONNXConstant? {
    guard index < node.input.count, !node.input[index].isEmpty else { return nil }
    guard case .constant(let c) = try value(node.input[index], of: node) else {
      throw unsupported(node, "input '\(node.input[index])' is computed; Octet needs it to be a constant")
    }
    return c
  }

  func floats(_ node: Onnx_NodeProto, _ index: Int, shape: [Int]? = nil, what: String) throws(ONNXError) -> [Float]? {
    guard let c = try constant(node, index) else { return nil }
    guard let f = c.floats else { throw fail(node, "\(what) '\(node.input[index])' is an integer tensor, not float") }
    if let shape, c.shape != shape {
      throw fail(node, "\(what) '\(node.input[index])' has shape \(c.shape), expected \(shape)")
    }
    guard f.allSatisfy(\.isFinite) else {
      throw fail(node, "\(what) '\(node.input[index])' holds NaN or infinite values")
    }
    return f
  }

  func attribute(_ node: Onnx_NodeProto, _ name: String) -> Onnx_AttributeProto? {
    node.attribute.first { $0.name == name }
  }

  func int(_ node: Onnx_NodeProto, _ name: String, default fallback: Int) throws(ONNXError) -> Int {
    guard let a = attribute(node, name) else { return fallback }
    guard abs(a.i) <= 1 << 20 else { throw fail(node, "attribute \(name) = \(a.i) is out of range") }
    return Int(a.i)
  }

  func ints(_ node: Onnx_NodeProto, _ name: String, count: Int, default fallback: [Int]) throws(ONNXError) -> [Int] {
    guard let a = attribute(node, name) else { return fallback }
    guard a.ints.count == count, a.ints.allSatisfy({ abs($0) <= 1 << 20 }) else {
      throw fail(node, "attribute \(name) = \(a.ints) is not \(count) numbers in range")
    }
    return a.ints.map { Int($0) }
  }

  func string(_ node: Onnx_NodeProto, _ name: String, default fallback: String) -> String {
    guard let a = attribute(node, name) else { return fallback }
    return String(decoding: a.s, as: UTF8.self)
  }

  mutating func addWeight(_ name: String, _ shape: [Int], _ values: [Float]) {
    weights[name] = HostTensor(shape: shape, float32: values)
  }

  /// The most elements one image's activation may have (2^28, 1 GiB of float32): forged pads or
  /// kernels cannot make the executor allocate more.
  static var maxActivationElements: Int { 1 << 28 }

  mutating func emit(_ irNode: Node, output: String, layout: ONNXLayout) throws(ONNXError) {
    if case .spatial(let c, let h, let w) = layout {
      let (hw, o1) = h.multipliedReportingOverflow(by: w)
      let (chw, o2) = hw.multipliedReportingOverflow(by: c)
      guard !o1, !o2, chw <= Self.maxActivationElements else {
        throw ONNXError(
          "node '\(irNode.name)' (\(irNode.op.rawValue)) would output [N, \(c), \(h), \(w)], more than \(Self.maxActivationElements) values an image"
        )
      }
    }
    nodes.append(irNode)
    values[output] = .activation(node: irNode.name, layout: layout)
  }

  func output(_ node: Onnx_NodeProto) throws(ONNXError) -> String {
    guard let out = node.output.first, !out.isEmpty else { throw fail(node, "has no output") }
    if node.output.count > 1, node.output.dropFirst().contains(where: { !$0.isEmpty && readers[$0, default: 0] > 0 }) {
      throw unsupported(node, "its second output is read")
    }
    return out
  }

  // MARK: Windows (Conv, pools)

  struct Window {
    var kernel: [Int]
    var stride: [Int]
    var dilation: [Int]
    var pads: [Int]?  // [top, left, bottom, right]; nil: SAME_UPPER (Octet's "same")
    var outH: Int
    var outW: Int
  }

  /// kernel_shape, strides, dilations, pads and auto_pad of a 2-D window over an h x w input.
  func window(_ node: Onnx_NodeProto, kernel: [Int], h: Int, w: Int, extraPads: [Int] = [0, 0, 0, 0])
    throws(ONNXError) -> Window
  {
    guard kernel.count == 2 else { throw fail(node, "kernel_shape \(kernel) is not two numbers") }
    let stride = try ints(node, "strides", count: 2, default: [1, 1])
    let dilation = try ints(node, "dilations", count: 2, default: [1, 1])
    guard stride.allSatisfy({ $0 > 0 }), dilation.allSatisfy({ $0 > 0 }), kernel.allSatisfy({ $0 > 0 }) else {
      throw fail(node, "kernel \(kernel), strides \(stride) and dilations \(dilation) must be positive")
    }
    let autoPad = string(node, "auto_pad", default: "NOTSET")
    var pads: [Int]? = nil
    switch autoPad {
    case "NOTSET", "":
      // ONNX: [top, left, bottom, right] = [x1_begin, x2_begin, x1_end, x2_end].
      let p = try ints(node, "pads", count: 4, default: [0, 0, 0, 0])
      guard p.allSatisfy({ $0 >= 0 }) else { throw fail(node, "negative pads \(p)") }
      pads = zip(p, extraPads).map { $0 + $1 }
    case "VALID": pads = extraPads
    case "SAME_UPPER", "SAME_LOWER":
      guard extraPads == [0, 0, 0, 0] else { throw unsupported(node, "auto_pad \(autoPad) after a Pad") }
      func total(_ size: Int, _ k: Int, _ s: Int, _ d: Int) -> Int {
        max(((size + s - 1) / s - 1) * s + (k - 1) * d + 1 - size, 0)
      }
      let th = total(h, kernel[0], stride[0], dilation[0])
      let tw = total(w, kernel[1], stride[1], dilation[1])
      pads =
        autoPad == "SAME_UPPER"
        ? [th / 2, tw / 2, th - th / 2, tw - tw / 2] : [th - th / 2, tw - tw / 2, th / 2, tw / 2]
    default: throw fail(node, "auto_pad '\(autoPad)' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    }
    let p = pads ?? [0, 0, 0, 0]
    let outH = (h + p[0] + p[2] - dilation[0] * (kernel[0] - 1) - 1) / stride[0] + 1
    let outW = (w + p[1] + p[3] - dilation[1] * (kernel[1] - 1) - 1) / stride[1] + 1
    guard h + p[0] + p[2] >= dilation[0] * (kernel[0] - 1) + 1, w + p[1] + p[3] >= dilation[1] * (kernel[1] - 1) + 1,
      outH > 0, outW > 0
    else { throw fail(node, "its \(kernel[0])x\(kernel[1]) window does not fit the \(h)x\(w) input") }
    return Window(kernel: kernel, stride: stride, dilation: dilation, pads: pads, outH: outH, outW: outW)
  }

  // MARK: Operators

  /// Pad with constant zeros on H and W only, read by Conv alone: folded into the Conv's padding.
  mutating func pad(_ node: Onnx_NodeProto) throws(ONNXError) {
    let (x, layout) = try activation(node)
    let mode = string(node, "mode", default: "constant")
    guard mode == "constant" else { throw unsupported(node, "mode '\(mode)'; Octet folds zero padding only") }
    guard let padsTensor = try constant(node, 1), let p = padsTensor.integers, p.count == 8 else {
      throw unsupported(node, "its pads must be a constant of 8 integers (N, C, H, W begins and ends)")
    }
    if let value = try floats(node, 2, what: "constant_value"), value.contains(where: { $0 != 0 }) {
      throw unsupported(node, "constant_value \(value[0]); Octet folds zero padding only")
    }
    if node.input.count > 3, !node.input[3].isEmpty { throw unsupported(node, "its axes input") }
    guard p[0] == 0, p[1] == 0, p[4] == 0, p[5] == 0, p.allSatisfy({ (0...1024).contains($0) }) else {
      throw unsupported(node, "pads \(p); Octet folds non-negative padding of H and W only")
    }
    let out = try output(node)
    values[out] = .padded(node: x, layout: layout, pads: [Int(p[2]), Int(p[3]), Int(p[6]), Int(p[7])], by: label(node))
  }

  mutating func conv(_ node: Onnx_NodeProto) throws(ONNXError) {
    guard node.input.count >= 2 else { throw fail(node, "has \(node.input.count) inputs, needs X and W") }
    var extraPads = [0, 0, 0, 0]
    var source: (node: String, c: Int, h: Int, w: Int)
    if case .padded(let x, let layout, let pads, let padName) = try value(node.input[0], of: node) {
      guard case .spatial(let c, let h, let w) = layout else { throw fail(node, "expects an NCHW input") }
      guard readers[node.input[0], default: 0] == 1 else {
        throw unsupported(node, "the output of Pad '\(padName)' is read by more than this Conv")
      }
      extraPads = pads
      source = (x, c, h, w)
    } else {
      source = try spatial(node)
    }
    // The padded input's size is the input's plus the pads, as far as shapes go.
    guard let wt = try constant(node, 1), let wf = wt.floats else {
      throw fail(node, "weight '\(node.input[1])' must be a float constant")
    }
    guard wt.shape.count == 4, wt.shape.allSatisfy({ $0 > 0 }) else {
      throw unsupported(node, "weight '\(node.input[1])' has shape \(wt.shape); Octet imports 2-D convolutions")
    }
    guard wf.allSatisfy(\.isFinite) else { throw fail(node, "weight '\(node.input[1])' holds NaN or infinite values") }
    let group = try int(node, "group", default: 1)
    let (o, ig, kh, kw) = (wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3])
    guard group > 0, ig * group == source.c, o % group == 0 else {
      throw fail(
        node, "weight \(wt.shape) with group \(group) does not fit an input of \(source.c) channels")
    }
    let kernel = try ints(node, "kernel_shape", count: 2, default: [kh, kw])
    guard kernel == [kh, kw] else { throw fail(node, "kernel_shape \(kernel) does not match weight \(wt.shape)") }
    let win = try window(node, kernel: kernel, h: source.h, w: source.w, extraPads: extraPads)
    let bias = try floats(node, 2, shape: [o], what: "bias")
    let out = try output(node)
    let name = irName(node)
    var ir = Node(name: name, op: .conv2d, inputs: [source.node])
    ir.weight = name + ".weight"
    addWeight(name + ".weight", wt.shape, wf)
    if let bias {
      ir.bias = name + ".bias"
      addWeight(name + ".bias", [o], bias)
    }
    ir.kernel = kernel
    ir.stride = win.stride
    ir.dilation = win.dilation
    ir.paddingMode = .explicit
    ir.padding = win.pads
    ir.groups = group
    try emit(ir, output: out, layout: .spatial(c: o, h: win.outH, w: win.outW))
  }

  mutating func batchNorm(_ node: Onnx_NodeProto) throws(ONNXError) {
    let x = try spatial(node)
    guard node.input.count == 5 else { throw fail(node, "has \(node.input.count) inputs, needs 5") }
    if try int(node, "training_mode", default: 0) != 0 { throw unsupported(node, "training_mode 1") }
    let epsilon = attribute(node, "epsilon")?.f ?? 1e-5
    guard epsilon.isFinite, epsilon >= 0 else { throw fail(node, "epsilon \(epsilon)") }
    let name = irName(node)
    var ir = Node(name: name, op: .batchNorm, inputs: [x.node])
    for (i, field) in ["weight", "bias", "running_mean", "running_var"].enumerated() {
      guard let v = try floats(node, i + 1, shape: [x.c], what: field) else { throw fail(node, "\(field) is missing") }
      if field == "running_var", v.contains(where: { $0 < 0 }) {
        throw fail(node, "running variance '\(node.input[4])' has negative values")
      }
      addWeight("\(name).\(field)", [x.c], v)
    }
    ir.weight = name + ".weight"
    ir.bias = name + ".bias"
    ir.runningMean = name + ".running_mean"
    ir.runningVariance = name + ".running_var"
    ir.epsilon = epsilon
    try emit(ir, output: try output(node), layout: .spatial(c: x.c, h: x.h, w: x.w))
  }

  mutating func elementwise(_ node: Onnx_NodeProto, _ op: OperatorKind) throws(ONNXError) {
    let (x, layout) = try activation(node)
    try emit(Node(name: irName(node), op: op, inputs: [x]), output: try output(node), layout: layout)
  }

  /// Clip(0, 6) is ReLU6 and Clip(0, +inf) ReLU; bounds come from inputs (opset 11+) or attributes.
  mutating func clip(_ node: Onnx_NodeProto) throws(ONNXError) {
    func bound(_ index: Int, _ attr: String) throws(ONNXError) -> Float? {
      if let f = try floats(node, index, what: attr) {
        guard f.count == 1 else { throw fail(node, "\(attr) has \(f.count) values, not one") }
        return f[0]
      }
      return attribute(node, attr)?.f
    }
    let lo = try bound(1, "min")
    let hi = try bound(2, "max")
    switch (lo, hi) {
    case (0, 6): try elementwise(node, .relu6)
    case (0, nil), (0, .some(.infinity)): try elementwise(node, .relu)
    default:
      throw unsupported(
        node,
        "min \(lo.map { "\($0)" } ?? "none"), max \(hi.map { "\($0)" } ?? "none"); Octet has Clip(0, 6) and Clip(0, inf)"
      )
    }
  }

  /// Add of two activations of one shape, or the bias Add after a MatMul.
  mutating func add(_ node: Onnx_NodeProto) throws(ONNXError) {
    guard node.input.count == 2 else { throw fail(node, "has \(node.input.count) inputs") }
    let a = try value(node.input[0], of: node)
    let b = try value(node.input[1], of: node)
    switch (a, b) {
    case (.activation(let x, let lx), .activation(let y, let ly)):
      guard lx == ly else { throw unsupported(node, "it adds \(lx.description) to \(ly.description) (broadcast)") }
      try emit(Node(name: irName(node), op: .add, inputs: [x, y]), output: try output(node), layout: lx)
    case (.activation(let x, let layout), .constant(let c)), (.constant(let c), .activation(let x, let layout)):
      let activationInput = node.input[a.isConstant ? 1 : 0]
      guard case .flat(let f, _) = layout, let index = nodes.lastIndex(where: { $0.name == x }),
        nodes[index].op == .linear, nodes[index].bias == nil, readers[activationInput, default: 0] == 1
      else { throw unsupported(node, "Add of a constant; Octet folds it only as the bias of a MatMul") }
      guard let values = c.floats, c.elementCount == f, c.shape.filter({ $0 != 1 }).count <= 1 else {
        throw fail(node, "bias \(c.shape) does not fit \(f) features")
      }
      guard values.allSatisfy(\.isFinite) else { throw fail(node, "bias holds NaN or infinite values") }
      let biasName = x + ".bias"
      addWeight(biasName, [f], values)
      nodes[index].bias = biasName
      self.values[try output(node)] = .activation(node: x, layout: layout)
    default:
      throw unsupported(node, "Add of constants or of a Pad output")
    }
  }

  mutating func maxPool(_ node: Onnx_NodeProto) throws(ONNXError) {
    let x = try spatial(node)
    let kernel = try ints(node, "kernel_shape", count: 2, default: [])
    if try int(node, "ceil_mode", default: 0) != 0 { throw unsupported(node, "ceil_mode 1") }
    if try int(node, "storage_order", default: 0) != 0 { throw unsupported(node, "storage_order 1") }
    let win = try window(node, kernel: kernel, h: x.h, w: x.w)
    guard win.dilation == [1, 1] else { throw unsupported(node, "dilations \(win.dilation)") }
    var ir = Node(name: irName(node), op: .maxPool, inputs: [x.node])
    ir.kernel = kernel
    ir.stride = win.stride
    ir.paddingMode = .explicit
    ir.padding = win.pads
    try emit(ir, output: try output(node), layout: .spatial(c: x.c, h: win.outH, w: win.outW))
  }

  /// AveragePool over the whole input without padding is a global average pool; any other window
  /// an `average_pool` node (count_include_pad as ONNX says; ceil_mode 0, no dilation).
  mutating func averagePool(_ node: Onnx_NodeProto) throws(ONNXError) {
    let x = try spatial(node)
    let kernel = try ints(node, "kernel_shape", count: 2, default: [])
    let win = try window(node, kernel: kernel, h: x.h, w: x.w)
    if kernel == [x.h, x.w], win.pads == [0, 0, 0, 0], win.outH == 1, win.outW == 1 {
      try globalAveragePool(node, keepDims: true)
      return
    }
    if try int(node, "ceil_mode", default: 0) != 0 { throw unsupported(node, "ceil_mode 1") }
    guard win.dilation == [1, 1] else { throw unsupported(node, "dilations \(win.dilation)") }
    guard kernel[0] * kernel[1] <= 1 << 16 else { throw unsupported(node, "a \(kernel) window, over 2^16 taps") }
    let pads = win.pads ?? [0, 0, 0, 0]
    guard win.pads != nil, pads[0] < kernel[0], pads[2] < kernel[0], pads[1] < kernel[1], pads[3] < kernel[1] else {
      throw unsupported(node, "pads \(win.pads.map { "\($0)" } ?? "SAME") not smaller than the window \(kernel)")
    }
    var ir = Node(name: irName(node), op: .averagePool, inputs: [x.node])
    ir.kernel = kernel
    ir.stride = win.stride
    ir.paddingMode = .explicit
    ir.padding = pads
    if try int(node, "count_include_pad", default: 0) != 0 { ir.countIncludePad = true }
    try emit(ir, output: try output(node), layout: .spatial(c: x.c, h: win.outH, w: win.outW))
  }

  /// HardSigmoid: max(0, min(1, alpha · x + beta)), alpha 0.2 and beta 0.5 by default.
  mutating func hardSigmoid(_ node: Onnx_NodeProto) throws(ONNXError) {
    let (x, layout) = try activation(node)
    let alpha = attribute(node, "alpha")?.f ?? 0.2
    let beta = attribute(node, "beta")?.f ?? 0.5
    guard alpha.isFinite, beta.isFinite else { throw fail(node, "alpha \(alpha), beta \(beta)") }
    var ir = Node(name: irName(node), op: .hardSigmoid, inputs: [x])
    ir.alpha = alpha
    ir.beta = beta
    try emit(ir, output: try output(node), layout: layout)
  }

  /// LeakyRelu: x < 0 ? alpha · x : x, alpha 0.01 by default.
  mutating func leakyRelu(_ node: Onnx_NodeProto) throws(ONNXError) {
    let (x, layout) = try activation(node)
    let alpha = attribute(node, "alpha")?.f ?? 0.01
    guard alpha.isFinite else { throw fail(node, "alpha \(alpha)") }
    var ir = Node(name: irName(node), op: .leakyRelu, inputs: [x])
    ir.alpha = alpha
    try emit(ir, output: try output(node), layout: layout)
  }

  /// Mul of two activations of one shape, or of [N, C, H, W] by [N, C, 1, 1] (squeeze-and-excitation,
  /// either order). SiLU is Mul(x, Sigmoid(x)).
  mutating func mul(_ node: Onnx_NodeProto) throws(ONNXError) {
    guard node.input.count == 2 else { throw fail(node, "has \(node.input.count) inputs") }
    for i in 0..<2 where try value(node.input[i], of: node).isConstant {
      throw unsupported(node, "Mul by the constant '\(node.input[i])'; Octet multiplies two activations")
    }
    let (x, lx) = try activation(node, 0)
    let (y, ly) = try activation(node, 1)
    var layout = lx
    if lx != ly {
      switch (lx, ly) {
      case (.spatial(let c, _, _), .spatial(let c2, 1, 1)) where c == c2: layout = lx
      case (.spatial(let c, 1, 1), .spatial(let c2, _, _)) where c == c2: layout = ly
      default: throw unsupported(node, "it multiplies \(lx.description) by \(ly.description) (broadcast)")
      }
    }
    try emit(Node(name: irName(node), op: .mul, inputs: [x, y]), output: try output(node), layout: layout)
  }

  /// Concat of NCHW activations along channels (axis 1 or -3) with one H and W.
  mutating func concat(_ node: Onnx_NodeProto) throws(ONNXError) {
    guard !node.input.isEmpty else { throw fail(node, "has no inputs") }
    let axis = try int(node, "axis", default: 1)
    guard axis == 1 || axis == -3 else {
      throw unsupported(node, "axis \(axis); Octet concatenates NCHW maps along channels (axis 1)")
    }
    var inputs: [String] = []
    var channels = 0
    var hw: (Int, Int)? = nil
    for i in node.input.indices {
      let x = try spatial(node, i)
      if let (h, w) = hw, h != x.h || w != x.w {
        throw fail(node, "input '\(node.input[i])' is \(x.h)x\(x.w), the first is \(h)x\(w)")
      }
      hw = (x.h, x.w)
      inputs.append(x.node)
      channels += x.c
    }
    try emit(
      Node(name: irName(node), op: .concat, inputs: inputs), output: try output(node),
      layout: .spatial(c: channels, h: hw!.0, w: hw!.1))
  }

  mutating func globalAveragePool(_ node: Onnx_NodeProto, keepDims: Bool) throws(ONNXError) {
    let x = try spatial(node)
    let name = irName(node)
    let out = try output(node)
    nodes.append(Node(name: name, op: .globalAveragePool, inputs: [x.node]))
    if keepDims {
      values[out] = .activation(node: name, layout: .spatial(c: x.c, h: 1, w: 1))
    } else {
      let flat = irName(node, suffix: ".flatten")
      try emit(Node(name: flat, op: .flatten, inputs: [name]), output: out, layout: .flat(features: x.c, from: nil))
    }
  }

  /// ReduceMean over H and W (axes from the attribute before opset 18, from the input after).
  mutating func reduceMean(_ node: Onnx_NodeProto) throws(ONNXError) {
    var axes: [Int64]
    if opset >= 18 {
      guard let c = try constant(node, 1), let a = c.integers else {
        throw unsupported(node, "its axes must be a constant (reducing every axis is not a CNN's pool)")
      }
      axes = a
    } else {
      guard let a = attribute(node, "axes") else { throw unsupported(node, "reducing every axis") }
      axes = a.ints
    }
    axes = axes.map { $0 < 0 ? $0 + 4 : $0 }
    guard Set(axes) == [2, 3], axes.count == 2 else {
      throw unsupported(node, "axes \(axes); Octet has the mean over H and W (axes 2, 3) only")
    }
    try globalAveragePool(node, keepDims: try int(node, "keepdims", default: 1) != 0)
  }

  /// Flatten(axis 1), or Reshape to [N, -1] / [N, features].
  mutating func flatten(_ node: Onnx_NodeProto) throws(ONNXError) {
    let (x, layout) = try activation(node)
    let features: Int
    let from: [Int]?
    switch layout {
    case .spatial(let c, let h, let w): (features, from) = (c * h * w, [c, h, w])
    case .flat(let f, let origin): (features, from) = (f, origin)
    }
    if node.opType == "Flatten" {
      let axis = try int(node, "axis", default: 1)
      guard axis == 1 || axis == -3 && from != nil || axis == -1 && from == nil else {
        throw unsupported(node, "axis \(axis); Octet flattens everything but the batch (axis 1)")
      }
    } else {
      guard let s = try constant(node, 1), let shape = s.integers, shape.count == 2,
        [0, -1, 1].contains(shape[0]), shape[1] == -1 || shape[1] == Int64(features), shape != [-1, -1]
      else {
        throw unsupported(
          node, "a shape other than [N, -1] or [N, \(features)] (a Reshape that keeps the batch and flattens the rest)")
      }
      if try int(node, "allowzero", default: 0) != 0, shape[0] == 0 {
        throw unsupported(node, "allowzero with a 0 batch dimension")
      }
    }
    let out = try output(node)
    if case .flat = layout {
      values[out] = .activation(node: x, layout: layout)
      return
    }
    try emit(
      Node(name: irName(node), op: .flatten, inputs: [x]), output: out,
      layout: .flat(features: features, from: from))
  }

  /// Linear weight [out, in] for Octet's flatten order: ONNX flattens [C, H, W] in CHW order, Octet in HWC.
  func reorderColumns(_ w: [Float], out: Int, from: [Int]?) -> [Float] {
    guard let from, from[1] * from[2] > 1 else { return w }
    let (c, h, wd) = (from[0], from[1], from[2])
    let k = c * h * wd
    var result = [Float](repeating: 0, count: w.count)
    for o in 0..<out {
      for ch in 0..<c {
        for y in 0..<h {
          for x in 0..<wd {
            result[o * k + (y * wd + x) * c + ch] = w[o * k + ch * h * wd + y * wd + x]
          }
        }
      }
    }
    return result
  }

  mutating func linear(
    _ node: Onnx_NodeProto, input x: String, features: Int, from: [Int]?, weight: [Float], out: Int, bias: [Float]?
  ) throws(ONNXError) {
    let name = irName(node)
    var ir = Node(name: name, op: .linear, inputs: [x])
    ir.weight = name + ".weight"
    addWeight(name + ".weight", [out, features], reorderColumns(weight, out: out, from: from))
    if let bias {
      ir.bias = name + ".bias"
      addWeight(name + ".bias", [out], bias)
    }
    try emit(ir, output: try output(node), layout: .flat(features: out, from: nil))
  }

  /// Gemm(A, B, C) = alpha * A' * B' + beta * C with A the activation and B, C constants.
  mutating func gemm(_ node: Onnx_NodeProto) throws(ONNXError) {
    let (x, layout) = try activation(node)
    guard case .flat(let k, let from) = layout else {
      throw fail(node, "expects [N, features], gets \(layout.description)")
    }
    if try int(node, "transA", default: 0) != 0 { throw unsupported(node, "transA 1") }
    let transB = try int(node, "transB", default: 0) != 0
    let alpha = attribute(node, "alpha")?.f ?? 1
    let beta = attribute(node, "beta")?.f ?? 1
    guard alpha.isFinite, beta.isFinite else { throw fail(node, "alpha \(alpha), beta \(beta)") }
    guard let b = try constant(node, 1), let bf = b.floats, b.shape.count == 2 else {
      throw unsupported(node, "B must be a 2-D float constant")
    }
    guard bf.allSatisfy(\.isFinite) else { throw fail(node, "B '\(node.input[1])' holds NaN or infinite values") }
    let (rows, cols) = (b.shape[0], b.shape[1])
    guard (transB ? cols : rows) == k else { throw fail(node, "B \(b.shape) does not take \(k) features") }
    let n = transB ? rows : cols
    var w = [Float](repeating: 0, count: n * k)
    for o in 0..<n {
      for i in 0..<k { w[o * k + i] = alpha * (transB ? bf[o * k + i] : bf[i * n + o]) }
    }
    var bias: [Float]? = nil
    if let c = try constant(node, 2) {
      guard let cf = c.floats, cf.allSatisfy(\.isFinite) else { throw fail(node, "C must be finite floats") }
      guard c.elementCount == n || c.elementCount == 1, c.shape.count <= 1 || c.shape.dropLast().allSatisfy({ $0 == 1 })
      else { throw unsupported(node, "C of shape \(c.shape) (a bias over \(n) outputs is supported)") }
      bias = (0..<n).map { beta * cf[cf.count == 1 ? 0 : $0] }
    }
    try linear(node, input: x, features: k, from: from, weight: w, out: n, bias: bias)
  }

  /// MatMul(A, B) with A the activation [N, K] and B a constant [K, N'].
  mutating func matMul(_ node: Onnx_NodeProto) throws(ONNXError) {
    let (x, layout) = try activation(node)
    guard case .flat(let k, let from) = layout else {
      throw fail(node, "expects [N, features], gets \(layout.description)")
    }
    guard let b = try constant(node, 1), let bf = b.floats, b.shape.count == 2, b.shape[0] == k else {
      throw unsupported(node, "B must be a float constant [\(k), outputs]")
    }
    guard bf.allSatisfy(\.isFinite) else { throw fail(node, "B '\(node.input[1])' holds NaN or infinite values") }
    let n = b.shape[1]
    var w = [Float](repeating: 0, count: n * k)
    for o in 0..<n {
      for i in 0..<k { w[o * k + i] = bf[i * n + o] }
    }
    try linear(node, input: x, features: k, from: from, weight: w, out: n, bias: nil)
  }
}

extension ONNXValue {
  var isConstant: Bool {
    if case .constant = self { return true }
    return false
  }
}
