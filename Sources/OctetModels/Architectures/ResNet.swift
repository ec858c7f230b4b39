import OctetCore

/// torchvision's ResNet family, in its layout and names: ResNet-18/34 (BasicBlock), ResNet-50/101/152
/// (Bottleneck, v1.5: the stride sits on each bottleneck's 3x3 conv), ResNeXt (grouped 3x3) and Wide
/// ResNet (wider 3x3), any number of classes.
///
/// Input [N, 224, 224, 3]; conv1 7x7/2 → bn1 → relu → maxpool 3x3/2 → layer1…layerS (the first
/// block of every layer after the first has stride 2) → global average pool → fc → [N, classes].
/// Everything else comes from the tensors: the block kind (a `layer1.0.conv3` means Bottleneck),
/// the number of layers and of blocks in each, every width, and the groups of each layer's 3x3 conv
/// (`conv2.weight` is [width, width / groups, 3, 3]). A block has a `downsample` shortcut where
/// torchvision gives it one: the first block of a layer whose stride is 2 or whose width changes.
public enum ResNet {
  public enum BlockKind: String, Sendable {
    case basic = "BasicBlock"
    case bottleneck = "Bottleneck"
  }

  public static let epsilon: Float = 1e-5

  /// One torchvision layer (stage): its blocks share these widths.
  public struct Stage: Sendable, Equatable {
    public var blocks: Int
    /// Width of the 3x3 convolutions (Bottleneck: conv2's; BasicBlock: both convs').
    public var width: Int
    /// Groups of the 3x3 convolution (1 but for ResNeXt).
    public var groups: Int
    /// Channels out of each block.
    public var outChannels: Int
  }

  public struct Structure: Sendable, Equatable {
    public var kind: BlockKind
    public var stemChannels: Int
    public var stages: [Stage]
    public var classes: Int
  }

  /// torchvision's named members: (name, block kind, blocks per layer, groups, width per group).
  static let variants: [(name: String, kind: BlockKind, blocks: [Int], groups: Int, widthPerGroup: Int)] = [
    ("resnet18", .basic, [2, 2, 2, 2], 1, 64),
    ("resnet34", .basic, [3, 4, 6, 3], 1, 64),
    ("resnet50", .bottleneck, [3, 4, 6, 3], 1, 64),
    ("resnet101", .bottleneck, [3, 4, 23, 3], 1, 64),
    ("resnet152", .bottleneck, [3, 8, 36, 3], 1, 64),
    ("resnext50_32x4d", .bottleneck, [3, 4, 6, 3], 32, 4),
    ("resnext101_32x8d", .bottleneck, [3, 4, 23, 3], 32, 8),
    ("resnext101_64x4d", .bottleneck, [3, 4, 23, 3], 64, 4),
    ("wide_resnet50_2", .bottleneck, [3, 4, 6, 3], 1, 128),
    ("wide_resnet101_2", .bottleneck, [3, 4, 23, 3], 1, 128),
  ]

  /// The structure of a named member with `classes` classes; nil for a name outside the table.
  public static func structure(named name: String, classes: Int) -> Structure? {
    guard let v = variants.first(where: { $0.name == name }) else { return nil }
    let expansion = v.kind == .bottleneck ? 4 : 1
    let stages = v.blocks.enumerated().map { i, count in
      let planes = 64 << i
      let width = v.kind == .bottleneck ? planes * v.widthPerGroup / 64 * v.groups : planes
      return Stage(blocks: count, width: width, groups: v.groups, outChannels: planes * expansion)
    }
    return Structure(kind: v.kind, stemChannels: 64, stages: stages, classes: classes)
  }

  /// The member's torchvision name, or "resnet" for a layout outside the table.
  public static func name(of s: Structure) -> String {
    for v in variants where v.kind == s.kind && v.blocks == s.stages.map(\.blocks) {
      if structure(named: v.name, classes: s.classes) == s { return v.name }
    }
    return "resnet"
  }

