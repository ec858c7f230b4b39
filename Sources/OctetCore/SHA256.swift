/// FIPS 180-4 SHA-256 (Foundation on Linux has no digest API): the digests of calibration images
/// in range tables and int8 model files, and in tests the hashes of decoded pixels that
/// Scripts/make_image_goldens.py wrote with Python's hashlib.
public enum SHA256 {
  private static let roundConstants: [UInt32] = [
    0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4,
    0xab1c_5ed5, 0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe,
    0x9bdc_06a7, 0xc19b_f174, 0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f,
    0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da, 0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7,
    0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967, 0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc,
    0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85, 0xa2bf_e8a1, 0xa81a_664b,
    0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070, 0x19a4_c116,
    0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
    0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7,
    0xc671_78f2,
  ]

  /// The SHA-256 of `bytes`, 64 lowercase hex digits.
  public static func hex(_ bytes: [UInt8]) -> String {
    var state: [UInt32] = [
      0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab,
      0x5be0_cd19,
    ]
    let fullBlocks = bytes.count / 64
    var tail = Array(bytes[(fullBlocks * 64)...])
    tail.append(0x80)
    while tail.count % 64 != 56 { tail.append(0) }
    let bitCount = UInt64(bytes.count) * 8
    for shift in stride(from: 56, through: 0, by: -8) {
      tail.append(UInt8(truncatingIfNeeded: bitCount >> UInt64(shift)))
    }

    var w = [UInt32](repeating: 0, count: 64)
    state.withUnsafeMutableBufferPointer { h in
      w.withUnsafeMutableBufferPointer { w in
        roundConstants.withUnsafeBufferPointer { k in
          bytes.withUnsafeBufferPointer { data in
            for block in 0..<fullBlocks { compress(data.baseAddress! + block * 64, h, w, k) }
          }
          tail.withUnsafeBufferPointer { data in
            for block in 0..<(data.count / 64) { compress(data.baseAddress! + block * 64, h, w, k) }
          }
        }
      }
    }
    return state.map { word in
      let s = String(word, radix: 16)
      return String(repeating: "0", count: 8 - s.count) + s
    }.joined()
  }

  // Tests build without optimization, so the round loop avoids helper calls, checked buffer
  // subscripts and the generic `<<`/`>>`: raw pointers, masking shifts, rotations written out.
  private static func compress(
    _ block: UnsafePointer<UInt8>, _ h: UnsafeMutableBufferPointer<UInt32>,
    _ wBuffer: UnsafeMutableBufferPointer<UInt32>, _ kBuffer: UnsafeBufferPointer<UInt32>
  ) {
    let w = wBuffer.baseAddress!
    let k = kBuffer.baseAddress!
    var t = 0
    while t < 16 {
      let b = block + t * 4
      w[t] = UInt32(b[0]) &<< 24 | UInt32(b[1]) &<< 16 | UInt32(b[2]) &<< 8 | UInt32(b[3])
      t += 1
    }
    while t < 64 {
      let x = w[t - 15]
      let y = w[t - 2]
      let s0 = (x &>> 7 | x &<< 25) ^ (x &>> 18 | x &<< 14) ^ (x &>> 3)
      let s1 = (y &>> 17 | y &<< 15) ^ (y &>> 19 | y &<< 13) ^ (y &>> 10)
      w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
      t += 1
    }
    var a = h[0]
    var b = h[1]
    var c = h[2]
    var d = h[3]
    var e = h[4]
    var f = h[5]
    var g = h[6]
    var hh = h[7]
    t = 0
    while t < 64 {
      let s1 = (e &>> 6 | e &<< 26) ^ (e &>> 11 | e &<< 21) ^ (e &>> 25 | e &<< 7)
      let ch = (e & f) ^ (~e & g)
      let t1 = hh &+ s1 &+ ch &+ k[t] &+ w[t]
      let s0 = (a &>> 2 | a &<< 30) ^ (a &>> 13 | a &<< 19) ^ (a &>> 22 | a &<< 10)
      let maj = (a & b) ^ (a & c) ^ (b & c)
      hh = g
      g = f
      f = e
      e = d &+ t1
      d = c
      c = b
      b = a
      a = t1 &+ s0 &+ maj
      t += 1
    }
    h[0] &+= a
    h[1] &+= b
    h[2] &+= c
    h[3] &+= d
    h[4] &+= e
    h[5] &+= f
    h[6] &+= g
    h[7] &+= hh
  }
}
