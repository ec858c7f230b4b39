import OctetCore
import OctetModels

/// Errors raised while planning a float model: they name the layer.
public typealias PlanError = GraphPlanError

/// Runs a float `Model` on NHWC input `[N, S, S, 3]` (S = `model.info.inputSize`) and returns logits
/// `[N, classes]`.
///
/// The plan is built once on `LayerPlan` (OctetModels: fusion, names, shapes, all checked there):
/// BatchNorm is folded into the convolution before it (w·γ/√(σ²+ε), (b−μ)·γ/√(σ²+ε)+β, computed in
/// Double), a following ReLU/ReLU6 and a residual add are fused into the convolution's epilogue, and
/// weights are packed for the kernels.
/// Intermediate tensors are released after their last use.
public final class FloatExecutor: @unchecked Sendable {
  public let model: Model

  enum Step {
    /// `clampMax`: a relu6's per-channel upper bounds (cross-layer equalization); the kernel then
    /// applies ReLU and the bounds are applied after it.
    case conv(PackedConv2D, input: Int, residual: Int?, clampMax: [Float]?)
    case linear(PackedLinear, input: Int)
    case batchNorm(scale: [Float], shift: [Float], input: Int)
    case activation(Activation, input: Int)
    case add(Int, Int, Activation)
    case maxPool(kernel: [Int], stride: [Int], padding: [Int], input: Int)
    case globalAveragePool(input: Int)
    case flatten(input: Int)
    case unary(UnaryFunction, input: Int)
    case mul(Int, Int)
    case concat([Int])
    case averagePool(kernel: [Int], stride: [Int], padding: [Int], countIncludePad: Bool, input: Int)
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
  /// How many convolutions run Winograd F(2x2, 3x3) (`init(winograd: true)` on the avx2fma path).
  public var winogradConvolutions: Int {
    steps.count { if case .conv(let c, _, _, _) = $0.step { c.isWinograd } else { false } }
  }
  let outputSlot: Int
  let slotCount: Int
  public let inputShape: [Int]  // [S, S, 3]