  /// True when the tensor names look like torchvision's ResNet.
  public static func matches(_ weights: TensorDictionary) -> Bool {
    weights.contains("conv1.weight") && weights.contains("layer1.0.conv1.weight")
  }

  /// Blocks per layer, from the highest block index of any `layerL.B.` tensor (so that a block
  /// missing a tensor is named by `conform` rather than cutting the network short).
  static func blockCounts(_ weights: TensorDictionary) -> [Int: Int] {
    var counts: [Int: Int] = [:]
    for name in weights.names where name.hasPrefix("layer") {
      let parts = name.dropFirst("layer".count).split(separator: ".", maxSplits: 2)
      guard parts.count >= 2, let layer = Int(parts[0]), let block = Int(parts[1]), layer > 0, block < 100_000
      else { continue }
      counts[layer] = max(counts[layer] ?? 0, block + 1)
    }
    return counts
  }

  /// Reads the structure from the tensors. An error says what was recognised and what was not.
  public static func structure(_ weights: TensorDictionary) throws(ModelError) -> Structure {
    let counts = blockCounts(weights)
    let layers = counts.count
    var found = "found a ResNet stem"
    guard let stem = weights["conv1.weight"], stem.shape.count == 4, stem.shape[0] > 0 else {
      throw .architectureMismatch(
        "found \(layers) ResNet layers (layer1…) but 'conv1.weight' is \(weights["conv1.weight"].map { "\($0.shape)" } ?? "missing"), expected [64, 3, 7, 7]"
      )
    }
    guard layers > 0, (1...layers).allSatisfy({ counts[$0] != nil }) else {
      throw .architectureMismatch(
        "\(found) but the layers are not layer1…layerN (found layers \(counts.keys.sorted()))")
    }
    let kind: BlockKind = weights.contains("layer1.0.conv3.weight") ? .bottleneck : .basic
    let blocks = (1...layers).map { counts[$0]! }
    found += " and \(layers) layers of \(kind.rawValue) blocks with \(blocks) blocks"
    func shape(_ name: String) throws(ModelError) -> [Int] {
      guard let t = weights[name] else { throw .architectureMismatch("\(found) but '\(name)' is missing") }
      guard t.shape.count == 4, t.shape.allSatisfy({ $0 > 0 }) else {
        throw .architectureMismatch("\(found) but '\(name)' has shape \(t.shape), expected a convolution's 4 dims")
      }
      return t.shape
    }
    var stages: [Stage] = []
    for (i, count) in blocks.enumerated() {
      let p = "layer\(i + 1).0"
      let conv1 = try shape("\(p).conv1.weight")
      let width = conv1[0]
      var groups = 1
      var out = width
      if kind == .bottleneck {
        let conv2 = try shape("\(p).conv2.weight")
        out = try shape("\(p).conv3.weight")[0]
        guard width % conv2[1] == 0 else {
          throw .architectureMismatch(
            "\(found) but '\(p).conv2.weight' has shape \(conv2): \(conv2[1]) input channels per group do not divide the width \(width)"
          )
        }
        groups = width / conv2[1]
      }
      stages.append(Stage(blocks: count, width: width, groups: groups, outChannels: out))
    }
    guard let fc = weights["fc.weight"] else { throw .architectureMismatch("\(found) but 'fc.weight' is missing") }
    guard fc.shape.count == 2, fc.shape[0] > 0 else {
      throw .architectureMismatch("\(found) but 'fc.weight' has shape \(fc.shape), expected [classes, features]")
    }
    return Structure(kind: kind, stemChannels: stem.shape[0], stages: stages, classes: fc.shape[0])
  }

  /// torchvision's rule: the first block of a layer gets a projection shortcut when its stride is 2
  /// or its input width differs from its output width.
  static func hasDownsample(layer: Int, block: Int, inChannels: Int, outChannels: Int) -> Bool {
    block == 0 && (layer > 0 || inChannels != outChannels)
  }

