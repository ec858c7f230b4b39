import Foundation
import OctetCore
import OctetImages
import OctetTestSupport

/// The goldens written by Scripts/make_image_goldens.py (Pillow is the oracle).
enum Fixtures {
  static let directory: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

  static func url(_ relativePath: String) -> URL {
    directory.appendingPathComponent(relativePath)
  }

  static func load<T: Decodable>(_ type: T.Type, _ name: String) -> T {
    do {
      let data = try Data(contentsOf: url(name))
      let decoder = JSONDecoder()
      decoder.keyDecodingStrategy = .convertFromSnakeCase  // the script writes snake_case
      return try decoder.decode(T.self, from: data)
    } catch {
      fatalError("cannot load fixture \(name): \(error); run Scripts/make_image_goldens.py")
    }
  }

  /// The real images: `../shared/data` next to the package root where it exists (the project's
  /// machines), else `.cache/data`, the sample images Scripts/setup.sh fetches (make_sample_goldens.py).
  static var realData: URL { TestData.hasSharedImages ? TestData.data : TestData.cacheData }

  /// What the real-image tests check, per source of images: golden files and the facts of the set.
  struct RealSet {
    var transforms: String  // full-transform goldens of a few images
    var pngFolder: String, pngGoldens: String, pngCount: Int, grayscalePNGs: Int
    var jpegFolders: [String: String]  // folder -> its JPEG sweep (file, PixelChecksum)
    var minimumJPEGs: [String: Int]
  }

  static var realSet: RealSet {
    TestData.hasSharedImages
      ? RealSet(
        transforms: "shared.json", pngFolder: "imagenet-train-png-120", pngGoldens: "png120.json", pngCount: 120,
        grayscalePNGs: 3,
        jpegFolders: [
          "eval": "imagenet-val-1300", "calibration": "imagenet-train-calibration-500",
        ], minimumJPEGs: ["eval": 1300, "calibration": 500])
      : RealSet(
        transforms: "sample.json", pngFolder: "calibration", pngGoldens: "sample-png.json", pngCount: 8,
        grayscalePNGs: 4, jpegFolders: ["eval": "eval", "calibration": "calibration"],
        minimumJPEGs: ["eval": 20, "calibration": 1])
  }

  static func jpegSweep(_ set: String) -> String {
    TestData.hasSharedImages ? "jpeg-sweep-\(realSet.jpegFolders[set]!).tsv" : "jpeg-sweep-sample-\(set).tsv"
  }

  static let decode = load(DecodeGoldens.self, "decode.json")
  static let resize = load(ResizeGoldens.self, "resize.json")
}

/// Size, SHA-256 of the RGB bytes, and a few pixels as [x, y, r, g, b].
struct ImageGolden: Decodable {
  var width: Int
  var height: Int
  var sha256: String
  var pixels: [[Int]]?

  /// Nil if `image` matches; else what differs, for the failure message.
  func mismatch(_ image: RGBImage) -> String? {
    if image.width != width || image.height != height {
      return "size \(image.width)x\(image.height), Pillow \(width)x\(height)"
    }
    for p in pixels ?? [] {
      let got = image[p[0], p[1]]
      if [Int(got.r), Int(got.g), Int(got.b)] != Array(p[2...]) {
        return "pixel (\(p[0]), \(p[1])) is \(got), Pillow \(Array(p[2...]))"
      }
    }
    let hash = SHA256.hex(image.pixels)
    return hash == sha256 ? nil : "SHA-256 \(hash), Pillow \(sha256) (sampled pixels agree)"
  }
}

struct DecodeGoldens: Decodable {
  var images: [String: ImageGolden]
}

struct TransformGolden: Decodable {
  var input: String?
  var file: String?
  var decoded: ImageGolden?
  var mean: [Float]?
  var std: [Float]?
  var resizedWidth: Int
  var resizedHeight: Int
  var resizedSha256: String
  var cropSha256: String
  var tensorSha256: String
  var tensorSum: Double
  var tensorMean: Double
  var tensorValues: [[Double]]
}

struct ResizeGoldens: Decodable {
  struct Case: Decodable {
    var input: String
    var width: Int
    var height: Int
    var sha256: String
    var pixels: [[Int]]
    var golden: ImageGolden {
      ImageGolden(width: width, height: height, sha256: sha256, pixels: pixels)
    }
  }
  var resize: [Case]
  var transform: [TransformGolden]
}

struct SharedGoldens: Decodable {
  var images: [TransformGolden]
}

struct PNG120Goldens: Decodable {
  var images: [String: ImageGolden]
}

extension Array where Element == Float {
  var littleEndianBytes: [UInt8] { withUnsafeBytes { [UInt8]($0) } }
}