  /// `fuseResidualAdd: false` keeps each residual add a step of its own, so that `observe` sees the
  /// convolution's output before the add (calibration needs it: the int8 graph quantizes both).
  /// Fusion, names and shapes are `LayerPlan`'s (OctetModels); this adds the float arithmetic.
  ///
  /// `winograd: true` (inference: classify, eval, bench) runs the 3x3 stride-1 convolutions with
  /// Winograd F(2x2, 3x3) on the avx2fma path (`PackedConv2D.winogradApplies`): 2.25 times fewer
  /// multiply-adds, logits equal to the direct convolution's within float rounding (about 1e-6
  /// relative), not bit for bit. The quantizer's passes and the drift report keep the default, the
  /// direct convolution, so the models they make and the numbers they report do not move with it.
  /// `OCTET_FLOAT_WINOGRAD=0` in the environment turns it off.
  public init(model: Model, fuseResidualAdd: Bool = true, winograd: Bool = false) throws {
    self.model = model
    try model.graph.validate()
    let plan = try LayerPlan(model: model)
    inputShape = plan.inputShape
    let weights = model.weights
    func floats(_ name: String?, _ layer: String, count: Int? = nil) throws -> [Float] {
      guard let name, let t = weights[name] else { throw PlanError.layer(layer, "tensor '\(name ?? "?")' is missing") }
      if let count, t.elementCount != count {
        throw PlanError.layer(layer, "tensor '\(name)' has \(t.elementCount) values, expected \(count)")
      }
      return t.floats()
    }
    let fusedAdds = fuseResidualAdd ? plan.floatResidualAddFusions() : [:]
    let addOf = Dictionary(uniqueKeysWithValues: fusedAdds.map { ($0.value, $0.key) })  // conv → add

    // Slot 0 is the input; layer i writes slot i + 1 (a fused add's layer shares its convolution's).
    var slotOfLayer = [Int](repeating: -1, count: plan.layers.count)
    func slot(_ input: Int) -> Int { input == LayerInput.graphInput ? 0 : slotOfLayer[input] }
    var planned: [PlannedStep] = []
    for (index, layer) in plan.layers.enumerated() where fusedAdds[index] == nil {
      let name = layer.node.name
      var produced = layer.name
      let step: Step
      let input = slot(layer.inputs[0])
      switch layer.operation {
      case .conv(let c):
        let o = c.outChannels
        var w = weights[c.attributes.weight]!.floats()
        var b =
          c.attributes.bias != nil ? try floats(c.attributes.bias, name, count: o) : [Float](repeating: 0, count: o)
        var activation = Activation(c.activation)
        var residual: Int? = nil
        var clampMax: [Float]? = nil
        if let bounds = c.clampMax {
          clampMax = try floats(bounds, layer.name, count: o)
          activation = .relu
        }
        // conv → batch_norm, folded
        if let bn = c.batchNorm?.attributes, let bnName = c.batchNorm?.name {
          let gamma = try floats(bn.weight, bnName, count: o)
          let beta = try floats(bn.bias, bnName, count: o)
          let mean = try floats(bn.runningMean, bnName, count: o)
          let variance = try floats(bn.runningVariance, bnName, count: o)
          let eps = Double(bn.epsilon)
          let perChannel = w.count / o
          for c in 0..<o {
            let factor = Double(gamma[c]) / (Double(variance[c]) + eps).squareRoot()
            for i in 0..<perChannel { w[c * perChannel + i] = Float(Double(w[c * perChannel + i]) * factor) }
            b[c] = Float((Double(b[c]) - Double(mean[c])) * factor + Double(beta[c]))
          }
        }
        // … → add(·, earlier value) (+ relu/relu6)
        if let j = addOf[index], case .add(let addActivation) = plan.layers[j].operation {
          let add = plan.layers[j]
          let other = add.inputs[0] == index ? add.inputs[1] : add.inputs[0]
          residual = slot(other)
          activation = Activation(addActivation)
          produced = add.name
          slotOfLayer[j] = planned.count + 1
        }
        let geometry = Conv2DGeometry(
          inChannels: c.inChannels, outChannels: o, kernelH: c.kernelH, kernelW: c.kernelW,
          strideH: c.attributes.stride[0], strideW: c.attributes.stride[1], padTop: c.padding[0],
          padLeft: c.padding[1], padBottom: c.padding[2], padRight: c.padding[3], groups: c.attributes.groups,
          dilationH: c.attributes.dilation[0], dilationW: c.attributes.dilation[1])
        step = .conv(
          PackedConv2D(
            weightOIHW: w, bias: b, geometry: geometry, activation: activation,
            winograd: winograd && FloatKernels.winogradAllowed), input: input,
          residual: residual, clampMax: clampMax)
      case .batchNorm(let bn):
        let c = layer.shape.last!
        let gamma = try floats(bn.weight, name, count: c)
        let beta = try floats(bn.bias, name, count: c)
        let mean = try floats(bn.runningMean, name, count: c)
        let variance = try floats(bn.runningVariance, name, count: c)
        let eps = Double(bn.epsilon)
        var scale = [Float](repeating: 0, count: c)
        var shift = scale
        for i in 0..<c {
          let f = Double(gamma[i]) / (Double(variance[i]) + eps).squareRoot()
          scale[i] = Float(f)
          shift[i] = Float(Double(beta[i]) - Double(mean[i]) * f)
        }
        step = .batchNorm(scale: scale, shift: shift, input: input)
      case .activation(let a):
        step = .activation(Activation(a), input: input)
      case .add(let a):
        step = .add(input, slot(layer.inputs[1]), Activation(a))
      case .maxPool(let kernel, let stride, let padding):
        step = .maxPool(kernel: kernel, stride: stride, padding: padding, input: input)
      case .globalAveragePool:
        step = .globalAveragePool(input: input)
      case .flatten:
        step = .flatten(input: input)
      case .linear(let l):
        let bias = l.attributes.bias != nil ? try floats(l.attributes.bias, name, count: l.outFeatures) : nil
        step = .linear(
          PackedLinear(
            weight: weights[l.attributes.weight]!.floats(), bias: bias, inFeatures: l.inFeatures,
            outFeatures: l.outFeatures), input: input)
      case .unary(let function):
        step = .unary(function, input: input)
      case .mul:
        step = .mul(input, slot(layer.inputs[1]))
      case .concat:
        step = .concat(layer.inputs.map(slot))
      case .averagePool(let kernel, let stride, let padding, let countIncludePad):
        step = .averagePool(
          kernel: kernel, stride: stride, padding: padding, countIncludePad: countIncludePad, input: input)
      }
      slotOfLayer[index] = planned.count + 1
      planned.append(PlannedStep(step: step, name: produced, output: planned.count + 1, release: []))
    }
    let out = slotOfLayer[plan.output]

    // Release every slot after its last reader.
    var lastReader: [Int: Int] = [:]
    for (i, p) in planned.enumerated() {
      for s in Self.inputs(of: p.step) { lastReader[s] = i }
    }
    for (s, i) in lastReader where s != out { planned[i].release.append(s) }
    steps = planned
    outputSlot = out
    slotCount = planned.count + 1
  }