  public static func specs(_ s: Structure) -> [TensorSpec] {
    var specs: [TensorSpec] = [.conv("conv1", out: s.stemChannels, in: 3, kernel: 7)]
    specs += TensorSpec.batchNorm("bn1", channels: s.stemChannels)
    var inChannels = s.stemChannels
    for (layer, stage) in s.stages.enumerated() {
      for block in 0..<stage.blocks {
        let p = "layer\(layer + 1).\(block)"
        let out = stage.outChannels
        let w = stage.width
        switch s.kind {
        case .bottleneck:
          specs.append(.conv("\(p).conv1", out: w, in: inChannels, kernel: 1))
          specs += TensorSpec.batchNorm("\(p).bn1", channels: w)
          specs.append(.conv("\(p).conv2", out: w, in: w / stage.groups, kernel: 3))
          specs += TensorSpec.batchNorm("\(p).bn2", channels: w)
          specs.append(.conv("\(p).conv3", out: out, in: w, kernel: 1))
          specs += TensorSpec.batchNorm("\(p).bn3", channels: out)
        case .basic:
          specs.append(.conv("\(p).conv1", out: out, in: inChannels, kernel: 3))
          specs += TensorSpec.batchNorm("\(p).bn1", channels: out)
          specs.append(.conv("\(p).conv2", out: out, in: out, kernel: 3))
          specs += TensorSpec.batchNorm("\(p).bn2", channels: out)
        }
        if hasDownsample(layer: layer, block: block, inChannels: inChannels, outChannels: out) {
          specs.append(.conv("\(p).downsample.0", out: out, in: inChannels, kernel: 1))
          specs += TensorSpec.batchNorm("\(p).downsample.1", channels: out)
        }
        inChannels = out
      }
    }
    specs.append(TensorSpec("fc.weight", [s.classes, inChannels]))
    specs.append(TensorSpec("fc.bias", [s.classes]))
    return specs
  }

  /// The graph. Node names: `layerL.B.convK`/`bnK`, `layerL.B.reluK` after bnK (K < the last conv),
  /// `layerL.B.add` and the block's last relu (`relu3` in a Bottleneck, `relu2` in a BasicBlock).
  public static func graph(_ s: Structure) -> Graph {
    var nodes: [Node] = []
    func convBN(
      _ conv: String, _ bn: String, input: String, kernel: Int, stride: Int, pad: Int, groups: Int = 1, relu: String?
    ) -> String {
      nodes.append(
        .conv2d(
          conv, input: input, weight: conv + ".weight", kernel: [kernel, kernel], stride: stride,
          padding: [pad, pad, pad, pad], groups: groups))
      nodes.append(.batchNorm(bn, input: conv, prefix: bn, epsilon: epsilon))
      guard let relu else { return bn }
      nodes.append(Node(name: relu, op: .relu, inputs: [bn]))
      return relu
    }
    var x = convBN("conv1", "bn1", input: Graph.inputName, kernel: 7, stride: 2, pad: 3, relu: "relu")
    nodes.append(.maxPool("maxpool", input: x, kernel: 3, stride: 2, padding: 1))
    x = "maxpool"
    var inChannels = s.stemChannels
    for (layer, stage) in s.stages.enumerated() {
      for block in 0..<stage.blocks {
        let p = "layer\(layer + 1).\(block)"
        let stride = (layer > 0 && block == 0) ? 2 : 1
        // The shortcut comes first so that the last conv's epilogue can add it (torchvision computes
        // it after; the order does not change the result).
        var shortcut = x
        if hasDownsample(layer: layer, block: block, inChannels: inChannels, outChannels: stage.outChannels) {
          shortcut = convBN(
            "\(p).downsample.0", "\(p).downsample.1", input: x, kernel: 1, stride: stride, pad: 0, relu: nil)
        }
        var y: String
        let last: String
        switch s.kind {
        case .bottleneck:
          y = convBN("\(p).conv1", "\(p).bn1", input: x, kernel: 1, stride: 1, pad: 0, relu: "\(p).relu1")
          y = convBN(
            "\(p).conv2", "\(p).bn2", input: y, kernel: 3, stride: stride, pad: 1, groups: stage.groups,
            relu: "\(p).relu2")
          y = convBN("\(p).conv3", "\(p).bn3", input: y, kernel: 1, stride: 1, pad: 0, relu: nil)
          last = "\(p).relu3"
        case .basic:
          y = convBN("\(p).conv1", "\(p).bn1", input: x, kernel: 3, stride: stride, pad: 1, relu: "\(p).relu1")
          y = convBN("\(p).conv2", "\(p).bn2", input: y, kernel: 3, stride: 1, pad: 1, relu: nil)
          last = "\(p).relu2"
        }
        nodes.append(Node(name: "\(p).add", op: .add, inputs: [y, shortcut]))
        nodes.append(Node(name: last, op: .relu, inputs: ["\(p).add"]))
        x = last
        inChannels = stage.outChannels
      }
    }
    nodes.append(Node(name: "avgpool", op: .globalAveragePool, inputs: [x]))
    nodes.append(Node(name: "flatten", op: .flatten, inputs: ["avgpool"]))
    nodes.append(.linear("fc", input: "flatten", weight: "fc.weight", bias: "fc.bias"))
    return Graph(nodes: nodes, output: "fc")
  }

