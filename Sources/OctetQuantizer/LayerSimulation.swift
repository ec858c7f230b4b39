import OctetCore
import OctetInt8
import OctetModels

/// One int8 layer run alone: its float inputs quantized with the quantization the layer reads, the
/// integer reference kernel of the node (`Int8ReferenceExecutor.runNode`), and its output
/// dequantized. The same on every CPU, whichever backend runs the rest.
///
/// The local error of a layer (docs/debugging.md) compares this with the float layer's output on
/// the same float inputs; sensitivity analysis (`SensitivityAnalysis`) puts it in place of the float
/// layer's output.
public struct LayerSimulation: Sendable {
  public let model: QuantizedModel
  public let reference: Int8ReferenceExecutor
  /// Each node's output quantization, which is also how every reader of that tensor reads it.
  let quantizationOf: [String: ActivationQuantization]
  let nodes: [String: QuantizedNode]

  public init(model: QuantizedModel) throws {
    self.model = model
    reference = try Int8ReferenceExecutor(model: model)
    quantizationOf = Dictionary(model.nodes.map { ($0.name, $0.output) }, uniquingKeysWith: { a, _ in a })
    nodes = Dictionary(model.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
  }

  /// The dequantized output `[N, …]` of int8 node `name` fed `floatInputs`: the float values of its
  /// inputs in the node's `inputs` order (each `[N, …]` with the element count of that tensor), or
  /// for `quantize_input` the one preprocessed network input `[N, S, S, 3]`. The classifier gives its
  /// int32 logits times their scale.
  public func simulate(_ name: String, floatInputs: [Tensor]) -> Tensor {
    guard let node = nodes[name] else { preconditionFailure("the int8 model has no node '\(name)'") }
    if node.op == .quantizeInput {
      precondition(floatInputs.count == 1, "'\(name)' reads the network input alone")
      return reference.runNode(name, inputs: [], floatInput: floatInputs[0]).dequantized()
    }
    precondition(floatInputs.count == node.inputs.count, "'\(name)' reads \(node.inputs.count) inputs")
    let inputs = zip(node.inputs, floatInputs).map { input, tensor in
      let q = quantizationOf[input]!
      let shape = reference.outputShape(of: input)!
      let perImage = shape.reduce(1, *)
      precondition(
        tensor.count % perImage == 0 && tensor.count > 0,
        "'\(name)': input '\(input)' has \(tensor.count) values, not a multiple of \(shape)")
      // An exact-input model's first tensor is the uint8 image, recovered from the float input (§12).
      let values =
        nodes[input]?.pixelInput.map { pixels in
          tensor.scalars.enumerated().map { pixels.pixel($0.element, channel: $0.offset % 3) }
        } ?? tensor.scalars.map(q.quantize)
      return QuantizedTensor(shape: [tensor.count / perImage] + shape, values: values, quantization: q)
    }
    return reference.runNode(name, inputs: inputs).dequantized()
  }
}

/// The cost of a layer, to weigh precision choices (`--a16-budget`) and to read the sensitivity
/// ranking.
public enum LayerCost {
  /// Multiply-adds per image of `node` producing a per-image output of `outputShape` (`[H, W, C]`,
  /// or `[C]`): H · W · C · kh · kw · I/groups for a convolution, I · O for the classifier, 0 for
  /// operators without weights (input quantization, add, pools, flatten).
  public static func macs(of node: QuantizedNode, outputShape: [Int]) -> Int {
    switch node.op {
    case .conv2d: outputShape.reduce(1, *) * node.weightsPerChannel
    case .linear: (node.inChannels ?? 0) * (node.outChannels ?? 0)
    case .quantizeInput, .add, .maxPool, .globalAveragePool, .flatten, .lookup, .mul, .concat, .averagePool: 0
    }
  }

  /// Multiply-adds per image of every node of `model`, by node name, for its input size.
  public static func macs(of model: QuantizedModel) throws -> [String: Int] {
    let executor = try Int8ReferenceExecutor(model: model)
    var result: [String: Int] = [:]
    for node in model.nodes {
      result[node.name] = macs(of: node, outputShape: executor.outputShape(of: node.name) ?? [])
    }
    return result
  }
}