  static func inputs(of step: Step) -> [Int] {
    switch step {
    case .conv(_, let input, let residual, _): [input] + (residual.map { [$0] } ?? [])
    case .linear(_, let input), .batchNorm(_, _, let input), .activation(_, let input),
      .maxPool(_, _, _, let input), .globalAveragePool(let input), .flatten(let input), .unary(_, let input),
      .averagePool(_, _, _, _, let input):
      [input]
    case .add(let a, let b, _), .mul(let a, let b): [a, b]
    case .concat(let inputs): inputs
    }
  }

  /// The names of the values `run(_:observe:)` reports, in order.
  public var observableNames: [String] { steps.map(\.name) }

  /// Runs the network. `input` is `[N, S, S, 3]`; the result is `[N, classes]`.
  /// `observe`, when given, sees every step's output (after fusion) under its graph node name.
  public func run(_ input: Tensor, observe: ((String, Tensor) -> Void)? = nil) -> Tensor {
    run(input, observe: observe, replace: nil)
  }

  /// `run(_:observe:)`, where `replace`, when given, sees each step's output under its name before
  /// anything reads it and may return another tensor of the same shape to use instead: what later
  /// steps read, what `observe` sees and, for the last step, what is returned. Sensitivity analysis
  /// swaps one layer's output for its int8 simulation this way.
  public func run(
    _ input: Tensor, observe: ((String, Tensor) -> Void)?, replace: ((String, Tensor) -> Tensor?)?
  ) -> Tensor {
    precondition(
      input.rank == 4 && Array(input.shape.dropFirst()) == inputShape,
      "input shape \(input.shape) does not match [N, \(inputShape.map(String.init).joined(separator: ", "))]")
    var values = [Tensor?](repeating: nil, count: slotCount)
    values[0] = input
    for p in steps {
      let result = compute(p.step, values)
      var value = result
      if let replacement = replace?(p.name, result) {
        precondition(
          replacement.shape == result.shape,
          "'\(p.name)': replacement shape \(replacement.shape) differs from \(result.shape)")
        value = replacement
      }
      observe?(p.name, value)
      values[p.output] = value
      for s in p.release { values[s] = nil }
    }
    return values[outputSlot]!
  }

  /// Every value of one run (the input and each step's output), kept so that `resume` can run the
  /// network again from any step. Holds all of a run's activations at once.
  public struct Activations: @unchecked Sendable {
    let values: [Tensor?]
  }

