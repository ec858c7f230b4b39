import Foundation
import OctetCore
import OctetModels

/// Errors raised while planning an int8 model: they name the node.
public enum Int8PlanError: Error, CustomStringConvertible, Equatable {
  case node(String, String)
  case model(QuantizedModelError)

  public var description: String {
    switch self {
    case .node(let name, let message): "int8 node '\(name)': \(message)"
    case .model(let error): error.description
    }
  }
}

/// Runs a `QuantizedModel` with plain scalar integer arithmetic: the oracle the fast kernels are
/// tested against, and a usable evaluator. Input is the preprocessed float NHWC `[N, S, S, 3]`
/// (S = `model.info.inputSize`); it is quantized once, and from there to the int32 logits
/// `[N, classes]` every operation is integer (docs/quantization.md). Deterministic: the same
/// model and input give the same bits on every machine.
public final class Int8ReferenceExecutor: @unchecked Sendable {
  public let model: QuantizedModel

  enum Step {
    /// With a `PixelNormalization`, the uint8 pixels the input was normalized from (§12).
    case quantizeInput(ActivationQuantization, PixelNormalization?)
    case conv(Int8ConvPlan, input: Int)
    /// A convolution with a 16-bit input or output (docs/quantization.md §17).
    case wideConv(Int8WideConvPlan, input: Int)
    case add(
      Int, Int, zeroPointA: Int32, zeroPointB: Int32, AddMultipliers, outputZeroPoint: Int32, lo: Int32,
      hi: Int32)
    case maxPool(kernel: [Int], stride: [Int], padding: [Int], input: Int)
    case globalAveragePool(input: Int, inputZeroPoint: Int32, RequantMultiplier, outputZeroPoint: Int32)
    case flatten(input: Int)
    case linear(Int8LinearPlan, input: Int)
    /// docs/quantization.md §20-§23.
    case lookup([UInt8], input: Int)
    /// In the node's input order; either may be a `[1, 1, C]` factor against the other's `[H, W, C]`.
    case mul(Int, Int, zeroPointA: Int32, zeroPointB: Int32, RequantMultiplier, outputZeroPoint: Int32)
    case concat([Int], zeroPoints: [Int32], [RequantMultiplier], outputZeroPoint: Int32)
    case averagePool(Int8WindowAveragePoolAttributes, outputZeroPoint: Int32, input: Int)
  }

  struct PlannedStep {
    var step: Step
    var name: String
    /// Per-image shape of the output: [H, W, C] or [C].
    var shape: [Int]
    var quantization: ActivationQuantization
    var release: [Int]
    /// 8 (uint8 codes) or 16 (int16 codes, docs/quantization.md §17).
    var bits = 8
  }

  let steps: [PlannedStep]
  /// Per-image shape of the input, [S, S, 3].
  public let inputShape: [Int]
  public let classes: Int
  public let logitScale: Float

