import OctetCore

/// torchvision's MobileNetV2, in its layout and names, any width multiplier and number of classes.
///
/// `features.0` is the stem (3x3/2 conv → BN → ReLU6); `features.1…features.17` are inverted
/// residual blocks: an optional 1x1 expansion (`conv.0.0`, `conv.0.1`, ReLU6; absent in block 1,
/// whose expand ratio is 1), a 3x3 depthwise conv (→ BN → ReLU6), and a linear 1x1 projection (no
/// activation: the linear bottleneck), with the input added back when the stride is 1 and the width
/// unchanged; `features.18` is the 1x1 head (→ BN → ReLU6); then global average pool, dropout
/// (nothing at inference) and `classifier.1`. Widths come from the tensors; the strides follow
/// torchvision's table (blocks per stage 1, 2, 3, 4, 3, 3, 1 with strides 1, 2, 2, 2, 1, 2, 1), since
/// stages of equal width (width multiplier 0.25) cannot be told apart otherwise. Padding 1 on every
/// 3x3, BatchNorm ε 1e-5. Input [N, 224, 224, 3], ImageNet preprocessing.
public enum MobileNetV2 {
  public static let epsilon: Float = 1e-5
  /// Stride of each inverted residual block, features.1…features.17.
  public static let blockStrides = [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]

  public static func matches(_ weights: TensorDictionary) -> Bool {
    weights.contains("features.0.0.weight") && weights.contains("features.1.conv.0.0.weight")
  }

  struct Block {
    var index: Int
    var inChannels: Int
    var hidden: Int
    var outChannels: Int
    var stride: Int
    var expand: Bool
    var residual: Bool { stride == 1 && inChannels == outChannels }
    /// Module index of the depthwise conv, projection and its BatchNorm inside `conv`.
    var depthwise: String { expand ? "conv.1" : "conv.0" }
    var project: String { expand ? "conv.2" : "conv.1" }
    var projectBN: String { expand ? "conv.3" : "conv.2" }
  }

  struct Structure {
    var stemChannels: Int
    var blocks: [Block]
    var headChannels: Int
    var classes: Int
  }

  static func structure(_ weights: TensorDictionary) throws(ModelError) -> Structure {
    var blockCount = 0
    for name in weights.names where name.hasPrefix("features.") {
      if let index = Int(name.dropFirst("features.".count).prefix(while: \.isNumber)), index < 100_000 {
        blockCount = max(blockCount, index + 1)
      }
    }
    // features.0 is the stem and the last index the head.
    let residuals = blockCount - 2
    var found = "found a MobileNetV2 stem ('features.0') and \(max(0, residuals)) inverted residual blocks"
    guard residuals == blockStrides.count else {
      throw .architectureMismatch(
        "\(found); torchvision's MobileNetV2 has \(blockStrides.count) (features.1…features.\(blockStrides.count)) and its head at features.\(blockStrides.count + 1)"
      )
    }
    func shape(_ name: String, rank: Int = 4) throws(ModelError) -> [Int] {
      guard let t = weights[name] else { throw .architectureMismatch("\(found) but '\(name)' is missing") }
      guard t.shape.count == rank, t.shape.allSatisfy({ $0 > 0 }) else {
        throw .architectureMismatch("\(found) but '\(name)' has shape \(t.shape), expected \(rank) dims")
      }
      return t.shape
    }
    let stem = try shape("features.0.0.weight")[0]
    var blocks: [Block] = []
    var inChannels = stem
    for (i, stride) in blockStrides.enumerated() {
      let index = i + 1
      let p = "features.\(index)"
      // With an expansion, conv.3 is the projection's BatchNorm; without, conv.2 is.
      let expand = weights.contains("\(p).conv.3.weight")
      let first = try shape("\(p).conv.0.0.weight")
      let hidden = first[0]
      var block = Block(
        index: index, inChannels: inChannels, hidden: hidden, outChannels: 0, stride: stride, expand: expand)
      block.outChannels = try shape("\(p).\(block.project).weight")[0]
      blocks.append(block)
      inChannels = block.outChannels
    }
    found += " (widths \(blocks.map(\.outChannels)))"
    let head = try shape("features.\(blockStrides.count + 1).0.weight")[0]
    let classifier = try shape("classifier.1.weight", rank: 2)
    return Structure(stemChannels: stem, blocks: blocks, headChannels: head, classes: classifier[0])
  }

