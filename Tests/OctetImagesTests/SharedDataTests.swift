import Foundation
import OctetCore
import Testing

@testable import OctetImages

/// Real ImageNet images from ../shared/data (not in the repository): decoding and the full
/// transform must equal Pillow + torchvision bit for bit.
@Suite("Real images in ../shared/data", .enabled(if: Fixtures.hasSharedData, "needs ../shared/data"))
struct SharedDataTests {
  @Test func realImagesTransformLikeTorchvision() throws {
    let goldens = Fixtures.load(SharedGoldens.self, "shared.json")
    #expect(goldens.images.count >= 4)
    for golden in goldens.images {
      let file = try #require(golden.file)
      let image = try ImageDecoder.decode(
        contentsOf: Fixtures.sharedData.appendingPathComponent(file))
      if let decoded = golden.decoded, let mismatch = decoded.mismatch(image) {
        Issue.record("\(file) decodes differently from Pillow: \(mismatch)")
      }
      checkTransform(image, golden, .imagenet, label: file)
    }
  }

  @Test func all120PNGsDecodeLikePillow() throws {
    let goldens = Fixtures.load(PNG120Goldens.self, "png120.json")
    let folder = Fixtures.sharedData.appendingPathComponent("imagenet-train-png-120")
    #expect(goldens.images.count == 120)
    var grayscale = 0
    for (name, golden) in goldens.images.sorted(by: { $0.key < $1.key }) {
      let image = try ImageDecoder.decode(contentsOf: folder.appendingPathComponent(name))
      if let mismatch = golden.mismatch(image) { Issue.record("\(name): \(mismatch)") }
      if isGray(image) { grayscale += 1 }
    }
    #expect(grayscale == 3)
  }

  /// Every JPEG of the evaluation and calibration sets: the system libjpeg-turbo must decode
  /// exactly as the one bundled with Pillow (compared by PixelChecksum, fast in debug builds).
  @Test(arguments: ["imagenet-val-1300", "imagenet-train-calibration-500"])
  func everyJPEGDecodesLikePillow(folder: String) throws {
    let text = try String(
      contentsOf: Fixtures.url("jpeg-sweep-\(folder).tsv"), encoding: .utf8)
    let lines = text.split(separator: "\n")
    #expect(lines.count >= 500)
    var mismatches: [String] = []
    for line in lines {
      let fields = line.split(separator: "\t")
      let name = String(fields[0])
      let image = try ImageDecoder.decode(
        contentsOf: Fixtures.sharedData.appendingPathComponent(folder).appendingPathComponent(name))
      if PixelChecksum.hex(image.pixels) != fields[1] { mismatches.append(name) }
    }
    #expect(
      mismatches.isEmpty, "\(mismatches.count) of \(lines.count) differ: \(mismatches.prefix(10))")
  }

  private func isGray(_ image: RGBImage) -> Bool {
    let p = image.pixels
    for i in stride(from: 0, to: p.count, by: 3) where p[i] != p[i + 1] || p[i] != p[i + 2] {
      return false
    }
    return true
  }
}