  /// Validates the model and plans it for `model.info.inputSize`: every shape is checked here.
  public init(model: QuantizedModel) throws(Int8PlanError) {
    self.model = model
    do { try model.validate() } catch { throw .model(error) }
    let size = model.info.inputSize
    inputShape = [size, size, 3]
    var slotOf: [String: Int] = [:]
    var planned: [PlannedStep] = []
    func slot(_ name: String, _ node: String) throws(Int8PlanError) -> Int {
      guard let s = slotOf[name] else { throw .node(node, "input '\(name)' is not computed before it") }
      return s
    }
    for node in model.nodes {
      let name = node.name
      let step: Step
      let shape: [Int]
      var inShapes: [[Int]] = []
      var inSlots: [Int] = []
      for input in node.inputs {
        let s = try slot(input, name)
        if case .linear = planned[s].step {
          throw .node(name, "reads the classifier '\(input)', whose output is the int32 logits")
        }
        inSlots.append(s)
        inShapes.append(planned[s].shape)
      }
      // The quantization a node reads must be the one its producer wrote.
      if let q = node.inputQuantization {
        for (i, s) in inSlots.enumerated() where planned[s].quantization != q[i] {
          throw .node(
            name, "reads '\(node.inputs[i])' with \(q[i]), but it is written with \(planned[s].quantization)")
        }
      }
      let operation: QuantizedOperation
      do { operation = try node.operation() } catch { throw .model(error) }
      switch operation {
      case .quantizeInput:
        step = .quantizeInput(node.output, node.pixelInput)
        shape = inputShape
      case .conv2d(let attributes) where node.isWide:
        let s = inShapes[0]
        guard s.count == 3, s[2] == attributes.inChannels else {
          throw .node(name, "expects an input of \(attributes.inChannels) channels, gets per-image shape \(s)")
        }
        guard planned[inSlots[0]].bits == (node.inputBits ?? 8) else {
          throw .node(name, "reads a \(planned[inSlots[0]].bits)-bit tensor as \(node.inputBits ?? 8)-bit")
        }
        let plan = Int8WideConvPlan(node: node, attributes: attributes, inHeight: s[0], inWidth: s[1])
        guard plan.outHeight > 0, plan.outWidth > 0 else {
          throw .node(name, "input \(s[0])x\(s[1]) is too small for this convolution")
        }
        step = .wideConv(plan, input: inSlots[0])
        shape = [plan.outHeight, plan.outWidth, plan.outChannels]
      case .conv2d(let attributes):
        // A flat [F] input (a fully-connected layer before the classifier, docs/quantization.md §24)
        // is read as [1, 1, F]; its output stays flat.
        let flat = inShapes[0].count == 1
        let s = flat ? [1, 1] + inShapes[0] : inShapes[0]
        guard s.count == 3, s[2] == attributes.inChannels else {
          throw .node(name, "expects an input of \(attributes.inChannels) channels, gets per-image shape \(s)")
        }
        let plan = Int8ConvPlan(node: node, attributes: attributes, inHeight: s[0], inWidth: s[1])
        guard plan.outHeight > 0, plan.outWidth > 0 else {
          throw .node(name, "input \(s[0])x\(s[1]) is too small for this convolution")
        }
        guard !flat || (plan.outHeight == 1 && plan.outWidth == 1) else {
          throw .node(name, "a convolution over a flat input must give one pixel (a 1x1 kernel, no padding)")
        }
        step = .conv(plan, input: inSlots[0])
        shape = flat ? [plan.outChannels] : [plan.outHeight, plan.outWidth, plan.outChannels]
      case .add(let a):
        guard inShapes[0] == inShapes[1] else { throw .node(name, "adds \(inShapes[0]) to \(inShapes[1])") }
        step = .add(
          inSlots[0], inSlots[1], zeroPointA: a.inputA.zeroPoint, zeroPointB: a.inputB.zeroPoint, a.multipliers,
          outputZeroPoint: node.output.zeroPoint, lo: a.clampLo, hi: a.clampHi)
        shape = inShapes[0]
      case .maxPool(let a):
        let s = inShapes[0]
        guard s.count == 3 else { throw .node(name, "expects an NHWC input, gets per-image shape \(s)") }
        guard node.output == planned[inSlots[0]].quantization else {
          throw .node(name, "max pool must keep its input's quantization")
        }
        let (oh, ow) = WindowShape.outputSize(
          height: s[0], width: s[1], kernel: a.kernel, stride: a.stride, padding: a.padding)
        guard oh > 0, ow > 0 else { throw .node(name, "input \(s[0])x\(s[1]) is too small to pool") }
        step = .maxPool(kernel: a.kernel, stride: a.stride, padding: a.padding, input: inSlots[0])
        shape = [oh, ow, s[2]]
      case .globalAveragePool(let a):
        let s = inShapes[0]
        guard s.count == 3 else { throw .node(name, "expects an NHWC input, gets per-image shape \(s)") }
        step = .globalAveragePool(
          input: inSlots[0], inputZeroPoint: a.input.zeroPoint, a.requant, outputZeroPoint: node.output.zeroPoint)
        shape = [1, 1, s[2]]
      case .flatten:
        guard node.output == planned[inSlots[0]].quantization else {
          throw .node(name, "flatten must keep its input's quantization")
        }
        step = .flatten(input: inSlots[0])
        shape = [inShapes[0].reduce(1, *)]
      case .linear(let a):
        let features = inShapes[0].reduce(1, *)
        guard features == a.inFeatures else {
          throw .node(name, "maps \(a.inFeatures) features, gets \(features) (\(inShapes[0]))")
        }
        step = .linear(Int8LinearPlan(node: node, attributes: a), input: inSlots[0])
        shape = [a.outFeatures]
      case .lookup(let table):
        step = .lookup(table, input: inSlots[0])
        shape = inShapes[0]
      case .mul(let a):
        let (sa, sb) = (inShapes[0], inShapes[1])
        let broadcastB = sa.count == 3 && sb == [1, 1, sa[2]] && sa != sb
        let broadcastA = sb.count == 3 && sa == [1, 1, sb[2]] && sa != sb
        guard sa == sb || broadcastA || broadcastB else {
          throw .node(name, "multiplies \(sa) by \(sb); mul takes equal shapes or [H, W, C] by [1, 1, C]")
        }
        // In the node's input order (`runNode` feeds them so); `execute` puts the larger first.
        step = .mul(
          inSlots[0], inSlots[1], zeroPointA: a.inputA.zeroPoint, zeroPointB: a.inputB.zeroPoint, a.requant,
          outputZeroPoint: node.output.zeroPoint)
        shape = broadcastA ? sb : sa
      case .concat(let a):
        let s = inShapes[0]
        guard inShapes.allSatisfy({ $0.count == 3 && $0[0] == s[0] && $0[1] == s[1] }) else {
          throw .node(name, "concatenates \(inShapes); concat takes [H, W, C] maps of one H and W")
        }
        step = .concat(
          inSlots, zeroPoints: a.inputs.map(\.zeroPoint), a.requant, outputZeroPoint: node.output.zeroPoint)
        shape = [s[0], s[1], inShapes.reduce(0) { $0 + $1[2] }]
      case .averagePool(let a):
        let s = inShapes[0]
        guard s.count == 3 else { throw .node(name, "expects an NHWC input, gets per-image shape \(s)") }
        let (oh, ow) = WindowShape.outputSize(
          height: s[0], width: s[1], kernel: a.kernel, stride: a.stride, padding: a.padding)
        guard oh > 0, ow > 0 else { throw .node(name, "input \(s[0])x\(s[1]) is too small to pool") }
        step = .averagePool(a, outputZeroPoint: node.output.zeroPoint, input: inSlots[0])
        shape = [oh, ow, s[2]]
      }
      if node.inputBits != 16, let s = inSlots.first(where: { planned[$0].bits != 8 }) {
        throw .node(name, "reads the 16-bit tensor '\(planned[s].name)' but its input is not 16-bit")
      }
      slotOf[name] = planned.count
      planned.append(
        PlannedStep(
          step: step, name: name, shape: shape, quantization: node.output, release: [], bits: node.outputBits ?? 8))
    }
    let outIndex = slotOf[model.output]!
    guard outIndex == planned.count - 1 else {
      throw .node(model.output, "the classifier must be the last node; nodes after it would never be used")
    }
    var lastReader: [Int: Int] = [:]
    for (i, p) in planned.enumerated() { for s in Self.inputs(of: p.step) { lastReader[s] = i } }
    for (s, i) in lastReader { planned[i].release.append(s) }
    steps = planned
    classes = planned[outIndex].shape[0]
    logitScale = planned[outIndex].quantization.scale
  }

