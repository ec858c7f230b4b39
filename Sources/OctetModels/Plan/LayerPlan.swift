import OctetCore

/// The one description of how a float graph becomes layers, for the float executor, calibration,
/// the quantizer and (through the names it gives) the int8 model and the drift report:
///
/// - **Fusion.** A convolution takes the batch_norm that is its only reader, then the relu/relu6
///   that is the only reader of that; an add takes the relu/relu6 that is its only reader. A value
///   that is the graph's output is never fused away. Residual adds stay layers of their own here (so
///   calibration sees the convolution's output before the add, which the int8 graph quantizes); an
///   executor may fuse them afterwards by `ResidualAddFusion`. batch_norm and relu/relu6 that follow
///   anything else stay layers of their own (the float executor runs them; the quantizer refuses a
///   batch_norm and makes a relu/relu6 a lookup table, docs/quantization.md §20).
/// - **Names** (docs/quantization.md §15). A layer, and the tensor it produces, is named by its last
///   member: `layer1.0.relu1`, `layer1.0.bn3` (before the residual add), `_blocks.3._bn1.relu6`,
///   `layer1.0.relu3` (add + ReLU), `_blocks.2.add`; max pool, global average pool, flatten and the
///   classifier keep their own names. The graph input is `input`.
/// - **Shapes.** Per image: `[S, S, 3]` in, `[H, W, C]` through convolutions and pools
///   (`WindowShape`, padding resolved for the input size), `[1, 1, C]` after global average pool,
///   `[features]` after flatten, `[classes]` out of the classifier. Every shape is checked here.
public struct LayerPlan: Sendable {
  /// Per-image shape of the graph input, [S, S, 3].
  public let inputShape: [Int]
  /// Layers in execution order.
  public let layers: [PlannedLayer]
  /// Index of the layer whose tensor is the graph output.
  public let output: Int

  /// Index of the tensor of float node `name` (`LayerInput.graphInput` for `input`); nil if no layer
  /// computes it.
  public let layerOf: [String: Int]

