import Foundation
import OctetCore
import OctetFloat
import OctetModels
import OctetTestSupport
import Testing

/// torchvision's own modules (BasicBlock, Bottleneck with groups, MobileNetV2 at width 0.25) at
/// reduced widths, seeded: Octet's float logits against torch's, which
/// Scripts/make_torchvision_fixtures.py computed and committed.
@Suite struct TorchvisionGoldenTests {
  @Test(arguments: TorchvisionFixtures.names)
  func floatLogitsMatchTorch(_ name: String) throws {
    let model = try TorchvisionFixtures.model(name)
    let golden = try TorchvisionFixtures.golden(name)
    let logits = try FloatExecutor(model: model).run(golden.input)
    let classes = golden.logits[0].count
    #expect(logits.shape == [golden.logits.count, classes])
    for (i, expected) in golden.logits.enumerated() {
      let got = Array(logits.scalars[(i * classes)..<((i + 1) * classes)])
      let dot = zip(got, expected).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
      let norms = sqrt(got.reduce(0.0) { $0 + Double($1 * $1) }) * sqrt(expected.reduce(0.0) { $0 + Double($1 * $1) })
      let maxError = zip(got, expected).map { abs($0 - $1) }.max()!
      // The bar is 0.9999; float32 over these few layers differs from torch by rounding only.
      #expect(dot / norms >= 0.99999, "\(name) image \(i): cosine \(dot / norms)")
      #expect(maxError < 1e-3, "\(name) image \(i): max |difference| \(maxError)")
    }
  }
}
