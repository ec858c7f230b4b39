import Foundation
import OctetCore
import OctetTestSupport
import Testing

@testable import OctetImages

/// Real photos, decoded and transformed exactly as Pillow + torchvision do: ../shared/data's ImageNet
/// sets where they exist, else the sample images Scripts/setup.sh fetched into .cache/data (goldens
/// from Scripts/make_image_goldens.py and Scripts/make_sample_goldens.py; none copied here).
@Suite(
  "Real images in ../shared/data, else .cache/data",
  .enabled(if: TestData.hasImages && TestData.hasCalibrationImages, Comment(rawValue: TestData.needsImages)))
struct SharedDataTests {
  @Test func realImagesTransformLikeTorchvision() throws {
    let goldens = Fixtures.load(SharedGoldens.self, Fixtures.realSet.transforms)
    #expect(goldens.images.count >= 4)
    for golden in goldens.images {
      let file = try #require(golden.file)
      let image = try ImageDecoder.decode(contentsOf: Fixtures.realData.appendingPathComponent(file))
      if let decoded = golden.decoded, let mismatch = decoded.mismatch(image) {
        Issue.record("\(file) decodes differently from Pillow: \(mismatch)")
      }
      checkTransform(image, golden, .imagenet, label: file)
    }
  }

  /// Every PNG of the set (../shared's 120, or the sample photos), grayscale ones included.
  @Test func everyPNGDecodesLikePillow() throws {
    let set = Fixtures.realSet
    let goldens = Fixtures.load(PNG120Goldens.self, set.pngGoldens)
    let folder = Fixtures.realData.appendingPathComponent(set.pngFolder)
    #expect(goldens.images.count == set.pngCount)
    var grayscale = 0
    for (name, golden) in goldens.images.sorted(by: { $0.key < $1.key }) {
      let image = try ImageDecoder.decode(contentsOf: folder.appendingPathComponent(name))
      if let mismatch = golden.mismatch(image) { Issue.record("\(name): \(mismatch)") }
      if isGray(image) { grayscale += 1 }
    }
    #expect(grayscale == set.grayscalePNGs)
  }

  /// Every JPEG of the evaluation and calibration sets: the system libjpeg-turbo must decode
  /// exactly as the one bundled with Pillow (compared by PixelChecksum, fast in debug builds).
  @Test(arguments: ["eval", "calibration"])
  func everyJPEGDecodesLikePillow(set: String) throws {
    let folder = try #require(Fixtures.realSet.jpegFolders[set])
    let text = try String(contentsOf: Fixtures.url(Fixtures.jpegSweep(set)), encoding: .utf8)
    let lines = text.split(separator: "\n")
    #expect(lines.count >= Fixtures.realSet.minimumJPEGs[set]!)
    var mismatches: [String] = []
    for line in lines {
      let fields = line.split(separator: "\t")
      let name = String(fields[0])
      let image = try ImageDecoder.decode(
        contentsOf: Fixtures.realData.appendingPathComponent(folder).appendingPathComponent(name))
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