  public init(model: Model) throws(GraphPlanError) {
    let graph = model.graph
    do { try graph.validate() } catch { throw .layer(graph.output, error.description) }
    let size = model.info.inputSize
    inputShape = [size, size, 3]
    let nodeByName = Dictionary(uniqueKeysWithValues: graph.nodes.map { ($0.name, $0) })
    var consumers: [String: [String]] = [:]
    for node in graph.nodes { for input in node.inputs { consumers[input, default: []].append(node.name) } }
    func soleConsumer(_ name: String) -> Node? {
      guard name != graph.output, let c = consumers[name], c.count == 1 else { return nil }
      return nodeByName[c[0]]
    }
    func activation(after name: String) -> (node: Node, activation: FusedActivation)? {
      guard let next = soleConsumer(name) else { return nil }
      switch next.op {
      case .relu: return (next, .relu)
      case .relu6: return (next, .relu6)
      default: return nil
      }
    }

    var layers: [PlannedLayer] = []
    var layerOf: [String: Int] = [Graph.inputName: LayerInput.graphInput]
    var consumed: Set<String> = []
    func shape(of index: Int) -> [Int] { index == LayerInput.graphInput ? [size, size, 3] : layers[index].shape }

    for node in graph.nodes where !consumed.contains(node.name) {
      let name = node.name
      let op = try node.checkedOperator()
      var inputIndices: [Int] = []
      for input in node.inputs {
        guard let i = layerOf[input] else { throw .layer(name, "input '\(input)' is not computed before it") }
        inputIndices.append(i)
      }
      let inShapes = inputIndices.map(shape(of:))
      let s = inShapes[0]
      var members = [name]
      let operation: PlannedLayer.Operation
      let outShape: [Int]
      switch op {
      case .conv2d(let attributes):
        var batchNorm: NamedBatchNorm? = nil
        if let bn = soleConsumer(name), bn.op == .batchNorm, case .batchNorm(let a) = try bn.checkedOperator() {
          batchNorm = NamedBatchNorm(name: bn.name, attributes: a)
          members.append(bn.name)
        }
        var fusedActivation: FusedActivation? = nil
        var clampMax: String? = nil
        if let next = activation(after: members.last!) {
          fusedActivation = next.activation
          clampMax = next.node.clampMax
          members.append(next.node.name)
        }
        var conv = try ConvLayer(
          node: node, attributes: attributes, batchNorm: batchNorm, activation: fusedActivation, input: s,
          weights: model.weights)
        if let clampMax {
          guard let t = model.weights[clampMax], t.elementCount == conv.outChannels else {
            throw .layer(
              members.last!, "per-channel bound tensor '\(clampMax)' is missing or not [\(conv.outChannels)]")
          }
          guard t.floats().allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw .layer(
              members.last!, "per-channel bound tensor '\(clampMax)' holds a value that is not finite and > 0")
          }
          conv.clampMax = clampMax
        }
        operation = .conv(conv)
        outShape = [conv.outHeight, conv.outWidth, conv.outChannels]
      case .add:
        guard inShapes[0] == inShapes[1] else { throw .layer(name, "adds \(inShapes[0]) to \(inShapes[1])") }
        var fusedActivation: FusedActivation? = nil
        if let next = activation(after: name) {
          guard next.node.clampMax == nil else {
            throw .layer(next.node.name, "per-channel relu6 bounds are supported after a convolution only")
          }
          fusedActivation = next.activation
          members.append(next.node.name)
        }
        operation = .add(fusedActivation)
        outShape = s
      case .batchNorm(let attributes):
        operation = .batchNorm(attributes)
        outShape = s
      case .relu, .relu6:
        guard node.clampMax == nil else {
          throw .layer(name, "per-channel relu6 bounds are supported after a convolution only")
        }
        operation = .activation(op == .relu ? .relu : .relu6)
        outShape = s
      case .maxPool(let attributes):
        guard s.count == 3 else { throw .layer(name, "expects an NHWC input, gets per-image shape \(s)") }
        let pads = node.resolvedPadding(height: s[0], width: s[1])
        let (oh, ow) = WindowShape.outputSize(
          height: s[0], width: s[1], kernel: attributes.kernel, stride: attributes.stride, padding: pads)
        guard oh > 0, ow > 0 else { throw .layer(name, "input \(s[0])x\(s[1]) is too small to pool") }
        operation = .maxPool(kernel: attributes.kernel, stride: attributes.stride, padding: pads)
        outShape = [oh, ow, s[2]]
      case .globalAveragePool:
        guard s.count == 3 else { throw .layer(name, "expects an NHWC input, gets per-image shape \(s)") }
        operation = .globalAveragePool
        outShape = [1, 1, s[2]]
      case .flatten:
        operation = .flatten
        outShape = [s.reduce(1, *)]
      case .linear(let attributes):
        let features = s.reduce(1, *)
        guard let wt = model.weights[attributes.weight], wt.shape.count == 2, wt.shape[1] == features else {
          throw .layer(name, "weight '\(attributes.weight)' does not map \(features) features")
        }
        operation = .linear(LinearLayer(attributes: attributes, inFeatures: features, outFeatures: wt.shape[0]))
        outShape = [wt.shape[0]]
      case .unary(let function):
        operation = .unary(function)
        outShape = s
      case .mul:
        // The same shape, or a [1, 1, C] factor over [H, W, C] (squeeze-and-excitation), either side.
        let (a, b) = (inShapes[0], inShapes[1])
        guard a == b || (a.count == 3 && b == [1, 1, a[2]]) || (b.count == 3 && a == [1, 1, b[2]]) else {
          throw .layer(name, "multiplies \(a) by \(b); mul takes equal shapes or [H, W, C] by [1, 1, C]")
        }
        operation = .mul
        outShape = a.reduce(1, *) >= b.reduce(1, *) ? a : b
      case .concat:
        guard inShapes.allSatisfy({ $0.count == 3 && $0[0] == s[0] && $0[1] == s[1] }) else {
          throw .layer(name, "concatenates \(inShapes); concat takes [H, W, C] maps of one H and W (channels)")
        }
        operation = .concat
        outShape = [s[0], s[1], inShapes.reduce(0) { $0 + $1[2] }]
      case .averagePool(let attributes, let countIncludePad):
        guard s.count == 3 else { throw .layer(name, "expects an NHWC input, gets per-image shape \(s)") }
        let pads = node.resolvedPadding(height: s[0], width: s[1])
        let k = attributes.kernel
        guard k[0] <= 1 << 16, k[1] <= 1 << 16, k[0] * k[1] <= 1 << 16 else {
          throw .layer(name, "window \(k) has more than 2^16 taps")
        }
        guard pads[0] < attributes.kernel[0], pads[2] < attributes.kernel[0], pads[1] < attributes.kernel[1],
          pads[3] < attributes.kernel[1]
        else { throw .layer(name, "padding \(pads) is not smaller than the window \(attributes.kernel)") }
        let (oh, ow) = WindowShape.outputSize(
          height: s[0], width: s[1], kernel: attributes.kernel, stride: attributes.stride, padding: pads)
        guard oh > 0, ow > 0 else { throw .layer(name, "input \(s[0])x\(s[1]) is too small to pool") }
        operation = .averagePool(
          kernel: attributes.kernel, stride: attributes.stride, padding: pads, countIncludePad: countIncludePad)
        outShape = [oh, ow, s[2]]
      }
      consumed.formUnion(members)
      for member in members { layerOf[member] = layers.count }
      layers.append(
        PlannedLayer(
          operation: operation, node: node, members: members, inputs: inputIndices, inputShapes: inShapes,
          shape: outShape))
    }
    guard let out = layerOf[graph.output], out != LayerInput.graphInput else {
      throw .layer(graph.output, "the graph output is never computed")
    }
    self.layers = layers
    self.layerOf = layerOf
    output = out
  }

  /// The tensor name of input `i` of `layer` (`input` for the graph input).
  public func inputName(_ layer: PlannedLayer, _ i: Int) -> String {
    let index = layer.inputs[i]
    return index == LayerInput.graphInput ? Graph.inputName : layers[index].name
  }

  /// The residual adds the float executor fuses into the convolution before them: the rule of
  /// `ResidualAddFusion`, for convolutions without a fused activation (the float epilogue adds
  /// before it activates). Add layer index → convolution layer index.
  public func floatResidualAddFusions() -> [Int: Int] {
    ResidualAddFusion.pairs(
      count: layers.count, inputs: { layers[$0].inputs }, output: output,
      isAdd: { if case .add = layers[$0].operation { true } else { false } },
      canTakeResidual: { if case .conv(let c) = layers[$0].operation { c.activation == nil } else { false } })
  }
}