  /// Runs the network like `run(_:)` and keeps every value: the logits `[N, classes]` and the
  /// activations.
  public func activations(_ input: Tensor) -> (logits: Tensor, activations: Activations) {
    precondition(
      input.rank == 4 && Array(input.shape.dropFirst()) == inputShape,
      "input shape \(input.shape) does not match [N, \(inputShape.map(String.init).joined(separator: ", "))]")
    var values = [Tensor?](repeating: nil, count: slotCount)
    values[0] = input
    for p in steps { values[p.output] = compute(p.step, values) }
    return (values[outputSlot]!, Activations(values: values))
  }

  /// The value named `name` (the graph input, or a step's output as `observe` names it) in
  /// `activations`; nil when no step has that name.
  public func value(_ name: String, in activations: Activations) -> Tensor? {
    if name == Graph.inputName { return activations.values[0] }
    return steps.first { $0.name == name }.flatMap { activations.values[$0.output] }
  }

  /// The logits of the run that gave `activations` with the value `name` (the graph input or a
  /// step's output) replaced by `tensor` (same shape): only the steps after it run again. The same
  /// arithmetic as `run(_:observe:replace:)` with that replacement.
  public func resume(_ activations: Activations, replacing name: String, with tensor: Tensor) -> Tensor {
    var values = activations.values
    let first: Int
    if name == Graph.inputName {
      values[0] = tensor
      first = 0
    } else {
      guard let k = steps.firstIndex(where: { $0.name == name }) else {
        preconditionFailure("the float network has no value '\(name)'")
      }
      precondition(
        values[steps[k].output]?.shape == tensor.shape,
        "'\(name)': replacement shape \(tensor.shape) differs from \(values[steps[k].output]?.shape ?? [])")
      values[steps[k].output] = tensor
      first = k + 1
    }
    for p in steps[first...] {
      values[p.output] = compute(p.step, values)
      for s in p.release { values[s] = nil }
    }
    return values[outputSlot]!
  }

  /// One step's output from the values it reads.
  private func compute(_ step: Step, _ values: [Tensor?]) -> Tensor {
    switch step {
    case .conv(let conv, let input, let residual, let clampMax):
      var y = conv(values[input]!, residual: residual.map { values[$0]! })
      if let clampMax { clampChannels(&y, upper: clampMax) }
      return y
    case .linear(let linear, let input):
      return linear(values[input]!)
    case .batchNorm(let scale, let shift, let input):
      return batchNormInference(values[input]!, scale: scale, shift: shift)
    case .activation(let activation, let input):
      var x = values[input]!
      applyActivation(&x, activation)
      return x
    case .add(let a, let b, let activation):
      return add(values[a]!, values[b]!, activation: activation)
    case .maxPool(let k, let s, let pads, let input):
      return maxPool2D(
        values[input]!, kernelH: k[0], kernelW: k[1], strideH: s[0], strideW: s[1],
        padTop: pads[0], padLeft: pads[1], padBottom: pads[2], padRight: pads[3])
    case .globalAveragePool(let input):
      return globalAveragePool(values[input]!)
    case .flatten(let input):
      let x = values[input]!
      return Tensor(shape: [x.shape[0], x.count / x.shape[0]], scalars: x.scalars)
    case .unary(let function, let input):
      return applyUnary(values[input]!, function)
    case .mul(let a, let b):
      return multiply(values[a]!, values[b]!)
    case .concat(let inputs):
      return concatChannels(inputs.map { values[$0]! })
    case .averagePool(let kernel, let stride, let padding, let countIncludePad, let input):
      return averagePool2D(
        values[input]!, kernel: kernel, stride: stride, padding: padding, countIncludePad: countIncludePad)
    }
  }
}

extension Activation {
  /// The float kernels' form of a plan's fused activation.
  init(_ fused: FusedActivation?) {
    switch fused {
    case .relu: self = .relu
    case .relu6: self = .relu6
    case nil: self = .none
    }
  }
}
