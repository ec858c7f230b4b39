import OctetCore
import OctetFloat
import OctetInt8
import OctetModels
import OctetQuantizer
import OctetTestSupport
import Testing

/// Sensitivity analysis: each layer alone in int8, the rest in float.
@Suite struct SensitivityTests {
  /// TinyNet quantized, with `b`'s int8 weights coarsened to ±127 (one bit and a sign).
  func coarsened(_ net: TinyNet) throws -> QuantizedModel {
    var model = try Quantizer.quantize(model: net.model, range: net.range).model
    let b = try #require(model.nodes.firstIndex { $0.name == "b" })
    model.nodes[b].weights = model.nodes[b].weights.map { $0 >= 0 ? 127 : -127 }
    return model
  }

  @Test func anExactLayerCostsNothingAndACoarsenedLayerRanksFirst() throws {
    let net = TinyNet()
    let inputs = TinyNet.inputs(count: 24)
    let ranking = try SensitivityAnalysis.rank(float: net.model, int8: try coarsened(net), inputs: inputs, threads: 2)
    #expect(Set(ranking.map(\.layer)) == ["input", "a", "b", "pool", "flatten", "fc"])
    #expect(ranking.first?.layer == "b", "ranking: \(ranking)")
    let b = try #require(ranking.first)
    #expect(b.kl > 1e-3 && b.agreement < 1, "b: \(b)")
    // The input (whole numbers at scale 1) and `a` (0/1 weights) are exact in int8: the float run
    // with either of them simulated is the float run.
    for exact in ["input", "a"] {
      let s = try #require(ranking.first { $0.layer == exact })
      #expect(s.kl == 0 && s.agreement == 1, "\(exact): \(s)")
    }
    // Most sensitive first.
    #expect(zip(ranking, ranking.dropFirst()).allSatisfy { $0.kl >= $1.kl })
  }

  @Test func theRankingDoesNotDependOnTheThreads() throws {
    let net = TinyNet(aRange: (0, 100))
    let model = try coarsened(net)
    let inputs = TinyNet.inputs(count: 40, seed: 3)
    let one = try SensitivityAnalysis.rank(float: net.model, int8: model, inputs: inputs, threads: 1)
    for _ in 0..<3 {
      #expect(try SensitivityAnalysis.rank(float: net.model, int8: model, inputs: inputs, threads: 2) == one)
    }
  }

  @Test func macsCountMultiplyAddsPerImage() throws {
    let net = TinyNet()
    let macs = try LayerCost.macs(of: Quantizer.quantize(model: net.model, range: net.range).model)
    // 2x2 pixels · 4 outputs · 3 (a) or 4 (b) inputs; the classifier 4 · 5; no weights, no MACs.
    #expect(macs == ["input": 0, "a": 48, "b": 64, "pool": 0, "flatten": 0, "fc": 20])
  }

  @Test func aSimulatedNodeIsTheNodeOfTheIntegerNetwork() throws {
    // Fed its producer's int8 output (dequantized), a node's simulation gives the integer network's
    // output for it: same kernel, same quantization.
    let golden = try SmallNetGolden.load()
    let model = try Quantizer.quantize(model: golden.model, range: golden.range).model
    let simulation = try LayerSimulation(model: model)
    var outputs: [String: QuantizedTensor] = [:]
    let logits = simulation.reference.run(golden.inputTensor) { name, tensor in outputs[name] = tensor }
    #expect(simulation.simulate("input", floatInputs: [golden.inputTensor]) == outputs["input"]!.dequantized())
    let fc = try #require(model.nodes.last)
    #expect(
      simulation.simulate(fc.name, floatInputs: fc.inputs.map { outputs[$0]!.dequantized() }) == logits.dequantized())
    for node in model.nodes where node.op != .quantizeInput && node.op != .linear {
      let simulated = simulation.simulate(node.name, floatInputs: node.inputs.map { outputs[$0]!.dequantized() })
      let expected = outputs[node.name]!.dequantized()
      let differing = zip(simulated.scalars, expected.scalars).filter { $0 != $1 }.count
      #expect(simulated.shape == expected.shape && differing == 0, "\(node.name): \(differing) values differ")
    }
  }
}

/// `FloatExecutor.resume`: the rest of a kept run from one replaced value is the whole run with that
/// replacement, bit for bit.
@Suite struct FloatResumeTests {
  @Test(arguments: [false, true])
  func resumingFromAnyValueEqualsTheWholeRunWithThatReplacement(_ fuseResidualAdd: Bool) throws {
    let golden = try SmallNetGolden.load()
    let executor = try FloatExecutor(model: golden.model, fuseResidualAdd: fuseResidualAdd)
    let input = golden.inputTensor
    let (logits, activations) = executor.activations(input)
    #expect(logits == executor.run(input))
    var seen: [String: Tensor] = [Graph.inputName: input]
    _ = executor.run(input) { name, tensor in seen[name] = tensor }
    for name in [Graph.inputName] + executor.observableNames {
      let kept = try #require(executor.value(name, in: activations), "\(name)")
      #expect(kept == seen[name], "\(name): the kept value is the run's")
      // Halve the value: every later step sees it.
      let half = Tensor(shape: kept.shape, scalars: kept.scalars.map { $0 / 2 })
      let resumed = executor.resume(activations, replacing: name, with: half)
      let whole =
        name == Graph.inputName
        ? executor.run(half)
        : executor.run(input, observe: nil, replace: { step, _ in step == name ? half : nil })
      #expect(resumed == whole, "\(name)")
      #expect(resumed != logits, "\(name): halving it changes the logits")
    }
    // The kept activations are not changed by resuming.
    #expect(executor.activations(input).logits == logits)
    #expect(executor.value("fc", in: activations) == logits)
  }
}
