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