  /// Builds the model; `expected` (a name of the table, from `--arch`) must be what the tensors are.
  public static func build(from weights: TensorDictionary, expected: String? = nil) throws(ModelError) -> Model {
    var s = try structure(weights)
    var name = name(of: s)
    // The expected member's kind and depths, but widths of no member (a tensor of the wrong width):
    // its own specs, so that `conform` names each tensor that does not fit.
    if let expected, name == "resnet", var e = structure(named: expected, classes: s.classes),
      e.kind == s.kind, e.stages.map(\.blocks) == s.stages.map(\.blocks)
    {
      e.classes = s.classes
      s = e
      name = expected
    }
    if let expected, expected != name {
      let groups = Set(s.stages.map(\.groups))
      throw .architectureMismatch(
        "these tensors are \(name == "resnet" ? "a ResNet outside torchvision's table" : name) (\(s.kind.rawValue) blocks \(s.stages.map(\.blocks)), 3x3 widths \(s.stages.map(\.width))\(groups == [1] ? "" : ", groups \(groups.sorted())")), not \(expected); use --arch \(name) or leave --arch out"
      )
    }
    let conformed = try conform(weights, to: specs(s))
    let info = ModelInfo(architecture: name, inputSize: 224, classes: s.classes, preprocessing: .imagenet)
    return Model(info: info, graph: graph(s), weights: conformed)
  }
}

/// ResNet-50, the seed model: torchvision's resnet50 (3, 4, 6, 3 bottlenecks of widths 64, 128, 256,
/// 512, expansion 4), built by `ResNet`.
public enum ResNet50 {
  public static let blockCounts = [3, 4, 6, 3]
  public static let widths = [64, 128, 256, 512]
  public static let expansion = 4
  public static let epsilon: Float = ResNet.epsilon

  public static func matches(_ weights: TensorDictionary) -> Bool { ResNet.matches(weights) }

  static func structure(classes: Int) -> ResNet.Structure {
    ResNet.structure(named: "resnet50", classes: classes)!
  }

  public static func specs(classes: Int) -> [TensorSpec] { ResNet.specs(structure(classes: classes)) }

  public static func graph() -> Graph { ResNet.graph(structure(classes: 1000)) }

  public static func build(from weights: TensorDictionary) throws(ModelError) -> Model {
    try ResNet.build(from: weights, expected: "resnet50")
  }
}
