import Foundation
import OctetCore
import OctetModels
import Testing

@testable import OctetInt8

/// A grouped (not depthwise) convolution. The fast executor runs it as a GEMM per group
/// (FastPlanner+Grouped.swift); `layerCases` holds it to the reference on every backend. Here: the
/// reference's grouped kernel against plain Swift loops over §5 (so that the reference the
/// backends are held to is itself checked), and the plan's kind.
@Suite struct GroupedConvolutionTests {
  @Test("grouped (non-depthwise) convolution: reference against plain loops, fast as a GEMM per group")
  func groupedConvolutionReferenceAndPlan() throws {
    let c = LayerCase(size: 5, cin: 4, cout: 6, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 2)
    let model = try makeLayerModel(c, seed: 0xFA57_0100)
    var rng = SeededGenerator(seed: 0x6709)
    let input = Tensor(shape: [3, 5, 5, 3], scalars: rng.floats(3 * 5 * 5 * 3, in: -3...3))
    let reference = try Int8ReferenceExecutor(model: model)
    var expected: [String: QuantizedTensor] = [:]
    let logits = reference.run(input) { name, t in expected[name] = t }

    // The reference's grouped kernel against plain loops: requantized with the Swift primitives.
    let layer = try #require(model.nodes.first { $0.name == "layer" })
    let accumulators = naiveConvAccumulators(of: layer, input: try #require(expected["pre"]))
    let codes = accumulators.enumerated().map { i, acc -> UInt8 in
      let c = i % layer.outChannels!
      let y = RequantMultiplier(multiplier: layer.multipliers[c], shift: layer.shifts[c]).apply(Int32(acc))
      return clampToUInt8(y + Int64(layer.output.zeroPoint), lo: Int32(layer.clamp![0]), hi: Int32(layer.clamp![1]))
    }
    #expect(codes == expected["layer"]?.values, "the reference's grouped convolution differs from plain loops")
    #expect(Set(codes).count >= 8, "the grouped layer's outputs are too uniform to test anything")

    let fast = try Int8FastExecutor(model: model, backend: .scalar, threads: 1)
    #expect(fast.layers.first { $0.name == "layer" }?.kind == "grouped_conv")
    var differing: [String] = []
    let got = fast.run(input) { name, t in if expected[name] != t { differing.append(name) } }
    #expect(differing.isEmpty, "nodes differ: \(differing)")
    #expect(got == logits)
  }
}
