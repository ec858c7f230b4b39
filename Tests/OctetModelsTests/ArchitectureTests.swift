import OctetCore
import Testing

@testable import OctetModels

/// Synthetic state_dicts built from a shape list: zeros, the right dtype, torchvision's bookkeeping.
private func stateDict(_ specs: [TensorSpec], bookkeeping: Bool = true) -> TensorDictionary {
  var dict = TensorDictionary()
  for spec in specs {
    dict[spec.name] = HostTensor(shape: spec.shape, float32: [Float](repeating: 0.5, count: spec.shape.reduce(1, *)))
    if bookkeeping, spec.name.hasSuffix(".running_var") {
      let prefix = spec.name.dropLast(".running_var".count)
      dict["\(prefix).num_batches_tracked"] = HostTensor(
        type: .int64, shape: [], bytes: [UInt8](repeating: 0, count: 8))
    }
  }
  return dict
}

/// EfficientNet-Lite tensors for a stage table of (expand, kernel, out, repeats).
private func liteSpecs(stages: [(Int, Int, Int, Int)], classes: Int = 1000) -> [TensorSpec] {
  var specs: [TensorSpec] =
    [.conv("_conv_stem", out: 32, in: 3, kernel: 3)] + TensorSpec.batchNorm("_bn0", channels: 32)
  var inChannels = 32
  var index = 0
  for (expand, kernel, out, repeats) in stages {
    for _ in 0..<repeats {
      let p = "_blocks.\(index)"
      let mid = inChannels * expand
      if expand != 1 {
        specs.append(.conv("\(p)._expand_conv", out: mid, in: inChannels, kernel: 1))
        specs += TensorSpec.batchNorm("\(p)._bn0", channels: mid)
      }
      specs.append(.conv("\(p)._depthwise_conv", out: mid, in: 1, kernel: kernel))
      specs += TensorSpec.batchNorm("\(p)._bn1", channels: mid)
      specs.append(.conv("\(p)._project_conv", out: out, in: mid, kernel: 1))
      specs += TensorSpec.batchNorm("\(p)._bn2", channels: out)
      inChannels = out
      index += 1
    }
  }
  specs.append(.conv("_conv_head", out: 1280, in: inChannels, kernel: 1))
  specs += TensorSpec.batchNorm("_bn1", channels: 1280)
  specs += [TensorSpec("_fc.weight", [classes, 1280]), TensorSpec("_fc.bias", [classes])]
  return specs
}

private let lite0Stages = [
  (1, 3, 16, 1), (6, 3, 24, 2), (6, 5, 40, 2), (6, 3, 80, 3), (6, 5, 112, 3), (6, 5, 192, 4), (6, 3, 320, 1),
]
// Lite2: width 1.1, depth 1.2 (first and last stage repeats fixed).
private let lite2Stages = [
  (1, 3, 16, 1), (6, 3, 24, 3), (6, 5, 48, 3), (6, 3, 88, 4), (6, 5, 120, 4), (6, 5, 208, 5), (6, 3, 352, 1),
]

@Suite struct ResNet50ArchitectureTests {
  @Test func buildsFromTorchvisionNames() throws {
    let model = try Architecture.resnet50.build(from: stateDict(ResNet50.specs(classes: 1000)))
    #expect(model.info.architecture == "resnet50")
    #expect(model.info.preprocessing == .imagenet)
    try model.graph.validate()
    // 53 convs (49 + 4 downsample) + 53 BN, 16 adds, 1 fc
    #expect(model.graph.nodes.filter { $0.op == .conv2d }.count == 53)
    #expect(model.graph.nodes.filter { $0.op == .add }.count == 16)
    #expect(model.weights.count == 53 * 5 + 2)  // conv weight + 4 BN tensors each, fc weight and bias
    #expect(!model.weights.names.contains { $0.hasSuffix("num_batches_tracked") })
    // v1.5: the stride is on the 3x3 conv of each stage's first block
    let conv2 = model.graph.nodes.first { $0.name == "layer2.0.conv2" }
    #expect(conv2?.stride == [2, 2])
    #expect(model.graph.nodes.first { $0.name == "layer2.0.conv1" }?.stride == [1, 1])
  }