  static func specs(_ s: Structure) -> [TensorSpec] {
    var specs: [TensorSpec] = [.conv("features.0.0", out: s.stemChannels, in: 3, kernel: 3)]
    specs += TensorSpec.batchNorm("features.0.1", channels: s.stemChannels)
    for b in s.blocks {
      let p = "features.\(b.index)"
      if b.expand {
        specs.append(.conv("\(p).conv.0.0", out: b.hidden, in: b.inChannels, kernel: 1))
        specs += TensorSpec.batchNorm("\(p).conv.0.1", channels: b.hidden)
      }
      specs.append(.conv("\(p).\(b.depthwise).0", out: b.hidden, in: 1, kernel: 3))
      specs += TensorSpec.batchNorm("\(p).\(b.depthwise).1", channels: b.hidden)
      specs.append(.conv("\(p).\(b.project)", out: b.outChannels, in: b.hidden, kernel: 1))
      specs += TensorSpec.batchNorm("\(p).\(b.projectBN)", channels: b.outChannels)
    }
    let head = "features.\(s.blocks.count + 1)"
    specs.append(.conv("\(head).0", out: s.headChannels, in: s.blocks.last!.outChannels, kernel: 1))
    specs += TensorSpec.batchNorm("\(head).1", channels: s.headChannels)
    specs.append(TensorSpec("classifier.1.weight", [s.classes, s.headChannels]))
    specs.append(TensorSpec("classifier.1.bias", [s.classes]))
    return specs
  }

  /// The graph. Node names are the checkpoint's module names (`features.3.conv.1.0` for block 3's
  /// depthwise conv, `.1` its BatchNorm), a ReLU6 is its BatchNorm's name + `.relu6`, and a residual
  /// add is `features.N.add`.
  static func graph(_ s: Structure) -> Graph {
    var nodes: [Node] = []
    func convBN(_ conv: String, _ bn: String, input: String, kernel: Int, stride: Int, groups: Int = 1, relu6: Bool)
      -> String
    {
      let pad = kernel / 2
      nodes.append(
        .conv2d(
          conv, input: input, weight: conv + ".weight", kernel: [kernel, kernel], stride: stride,
          padding: [pad, pad, pad, pad], groups: groups))
      nodes.append(.batchNorm(bn, input: conv, prefix: bn, epsilon: epsilon))
      guard relu6 else { return bn }
      nodes.append(Node(name: bn + ".relu6", op: .relu6, inputs: [bn]))
      return bn + ".relu6"
    }
    var x = convBN("features.0.0", "features.0.1", input: Graph.inputName, kernel: 3, stride: 2, relu6: true)
    for b in s.blocks {
      let p = "features.\(b.index)"
      var y = x
      if b.expand {
        y = convBN("\(p).conv.0.0", "\(p).conv.0.1", input: y, kernel: 1, stride: 1, relu6: true)
      }
      y = convBN(
        "\(p).\(b.depthwise).0", "\(p).\(b.depthwise).1", input: y, kernel: 3, stride: b.stride, groups: b.hidden,
        relu6: true)
      y = convBN("\(p).\(b.project)", "\(p).\(b.projectBN)", input: y, kernel: 1, stride: 1, relu6: false)
      if b.residual {
        nodes.append(Node(name: "\(p).add", op: .add, inputs: [y, x]))
        y = "\(p).add"
      }
      x = y
    }
    let head = "features.\(s.blocks.count + 1)"
    x = convBN("\(head).0", "\(head).1", input: x, kernel: 1, stride: 1, relu6: true)
    nodes.append(Node(name: "avgpool", op: .globalAveragePool, inputs: [x]))
    nodes.append(Node(name: "flatten", op: .flatten, inputs: ["avgpool"]))
    nodes.append(.linear("classifier.1", input: "flatten", weight: "classifier.1.weight", bias: "classifier.1.bias"))
    return Graph(nodes: nodes, output: "classifier.1")
  }

  public static func build(from weights: TensorDictionary) throws(ModelError) -> Model {
    let s = try structure(weights)
    let conformed = try conform(weights, to: specs(s))
    let info = ModelInfo(architecture: "mobilenet_v2", inputSize: 224, classes: s.classes, preprocessing: .imagenet)
    return Model(info: info, graph: graph(s), weights: conformed)
  }
}
