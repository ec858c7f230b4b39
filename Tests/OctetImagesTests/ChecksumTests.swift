import OctetCore
import Testing

/// The test-side digests must agree with Python's hashlib and with
/// Scripts/make_image_goldens.py's pixel_checksum, or every golden comparison is meaningless.
@Suite struct ChecksumTests {
  @Test func sha256MatchesKnownVectors() {
    #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(
      SHA256.hex(Array("abc".utf8))
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    // 56 bytes: the padding spills into a second block.
    #expect(
      SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
        == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
  }

  @Test func pixelChecksumMatchesTheScript() {
    // Values printed by make_image_goldens.pixel_checksum.
    #expect(PixelChecksum.hex(Array("abc".utf8)) == "2960551a5e88bf79")
    let ramp = (0..<768).map { UInt8($0 % 256) }
    #expect(PixelChecksum.hex(ramp) == "790b72a4b692d434")
  }
}