  static func inputs(of step: Step) -> [Int] {
    switch step {
    case .quantizeInput: []
    case .conv(_, let input), .wideConv(_, let input), .maxPool(_, _, _, let input),
      .globalAveragePool(let input, _, _, _),
      .flatten(let input), .linear(_, let input), .lookup(_, let input), .averagePool(_, _, let input):
      [input]
    case .add(let a, let b, _, _, _, _, _, _), .mul(let a, let b, _, _, _, _): [a, b]
    case .concat(let inputs, _, _, _): inputs
    }
  }

  /// The names of the uint8 tensors `run(_:observe:)` reports, in order (every node but the
  /// classifier, the 16-bit twins, and a pixel input, which is the image itself, not a quantized
  /// float tensor).
  public var observableNames: [String] {
    steps.dropLast().filter {
      if case .quantizeInput(_, _?) = $0.step { false } else { $0.bits == 8 }
    }.map(\.name)
  }

  /// Runs the network on `input` `[N, S, S, 3]` and returns int32 logits `[N, classes]`.
  /// `observe`, when given, sees every node's uint8 output `[N, …]` with its quantization, under the
  /// node's name (the float graph's name for the same tensor). `observe16` sees the int16 tensors of
  /// 16-bit twins (docs/quantization.md §17), `[N, …]` flattened, which `observe` does not.
  public func run(_ input: Tensor, observe: ((String, QuantizedTensor) -> Void)? = nil) -> Int32Logits {
    run(input, observe: observe, observe16: nil)
  }

