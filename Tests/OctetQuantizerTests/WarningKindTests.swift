import Foundation
import OctetCore
import OctetModels
import OctetTestSupport
import Testing

@testable import OctetQuantizer

/// The quantizer's warnings carry their kind and channels, and the report turns them into one line
/// per kind that points to the section of docs/quantization.md explaining it.
@Suite struct WarningKindTests {
  /// Channel 0 ordinary, 1 all zero, 2 and 3 dead (weights ~1e-12, bias 3): one warning of each kind.
  func warnings(node: String) throws -> [QuantizationWarning] {
    let input = ActivationQuantization(scale: 0.02, zeroPoint: 0)
    let weights: [Double] = [0.5, -0.25, 0, 0, 1e-12, -2e-12, 3e-12, 1e-12]
    var warnings: [QuantizationWarning] = []
    _ = try Quantizer.quantizeChannels(
      weights: weights, bias: [0.1, 0.2, 3.0, -3.0], outChannels: 4, input: input, node: node, warnings: &warnings)
    return warnings
  }

  @Test func warningsNameTheirKindAndChannels() throws {
    let list = try warnings(node: "conv")
    #expect(list.map(\.kind) == [.allZeroWeights, .weightScaleRaised])
    #expect(list.map(\.channels) == [[1], [2, 3]])
    #expect(list.allSatisfy { $0.node == "conv" })
  }

  @Test func oneLinePerKindCountsChannelsAndLayers() throws {
    let report = QuantizationReport(
      nodesByOperator: [:], floatNodesCovered: 0, leftInFloat: [],
      warnings: try warnings(node: "a") + warnings(node: "b") + [.init(node: "t", message: "m", kind: .zeroRange)])
    let lines = report.warningSummary
    #expect(lines.count == 3)
    #expect(lines[0].hasPrefix("1 tensor(s) in 1 layer(s): calibrated range [0, 0]"))
    #expect(
      lines[1]
        == "2 output channel(s) in 2 layer(s): all weights 0 after BatchNorm folding: weight scale 1, int8 weights 0 (docs/quantization.md §2, §13); accuracy effect: none: the channel outputs its bias, a constant, in float as well, and int8 gives that constant to within half an input step"
    )
    #expect(lines[2].hasPrefix("4 output channel(s) in 2 layer(s): weight scale raised so that |bias| fits in 2^30"))
  }

  /// A real graph: SmallNet's all-zero channel 3 of pw.conv is reported as such.
  @Test func theGoldenNetsZeroChannelHasItsKind() throws {
    let golden = try SmallNetGolden.load()
    let warnings = try Quantizer.quantize(model: golden.model, range: golden.range).report.warnings
    #expect(warnings.contains { $0.node == "pw.bn" && $0.kind == .allZeroWeights && $0.channels == [3] })
    #expect(!warnings.contains { $0.kind == .other })
  }

  /// Every section a kind points to exists, and docs/quantization.md explains every kind by its JSON name.
  @Test func everyKindIsExplainedInTheDocs() throws {
    let doc = try String(
      contentsOf: TestData.root.appendingPathComponent("docs/quantization.md"), encoding: .utf8)
    for kind in QuantizationWarning.Kind.allCases where kind != .other {
      #expect(doc.contains("`\(kind.rawValue)`"), "docs/quantization.md does not explain '\(kind.rawValue)'")
      #expect(kind.section.hasPrefix("docs/quantization.md "))
      for section in kind.section.dropFirst("docs/quantization.md ".count).split(separator: ", ") {
        #expect(doc.contains("\n## \(section) "), "\(kind.rawValue) cites \(section), which docs/quantization.md lacks")
      }
    }
  }

  /// The calibration digests travel in the int8 file's metadata; a file without them reads with nil.
  @Test func calibrationImagesRoundTripThroughTheModelFile() throws {
    let golden = try SmallNetGolden.load()
    var model = try Quantizer.quantize(model: golden.model, range: golden.range).model
    model.calibrationImages = [String(repeating: "ab", count: 32), String(repeating: "cd", count: 32)]
    let tensors = QuantizedModelFile.tensors(for: model)
    var metadata = try QuantizedModelFile.metadata(for: model)
    let back = try QuantizedModelFile.decode(tensors: tensors, metadata: metadata, path: "m")
    #expect(back.calibrationImages == model.calibrationImages)
    #expect(back == model)
    metadata["octet.calibration_sha256"] = nil
    #expect(try QuantizedModelFile.decode(tensors: tensors, metadata: metadata, path: "m").calibrationImages == nil)
    metadata["octet.calibration_sha256"] = "{}"
    #expect(
      throws: QuantizedModelError.notAQuantizedModel(
        path: "m", reason: "its 'octet.calibration_sha256' is not a JSON array of strings")
    ) { try QuantizedModelFile.decode(tensors: tensors, metadata: metadata, path: "m") }
  }
}
