import OctetCore

/// ResNet-50 in torchvision's layout and names (v1.5: the stride sits on each bottleneck's 3x3 conv).
///
/// Input [N, 224, 224, 3]; conv1 7x7/2 → bn1 → relu → maxpool 3x3/2 → layer1…layer4 (3, 4, 6, 3
/// bottlenecks of widths 64, 128, 256, 512, expansion 4) → global average pool → fc → [N, classes].
public enum ResNet50 {
  public static let blockCounts = [3, 4, 6, 3]
  public static let widths = [64, 128, 256, 512]
  public static let expansion = 4
  public static let epsilon: Float = 1e-5

  /// True when the tensor names look like torchvision's ResNet.
  public static func matches(_ weights: TensorDictionary) -> Bool {
    weights.contains("conv1.weight") && weights.contains("layer1.0.conv1.weight")
  }

  /// The number of classes, read from fc.weight (1000 for ImageNet).
  static func classCount(_ weights: TensorDictionary) -> Int {
    weights["fc.weight"].flatMap { $0.shape.count == 2 ? $0.shape[0] : nil } ?? 1000
  }

  public static func specs(classes: Int) -> [TensorSpec] {
    var specs: [TensorSpec] = [.conv("conv1", out: 64, in: 3, kernel: 7)] + TensorSpec.batchNorm("bn1", channels: 64)
    var inChannels = 64
    for (layer, (count, width)) in zip(blockCounts, widths).enumerated() {
      for block in 0..<count {
        let p = "layer\(layer + 1).\(block)"
        let out = width * expansion
        specs.append(.conv("\(p).conv1", out: width, in: inChannels, kernel: 1))
        specs += TensorSpec.batchNorm("\(p).bn1", channels: width)
        specs.append(.conv("\(p).conv2", out: width, in: width, kernel: 3))
        specs += TensorSpec.batchNorm("\(p).bn2", channels: width)
        specs.append(.conv("\(p).conv3", out: out, in: width, kernel: 1))
        specs += TensorSpec.batchNorm("\(p).bn3", channels: out)
        if block == 0 {
          specs.append(.conv("\(p).downsample.0", out: out, in: inChannels, kernel: 1))
          specs += TensorSpec.batchNorm("\(p).downsample.1", channels: out)
        }
        inChannels = out
      }
    }
    specs.append(TensorSpec("fc.weight", [classes, inChannels]))
    specs.append(TensorSpec("fc.bias", [classes]))
    return specs
  }

  public static func graph() -> Graph {
    var nodes: [Node] = []
    func convBN(_ conv: String, _ bn: String, input: String, kernel: Int, stride: Int, pad: Int, relu: String?)
      -> String
    {
      nodes.append(
        .conv2d(
          conv, input: input, weight: conv + ".weight", kernel: [kernel, kernel], stride: stride,
          padding: [pad, pad, pad, pad]))
      nodes.append(.batchNorm(bn, input: conv, prefix: bn, epsilon: epsilon))
      guard let relu else { return bn }
      nodes.append(Node(name: relu, op: .relu, inputs: [bn]))
      return relu
    }
    var x = convBN("conv1", "bn1", input: Graph.inputName, kernel: 7, stride: 2, pad: 3, relu: "relu")
    nodes.append(.maxPool("maxpool", input: x, kernel: 3, stride: 2, padding: 1))
    x = "maxpool"
    for (layer, count) in blockCounts.enumerated() {
      for block in 0..<count {
        let p = "layer\(layer + 1).\(block)"
        let stride = (layer > 0 && block == 0) ? 2 : 1
        // The shortcut comes first so that conv3's epilogue can add it (torchvision computes it after;
        // the order does not change the result).
        var shortcut = x
        if block == 0 {
          shortcut = convBN(
            "\(p).downsample.0", "\(p).downsample.1", input: x, kernel: 1, stride: stride, pad: 0, relu: nil)
        }
        var y = convBN("\(p).conv1", "\(p).bn1", input: x, kernel: 1, stride: 1, pad: 0, relu: "\(p).relu1")
        y = convBN("\(p).conv2", "\(p).bn2", input: y, kernel: 3, stride: stride, pad: 1, relu: "\(p).relu2")
        y = convBN("\(p).conv3", "\(p).bn3", input: y, kernel: 1, stride: 1, pad: 0, relu: nil)
        nodes.append(Node(name: "\(p).add", op: .add, inputs: [y, shortcut]))
        nodes.append(Node(name: "\(p).relu3", op: .relu, inputs: ["\(p).add"]))
        x = "\(p).relu3"
      }
    }
    nodes.append(Node(name: "avgpool", op: .globalAveragePool, inputs: [x]))
    nodes.append(Node(name: "flatten", op: .flatten, inputs: ["avgpool"]))
    nodes.append(.linear("fc", input: "flatten", weight: "fc.weight", bias: "fc.bias"))
    return Graph(nodes: nodes, output: "fc")
  }

  public static func build(from weights: TensorDictionary) throws(ModelError) -> Model {
    let classes = classCount(weights)
    let conformed = try conform(weights, to: specs(classes: classes))
    let info = ModelInfo(
      architecture: "resnet50", inputSize: 224, classes: classes, preprocessing: .imagenet)
    return Model(info: info, graph: graph(), weights: conformed)
  }
}