  public func run(
    _ input: Tensor, observe: ((String, QuantizedTensor) -> Void)?, observe16: ((String, [Int16]) -> Void)?
  ) -> Int32Logits {
    precondition(
      input.rank == 4 && Array(input.shape.dropFirst()) == inputShape,
      "input shape \(input.shape) does not match [N, \(inputShape.map(String.init).joined(separator: ", "))]")
    let batch = input.shape[0]
    var values = [[UInt8]?](repeating: nil, count: steps.count)
    var values16 = [[Int16]?](repeating: nil, count: steps.count)
    var logits = [Int32](repeating: 0, count: batch * classes)
    for (index, p) in steps.enumerated() {
      if case .wideConv(let plan, let input) = p.step {
        // docs/quantization.md §17: a 16-bit input or output, computed in Int32 codes.
        let perImage = p.shape.reduce(1, *)
        let x: [Int32] = plan.inputBits == 16 ? values16[input]!.map(Int32.init) : values[input]!.map(Int32.init)
        var y = [Int32](repeating: 0, count: batch * perImage)
        forEachImage(x, &y, batch: batch) { x, y in plan.run(x, y) }
        if plan.outputBits == 16 {
          let codes = y.map { Int16($0) }
          observe16?(p.name, codes)
          values16[index] = codes
        } else {
          let out = y.map { UInt8($0) }
          observe?(p.name, QuantizedTensor(shape: [batch] + p.shape, values: out, quantization: p.quantization))
          values[index] = out
        }
        for s in p.release {
          values[s] = nil
          values16[s] = nil
        }
        continue
      }
      let out = execute(p, values: values, input: input, batch: batch, logits: &logits)
      if let out {
        // An exact-input model's first tensor is the image itself (§12): not a quantized activation to observe.
        if case .quantizeInput(_, _?) = p.step {
        } else {
          observe?(p.name, QuantizedTensor(shape: [batch] + p.shape, values: out, quantization: p.quantization))
        }
        values[index] = out
      }
      for s in p.release {
        values[s] = nil
        values16[s] = nil
      }
    }
    return Int32Logits(shape: [batch, classes], values: logits, scale: logitScale)
  }

  /// Runs the network on a batch of inputs already quantized by the `quantize_input` node (uint8
  /// `[N, S, S, 3]` flattened, `batch` images), `threads` images at a time (each image's integers
  /// are those of `run`: images are independent). Before each conv2d and linear node, `biases` sees
  /// the node's name and its uint8 input `[N, …]`; when it returns an array, the node runs with
  /// those int32 biases instead of its own (same count). Bias correction uses this to correct the
  /// layers one after the other, each seeing the corrected layers before it. Models with 16-bit
  /// layers (§17) are not supported here.
  public func run(
    quantized input: [UInt8], batch: Int, threads: Int = 1,
    biases: (String, QuantizedTensor) throws -> [Int32]?
  ) rethrows -> Int32Logits {
    precondition(input.count == batch * inputShape.reduce(1, *), "expected \(batch) images of \(inputShape)")
    var values = [[UInt8]?](repeating: nil, count: steps.count)
    var logits = [Int32](repeating: 0, count: batch * classes)
    for (index, p) in steps.enumerated() {
      var bias: [Int32]? = nil
      switch p.step {
      case .quantizeInput:
        values[index] = input
        continue
      case .conv(let plan, let i):
        bias = try biases(p.name, tensor(i, values, batch: batch))
        if let bias { precondition(bias.count == plan.bias.count, "'\(p.name)': \(bias.count) biases") }
      case .linear(let plan, let i):
        bias = try biases(p.name, tensor(i, values, batch: batch))
        if let bias { precondition(bias.count == plan.bias.count, "'\(p.name)': \(bias.count) biases") }
      case .wideConv:
        preconditionFailure("'\(p.name)' is a 16-bit layer: run(quantized:) takes 8-bit models only")
      default: break
      }
      if let out = execute(
        p, values: values, input: nil, batch: batch, logits: &logits, threads: threads, bias: bias)
      {
        values[index] = out
      }
      for s in p.release { values[s] = nil }
    }
    return Int32Logits(shape: [batch, classes], values: logits, scale: logitScale)
  }

