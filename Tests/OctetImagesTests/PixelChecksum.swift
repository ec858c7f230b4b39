/// A fast, order-sensitive 64-bit checksum of a byte string, for the sweep over 1800 JPEGs where
/// SHA-256 in an unoptimized test build would take minutes. The bytes, zero-padded to a multiple
/// of 8, are read as little-endian UInt64 words w_i; the checksum is
/// `n XOR sum_i fmix64(w_i + i * 0x9E3779B97F4A7C15)` mod 2^64, fmix64 being MurmurHash3's
/// finalizer. Scripts/make_image_goldens.py computes the same with NumPy.
enum PixelChecksum {
  static func hex(_ bytes: [UInt8]) -> String {
    var padded = bytes
    while padded.count % 8 != 0 { padded.append(0) }
    var sum: UInt64 = 0
    padded.withUnsafeBytes { raw in
      let base = raw.baseAddress!
      var i = 0
      while i < raw.count / 8 {
        var x = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
        x = x &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15
        x = (x ^ (x &>> 33)) &* 0xFF51_AFD7_ED55_8CCD
        x = (x ^ (x &>> 33)) &* 0xC4CE_B9FE_1A85_EC53
        sum = sum &+ (x ^ (x &>> 33))
        i += 1
      }
    }
    let s = String(sum ^ UInt64(bytes.count), radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
  }
}
