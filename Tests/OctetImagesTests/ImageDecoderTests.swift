import Foundation
import OctetCore
import Testing

@testable import OctetImages

@Suite("ImageDecoder: pixels equal Pillow's Image.open(path).convert(\"RGB\")")
struct ImageDecoderTests {
  static let goldenNames = Fixtures.decode.images.keys.sorted()

  @Test("decodes like Pillow", arguments: goldenNames)
  func decodesLikePillow(name: String) throws {
    let golden = try #require(Fixtures.decode.images[name])
    let image = try ImageDecoder.decode(contentsOf: Fixtures.url(name))
    let mismatch = golden.mismatch(image)
    #expect(mismatch == nil, "\(name): \(mismatch ?? "")")
  }

  @Test func everyColorTypeAndDepthIsCovered() {
    let names = Set(Self.goldenNames)
    for required in [
      "png/gray1.png", "png/gray8.png", "png/gray16.png", "png/graya8.png", "png/graya16.png",
      "png/palette8-trns.png", "png/rgb16.png", "png/rgba8.png", "png/rgba16.png",
      "png/rgb8-adam7.png", "png/rgb8-1x1.png", "jpeg/baseline-420.jpg",
      "jpeg/progressive-420.jpg", "jpeg/gray.jpg", "jpeg/cmyk.jpg",
    ] {
      #expect(names.contains(required), "decode.json lacks \(required)")
    }
  }

  @Test func sixteenBitGrayClampsLikePillowInsteadOfTakingTheHighByte() throws {
    // Pillow opens 16-bit gray as "I;16" and convert("RGB") clamps to 255.
    let image = try ImageDecoder.decode(contentsOf: Fixtures.url("png/gray16.png"))
    let values = Set(image.pixels)
    #expect(values.contains(255))
    #expect(values.count > 30)  // the small values on even rows pass through unchanged
  }

  @Test func formatComesFromTheSignatureNotTheName() throws {
    #expect(ImageDecoder.format(of: [0xFF, 0xD8, 0xFF, 0xE0]) == .jpeg)
    #expect(ImageDecoder.format(of: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) == .png)
    #expect(ImageDecoder.format(of: [0xFF, 0xD8]) == nil)
    let image = try ImageDecoder.decode(contentsOf: Fixtures.url("bad/png-named.jpg"))
    #expect(image.width == 29 && image.height == 17)
  }

  // MARK: bad input: a Swift error that names the file, never a crash or exit()

  private func decodeError(_ path: String) -> ImageError? {
    do {
      _ = try ImageDecoder.decode(contentsOf: Fixtures.url(path))
      return nil
    } catch let error as ImageError {
      return error
    } catch {
      Issue.record("\(path): unexpected error type \(error)")
      return nil
    }
  }

  @Test func truncatedJPEGIsAnError() throws {
    let error = try #require(decodeError("bad/truncated.jpg"))
    guard case .corrupt(let name, "JPEG", let reason) = error else {
      Issue.record("got \(error)")
      return
    }
    #expect(name == "truncated.jpg")
    #expect(reason == "Premature end of JPEG file")
    #expect(error.description.hasPrefix("'truncated.jpg' is truncated or corrupt: "))
  }

  @Test func jpegMissingOnlyItsEOIIsAnErrorAsInPillow() throws {
    let error = try #require(decodeError("bad/no-eoi.jpg"))
    #expect(error.description.contains("'no-eoi.jpg' is truncated or corrupt"))
  }

  @Test func truncatedPNGIsAnError() throws {
    let error = try #require(decodeError("bad/truncated.png"))
    guard case .corrupt(let name, "PNG", _) = error else {
      Issue.record("got \(error)")
      return
    }
    #expect(name == "truncated.png")
  }

  @Test func textNamedPNGIsNotAnImage() throws {
    let error = try #require(decodeError("bad/text.png"))
    #expect(error == .unrecognizedFormat(name: "text.png"))
    #expect(
      error.description
        == "'text.png' is not a JPEG or PNG file (its first bytes match neither signature)")
  }

  @Test func emptyFileIsAnError() throws {
    let error = try #require(decodeError("bad/empty.png"))
    #expect(error == .empty(name: "empty.png"))
  }

  @Test func missingFileIsAnError() throws {
    let error = try #require(decodeError("bad/no-such-file.png"))
    #expect(error == .unreadable(name: "no-such-file.png", reason: "no such file"))
  }

  @Test func hugePNGHeaderIsRefusedBeforeAllocating() throws {
    let error = try #require(decodeError("bad/huge-header.png"))
    #expect(
      error
        == .tooLarge(
          name: "huge-header.png", width: 100_000, height: 100_000,
          limit: ImageDecoder.defaultPixelLimit))
  }

  @Test func hugeJPEGHeaderIsRefusedBeforeAllocating() throws {
    let error = try #require(decodeError("bad/huge-header.jpg"))
    #expect(
      error
        == .tooLarge(
          name: "huge-header.jpg", width: 60_000, height: 60_000,
          limit: ImageDecoder.defaultPixelLimit))
  }

  @Test func pixelLimitIsInclusive() throws {
    let data = try [UInt8](Data(contentsOf: Fixtures.url("png/rgb8.png")))  // 13x7
    #expect(try ImageDecoder.decode(data: data, name: "a.png", pixelLimit: 91).width == 13)
    #expect(throws: ImageError.tooLarge(name: "a.png", width: 13, height: 7, limit: 90)) {
      try ImageDecoder.decode(data: data, name: "a.png", pixelLimit: 90)
    }
  }

  @Test func everyPrefixOfAJPEGAndAPNGFailsCleanly() throws {
    // No prefix may crash, exit or decode: libjpeg's and libpng's longjmps stay inside the C glue.
    // Like Pillow, a PNG that lacks only its IEND chunk (the last 12 bytes) still decodes.
    for (path, tolerated) in [("jpeg/progressive-420.jpg", 0), ("png/rgb8-adam7.png", 12)] {
      let data = try [UInt8](Data(contentsOf: Fixtures.url(path)))
      let whole = try ImageDecoder.decode(data: data, name: "whole")
      for length in 0..<data.count {
        let prefix = Array(data[..<length])
        if length >= data.count - tolerated {
          #expect(try ImageDecoder.decode(data: prefix, name: "cut") == whole, "\(path) \(length)")
        } else {
          #expect(throws: ImageError.self, "\(path) cut to \(length) bytes") {
            try ImageDecoder.decode(data: prefix, name: "cut")
          }
        }
      }
    }
  }

  @Test func garbageAfterTheSignatureFailsCleanly() {
    var rng = SplitMix64(seed: 7)
    for trial in 0..<200 {
      let signature: [UInt8] =
        trial % 2 == 0 ? [0xFF, 0xD8, 0xFF] : [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
      let data = signature + (0..<(trial * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
      #expect(throws: ImageError.self, "seed 7 trial \(trial)") {
        try ImageDecoder.decode(data: data, name: "garbage")
      }
    }
  }
}

typealias SplitMix64 = SeededGenerator
