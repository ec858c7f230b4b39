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

  /// The bound sits exactly at 1032:1 (the golden tests decode every real PNG fixture through it).
  @Test func compressedSizeBoundIsDeflatesMaximumRatio() throws {
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
    #expect(
      throws: ImageError.tooLarge(
        name: "h.png", width: 100_000, height: 100_000, limit: ImageDecoder.defaultPixelLimit)
    ) {
      try ImageDecoder.decode(data: Self.png(width: 100_000, height: 100_000), name: "h.png")
    }
    #expect(Date().timeIntervalSince(start) < 1)
  }

  /// An 8x8 gray progressive JPEG of `scans` scans, all coefficients zero (mid-gray): the DC scan,
  /// then for each AC coefficient a first scan at Al 13 and its 13 refinements, a valid
  /// progression of up to 883 scans. Every scan's data is one '0' bit (DC 0, or EOB) padded with 1s.
  static func progressiveJPEG(scans: Int) -> [UInt8] {
    func segment(_ marker: UInt8, _ body: [UInt8]) -> [UInt8] {
      [0xFF, marker, UInt8((body.count + 2) >> 8), UInt8((body.count + 2) & 0xFF)] + body
    }
    let oneSymbolTable = [1] + [UInt8](repeating: 0, count: 15) + [0]  // symbol 0, code '0'
    var out: [UInt8] = [0xFF, 0xD8]
    out += segment(0xDB, [0] + [UInt8](repeating: 1, count: 64))
    out += segment(0xC2, [8, 0, 8, 0, 8, 1, 1, 0x11, 0])
    out += segment(0xC4, [0x00] + oneSymbolTable)
    out += segment(0xC4, [0x10] + oneSymbolTable)
    var progression: [(ss: UInt8, ah: UInt8, al: UInt8)] = [(0, 0, 0)]
    for k in UInt8(1)...63 {
      progression.append((k, 0, 13))
      for al in (UInt8(0)...12).reversed() { progression.append((k, al + 1, al)) }
    }
    for scan in progression.prefix(scans) {
      out += segment(0xDA, [1, 1, 0, scan.ss, scan.ss, scan.ah << 4 | scan.al]) + [0x7F]
    }
    return out + [0xFF, 0xD9]
  }

  /// Each scan walks the whole coefficient buffer, so hundreds of valid scans over a large image
  /// keep libjpeg busy for minutes; Octet stops at 500, as TurboJPEG's scan limit does.
  @Test func jpegWithTooManyScansIsRefused() throws {
    let image = try ImageDecoder.decode(data: Self.progressiveJPEG(scans: 400), name: "400.jpg")
    #expect(image.width == 8 && image.pixels.allSatisfy { $0 == 128 })
    let error = #expect(throws: ImageError.self) {
      try ImageDecoder.decode(data: Self.progressiveJPEG(scans: 883), name: "883.jpg")
    }
    guard case .corrupt(let name, _, let reason) = error else {
      Issue.record("expected .corrupt, got \(String(describing: error))")
      return
    }
    #expect(name == "883.jpg" && reason.contains("more than 500 scans"), "\(reason)")
  }

  /// fuzz-image: a 99-byte PNG whose zTXt chunk declares 2 033 222 143 bytes; libpng allocated
  /// that before reading it. Chunks before IDAT must now fit in the file.
  @Test func pngChunkLengthIsNotAnAllocationSize() throws {
    let bytes = try [UInt8](Data(contentsOf: Fixtures.url("bad/fuzz-huge-ztxt.png")))
    let error = #expect(throws: ImageError.self) {
      try ImageDecoder.decode(data: bytes, name: "fuzz-huge-ztxt.png")
    }
    guard case .corrupt(_, "PNG", let reason) = error else {
      Issue.record("expected .corrupt, got \(String(describing: error))")
      return
    }
    #expect(reason.contains("declares 2033222143 bytes"), "\(reason)")
  }
}