  /// What the `quantize_input` node makes of `input` `[N, S, S, 3]`: the uint8 values `run(quantized:)`
  /// takes (the pixels themselves for an exact-input model, §12).
  public func quantizeInput(_ input: Tensor) -> [UInt8] {
    guard case .quantizeInput(let q, let pixels) = steps[0].step else {
      preconditionFailure("the first step quantizes the input")
    }
    if let pixels { return input.scalars.enumerated().map { pixels.pixel($0.element, channel: $0.offset % 3) } }
    return input.scalars.map { q.quantize($0) }
  }

  /// Step `index`'s output as a tensor `[N, …]` (the array is shared, not copied).
  private func tensor(_ index: Int, _ values: [[UInt8]?], batch: Int) -> QuantizedTensor {
    QuantizedTensor(
      shape: [batch] + steps[index].shape, values: values[index]!, quantization: steps[index].quantization)
  }

  /// One node's output: uint8 for every node but the classifier, whose output is the int32 logits.
  public enum NodeOutput: Sendable, Equatable {
    case uint8(QuantizedTensor)
    case int32(Int32Logits)

    /// The real values (`s · (q − z)`, or `scale · logit`), `[N, …]`.
    public func dequantized() -> Tensor {
      switch self {
      case .uint8(let t): t.dequantized()
      case .int32(let t): t.dequantized()
      }
    }
  }

  /// The per-image output shape of node `name` (`[H, W, C]`, or `[C]` after a flatten and for the
  /// classifier), nil when the model has no such node.
  public func outputShape(of name: String) -> [Int]? {
    steps.first { $0.name == name }?.shape
  }

  /// Runs the single node `name` with the same integer kernel as `run`, on given inputs instead of
  /// its producers' outputs: `inputs` in the node's `inputs` order, each `[N, …]` uint8 in the
  /// quantization its producer writes (the node's input quantization). `quantize_input` reads
  /// `floatInput`, the preprocessed `[N, S, S, 3]`, instead. For local error and sensitivity
  /// analysis: one layer fed values that did not come from the integer network.
  public func runNode(_ name: String, inputs: [QuantizedTensor], floatInput: Tensor? = nil) -> NodeOutput {
    guard let index = steps.firstIndex(where: { $0.name == name }) else {
      preconditionFailure("the int8 model has no node '\(name)'")
    }
    let p = steps[index]
    let slots = Self.inputs(of: p.step)
    precondition(slots.count == inputs.count, "node '\(name)' reads \(slots.count) inputs, \(inputs.count) given")
    let batch: Int
    if case .quantizeInput = p.step {
      guard let floatInput, floatInput.rank == 4, Array(floatInput.shape.dropFirst()) == inputShape else {
        preconditionFailure("node '\(name)' quantizes the network input: give floatInput [N, \(inputShape)]")
      }
      batch = floatInput.shape[0]
    } else {
      batch = inputs[0].shape[0]
    }
    var values = [[UInt8]?](repeating: nil, count: steps.count)
    for (slot, tensor) in zip(slots, inputs) {
      precondition(
        tensor.shape == [batch] + steps[slot].shape && tensor.quantization == steps[slot].quantization,
        "node '\(name)': input '\(steps[slot].name)' must be \([batch] + steps[slot].shape) in \(steps[slot].quantization), got \(tensor.shape) in \(tensor.quantization)"
      )
      values[slot] = tensor.values
    }
    var logits = [Int32](repeating: 0, count: batch * classes)
    if let out = execute(p, values: values, input: floatInput, batch: batch, logits: &logits) {
      return .uint8(QuantizedTensor(shape: [batch] + p.shape, values: out, quantization: p.quantization))
    }
    return .int32(Int32Logits(shape: [batch, classes], values: logits, scale: logitScale))
  }

