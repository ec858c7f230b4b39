import Foundation
import OctetCore
import OctetTestSupport
import Testing

@testable import OctetModels

/// A synthetic state_dict from a shape list (every value 0.5).
private func stateDict(_ specs: [TensorSpec]) -> TensorDictionary {
  var dict = TensorDictionary()
  for spec in specs {
    dict[spec.name] = HostTensor(shape: spec.shape, float32: [Float](repeating: 0.5, count: spec.shape.reduce(1, *)))
  }
  return dict
}

private func resNetSpecs(_ name: String, classes: Int = 10) -> [TensorSpec] {
  ResNet.specs(ResNet.structure(named: name, classes: classes)!)
}

/// torchvision's ResNet family read from tensor names and shapes.
@Suite struct TorchvisionResNetTests {
  /// (name, convolutions incl. downsample, residual adds, groups of layer1.0.conv2, its width)
  static let members: [(String, Int, Int, Int, Int)] = [
    ("resnet18", 20, 8, 1, 64), ("resnet34", 36, 16, 1, 64), ("resnet50", 53, 16, 1, 64),
    ("resnet101", 104, 33, 1, 64), ("resnet152", 155, 50, 1, 64), ("resnext50_32x4d", 53, 16, 32, 128),
    ("resnext101_32x8d", 104, 33, 32, 256), ("resnext101_64x4d", 104, 33, 64, 256),
    ("wide_resnet50_2", 53, 16, 1, 128), ("wide_resnet101_2", 104, 33, 1, 128),
  ]

  @Test(arguments: members)
  func eachMemberIsDetectedAndBuilt(_ member: (String, Int, Int, Int, Int)) throws {
    let (name, convs, adds, groups, width) = member
    let dict = stateDict(resNetSpecs(name, classes: 7))
    let arch = try #require(Architecture.detect(dict))
    #expect(arch.rawValue == name)
    let model = try arch.build(from: dict)
    #expect(model.info.architecture == name)
    #expect(model.info.classes == 7)
    try model.graph.validate()
    #expect(model.graph.nodes.filter { $0.op == .conv2d }.count == convs)
    #expect(model.graph.nodes.filter { $0.op == .add }.count == adds)
    let conv2 = try #require(model.graph.nodes.first { $0.name == "layer1.0.conv2" })
    #expect(conv2.groups == groups)
    #expect(model.weights[conv2.weight!]?.shape == [width, width / groups, 3, 3])
    // The plan accepts every layer's shapes (groups included).
    _ = try LayerPlan(model: model)
    // Also through --arch with its own name.
    #expect(try Architecture(rawValue: name)!.build(from: dict).info.architecture == name)
  }

  @Test func basicBlocksStrideOnConv1AndDownsampleOnlyWhereTorchvisionHasOne() throws {
    let model = try Architecture.resnet18.build(from: stateDict(resNetSpecs("resnet18")))
    let nodes = Dictionary(uniqueKeysWithValues: model.graph.nodes.map { ($0.name, $0) })
    #expect(nodes["layer1.0.downsample.0"] == nil)
    #expect(nodes["layer2.0.downsample.0"]?.stride == [2, 2])
    #expect(nodes["layer2.0.conv1"]?.stride == [2, 2])
    #expect(nodes["layer2.0.conv2"]?.stride == [1, 1])
    #expect(nodes["layer2.0.relu2"]?.inputs == ["layer2.0.add"])
    #expect(model.graph.nodes.filter { $0.name.hasSuffix("downsample.0") }.count == 3)
  }

