import Foundation
import OctetCore
import OctetInt8
import OctetModels
import OctetQuantizer
import Testing

/// Bit-exact agreement with Scripts/int8_reference.py, a NumPy re-implementation of the contract.
@Suite struct SmallNetGoldenTests {
  @Test func everyTensorAndTheLogitsMatchNumPyBitForBit() throws {
    let golden = try SmallNetGolden.load()
    let result = try Quantizer.quantize(model: golden.model, range: golden.range)
    #expect(result.report.leftInFloat.isEmpty)
    // stem, dw, pw, short convs; the add; pool; avgpool; flatten; fc; and the input.
    #expect(
      result.report.nodesByOperator == [
        "quantize_input": 1, "conv2d": 4, "add": 1, "max_pool": 1, "global_average_pool": 1, "flatten": 1,
        "linear": 1,
      ])
    // pw.conv's output channel 3 is all zero in the script.
    #expect(result.report.warnings.contains { $0.node == "pw.bn" && $0.message.contains("all-zero") })

    let executor = try Int8ReferenceExecutor(model: result.model)
    var seen: Set<String> = []
    let logits = executor.run(golden.inputTensor) { name, tensor in
      seen.insert(name)
      guard let expected = golden.expected[name] else {
        Issue.record("node '\(name)' has no golden tensor (seed \(golden.seed))")
        return
      }
      let got = tensor.values.map(Int.init)
      let mismatches = zip(got, expected).enumerated().filter { $0.element.0 != $0.element.1 }
      #expect(got.count == expected.count, "\(name): \(got.count) values, golden has \(expected.count)")
      #expect(
        mismatches.isEmpty,
        "\(name): \(mismatches.count) values differ, first at \(mismatches.first.map { "index \($0.offset): \($0.element.0) vs \($0.element.1)" } ?? "") (golden seed \(golden.seed))"
      )
    }
    #expect(seen == Set(golden.expected.keys))
    #expect(logits.values == golden.logits, "int32 logits differ from NumPy (golden seed \(golden.seed))")
    #expect(logits.scale == golden.logitScale)
  }

  @Test func missingRangeIsAnErrorNamingTheTensor() throws {
    let golden = try SmallNetGolden.load()
    #expect(throws: QuantizerError.missingRange(tensor: "dw.relu6")) {
      try Quantizer.quantize(model: golden.model) { $0 == "dw.relu6" ? nil : golden.range($0) }
    }
  }

  @Test func degenerateRangesGiveDefinedParameters() throws {
    let golden = try SmallNetGolden.load()
    // Every activation range [0, 0]: scale 1, zero point 0, no NaN anywhere, and a warning per tensor.
    let result = try Quantizer.quantize(model: golden.model) { _ in (lo: 0, hi: 0) }
    #expect(result.report.warnings.filter { $0.message.contains("[0, 0]") }.count == 7)
    for node in result.model.nodes {
      #expect(node.output.scale.isFinite && node.output.scale > 0, "\(node.name)")
    }
    let logits = try Int8ReferenceExecutor(model: result.model).run(golden.inputTensor)
    #expect(logits.dequantized().scalars.allSatisfy { $0.isFinite })
  }
}