  /// Computes step `p` from `values` (its inputs' slots filled) for `batch` images: its uint8 output,
  /// or nil for the classifier, which writes `logits`. `input` is the float network input, read by
  /// `quantize_input` only.
  private func execute(
    _ p: PlannedStep, values: [[UInt8]?], input: Tensor?, batch: Int, logits: inout [Int32], threads: Int = 1,
    bias: [Int32]? = nil
  ) -> [UInt8]? {
    let perImage = p.shape.reduce(1, *)
    var out = [UInt8](repeating: 0, count: batch * perImage)
    switch p.step {
    case .quantizeInput(let q, nil):
      let input = input!
      for i in 0..<out.count { out[i] = q.quantize(input.scalars[i]) }
    case .quantizeInput(_, let pixels?):
      // docs/quantization.md §12: p = round((x · std_c + mean_c) · 255), NHWC so c = i mod 3.
      let input = input!
      for i in 0..<out.count { out[i] = pixels.pixel(input.scalars[i], channel: i % 3) }
    case .conv(var plan, let input):
      if let bias { plan.bias = bias }
      let conv = plan
      forEachImage(values[input]!, &out, batch: batch, threads: threads) { x, out in conv.run(x, out) }
    case .wideConv(let plan, let input):
      // One node on given uint8 inputs (`runNode`): 16-bit tensors are `run`'s alone (§17).
      precondition(
        plan.inputBits == 8 && plan.outputBits == 8, "node '\(p.name)' reads or writes a 16-bit tensor")
      var y = [Int32](repeating: 0, count: batch * perImage)
      forEachImage(values[input]!.map(Int32.init), &y, batch: batch) { x, y in plan.run(x, y) }
      out = y.map { UInt8($0) }
    case .add(let a, let b, let za, let zb, let multipliers, let zOut, let lo, let hi):
      values[a]!.withUnsafeBufferPointer { a in
        values[b]!.withUnsafeBufferPointer { b in
          out.withUnsafeMutableBufferPointer { out in
            int8Add(
              a, b, out, zeroPointA: za, zeroPointB: zb, multipliers: multipliers, outputZeroPoint: zOut,
              lo: lo, hi: hi)
          }
        }
      }
    case .maxPool(let kernel, let stride, let padding, let input):
      let s = steps[input].shape
      forEachImage(values[input]!, &out, batch: batch, threads: threads) { x, out in
        int8MaxPool(
          x, out, height: s[0], width: s[1], channels: s[2], kernel: kernel, stride: stride, padding: padding,
          outHeight: p.shape[0], outWidth: p.shape[1])
      }
    case .globalAveragePool(let input, let zIn, let requant, let zOut):
      let s = steps[input].shape
      forEachImage(values[input]!, &out, batch: batch, threads: threads) { x, out in
        int8GlobalAveragePool(
          x, out, pixels: s[0] * s[1], channels: s[2], inputZeroPoint: zIn, requant: requant,
          outputZeroPoint: zOut)
      }
    case .flatten(let input):
      out = values[input]!
    case .linear(var plan, let input):
      if let bias { plan.bias = bias }
      let linear = plan
      forEachImage(values[input]!, &logits, batch: batch, threads: threads) { x, logits in linear.run(x, logits) }
      return nil
    case .lookup(let table, let input):
      values[input]!.withUnsafeBufferPointer { x in
        out.withUnsafeMutableBufferPointer { out in int8Lookup(x, out, table: table) }
      }
    case .mul(let a0, let b0, let za0, let zb0, let requant, let zOut):
      // The product is symmetric: the operand of the output's shape goes first, a [1, 1, C] factor second.
      let swap = steps[a0].shape != p.shape
      let (a, b, za, zb) = swap ? (b0, a0, zb0, za0) : (a0, b0, za0, zb0)
      let channels = p.shape.last!
      let broadcast = steps[b].shape != p.shape
      let perImage = out.count / batch
      let factor = broadcast ? channels : perImage
      values[a]!.withUnsafeBufferPointer { x in
        values[b]!.withUnsafeBufferPointer { y in
          out.withUnsafeMutableBufferPointer { out in
            for n in 0..<batch {
              // Image n's factor: the [C] slice of b (broadcast), or b's own image.
              int8Mul(
                UnsafeBufferPointer(rebasing: x[(n * perImage)..<((n + 1) * perImage)]),
                UnsafeBufferPointer(rebasing: y[(n * factor)..<((n + 1) * factor)]),
                UnsafeMutableBufferPointer(rebasing: out[(n * perImage)..<((n + 1) * perImage)]),
                channels: channels, zeroPointX: za, zeroPointY: zb, requant: requant, outputZeroPoint: zOut)
            }
          }
        }
      }
    case .concat(let inputs, let zeroPoints, let requant, let zOut):
      let total = p.shape[2]
      let pixels = p.shape[0] * p.shape[1]
      var offset = 0
      for (i, input) in inputs.enumerated() {
        let channels = steps[input].shape[2]
        values[input]!.withUnsafeBufferPointer { x in
          out.withUnsafeMutableBufferPointer { out in
            for n in 0..<batch {
              int8ConcatInto(
                UnsafeBufferPointer(rebasing: x[(n * pixels * channels)..<((n + 1) * pixels * channels)]),
                UnsafeMutableBufferPointer(rebasing: out[(n * pixels * total)..<((n + 1) * pixels * total)]),
                channels: channels, offset: offset, total: total, inputZeroPoint: zeroPoints[i],
                requant: requant[i], outputZeroPoint: zOut)
            }
          }
        }
        offset += channels
      }
    case .averagePool(let a, let zOut, let input):
      let s = steps[input].shape
      forEachImage(values[input]!, &out, batch: batch, threads: threads) { x, out in
        int8AveragePool(
          x, out, height: s[0], width: s[1], channels: s[2], attributes: a, outputZeroPoint: zOut,
          outHeight: p.shape[0], outWidth: p.shape[1])
      }
    }
    return out
  }
}