  @Test func anotherDepthIsAResNetOutsideTheTable() throws {
    var s = ResNet.structure(named: "resnet50", classes: 5)!
    s.stages[2].blocks = 2
    let dict = stateDict(ResNet.specs(s))
    #expect(Architecture.detect(dict) == .resnet)
    let model = try Architecture.resnet.build(from: dict)
    #expect(model.info.architecture == "resnet")
    #expect(model.graph.nodes.filter { $0.op == .add }.count == 12)
    #expect {
      try Architecture.resnet50.build(from: dict)
    } throws: { error in
      let text = String(describing: error)
      return text.contains("Bottleneck blocks [3, 4, 2, 3]") && text.contains("not resnet50")
    }
  }

  @Test func missingClassifierSaysWhatWasRecognised() {
    var dict = stateDict(resNetSpecs("resnet50"))
    dict["fc.weight"] = nil
    #expect {
      try Architecture.resnet50.build(from: dict)
    } throws: { error in
      String(describing: error).contains(
        "found a ResNet stem and 4 layers of Bottleneck blocks with [3, 4, 6, 3] blocks but 'fc.weight' is missing")
    }
    #expect(Architecture.detect(dict) == .resnet)
  }

  @Test func otherMemberThroughArchIsRefused() {
    let dict = stateDict(resNetSpecs("resnet50"))
    #expect {
      try Architecture.resnet18.build(from: dict)
    } throws: { error in
      let text = String(describing: error)
      return text.contains("these tensors are resnet50 (Bottleneck blocks [3, 4, 6, 3]")
        && text.contains("not resnet18")
        && text.contains("--arch resnet50")
    }
    #expect {
      try Architecture.resnet50.build(from: stateDict(resNetSpecs("resnext50_32x4d")))
    } throws: { String(describing: $0).contains("these tensors are resnext50_32x4d") }
  }

  @Test func misShapedTensorOfTheExpectedMemberIsNamed() {
    var dict = stateDict(resNetSpecs("resnet34"))
    dict["layer3.2.conv1.weight"] = HostTensor(shape: [256, 256, 1, 1], float32: [Float](repeating: 0, count: 65536))
    #expect(
      throws: ModelError.tensors([
        .shapeMismatch(name: "layer3.2.conv1.weight", expected: [256, 256, 3, 3], actual: [256, 256, 1, 1])
      ])
    ) {
      try Architecture.resnet34.build(from: dict)
    }
  }

  @Test func groupsThatDoNotDivideTheWidthAreNamed() {
    var dict = stateDict(resNetSpecs("resnext50_32x4d"))
    dict["layer2.0.conv2.weight"] = HostTensor(shape: [256, 3, 3, 3], float32: [Float](repeating: 0, count: 256 * 27))
    #expect {
      try Architecture.resnext50_32x4d.build(from: dict)
    } throws: { String(describing: $0).contains("'layer2.0.conv2.weight' has shape [256, 3, 3, 3]") }
  }

  @Test func narrowFixturesKeepTheirStructure() throws {
    let basic = try TorchvisionFixtures.model("tiny_resnet_basic")
    #expect(basic.info.architecture == "resnet")
    #expect(basic.graph.nodes.filter { $0.op == .add }.count == 5)
    #expect(!basic.graph.nodes.contains { $0.name == "layer1.0.downsample.0" })
    let resnext = try TorchvisionFixtures.model("tiny_resnext")
    let groups = resnext.graph.nodes.filter { $0.name.hasSuffix(".conv2") }.map(\.groups)
    #expect(groups == [4, 4, 4, 4])
  }
}

/// torchvision's MobileNetV2 read from tensor names and shapes (the fixture is torchvision's own
/// model at width 0.25, where stages 1 and 2 are equally wide).
@Suite struct TorchvisionMobileNetV2Tests {
  @Test func structureOfTheFixture() throws {
    let tensors = try TorchvisionFixtures.tensors("tiny_mobilenet_v2")
    #expect(Architecture.detect(tensors) == .mobilenetV2)
    let model = try TorchvisionFixtures.model("tiny_mobilenet_v2")
    #expect(model.info.architecture == "mobilenet_v2")
    #expect(model.info.classes == 10)
    let depthwise = model.graph.nodes.filter { $0.op == .conv2d && ($0.groups ?? 1) > 1 }
    #expect(depthwise.count == 17)
    #expect(depthwise.allSatisfy { $0.groups == model.weights[$0.weight!]!.shape[0] })
    #expect(depthwise.map { $0.stride![0] } == MobileNetV2.blockStrides)
    // 10 at width 1; at 0.25 block 1 adds too (stem and block 1 are both 8 wide, as in torchvision).
    #expect(model.graph.nodes.filter { $0.op == .add }.count == 11)
    #expect(model.graph.nodes.contains { $0.name == "features.1.add" })
    // Stem, block 1's depthwise, blocks 2…17's expansion and depthwise, head.
    #expect(model.graph.nodes.filter { $0.op == .relu6 }.count == 35)
    // Linear bottlenecks: nothing after a projection's BatchNorm but the add or the next block.
    #expect(
      !model.graph.nodes.contains { $0.name == "features.1.conv.2.relu6" || $0.name == "features.5.conv.3.relu6" })
    _ = try LayerPlan(model: model)
  }

  @Test func missingClassifierAndWrongArchitectureAreNamed() throws {
    var tensors = try TorchvisionFixtures.tensors("tiny_mobilenet_v2")
    tensors["classifier.1.weight"] = nil
    #expect {
      try Architecture.mobilenetV2.build(from: tensors)
    } throws: { error in
      let text = String(describing: error)
      return text.contains("found a MobileNetV2 stem ('features.0') and 17 inverted residual blocks")
        && text.contains("'classifier.1.weight' is missing")
    }
    #expect {
      try Architecture.resnet50.build(from: tensors)
    } throws: { String(describing: $0).contains("a torchvision MobileNetV2 (features.N.conv…), not a ResNet50") }
    #expect {
      try Architecture.mobilenetV2.build(from: try TorchvisionFixtures.tensors("tiny_resnext"))
    } throws: {
      String(describing: $0).contains("a torchvision ResNet (conv1, layer1…), not a MobileNetV2; use --arch resnet")
    }
  }

  @Test func blocksMissingFromTheMiddleAreNamed() throws {
    var tensors = try TorchvisionFixtures.tensors("tiny_mobilenet_v2")
    for name in tensors.names where name.hasPrefix("features.18.") { tensors[name] = nil }
    #expect {
      try Architecture.mobilenetV2.build(from: tensors)
    } throws: { String(describing: $0).contains("16 inverted residual blocks; torchvision's MobileNetV2 has 17") }
  }
}
