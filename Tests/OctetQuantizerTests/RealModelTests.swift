import Foundation
import Octet
import OctetInt8
import OctetQuantizer
import OctetTestSupport
import Testing

/// Quantizes a real checkpoint with min/max ranges observed on 4 validation images (float executor,
/// residual adds unfused, as calibration runs it) and runs 2 other images through the int8
/// reference runtime. Returns (float logits, int8 logits, seconds per int8 image) per image.
func quantizeAndCompare(_ checkpoint: String) throws -> [(float: [Float], int8: [Float], seconds: Double)] {
  let model = try ModelLoader.load(contentsOf: try #require(TestData.model(checkpoint)))
  let inputs = try validationInputs(for: model, count: 6)
  let ranges = try minMaxRanges(of: model, over: Array(inputs.prefix(4)))
  let result = try Quantizer.quantize(model: model) { ranges[$0] }
  #expect(result.report.leftInFloat.isEmpty)
  for w in result.report.warnings { print("\(checkpoint) warning: \(w)") }
  let int8 = try Int8ReferenceExecutor(model: result.model)
  let float = try FloatExecutor(model: model)
  return inputs.suffix(2).map { x in
    let start = Date()
    let q = int8.run(x).dequantized().scalars
    return (float.run(x).scalars, q, Date().timeIntervalSince(start))
  }
}

@Suite struct RealModelTests {
  @Test(.enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)))
  func efficientNetLite0Int8AgreesWithFloat() throws {
    for (i, r) in try quantizeAndCompare("efficientnet-lite0-57934424.pth").enumerated() {
      let c = cosine(r.float, r.int8)
      let sameTop1 = Classifier.topIndices(1, of: r.float) == Classifier.topIndices(1, of: r.int8)
      print(
        "efficientnet-lite0 image \(i): cosine \(c), same top-1 \(sameTop1), int8 \(String(format: "%.3f", r.seconds)) s"
      )
      #expect(sameTop1 || c > 0.99, "image \(i): int8 top-1 differs from float and cosine is \(c)")
    }
  }

  /// Release timing and agreement for both models: `OCTET_INT8_TIMING=1 swift test -c release --filter RealModelTests`.
  @Test(
    .enabled(
      if: ProcessInfo.processInfo.environment["OCTET_INT8_TIMING"] != nil,
      "a timing run for release builds: set OCTET_INT8_TIMING=1"),
    .enabled(if: TestData.resNet50 != nil && TestData.hasImages, Comment(rawValue: TestData.needsResNet50AndImages)))
  func resNet50Int8AgreesWithFloat() throws {
    for (i, r) in try quantizeAndCompare(try #require(TestData.resNet50).lastPathComponent).enumerated() {
      let c = cosine(r.float, r.int8)
      let sameTop1 = Classifier.topIndices(1, of: r.float) == Classifier.topIndices(1, of: r.int8)
      print(
        "resnet50 image \(i): cosine \(c), same top-1 \(sameTop1), int8 \(String(format: "%.3f", r.seconds)) s"
      )
      #expect(sameTop1 || c > 0.99, "image \(i): int8 top-1 differs from float and cosine is \(c)")
    }
  }
}