/// Calls `body` once per image of a batch with that image's slice of `input` and of `output` (both
/// split evenly into `batch` images), `threads` images at a time.
private func forEachImage<In, Out>(
  _ input: [In], _ output: inout [Out], batch: Int, threads: Int = 1,
  _ body: (UnsafeBufferPointer<In>, UnsafeMutableBufferPointer<Out>) -> Void
) {
  let inSize = input.count / batch
  let outSize = output.count / batch
  input.withUnsafeBufferPointer { x in
    output.withUnsafeMutableBufferPointer { out in
      if threads <= 1 || batch <= 1 {
        for n in 0..<batch {
          body(
            UnsafeBufferPointer(rebasing: x[(n * inSize)..<((n + 1) * inSize)]),
            UnsafeMutableBufferPointer(rebasing: out[(n * outSize)..<((n + 1) * outSize)]))
        }
      } else {
        // Images write disjoint slices of `out`; each image's integers do not depend on the others.
        let chunks = Swift.min(threads, batch)
        nonisolated(unsafe) let x = x
        nonisolated(unsafe) let out = out
        withoutActuallyEscaping(body) { body in
          nonisolated(unsafe) let body = body
          DispatchQueue.concurrentPerform(iterations: chunks) { t in
            for n in stride(from: t, to: batch, by: chunks) {
              body(
                UnsafeBufferPointer(rebasing: x[(n * inSize)..<((n + 1) * inSize)]),
                UnsafeMutableBufferPointer(rebasing: out[(n * outSize)..<((n + 1) * outSize)]))
            }
          }
        }
      }
    }
  }
}
