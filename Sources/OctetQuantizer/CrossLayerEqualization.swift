import OctetCore
import OctetModels

/// Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and
/// Bias Correction", 2019) of a float model, before calibration: an equivalent float model whose
/// consecutive convolutions have balanced per-channel weight ranges. docs/quantization.md §7.1.
///
/// A pair is a convolution A (with its BatchNorm folded) whose output is read only by a convolution
/// B that is dense (groups 1) or depthwise, through at most a ReLU or ReLU6 fused into A. Channel i
/// of A's output is divided by `s_i` and input channel i of B multiplied by it, with
/// `s_i = √(r1_i · r2_i) / r2_i` (r1_i: the range max|w'| of A's output channel i, r2_i: of B's input
/// channel i, both after BatchNorm folding), so that both become √(r1_i · r2_i). In an EfficientNet
/// block (expand → depthwise → project) the depthwise layer is B of one pair and A of the next, so
/// the pairs are equalized in turn, `iterations` times (the paper's iteration over the triple).
///
/// The function is unchanged, exactly up to float rounding: ReLU is scale-invariant, and ReLU6
/// becomes `min(max(x / s_i, 0), 6 / s_i)`, which the model keeps as per-channel upper bounds on the
/// relu6 node (`Node.clampMax`, a tensor `<relu6 node>.clamp_max`); the int8 model carries them as
/// per-channel clamps (`QuantizedNode.channelClampLo/Hi`). The scales go into the checkpoint's own
/// tensors: A's BatchNorm γ and β (or, without BatchNorm, A's weight rows and bias) are divided by
/// s_i, B's raw weights of input channel i multiplied by it; the graph, its names and the tensor
/// names stay (only the bound tensors are new), so calibration, the range table and the drift report
/// keep the names of the original model.
///
/// The calibrator must run on the equalized model: its activation ranges differ from the original's.
public enum CrossLayerEqualization {
  /// What equalization did to one pair of layers.
  public struct Pair: Sendable, Equatable, Codable {
    /// Layer names (after fusion) of A and B.
    public var first: String, second: String
    public var channels: Int
    /// max/min over channels of r1 (A's output-channel ranges) and r2 (B's input-channel ranges),
    /// before and after equalization; channels whose range is 0 are left out.
    public var firstSpreadBefore: Double, firstSpreadAfter: Double
    public var secondSpreadBefore: Double, secondSpreadAfter: Double
    /// The smallest and largest total scale s applied to a channel (A's output divided by it).
    public var minScale: Double, maxScale: Double
  }

  public struct Report: Sendable, Equatable, Codable {
    public var pairs: [Pair]
    public var iterations: Int
    /// Relu6 nodes that now carry per-channel bounds.
    public var boundedActivations: [String]
  }

  public enum EqualizationError: Error, CustomStringConvertible, Equatable {
    case alreadyEqualized(node: String)
    case layer(String, String)

    public var description: String {
      switch self {
      case .alreadyEqualized(let node):
        "the model is already equalized (relu6 '\(node)' has per-channel bounds); equalize the original model"
      case .layer(let name, let message): "cross-layer equalization, layer '\(name)': \(message)"
      }
    }
  }

  /// The default number of passes over each chain of pairs.
  public static let defaultIterations = 4
  /// The default bound on a channel's total scale (`apply`'s `maxScale`). The paper's rule is
  /// unbounded; on EfficientNet-Lite0 (per-channel weights, per-tensor activations) a channel that
  /// grows raises its ReLU6 bound above 6, and with it the tensor's calibrated range. Chosen on a
  /// split of the calibration images (calibrated on 400, compared on 100) by the SQNR of the head's
  /// output, a tensor equalization leaves unscaled: 8-bit weights 15.3 dB at 2, 14.2 at 4, 10.6
  /// unbounded (15.6 without equalization); 7-bit 11.7, 10.1, 9.5 (11.1). Docs: quantization.md §7.1.
  public static let defaultMaxScale = 2.0