  @Test func namesMissingExtraAndMisShapedTensors() {
    var dict = stateDict(ResNet50.specs(classes: 1000))
    dict["layer3.1.bn2.running_mean"] = nil
    dict["layer4.0.conv2.weight"] = HostTensor(
      shape: [512, 512, 1, 3], float32: [Float](repeating: 0, count: 512 * 512 * 3))
    dict["head.extra"] = HostTensor(shape: [1], float32: [1])
    #expect {
      try Architecture.resnet50.build(from: dict)
    } throws: { error in
      let text = String(describing: error)
      return text.contains("'layer3.1.bn2.running_mean' is missing")
        && text.contains("'layer4.0.conv2.weight' has shape [512, 512, 1, 3], expected [512, 512, 3, 3]")
        && text.contains("'head.extra' is not part of the architecture")
    }
  }

  @Test func refusesNonFiniteWeights() {
    var dict = stateDict(ResNet50.specs(classes: 1000))
    dict["fc.bias"] = HostTensor(shape: [1000], float32: [Float](repeating: .nan, count: 1000))
    #expect(throws: ModelError.tensors([.nonFinite(name: "fc.bias")])) {
      try Architecture.resnet50.build(from: dict)
    }
  }

  @Test func wrongArchitectureIsNamed() {
    #expect {
      try Architecture.resnet50.build(from: stateDict(liteSpecs(stages: lite0Stages)))
    } throws: { String(describing: $0).contains("EfficientNet-Lite") }
    #expect {
      try Architecture.efficientnetLite.build(from: stateDict(ResNet50.specs(classes: 1000)))
    } throws: { String(describing: $0).contains("ResNet") }
  }

  @Test func detectsArchitectureFromNames() {
    #expect(Architecture.detect(stateDict(ResNet50.specs(classes: 10))) == .resnet50)
    #expect(Architecture.detect(stateDict(liteSpecs(stages: lite0Stages))) == .efficientnetLite)
    #expect(Architecture.detect(TensorDictionary([("x", HostTensor(shape: [1], float32: [0]))])) == nil)
  }
}

@Suite struct EfficientNetLiteArchitectureTests {
  @Test func derivesLite0FromTensors() throws {
    let model = try Architecture.efficientnetLite.build(from: stateDict(liteSpecs(stages: lite0Stages)))
    #expect(model.info.architecture == "efficientnet-lite0")
    #expect(model.info.inputSize == 224)
    #expect(model.info.preprocessing == .symmetric)
    try model.graph.validate()
    let depthwise = model.graph.nodes.filter { $0.name.hasSuffix("_depthwise_conv") }
    #expect(depthwise.count == 16)
    #expect(depthwise.map { $0.stride![0] } == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1])
    #expect(depthwise.map { $0.kernel![0] } == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3])
    #expect(depthwise.allSatisfy { $0.groups == model.weights[$0.weight!]!.shape[0] })
    #expect(model.graph.nodes.filter { $0.op == .add }.count == 9)
    #expect(model.graph.nodes.allSatisfy { $0.op != .conv2d || $0.paddingMode == .same })
  }

  @Test func derivesLite2WithItsResolution() throws {
    let model = try Architecture.efficientnetLite.build(from: stateDict(liteSpecs(stages: lite2Stages)))
    #expect(model.info.architecture == "efficientnet-lite2")
    #expect(model.info.inputSize == 260)
    #expect(model.info.preprocessing.cropSize == 260)
  }

  @Test func misShapedBatchNormIsNamed() {
    var dict = stateDict(liteSpecs(stages: lite0Stages))
    dict["_blocks.5._bn1.weight"] = HostTensor(shape: [10], float32: [Float](repeating: 1, count: 10))
    #expect(throws: ModelError.tensors([.shapeMismatch(name: "_blocks.5._bn1.weight", expected: [240], actual: [10])]))
    {
      try Architecture.efficientnetLite.build(from: dict)
    }
  }

  @Test func missingDepthwiseIsNamed() {
    var dict = stateDict(liteSpecs(stages: lite0Stages))
    dict["_conv_head.weight"] = nil
    #expect(throws: ModelError.tensor(.missing(name: "_conv_head.weight"))) {
      try Architecture.efficientnetLite.build(from: dict)
    }
  }
}

@Suite struct PaddingTests {
  @Test func tensorflowSamePadding() {
    let conv = Node.conv2d("c", input: "input", weight: "w", kernel: [3, 3], stride: 2, same: true)
    #expect(conv.resolvedPadding(height: 224, width: 224) == [0, 0, 1, 1])
    #expect(conv.resolvedPadding(height: 225, width: 225) == [1, 1, 1, 1])
    let five = Node.conv2d("c", input: "input", weight: "w", kernel: [5, 5], stride: 2, same: true)
    #expect(five.resolvedPadding(height: 28, width: 28) == [1, 1, 2, 2])
    let one = Node.conv2d("c", input: "input", weight: "w", kernel: [5, 5], stride: 1, same: true)
    #expect(one.resolvedPadding(height: 14, width: 7) == [2, 2, 2, 2])
  }

  @Test func graphValidationNamesTheProblem() {
    let g = Graph(nodes: [Node(name: "a", op: .relu, inputs: ["nowhere"])], output: "a")
    #expect(throws: ModelError.invalidGraph("node 'a' reads 'nowhere', which no earlier node produces")) {
      try g.validate()
    }
  }
}
