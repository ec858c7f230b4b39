import OctetCore
import OctetModels

/// Errors raised while planning a float model: they name the layer.
public enum PlanError: Error, CustomStringConvertible, Equatable {
  case layer(String, String)
  public var description: String {
    switch self {
    case let .layer(name, message): "layer '\(name)': \(message)"
    }
  }
}

/// Runs a float `Model` on NHWC input `[N, S, S, 3]` (S = `model.info.inputSize`) and returns logits
/// `[N, classes]`.
///
/// The plan is built once: BatchNorm is folded into the convolution before it (w·γ/√(σ²+ε),
/// (b−μ)·γ/√(σ²+ε)+β, computed in Double), a following ReLU/ReLU6 and a residual add are fused into
/// the convolution's epilogue, weights are packed for the kernels, and every shape is checked.
/// Intermediate tensors are released after their last use.
public final class FloatExecutor: @unchecked Sendable {
  public let model: Model

  enum Step {
    case conv(PackedConv2D, input: Int, residual: Int?)
    case linear(PackedLinear, input: Int)
    case batchNorm(scale: [Float], shift: [Float], input: Int)
    case activation(Activation, input: Int)
    case add(Int, Int, Activation)
    case maxPool(kernel: [Int], stride: [Int], padding: [Int], input: Int)
    case globalAveragePool(input: Int)
    case flatten(input: Int)
  }

  struct PlannedStep {
    var step: Step
    /// The graph node whose value this step produces (the last node of a fused group).
    var name: String
    var output: Int
    /// Slots whose last reader is this step.
    var release: [Int]
  }

  let steps: [PlannedStep]
  let outputSlot: Int
  let slotCount: Int
  public let inputShape: [Int]  // [S, S, 3]