  /// Equalizes every pair of `model` (see the type's description). Deterministic: the same model
  /// gives the same bits, so a calibrator and a quantizer that each call it see the same model.
  /// `maxScale` (≥ 1) bounds every channel's total scale to [1/maxScale, maxScale] (infinity: the
  /// paper's rule, unbounded; default `defaultMaxScale`).
  public static func apply(
    to model: Model, iterations: Int = defaultIterations, maxScale: Double = defaultMaxScale
  ) throws -> (model: Model, report: Report) {
    precondition(iterations >= 1 && maxScale >= 1, "iterations >= 1 and maxScale >= 1")
    if let bounded = model.graph.nodes.first(where: { $0.clampMax != nil }) {
      throw EqualizationError.alreadyEqualized(node: bounded.name)
    }
    let plan: LayerPlan
    do { plan = try LayerPlan(model: model) } catch { throw QuantizerError.plan(error) }

    // The layers that take part, with their folded weights (OIHW, Double) and bookkeeping.
    struct ConvState {
      var layer: PlannedLayer
      var conv: ConvLayer
      var folded: [Double]
      var outScale: [Double]  // product of 1/s over the pairs where it is A
      var inScale: [Double]  // product of s over the pairs where it is B
      var isDepthwise: Bool { conv.attributes.groups > 1 }
    }
    var readers = [Int](repeating: 0, count: plan.layers.count)
    for layer in plan.layers { for i in layer.inputs where i != LayerInput.graphInput { readers[i] += 1 } }

    var states: [Int: ConvState] = [:]
    func state(_ index: Int) throws -> ConvState {
      if let s = states[index] { return s }
      let layer = plan.layers[index]
      guard case .conv(let c) = layer.operation else { preconditionFailure("not a convolution") }
      let o = c.outChannels
      func floats(_ name: String?, count: Int? = nil) throws -> [Float] {
        guard let name, let t = model.weights[name] else {
          throw EqualizationError.layer(layer.name, "tensor '\(name ?? "?")' is missing")
        }
        if let count, t.elementCount != count {
          throw EqualizationError.layer(layer.name, "tensor '\(name)' has \(t.elementCount) values, expected \(count)")
        }
        return t.floats()
      }
      let w = try floats(c.attributes.weight)
      let b = c.attributes.bias != nil ? try floats(c.attributes.bias, count: o) : nil
      var folded = w.map(Double.init)
      if let bn = c.batchNorm?.attributes {
        folded =
          Quantizer.foldBatchNorm(
            weights: w, bias: b, gamma: try floats(bn.weight, count: o), beta: try floats(bn.bias, count: o),
            mean: try floats(bn.runningMean, count: o), variance: try floats(bn.runningVariance, count: o),
            epsilon: bn.epsilon
          ).weights
      }
      let s = ConvState(
        layer: layer, conv: c, folded: folded, outScale: [Double](repeating: 1, count: o),
        inScale: [Double](repeating: 1, count: c.inChannels))
      states[index] = s
      return s
    }

    // Pairs in network order.
    var pairs: [(a: Int, b: Int)] = []
    for (bi, layer) in plan.layers.enumerated() {
      guard case .conv(let cb) = layer.operation, let ai = layer.inputs.first, ai != LayerInput.graphInput,
        readers[ai] == 1, ai != plan.output, case .conv(let ca) = plan.layers[ai].operation
      else { continue }
      let depthwise = cb.attributes.groups == cb.inChannels && cb.outChannels == cb.inChannels
      guard cb.attributes.groups == 1 || depthwise, ca.outChannels == cb.inChannels,
        ca.attributes.groups == 1 || ca.attributes.groups == ca.inChannels && ca.outChannels == ca.inChannels
      else { continue }
      pairs.append((ai, bi))
    }
    for p in pairs {
      _ = try state(p.a)
      _ = try state(p.b)
    }

    /// Per-channel ranges: A's output channels, or B's input channels.
    func outputRanges(_ s: ConvState) -> [Double] {
      let o = s.conv.outChannels
      let per = s.folded.count / o
      return (0..<o).map { c in s.folded[(c * per)..<((c + 1) * per)].reduce(0) { max($0, abs($1)) } }
    }
    func inputRanges(_ s: ConvState) -> [Double] {
      if s.isDepthwise { return outputRanges(s) }
      let (o, i) = (s.conv.outChannels, s.conv.inChannels)
      let taps = s.conv.kernelH * s.conv.kernelW
      var r = [Double](repeating: 0, count: i)
      for oc in 0..<o {
        for ic in 0..<i {
          let base = (oc * i + ic) * taps
          for t in 0..<taps { r[ic] = max(r[ic], abs(s.folded[base + t])) }
        }
      }
      return r
    }
    func spread(_ r: [Double]) -> Double {
      let live = r.filter { $0 > 0 }
      guard let lo = live.min(), let hi = live.max() else { return 1 }
      return hi / lo
    }

    let before = pairs.map { (outputRanges(states[$0.a]!), inputRanges(states[$0.b]!)) }
    for _ in 0..<iterations {
      for p in pairs {
        var a = states[p.a]!
        var b = states[p.b]!
        let r1 = outputRanges(a)
        let r2 = inputRanges(b)
        let perA = a.folded.count / a.conv.outChannels
        let taps = b.conv.kernelH * b.conv.kernelW
        for c in 0..<r1.count {
          guard r1[c] > 0, r2[c] > 0 else { continue }
          var s = (r1[c] * r2[c]).squareRoot() / r2[c]
          // Bound the channel's total scale (A's outScale is the product of 1/s).
          let total = 1 / (a.outScale[c] / s)
          if total > maxScale { s *= maxScale / total }
          if total < 1 / maxScale { s *= (1 / maxScale) / total }
          guard s.isFinite, s > 0, s != 1 else { continue }
          for k in 0..<perA { a.folded[c * perA + k] /= s }
          a.outScale[c] /= s
          if b.isDepthwise {
            for k in 0..<taps { b.folded[c * taps + k] *= s }
          } else {
            let i = b.conv.inChannels
            for oc in 0..<b.conv.outChannels { for k in 0..<taps { b.folded[(oc * i + c) * taps + k] *= s } }
          }
          b.inScale[c] *= s
        }
        states[p.a] = a
        states[p.b] = b
      }
    }

    // Write the total scales into the checkpoint's tensors, each value rounded once.
    var weights = model.weights
    var graph = model.graph
    var bounded: [String] = []
    func scaled(_ name: String, _ factor: (Int) -> Double, per: Int) {
      let t = weights[name]!
      var v = t.floats()
      for j in v.indices { v[j] = Float(Double(v[j]) * factor(j / per)) }
      weights[name] = HostTensor(shape: t.shape, float32: v)
    }
    for index in states.keys.sorted() {
      let s = states[index]!
      let c = s.conv
      let o = c.outChannels
      let taps = c.kernelH * c.kernelW
      let inPerGroup = c.inChannels / c.attributes.groups
      let outChanged = s.outScale.contains { $0 != 1 }
      // Raw weight [o, i/g, kh, kw]: input scale of channel i (depthwise: i = o), and the output
      // scale when there is no BatchNorm to carry it.
      let rawOut = c.batchNorm == nil && outChanged
      scaled(
        c.attributes.weight,
        { j in
          let oc = j / (inPerGroup * taps)
          let ic = s.isDepthwise ? oc : (j / taps) % inPerGroup
          return s.inScale[ic] * (rawOut ? s.outScale[oc] : 1)
        }, per: 1)
      guard outChanged else { continue }
      if let bn = c.batchNorm?.attributes {
        scaled(bn.weight, { s.outScale[$0] }, per: 1)
        scaled(bn.bias, { s.outScale[$0] }, per: 1)
      } else if let bias = c.attributes.bias {
        scaled(bias, { s.outScale[$0] }, per: 1)
      }
      if c.activation == .relu6 {
        let relu6 = s.layer.members.last!
        let name = relu6 + ".clamp_max"
        guard !weights.contains(name) else {
          throw EqualizationError.layer(s.layer.name, "the model already has a tensor '\(name)'")
        }
        weights[name] = HostTensor(shape: [o], float32: s.outScale.map { Float(6 * $0) })
        let k = graph.nodes.firstIndex { $0.name == relu6 }!
        graph.nodes[k].clampMax = name
        bounded.append(relu6)
      }
    }

    let after = pairs.map { (outputRanges(states[$0.a]!), inputRanges(states[$0.b]!)) }
    let report = Report(
      pairs: pairs.indices.map { k in
        let a = states[pairs[k].a]!
        let live = a.outScale.filter { $0 != 0 }.map { 1 / $0 }
        return Pair(
          first: a.layer.name, second: states[pairs[k].b]!.layer.name, channels: a.conv.outChannels,
          firstSpreadBefore: spread(before[k].0), firstSpreadAfter: spread(after[k].0),
          secondSpreadBefore: spread(before[k].1), secondSpreadAfter: spread(after[k].1),
          minScale: live.min() ?? 1, maxScale: live.max() ?? 1)
      }, iterations: iterations, boundedActivations: bounded)
    return (Model(info: model.info, graph: graph, weights: weights), report)
  }
}
