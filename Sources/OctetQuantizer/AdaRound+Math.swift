/// The per-weight arithmetic of AdaRound's Adam loop, sixteen weights at a time
/// (docs/quantization.md §18). exp and pow are computed here with plain IEEE operations
/// (polynomials on the reduced argument, no libm calls, no fused multiply-adds), so they give the
/// same bits on every CPU and vectorize. Tested against libm: exp2 and σ within 4e-7 relative,
/// log2 within 4e-7 · max(1, |log2 x|) absolute, x^a = 2^(a·log2 x) within 4e-7 · (1 + |a·log2 x|)
/// relative (the float rounding of a·log2 x alone costs that much).
typealias AdaVector = SIMD16<Float>

enum AdaMath {
  /// 2^y for y in [−126, 127] (clamped there): y = n + f, n = round(y), |f| ≤ 1/2, 2^f by its
  /// Taylor polynomial of degree 7 in f·ln 2, 2^n written into the exponent bits.
  static func exp2(_ y: AdaVector) -> AdaVector {
    let y = y.clamped(lowerBound: AdaVector(repeating: -126), upperBound: AdaVector(repeating: 127))
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer (ties to even).
    let magic = AdaVector(repeating: 12_582_912)
    let shifted = y + magic
    let n = shifted - magic
    let t = (y - n) * 0.693_147_18
    var p = AdaVector(repeating: 1.0 / 5040)
    p = p * t + 1.0 / 720
    p = p * t + 1.0 / 120
    p = p * t + 1.0 / 24
    p = p * t + 1.0 / 6
    p = p * t + 0.5
    p = p * t + 1
    p = p * t + 1
    // The low bits of `shifted` are n (two's complement within 0x4B40_0000).
    let bits = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((bits &+ 127) &<< 23, to: AdaVector.self)
    return p * scale
  }

  /// log2(x) for normal x > 0: x = m·2^e with m in [√½, √2), ln m = 2·atanh(s), s = (m − 1)/(m + 1),
  /// by its series to s^9.
  static func log2(_ x: AdaVector) -> AdaVector {
    let bits = unsafeBitCast(x, to: SIMD16<Int32>.self)
    var e = AdaVector((bits &>> 23) &- 127)
    var m = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F80_0000, to: AdaVector.self)
    let high = m .> 1.414_213_56
    m.replace(with: m * 0.5, where: high)
    e.replace(with: e + 1, where: high)
    let s = (m - 1) / (m + 1)
    let s2 = s * s
    var p = AdaVector(repeating: 1.0 / 9)
    p = p * s2 + 1.0 / 7
    p = p * s2 + 1.0 / 5
    p = p * s2 + 1.0 / 3
    p = p * s2 + 1
    return e + (2 * s * p) * 1.442_695_04
  }

  /// σ(v) = 1 / (1 + e^−v).
  static func sigmoid(_ v: AdaVector) -> AdaVector {
    1 / (1 + exp2(v * -1.442_695_04))
  }

  /// x^a for x in [0, 1] and a ≥ 1 (0 at x = 0, and where x^a is below 2^−126).
  static func pow(_ x: AdaVector, _ a: Float) -> AdaVector {
    let tiny = AdaVector(repeating: 1.175_494_4e-38)  // the smallest normal float
    let y = a * log2(x.replacing(with: tiny, where: x .< tiny))
    return exp2(y).replacing(with: 0, where: (x .< tiny) .| (y .< -126))
  }
}