  /// `fuseResidualAdd: false` keeps each residual add a step of its own, so that `observe` sees the
  /// convolution's output before the add (calibration needs it: the int8 graph quantizes both).
  public init(model: Model, fuseResidualAdd: Bool = true) throws {
    self.model = model
    try model.graph.validate()
    let size = model.info.inputSize
    inputShape = [size, size, 3]
    let graph = model.graph
    let weights = model.weights

    // Consumers of every value, to decide what can be fused.
    var consumers: [String: [String]] = [:]
    for node in graph.nodes { for input in node.inputs { consumers[input, default: []].append(node.name) } }
    let nodeByName = Dictionary(uniqueKeysWithValues: graph.nodes.map { ($0.name, $0) })
    func soleConsumer(_ name: String) -> Node? {
      guard name != graph.output, let c = consumers[name], c.count == 1 else { return nil }
      return nodeByName[c[0]]
    }
    func floats(_ name: String?, _ layer: String, count: Int? = nil) throws -> [Float] {
      guard let name, let t = weights[name] else { throw PlanError.layer(layer, "tensor '\(name ?? "?")' is missing") }
      if let count, t.elementCount != count {
        throw PlanError.layer(layer, "tensor '\(name)' has \(t.elementCount) values, expected \(count)")
      }
      return t.floats()
    }

    var slotOf: [String: Int] = [Graph.inputName: 0]
    var shapeOf: [Int: [Int]] = [0: inputShape]  // per-image shape [H, W, C] or [C]
    var nextSlot = 1
    var planned: [PlannedStep] = []
    var consumed: Set<String> = []

    func slot(_ name: String, _ layer: String) throws -> Int {
      guard let s = slotOf[name] else { throw PlanError.layer(layer, "input '\(name)' is not computed before it") }
      return s
    }

    for node in graph.nodes where !consumed.contains(node.name) {
      let name = node.name
      var produced = name
      let step: Step
      let outShape: [Int]
      switch node.op {
      case .conv2d:
        let input = try slot(node.inputs[0], name)
        let s = shapeOf[input]!
        guard s.count == 3 else { throw PlanError.layer(name, "expects an NHWC input, got per-image shape \(s)") }
        guard let wt = weights[node.weight ?? ""], wt.shape.count == 4 else {
          throw PlanError.layer(name, "weight '\(node.weight ?? "?")' is missing or not OIHW")
        }
        let groups = node.groups ?? 1
        let (o, ig, kh, kw) = (wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3])
        guard ig * groups == s[2], o % groups == 0, node.kernel ?? [kh, kw] == [kh, kw] else {
          throw PlanError.layer(name, "weight shape \(wt.shape) with \(groups) groups does not fit an input of \(s[2]) channels")
        }
        var w = wt.floats()
        var b = node.bias != nil ? try floats(node.bias, name, count: o) : [Float](repeating: 0, count: o)
        var activation = Activation.none
        var residual: Int? = nil
        // conv → batch_norm
        if let bn = soleConsumer(produced), bn.op == .batchNorm {
          let gamma = try floats(bn.weight, bn.name, count: o), beta = try floats(bn.bias, bn.name, count: o)
          let mean = try floats(bn.runningMean, bn.name, count: o), variance = try floats(bn.runningVariance, bn.name, count: o)
          let eps = Double(bn.epsilon ?? 1e-5)
          let perChannel = w.count / o
          for c in 0..<o {
            let factor = Double(gamma[c]) / (Double(variance[c]) + eps).squareRoot()
            for i in 0..<perChannel { w[c * perChannel + i] = Float(Double(w[c * perChannel + i]) * factor) }
            b[c] = Float((Double(b[c]) - Double(mean[c])) * factor + Double(beta[c]))
          }
          consumed.insert(bn.name)
          produced = bn.name
        }
        // … → add(·, earlier value), whose other input already exists
        if fuseResidualAdd, let add = soleConsumer(produced), add.op == .add, add.inputs.count == 2 {
          let other = add.inputs[0] == produced ? add.inputs[1] : add.inputs[0]
          if let otherSlot = slotOf[other] {
            residual = otherSlot
            consumed.insert(add.name)
            produced = add.name
          }
        }
        // … → relu / relu6
        if let act = soleConsumer(produced), act.op == .relu || act.op == .relu6 {
          activation = act.op == .relu ? .relu : .relu6
          consumed.insert(act.name)
          produced = act.name
        }
        let pads = node.resolvedPadding(height: s[0], width: s[1])
        let stride = node.stride ?? [1, 1]
        let dilation = node.dilation ?? [1, 1]
        let geometry = Conv2DGeometry(
          inChannels: s[2], outChannels: o, kernelH: kh, kernelW: kw, strideH: stride[0], strideW: stride[1],
          padTop: pads[0], padLeft: pads[1], padBottom: pads[2], padRight: pads[3], groups: groups,
          dilationH: dilation[0], dilationW: dilation[1])
        let (oh, ow) = geometry.outputSize(inputHeight: s[0], inputWidth: s[1])
        guard oh > 0, ow > 0 else { throw PlanError.layer(name, "input \(s[0])x\(s[1]) is too small for this convolution") }
        outShape = [oh, ow, o]
        if let residual, shapeOf[residual]! != outShape {
          throw PlanError.layer(produced, "adds \(shapeOf[residual]!) to \(outShape)")
        }
        step = .conv(PackedConv2D(weightOIHW: w, bias: b, geometry: geometry, activation: activation), input: input, residual: residual)
      case .batchNorm:
        let input = try slot(node.inputs[0], name)
        let s = shapeOf[input]!
        let c = s.last!
        let gamma = try floats(node.weight, name, count: c), beta = try floats(node.bias, name, count: c)
        let mean = try floats(node.runningMean, name, count: c), variance = try floats(node.runningVariance, name, count: c)
        let eps = Double(node.epsilon ?? 1e-5)
        var scale = [Float](repeating: 0, count: c), shift = scale
        for i in 0..<c {
          let f = Double(gamma[i]) / (Double(variance[i]) + eps).squareRoot()
          scale[i] = Float(f)
          shift[i] = Float(Double(beta[i]) - Double(mean[i]) * f)
        }
        step = .batchNorm(scale: scale, shift: shift, input: input)
        outShape = s
      case .relu, .relu6:
        let input = try slot(node.inputs[0], name)
        step = .activation(node.op == .relu ? .relu : .relu6, input: input)
        outShape = shapeOf[input]!
      case .add:
        guard node.inputs.count == 2 else { throw PlanError.layer(name, "add takes two inputs") }
        let a = try slot(node.inputs[0], name), b = try slot(node.inputs[1], name)
        guard shapeOf[a]! == shapeOf[b]! else { throw PlanError.layer(name, "adds \(shapeOf[a]!) to \(shapeOf[b]!)") }
        var activation = Activation.none
        if let act = soleConsumer(name), act.op == .relu || act.op == .relu6 {
          activation = act.op == .relu ? .relu : .relu6
          consumed.insert(act.name)
          produced = act.name
        }
        step = .add(a, b, activation)
        outShape = shapeOf[a]!
      case .maxPool:
        let input = try slot(node.inputs[0], name)
        let s = shapeOf[input]!
        let k = node.kernel ?? [1, 1], st = node.stride ?? k
        let pads = node.resolvedPadding(height: s[0], width: s[1])
        let oh = (s[0] + pads[0] + pads[2] - k[0]) / st[0] + 1
        let ow = (s[1] + pads[1] + pads[3] - k[1]) / st[1] + 1
        guard oh > 0, ow > 0 else { throw PlanError.layer(name, "input \(s[0])x\(s[1]) is too small to pool") }
        step = .maxPool(kernel: k, stride: st, padding: pads, input: input)
        outShape = [oh, ow, s[2]]
      case .globalAveragePool:
        let input = try slot(node.inputs[0], name)
        step = .globalAveragePool(input: input)
        outShape = [1, 1, shapeOf[input]!.last!]
      case .flatten:
        let input = try slot(node.inputs[0], name)
        step = .flatten(input: input)
        outShape = [shapeOf[input]!.reduce(1, *)]
      case .linear:
        let input = try slot(node.inputs[0], name)
        let features = shapeOf[input]!.reduce(1, *)
        guard let wt = weights[node.weight ?? ""], wt.shape.count == 2, wt.shape[1] == features else {
          throw PlanError.layer(name, "weight '\(node.weight ?? "?")' does not map \(features) features")
        }
        let out = wt.shape[0]
        let bias = node.bias != nil ? try floats(node.bias, name, count: out) : nil
        step = .linear(PackedLinear(weight: wt.floats(), bias: bias, inFeatures: features, outFeatures: out), input: input)
        outShape = [out]
      }
      let output = nextSlot
      nextSlot += 1
      slotOf[produced] = output
      if produced != name { slotOf[name] = output }
      shapeOf[output] = outShape
      planned.append(PlannedStep(step: step, name: produced, output: output, release: []))
    }
    guard let out = slotOf[graph.output] else { throw PlanError.layer(graph.output, "the graph output is never computed") }