/// Where a layer's input comes from: a layer index, or the graph input.
public enum LayerInput {
  public static let graphInput = -1
}

/// One layer of a `LayerPlan`: a float node and the nodes fused into it.
public struct PlannedLayer: Sendable {
  public enum Operation: Sendable {
    /// Convolution (+ batch_norm) (+ relu/relu6).
    case conv(ConvLayer)
    /// Residual add (+ relu/relu6).
    case add(FusedActivation?)
    /// A batch_norm that follows something other than a convolution (float only).
    case batchNorm(BatchNormAttributes)
    /// A relu/relu6 that follows something other than a convolution or an add (float only).
    case activation(FusedActivation)
    /// Padding resolved, [top, left, bottom, right].
    case maxPool(kernel: [Int], stride: [Int], padding: [Int])
    case globalAveragePool
    case flatten
    case linear(LinearLayer)
    /// sigmoid, hard_sigmoid, hard_swish, leaky_relu: a lookup table in the integer graph (§20).
    case unary(UnaryFunction)
    /// Elementwise product; the second input may be a [1, 1, C] factor (§21).
    case mul
    /// Channel concatenation (§22).
    case concat
    /// k x k average pool, padding resolved [top, left, bottom, right] (§23).
    case averagePool(kernel: [Int], stride: [Int], padding: [Int], countIncludePad: Bool)
  }

  public var operation: Operation
  /// The first float node of the layer (the convolution, add, …).
  public var node: Node
  /// The float nodes this layer computes, first to last.
  public var members: [String]
  /// Layer indices of the inputs, in the node's input order (`LayerInput.graphInput`: the graph input).
  public var inputs: [Int]
  /// Per-image shapes of the inputs.
  public var inputShapes: [[Int]]
  /// Per-image shape of the output: [H, W, C] or [C].
  public var shape: [Int]

  /// The layer's name, which is its tensor's name: its last member (docs/quantization.md §15).
  public var name: String { members.last! }
}

public struct NamedBatchNorm: Sendable {
  public var name: String
  public var attributes: BatchNormAttributes
}

/// A convolution layer with its geometry resolved for the plan's input size.
public struct ConvLayer: Sendable {
  public var attributes: ConvAttributes
  public var batchNorm: NamedBatchNorm?
  public var activation: FusedActivation?
  /// With a relu6 activation: the weight tensor of its per-channel upper bounds (`Node.clampMax`,
  /// checked here: `[outChannels]`, finite, > 0), which replace 6; nil: the plain ReLU6.
  public var clampMax: String?
  public var inChannels: Int, outChannels: Int
  /// From the weight, OIHW.
  public var kernelH: Int, kernelW: Int
  /// [top, left, bottom, right]
  public var padding: [Int]
  public var outHeight: Int, outWidth: Int

  init(
    node: Node, attributes: ConvAttributes, batchNorm: NamedBatchNorm?, activation: FusedActivation?, input s: [Int],
    weights: TensorDictionary
  ) throws(GraphPlanError) {
    let name = node.name
    guard s.count == 3 else { throw .layer(name, "expects an NHWC input, gets per-image shape \(s)") }
    guard let wt = weights[attributes.weight], wt.shape.count == 4 else {
      throw .layer(name, "weight '\(attributes.weight)' is missing or not OIHW")
    }
    let groups = attributes.groups
    let (o, ig, kh, kw) = (wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3])
    guard ig * groups == s[2], o % groups == 0, (attributes.kernel ?? [kh, kw]) == [kh, kw] else {
      throw .layer(name, "weight shape \(wt.shape) with \(groups) groups does not fit an input of \(s[2]) channels")
    }
    let pads = node.resolvedPadding(height: s[0], width: s[1])
    let (oh, ow) = WindowShape.outputSize(
      height: s[0], width: s[1], kernel: [kh, kw], stride: attributes.stride, padding: pads,
      dilation: attributes.dilation)
    guard oh > 0, ow > 0 else { throw .layer(name, "input \(s[0])x\(s[1]) is too small for this convolution") }
    self.attributes = attributes
    self.batchNorm = batchNorm
    self.activation = activation
    inChannels = s[2]
    outChannels = o
    kernelH = kh
    kernelW = kw
    padding = pads
    outHeight = oh
    outWidth = ow
  }
}

/// The classifier with its feature counts.
public struct LinearLayer: Sendable {
  public var attributes: LinearAttributes
  public var inFeatures: Int
  public var outFeatures: Int
}
