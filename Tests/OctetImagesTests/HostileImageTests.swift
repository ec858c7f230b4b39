import Foundation
import Testing

@testable import OctetImages

/// Image headers that announce more than the file can hold: refused before pixel memory exists.
@Suite struct HostileImageTests {
  static func crc32(_ bytes: some Sequence<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      crc ^= UInt32(byte)
      for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
  }

  static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
    let body = Array(type.utf8) + data
    return bigEndian(UInt32(data.count)) + body + bigEndian(crc32(body))
  }

  static func bigEndian(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }

  /// A PNG whose IHDR (valid CRC) says `width` x `height` RGB8, followed by a 16-byte IDAT.
  static func png(width: UInt32, height: UInt32) -> [UInt8] {
    [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
      + chunk("IHDR", bigEndian(width) + bigEndian(height) + [8, 2, 0, 0, 0])
      + chunk("IDAT", [0x78, 0x9C] + [UInt8](repeating: 0, count: 14)) + chunk("IEND", [])
  }

  /// 10000x10000 is within the default pixel limit, but 300 MB of pixels cannot come out of a
  /// 70-byte file (deflate expands at most 1032:1): refused before libpng allocates its rows.
  @Test func pngHeaderLargerThanItsDataCanHoldIsRefusedBeforeAllocating() throws {
    let bytes = Self.png(width: 10_000, height: 10_000)
    let start = Date()
    let error = #expect(throws: ImageError.self) {
      try ImageDecoder.decode(data: bytes, name: "big.png")
    }
    guard case .corrupt(let name, let format, let reason) = error else {
      Issue.record("expected .corrupt, got \(String(describing: error))")
      return
    }
    #expect(name == "big.png" && format == "PNG")
    #expect(reason.contains("10000x10000"), "\(reason)")
    #expect(Date().timeIntervalSince(start) < 1)
  }

  /// The bound never refuses a real file: every PNG fixture still decodes.
  @Test func compressedSizeBoundAcceptsRealFiles() throws {
    #expect(throws: Never.self) {
      try ImageDecoder.checkCompressedSize(
        name: "a.png", width: 1032, height: 1, bitDepth: 8, colorType: 0, fileSize: 2)
    }
    #expect(throws: ImageError.self) {
      try ImageDecoder.checkCompressedSize(
        name: "a.png", width: 2064, height: 1, bitDepth: 8, colorType: 0, fileSize: 2)
    }
  }

  /// 100000x100000 with a valid CRC: the pixel limit refuses it (bad/huge-header.png is the same
  /// file on disk); synthesized here to show no fixture is needed and it is quick.
  @Test func pngHeaderOverThePixelLimitIsRefusedQuickly() throws {
    let start = Date()
    #expect(throws: ImageError.tooLarge(name: "h.png", width: 100_000, height: 100_000, limit: ImageDecoder.defaultPixelLimit)) {
      try ImageDecoder.decode(data: Self.png(width: 100_000, height: 100_000), name: "h.png")
    }
    #expect(Date().timeIntervalSince(start) < 1)
  }
}