    // Release every slot after its last reader.
    var lastReader: [Int: Int] = [:]
    for (i, p) in planned.enumerated() {
      for s in Self.inputs(of: p.step) { lastReader[s] = i }
    }
    for (s, i) in lastReader where s != out { planned[i].release.append(s) }
    steps = planned
    outputSlot = out
    slotCount = nextSlot
  }

  static func inputs(of step: Step) -> [Int] {
    switch step {
    case let .conv(_, input, residual): [input] + (residual.map { [$0] } ?? [])
    case let .linear(_, input), let .batchNorm(_, _, input), let .activation(_, input),
      let .maxPool(_, _, _, input), let .globalAveragePool(input), let .flatten(input):
      [input]
    case let .add(a, b, _): [a, b]
    }
  }

  /// The names of the values `run(_:observe:)` reports, in order.
  public var observableNames: [String] { steps.map(\.name) }

  /// Runs the network. `input` is `[N, S, S, 3]`; the result is `[N, classes]`.
  /// `observe`, when given, sees every step's output (after fusion) under its graph node name.
  public func run(_ input: Tensor, observe: ((String, Tensor) -> Void)? = nil) -> Tensor {
    precondition(input.rank == 4 && Array(input.shape.dropFirst()) == inputShape,
                 "input shape \(input.shape) does not match [N, \(inputShape.map(String.init).joined(separator: ", "))]")
    var values = [Tensor?](repeating: nil, count: slotCount)
    values[0] = input
    for p in steps {
      let result: Tensor
      switch p.step {
      case let .conv(conv, input, residual):
        result = conv(values[input]!, residual: residual.map { values[$0]! })
      case let .linear(linear, input):
        result = linear(values[input]!)
      case let .batchNorm(scale, shift, input):
        result = batchNormInference(values[input]!, scale: scale, shift: shift)
      case let .activation(activation, input):
        var x = values[input]!
        applyActivation(&x, activation)
        result = x
      case let .add(a, b, activation):
        result = add(values[a]!, values[b]!, activation: activation)
      case let .maxPool(k, s, pads, input):
        result = maxPool2D(
          values[input]!, kernelH: k[0], kernelW: k[1], strideH: s[0], strideW: s[1],
          padTop: pads[0], padLeft: pads[1], padBottom: pads[2], padRight: pads[3])
      case let .globalAveragePool(input):
        result = globalAveragePool(values[input]!)
      case let .flatten(input):
        let x = values[input]!
        result = Tensor(shape: [x.shape[0], x.count / x.shape[0]], scalars: x.scalars)
      }
      observe?(p.name, result)
      values[p.output] = result
      for s in p.release { values[s] = nil }
    }
    return values[outputSlot]!
  }
}
