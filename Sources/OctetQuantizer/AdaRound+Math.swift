/// The per-weight arithmetic of AdaRound's Adam loop, sixteen weights at a time
/// (docs/quantization.md §18). exp and pow are computed here with plain IEEE operations
/// (polynomials on the reduced argument, no libm calls, no fused multiply-adds), so they give the
/// same bits on every CPU and vectorize. Tested against libm: exp2 within 4e-7 relative, log2
/// within 4e-7 · max(1, |log2 x|) absolute, x^a = 2^(a·log2 x) within 4e-7 · (1 + |a·log2 x|) and
/// σ(v) within 4e-7 · (1 + |v|) relative (the float rounding of the argument of 2^y alone costs
/// that much).
///
/// Only operations the compiler maps to vector instructions are used: arithmetic, comparisons,
/// integer bit operations and bit casts. min, max, clamping and selection are written as bit masks
/// (the standard library's generic `clamped` and `replacing(with:where:)` run lane by lane).
typealias AdaVector = SIMD16<Float>
typealias AdaMask = SIMDMask<SIMD16<Int32>>

enum AdaMath {
  /// `b` where `mask` is set, else `a`.
  @inline(__always)
  static func select(_ a: AdaVector, _ b: AdaVector, where mask: AdaMask) -> AdaVector {
    let m = unsafeBitCast(mask, to: SIMD16<Int32>.self)
    let (ai, bi) = (unsafeBitCast(a, to: SIMD16<Int32>.self), unsafeBitCast(b, to: SIMD16<Int32>.self))
    return unsafeBitCast((ai & ~m) | (bi & m), to: AdaVector.self)
  }

  /// x clamped to [lo, hi] (x not NaN).
  @inline(__always)
  static func clamp(_ x: AdaVector, _ lo: Float, _ hi: Float) -> AdaVector {
    let (l, h) = (AdaVector(repeating: lo), AdaVector(repeating: hi))
    return select(select(x, l, where: x .< l), h, where: x .> h)
  }

  /// 2^y for y in [−126, 127] (clamped there): y = n + f, n = round(y), |f| ≤ 1/2, 2^f by its
  /// Taylor polynomial of degree 7 in f·ln 2, 2^n written into the exponent bits.
  @inline(__always)
  static func exp2(_ y: AdaVector) -> AdaVector {
    let y = clamp(y, -126, 127)
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
    // The low bits of `shifted` are n (two's complement, offset by 0x4B40_0000).
    let bits = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((bits &+ 127) &<< 23, to: AdaVector.self)
    return p * scale
  }

  /// log2(x) for normal x > 0: x = m·2^e with m in [√½, √2), ln m = 2·atanh(s), s = (m − 1)/(m + 1),
  /// by its series to s^9.
  @inline(__always)
  static func log2(_ x: AdaVector) -> AdaVector {
    let bits = unsafeBitCast(x, to: SIMD16<Int32>.self)
    var m = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F80_0000, to: AdaVector.self)
    let high = m .> 1.414_213_56
    // The biased exponent (plus 1 where m is halved) as a float: written under 1.5·2^23's bits.
    let exponent = (bits &>> 23) &+ (unsafeBitCast(high, to: SIMD16<Int32>.self) & 1)
    let e = unsafeBitCast(exponent &+ 0x4B40_0000, to: AdaVector.self) - (12_582_912 + 127)
    m = select(m, m * 0.5, where: high)
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
  @inline(__always)
  static func sigmoid(_ v: AdaVector) -> AdaVector {
    1 / (1 + exp2(v * -1.442_695_04))
  }

  /// x^a for x in [0, 1] and a ≥ 1 (0 at x = 0, and where x^a is below 2^−126).
  @inline(__always)
  static func pow(_ x: AdaVector, _ a: Float) -> AdaVector {
    let tiny = AdaVector(repeating: 1.175_494_4e-38)  // the smallest normal float
    let small = x .< tiny
    let y = a * log2(select(x, tiny, where: small))
    return select(exp2(y), AdaVector(), where: small .| (y .< -126))
  }
}
