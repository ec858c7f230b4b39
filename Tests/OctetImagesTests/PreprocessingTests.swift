import Foundation
import OctetCore
import Testing

@testable import OctetImages

/// Compares a transform's result with torchvision's (Resize, CenterCrop, ToTensor, Normalize on a
/// PIL image) as written by Scripts/make_image_goldens.py. The uint8 stages must match exactly.
func checkTransform(
  _ image: RGBImage, _ golden: TransformGolden, _ preprocessing: Preprocessing, label: String
) {
  let size = preprocessing.resizedSize(width: image.width, height: image.height)
  #expect(size.width == golden.resizedWidth && size.height == golden.resizedHeight, "\(label)")
  let resized = preprocessing.resizeBilinear(image, width: size.width, height: size.height)
  #expect(SHA256.hex(resized.pixels) == golden.resizedSha256, "\(label): resized pixels differ")
  let cropped = preprocessing.centerCrop(
    resized, width: preprocessing.cropSize, height: preprocessing.cropSize)
  #expect(SHA256.hex(cropped.pixels) == golden.cropSha256, "\(label): cropped pixels differ")
  #expect(preprocessing.resizeAndCrop(image) == cropped, "\(label): fused path differs")

  let tensor = preprocessing.apply(to: image)
  #expect(tensor.shape == [1, preprocessing.cropSize, preprocessing.cropSize, 3])
  #expect(
    SHA256.hex(tensor.scalars.littleEndianBytes) == golden.tensorSha256,
    "\(label): float32 tensor is not bit-identical to torchvision's")
  let sum = tensor.scalars.reduce(0.0) { $0 + Double($1) }
  #expect(abs(sum - golden.tensorSum) <= 1e-6 * max(1, abs(golden.tensorSum)), "\(label)")
  #expect(abs(sum / Double(tensor.count) - golden.tensorMean) <= 1e-9, "\(label)")
  for pair in golden.tensorValues {
    #expect(tensor.scalars[Int(pair[0])] == Float(pair[1]), "\(label): value \(Int(pair[0]))")
  }
}

@Suite("Preprocessing: torchvision's Resize + CenterCrop + ToTensor + Normalize, Pillow-exact")
struct PreprocessingTests {
  static let resizeCases = Fixtures.resize.resize.indices.map { $0 }

  static func input(_ path: String) throws -> RGBImage {
    try ImageDecoder.decode(contentsOf: Fixtures.url(path))
  }

  @Test("resize equals Pillow's BILINEAR", arguments: resizeCases)
  func resizeEqualsPillow(index: Int) throws {
    let c = Fixtures.resize.resize[index]
    let image = try Self.input(c.input)
    let resized = Preprocessing.imagenet.resizeBilinear(image, width: c.width, height: c.height)
    let mismatch = c.golden.mismatch(resized)
    #expect(
      mismatch == nil,
      "\(c.input) \(image.width)x\(image.height) -> \(c.width)x\(c.height): \(mismatch ?? "")")
  }

  @Test(
    "full transform equals torchvision", arguments: Fixtures.resize.transform.indices.map { $0 })
  func transformEqualsTorchvision(index: Int) throws {
    let golden = Fixtures.resize.transform[index]
    let input = try #require(golden.input)
    let preprocessing = Preprocessing(
      resizeShorter: 256, cropSize: 224, mean: try #require(golden.mean),
      std: try #require(golden.std))
    checkTransform(try Self.input(input), golden, preprocessing, label: input)
  }

  @Test func resizedSizeFollowsTorchvision() {
    let p = Preprocessing.imagenet
    #expect(p.resizedSize(width: 500, height: 375) == (341, 256))  // int(256 * 500 / 375) = 341
    #expect(p.resizedSize(width: 375, height: 500) == (256, 341))
    #expect(p.resizedSize(width: 227, height: 227) == (256, 256))
    #expect(p.resizedSize(width: 500, height: 333) == (384, 256))  // 384.38 truncated
    #expect(p.resizedSize(width: 1, height: 3) == (256, 768))
  }

  @Test func centerCropRoundsHalfToEven() {
    // (341 - 224) / 2 = 58.5 rounds to 58 (Python's round), (343 - 224) / 2 = 59.5 to 60.
    #expect(Preprocessing.cropPlan(size: 341, crop: 224).source == 58)
    #expect(Preprocessing.cropPlan(size: 343, crop: 224).source == 60)
    #expect(Preprocessing.cropPlan(size: 256, crop: 224).source == 16)
    #expect(Preprocessing.cropPlan(size: 224, crop: 224).source == 0)
  }

  @Test func centerCropPadsWithZerosLikeTorchvision() {
    // torchvision pads (crop - size) // 2 before and the rest after, then crops at 0.
    let image = RGBImage(width: 3, height: 4, pixels: (0..<36).map { UInt8($0 + 1) })
    let cropped = Preprocessing.imagenet.centerCrop(image, width: 6, height: 2)
    // Columns: 1 zero, 3 image, 2 zeros. Rows: start at round((4 - 2) / 2) = 1.
    #expect(cropped.width == 6 && cropped.height == 2)
    #expect(cropped[0, 0] == (0, 0, 0))
    #expect(cropped[1, 0] == (10, 11, 12))  // image (0, 1)
    #expect(cropped[3, 1] == (25, 26, 27))  // image (2, 2)
    #expect(cropped[4, 1] == (0, 0, 0) && cropped[5, 0] == (0, 0, 0))
  }

  @Test func smallCustomCropTakesThePaddingPath() {
    let p = Preprocessing(resizeShorter: 8, cropSize: 10, mean: [0, 0, 0], std: [1, 1, 1])
    let image = RGBImage(width: 4, height: 2, pixels: [UInt8](repeating: 200, count: 24))
    let tensor = p.apply(to: image)  // resized to 16x8, then padded to 10 rows
    #expect(tensor.shape == [1, 10, 10, 3])
    #expect(tensor.scalars[0] == 0)  // padding row
    #expect(tensor.scalars[3 * 10 * 5] == Float(200) / 255)
  }

  @Test func sameSizeResizeIsTheIdentity() throws {
    let image = try Self.input("resize/random-37x23.png")
    #expect(Preprocessing.imagenet.resizeBilinear(image, width: 37, height: 23) == image)
  }

  @Test func windowedResizeEqualsCroppingTheFullResize() throws {
    // Seeded windows over up- and down-scales; the fused path relies on this.
    let image = try Self.input("resize/random-160x120.png")
    var rng = SplitMix64(seed: 11)
    for trial in 0..<40 {
      let w = Int.random(in: 1...300, using: &rng)
      let h = Int.random(in: 1...300, using: &rng)
      let full = Preprocessing.imagenet.resizeBilinear(image, width: w, height: h)
      let ww = Int.random(in: 1...w, using: &rng)
      let wh = Int.random(in: 1...h, using: &rng)
      let x0 = Int.random(in: 0...(w - ww), using: &rng)
      let y0 = Int.random(in: 0...(h - wh), using: &rng)
      let window = PillowBilinear.resize(image, width: w, height: h, window: x0, y0, ww, wh)
      var expected = [UInt8]()
      for y in y0..<(y0 + wh) {
        expected += full.pixels[((y * w + x0) * 3)..<((y * w + x0 + ww) * 3)]
      }
      #expect(
        window.pixels == expected,
        "seed 11 trial \(trial): \(w)x\(h) window \(x0),\(y0) \(ww)x\(wh)")
    }
  }
}
