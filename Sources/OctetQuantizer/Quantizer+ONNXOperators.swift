import OctetCore
import OctetModels

extension Quantizer {
  /// The lookup table of a one-input activation (docs/quantization.md §20): for every input code
  /// q, `x = s_in · (q − z_in)` and `y = f(x)` in Double, then
  /// `t[q] = clamp(round(y / s_out) + z_out, 0, 255)`, rounding half away from zero. Computed once
  /// here and stored in the model, so the runtime is one table read per value on every CPU.
  public static func lookupTable(
    _ function: UnaryFunction, input: ActivationQuantization, output: ActivationQuantization
  ) -> [UInt8] {
    lookupTable({ function.apply($0) }, input: input, output: output)
  }

  /// The same rule for any `f` (a relu/relu6 that no convolution or add takes, §20).
  static func lookupTable(
    _ f: (Double) -> Double, input: ActivationQuantization, output: ActivationQuantization
  ) -> [UInt8] {
    (0..<256).map { q in
      let x = Double(input.scale) * Double(Int32(q) - input.zeroPoint)
      let v = (f(x) / Double(output.scale)).rounded() + Double(output.zeroPoint)
      return UInt8(min(max(v, 0), 255))
    }
  }
}

extension Builder {
  /// sigmoid / hard_sigmoid / hard_swish / leaky_relu, and a relu/relu6 no convolution or add
  /// takes → lookup (§20); mul (§21); concat (§22);
  /// average pool (§23). Each output has its calibrated quantization.
  mutating func onnxOperator(_ layer: PlannedLayer) throws {
    let name = layer.name
    let out = try calibrated(name)
    let sources = layer.inputs.indices.map { source(layer, $0) }
    var n: QuantizedNode
    switch layer.operation {
    case .unary(let function):
      n = QuantizedNode(name: name, op: .lookup, inputs: [sources[0].tensor], fused: layer.members, output: out)
      n.table = Quantizer.lookupTable(function, input: sources[0].q, output: out)
    case .activation(let a):
      n = QuantizedNode(name: name, op: .lookup, inputs: [sources[0].tensor], fused: layer.members, output: out)
      let upper = a == .relu6 ? 6.0 : Double.infinity
      n.table = Quantizer.lookupTable({ min(max($0, 0), upper) }, input: sources[0].q, output: out)
    case .mul:
      n = QuantizedNode(name: name, op: .mul, inputs: sources.map(\.tensor), fused: layer.members, output: out)
      n.requant = try Quantizer.multiplier(
        Double(sources[0].q.scale) * Double(sources[1].q.scale) / Double(out.scale), node: name,
        what: "product multiplier", warnings: &warnings)
    case .concat:
      n = QuantizedNode(name: name, op: .concat, inputs: sources.map(\.tensor), fused: layer.members, output: out)
      var requant: [RequantMultiplier] = []
      for (i, s) in sources.enumerated() {
        requant.append(
          try Quantizer.multiplier(
            Double(s.q.scale) / Double(out.scale), node: name, what: "multiplier of input \(i)",
            warnings: &warnings))
      }
      n.inputRequant = requant
    case .averagePool(let kernel, let stride, let padding, let countIncludePad):
      n = QuantizedNode(
        name: name, op: .averagePool, inputs: [sources[0].tensor], fused: layer.members, output: out)
      n.kernel = kernel
      n.stride = stride
      n.padding = padding
      n.countIncludePad = countIncludePad ? true : nil
      var requant: [RequantMultiplier] = []
      for t in 1...(kernel[0] * kernel[1]) {
        requant.append(
          try Quantizer.multiplier(
            Double(sources[0].q.scale) / (Double(out.scale) * Double(t)), node: name,
            what: "average-pool multiplier of \(t) taps", warnings: &warnings))
      }
      n.poolRequant = requant
    default:
      preconditionFailure("not an ONNX operator layer")
    }
    n.inputQuantization = sources.map(\.q)
    emit(n)
  }
}

extension Builder {
  /// A fully-connected layer that is not the classifier (MobileNetV3's Linear → HardSwish → Linear
  /// head): its output is an activation like a convolution's, so it becomes a 1x1 `conv2d` node over
  /// its `[F]` input (read as `[1, 1, F]`), with §5's weights and bias and §3's per-channel
  /// requantization to its calibrated uint8 range. docs/quantization.md §24.
  mutating func hiddenLinear(_ layer: PlannedLayer, _ l: LinearLayer) throws {
    let name = layer.name
    let (t, inQ, _) = source(layer, 0)
    let (o, f) = (l.outFeatures, l.inFeatures)
    let (w, b) = try floatLinear(layer, l)
    let outQ = try calibrated(name)
    let (wq, scales, bias) = try Quantizer.quantizeChannels(
      weights: w, bias: b, outChannels: o, input: inQ, node: name, weightMax: weightMax, warnings: &warnings)
    var multipliers = [Int32](repeating: 0, count: o)
    var shifts = multipliers
    for c in 0..<o {
      let m = try Quantizer.multiplier(
        Double(inQ.scale) * Double(scales[c]) / Double(outQ.scale), node: name,
        what: "output channel \(c) multiplier", channel: c, warnings: &warnings)
      multipliers[c] = m.multiplier
      shifts[c] = m.shift
    }
    let bounds = outQ.clampBounds(nil)
    var n = QuantizedNode(name: name, op: .conv2d, inputs: [t], fused: layer.members, output: outQ)
    n.inChannels = f
    n.outChannels = o
    n.kernel = [1, 1]
    n.stride = [1, 1]
    n.padding = [0, 0, 0, 0]
    n.groups = 1
    n.inputQuantization = [inQ]
    n.clamp = [Int(bounds.lo), Int(bounds.hi)]
    n.weights = wq
    n.bias = bias
    n.multipliers = multipliers
    n.shifts = shifts
    n.weightScales = scales
    emit(n)
  }
}
