import OctetCore
import Testing

@testable import OctetModels

/// ResNet50 with every weight 0.5, built from its own shape list.
private func syntheticResNet50() throws -> Model {
  var dict = TensorDictionary()
  for spec in ResNet50.specs(classes: 1000) {
    dict[spec.name] = HostTensor(shape: spec.shape, float32: [Float](repeating: 0.5, count: spec.shape.reduce(1, *)))
  }
  return try Architecture.resnet50.build(from: dict)
}

/// A tiny graph: conv → (batch_norm) → relu? → add(·, shortcut) → relu, with 1x1 convolutions of
/// 4 channels on an 8x8 input.
private func residualModel(reluBeforeAdd: Bool, extraReader: Bool = false) -> Model {
  var w = TensorDictionary()
  w["c.weight"] = HostTensor(shape: [4, 3, 1, 1], float32: [Float](repeating: 0.1, count: 12))
  w["d.weight"] = HostTensor(shape: [4, 4, 1, 1], float32: [Float](repeating: 0.1, count: 16))
  w["fc.weight"] = HostTensor(shape: [2, 4], float32: [Float](repeating: 0.1, count: 8))
  var nodes: [Node] = [
    .conv2d("shortcut", input: Graph.inputName, weight: "c.weight", kernel: [1, 1], stride: 1),
    .conv2d("conv", input: "shortcut", weight: "d.weight", kernel: [1, 1], stride: 1),
  ]
  var last = "conv"
  if reluBeforeAdd {
    nodes.append(Node(name: "conv.relu", op: .relu, inputs: ["conv"]))
    last = "conv.relu"
  }
  nodes.append(Node(name: "add", op: .add, inputs: [last, "shortcut"]))
  nodes.append(Node(name: "add.relu", op: .relu, inputs: ["add"]))
  var tail = "add.relu"
  if extraReader {
    // A second reader of the convolution's value: the add cannot take it over.
    nodes.append(Node(name: "other", op: .add, inputs: ["add.relu", last]))
    tail = "other"
  }
  nodes.append(Node(name: "pool", op: .globalAveragePool, inputs: [tail]))
  nodes.append(Node(name: "flatten", op: .flatten, inputs: ["pool"]))
  nodes.append(.linear("fc", input: "flatten", weight: "fc.weight", bias: nil))
  let info = ModelInfo(architecture: "test", inputSize: 8, classes: 2, preprocessing: .imagenet)
  return Model(info: info, graph: Graph(nodes: nodes, output: "fc"), weights: w)
}

@Suite struct LayerPlanTests {
  /// docs/quantization.md §15's names and members, and the shapes, on ResNet50.
  @Test func resNet50LayersAreNamedByTheirLastMember() throws {
    let plan = try LayerPlan(model: syntheticResNet50())
    let byName = Dictionary(uniqueKeysWithValues: plan.layers.map { ($0.name, $0) })
    #expect(plan.layers.count == 73)  // stem, max pool, 16 blocks of 3 convs + add, 4 downsamples, pool, flatten, fc
    #expect(byName["relu"]?.members == ["conv1", "bn1", "relu"])
    #expect(byName["relu"]?.shape == [112, 112, 64])
    #expect(byName["maxpool"]?.shape == [56, 56, 64])
    #expect(byName["layer1.0.relu1"]?.members == ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu1"])
    #expect(byName["layer1.0.bn3"]?.members == ["layer1.0.conv3", "layer1.0.bn3"])
    #expect(byName["layer1.0.relu3"]?.members == ["layer1.0.add", "layer1.0.relu3"])
    #expect(byName["layer2.0.relu2"]?.shape == [28, 28, 128])
    #expect(byName["layer4.2.relu3"]?.shape == [7, 7, 2048])
    #expect(byName["avgpool"]?.shape == [1, 1, 2048])
    #expect(byName["flatten"]?.shape == [2048])
    #expect(plan.layers[plan.output].name == "fc")
    #expect(plan.layers[plan.output].shape == [1000])
    // Every float node is in exactly one layer.
    let members = plan.layers.flatMap(\.members)
    #expect(members.count == Set(members).count)
    #expect(Set(members) == Set(ResNet50.graph().nodes.map(\.name)))
  }

  /// Each of ResNet50's 16 residual adds fuses into its block's conv3 (+ bn3), the later producer.
  @Test func resNet50FusesEveryResidualAddIntoConv3() throws {
    let plan = try LayerPlan(model: syntheticResNet50())
    let fused = plan.floatResidualAddFusions()
    #expect(fused.count == 16)
    for (add, conv) in fused {
      #expect(plan.layers[add].node.op == .add)
      #expect(plan.layers[conv].name.hasSuffix(".bn3"), "\(plan.layers[add].name) fused into \(plan.layers[conv].name)")
    }
  }

  @Test func residualAddFusesOnlyIntoAConvolutionItAloneReads() throws {
    let plain = try LayerPlan(model: residualModel(reluBeforeAdd: false))
    let conv = try #require(plain.layers.firstIndex { $0.name == "conv" })
    let add = try #require(plain.layers.firstIndex { $0.name == "add.relu" })
    #expect(plain.floatResidualAddFusions() == [add: conv])
    // The float epilogue adds before it activates: a convolution with a ReLU keeps its add apart.
    let relu = try LayerPlan(model: residualModel(reluBeforeAdd: true))
    #expect(relu.floatResidualAddFusions().isEmpty)
    // A second reader of the convolution's value keeps it.
    let shared = try LayerPlan(model: residualModel(reluBeforeAdd: false, extraReader: true))
    #expect(shared.floatResidualAddFusions().isEmpty)
  }

  @Test func residualAddFusionTakesTheLaterProducer() {
    // 0: input producer, 1: conv (reads 0), 2: conv (reads 1), 3: add(2, 0) → fuses into 2.
    let inputs = [[-1], [0], [1], [2, 0], [3]]
    let pairs = ResidualAddFusion.pairs(
      count: inputs.count, inputs: { inputs[$0] }, output: 4, isAdd: { $0 == 3 }, canTakeResidual: { $0 != 3 })
    #expect(pairs == [3: 2])
    // The same add whose later producer cannot take a residual stays apart.
    #expect(
      ResidualAddFusion.pairs(
        count: inputs.count, inputs: { inputs[$0] }, output: 4, isAdd: { $0 == 3 }, canTakeResidual: { $0 == 0 }
      ).isEmpty)
  }

  @Test func planErrorsNameTheLayer() {
    var model = residualModel(reluBeforeAdd: false)
    model.weights["d.weight"] = HostTensor(shape: [4, 5, 1, 1], float32: [Float](repeating: 0.1, count: 20))
    #expect(
      throws: GraphPlanError.layer(
        "conv", "weight shape [4, 5, 1, 1] with 1 groups does not fit an input of 4 channels")
    ) {
      try LayerPlan(model: model)
    }
    var small = residualModel(reluBeforeAdd: false)
    small.graph.nodes[1].stride = [0, 1]
    #expect(throws: GraphPlanError.layer("conv", "stride [0, 1] is not two positive numbers")) {
      try LayerPlan(model: small)
    }
  }
}
