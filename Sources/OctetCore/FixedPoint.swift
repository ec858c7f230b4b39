// Fixed-point primitives of the int8 runtime. Everything here is scalar, allocation-free and
// @inlinable: the reference interpreter calls it per element, and the SIMD kernels must match it
// bit for bit. The arithmetic is specified in docs/quantization.md; each declaration names the
// section it implements.

/// `2^n` as a Double, exact for -1022...1023.
@usableFromInline func exactPowerOfTwo(_ n: Int) -> Double {
  Double(sign: .plus, exponent: n, significand: 1)
}

/// A non-negative real multiplier `M ≈ multiplier · 2^-shift` in fixed point.
/// `multiplier` is in [2^30, 2^31) with `shift` in 1...62, except when M is too small for that:
/// then `shift` is 62 and `multiplier` = round(M · 2^62) is in [0, 2^30] (0 represents M = 0).
/// docs/quantization.md §3 Requantization.
public struct RequantMultiplier: Codable, Sendable, Equatable, Hashable {
  public var multiplier: Int32
  public var shift: Int32

  /// Stores a fixed-point pair as it is; the ranges above are preconditions.
  public init(multiplier: Int32, shift: Int32) {
    precondition(
      Self.isValid(multiplier: multiplier, shift: shift),
      "requantization pair (m: \(multiplier), n: \(shift)) must have n in 1...62 and m in [2^30, 2^31)"
        + " (m may be smaller, down to 0, only when n is 62 or m is 0)")
    self.multiplier = multiplier
    self.shift = shift
  }

  /// The frexp rule: with `M = f · 2^e`, f in [0.5, 1), `m = round(f · 2^31)` (half away from zero;
  /// a carry to 2^31 becomes m = 2^30, e + 1) and `n = 31 - e`; if n > 62, then n = 62 and
  /// m = round(M · 2^62). The result is within half a unit of its last place:
  /// `|M - m · 2^-n| <= 2^-(n+1)`. Throws for NaN, infinite or negative M, and for M so close to
  /// 2^30 or above that n would be < 1. docs/quantization.md §3.
  public init(real: Double) throws(QuantizationError) {
    guard real.isFinite, real >= 0, real < exactPowerOfTwo(30) else {
      throw .multiplierOutOfRange(real)
    }
    if real == 0 {
      self.init(multiplier: 0, shift: 62)
      return
    }
    // Double.exponent is frexp's e - 1, so this is n = 31 - e, capped at 62.
    var n = min(30 - Int(real.exponent), 62)
    // Scaling by a power of two is exact, so this is the one rounding of the whole computation.
    var m = (real * exactPowerOfTwo(n)).rounded()
    if m == exactPowerOfTwo(31) {
      m = exactPowerOfTwo(30)
      n -= 1
    }
    guard n >= 1 else { throw .multiplierOutOfRange(real) }
    self.init(multiplier: Int32(m), shift: Int32(n))
  }

  /// The multiplier `M = s_in · s_w / s_out` of a convolution output channel, with each scale
  /// checked first. docs/quantization.md §3, §5.
  public init(inputScale: Double, weightScale: Double, outputScale: Double) throws(QuantizationError) {
    for s in [inputScale, weightScale, outputScale] where !(s.isFinite && s > 0) {
      throw .invalidScale(s)
    }
    try self.init(real: inputScale * weightScale / outputScale)
  }

  /// `m · 2^-n`, exactly.
  public var realValue: Double { Double(multiplier) * exactPowerOfTwo(-Int(shift)) }

  /// `(Int64(acc) · m + 2^(n-1)) >> n` with an arithmetic shift, i.e. `floor(acc · M + 1/2)`:
  /// rounding to nearest, ties toward +infinity. No clamp; add the zero point and clamp after.
  /// Cannot overflow: |acc · m| <= 2^31 · (2^31 - 1) and the sum stays below 2^63.
  /// docs/quantization.md §3.
  @inlinable public func apply(_ acc: Int32) -> Int64 {
    let n = Int64(shift)
    return (Int64(acc) * Int64(multiplier) + (1 &<< (n - 1))) &>> n
  }

  /// The same rounding for a 64-bit accumulator with `|acc| < 2^32` (global-average-pool sums,
  /// the residual add), asserted in debug builds. The product alone may come within 2^61 of
  /// 2^63, so the rounding constant is not added to it: `floor((x + 2^(n-1)) / 2^n)` equals
  /// `(x >> n) + bit n-1 of x`. docs/quantization.md §3, §10.
  @inlinable public func apply(_ acc: Int64) -> Int64 {
    assert(acc.magnitude < 1 << 32, "accumulator \(acc) is outside (-2^32, 2^32)")
    return roundingShiftRight(acc * Int64(multiplier), by: Int64(shift))
  }

  @usableFromInline static func isValid(multiplier m: Int32, shift n: Int32) -> Bool {
    (1...62).contains(n) && m >= 0 && (m >= 1 << 30 || n == 62 || m == 0)
  }

  private enum CodingKeys: String, CodingKey { case multiplier, shift }

  /// Decoding checks the ranges, so that a damaged model file is an error, not a crash.
  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let m = try c.decode(Int32.self, forKey: .multiplier)
    let n = try c.decode(Int32.self, forKey: .shift)
    guard Self.isValid(multiplier: m, shift: n) else {
      throw DecodingError.dataCorrupted(
        .init(
          codingPath: c.codingPath,
          debugDescription: "requantization pair (m: \(m), n: \(n)) is out of range; re-quantize the model"))
    }
    self.init(multiplier: m, shift: n)
  }
}

/// `floor((x + 2^(n-1)) / 2^n)` for any Int64 `x` and n in 1...63, without the overflow that
/// adding 2^(n-1) first could cause: x = q·2^n + r with 0 <= r < 2^n rounds up exactly when
/// r >= 2^(n-1), that is when bit n-1 of x is set. docs/quantization.md §3.
@inlinable public func roundingShiftRight(_ x: Int64, by n: Int64) -> Int64 {
  (x &>> n) + ((x &>> (n - 1)) & 1)
}

/// The two multipliers of a residual add, `M_a = s_a / s_out` and `M_b = s_b / s_out`, with one
/// shared shift so that the sum is rounded once: n is the largest value <= 62 for which
/// `round(max(M_a, M_b) · 2^n) < 2^31`, `a = round(M_a · 2^n)`, `b = round(M_b · 2^n)`
/// (half away from zero). docs/quantization.md §8 Residual add.
public struct AddMultipliers: Codable, Sendable, Equatable, Hashable {
  public var a: Int32
  public var b: Int32
  public var shift: Int32

  /// Throws for a NaN, infinite or negative multiplier, and when the larger one is so close to
  /// 2^30 or above that n would be < 1.
  public init(realA: Double, realB: Double) throws(QuantizationError) {
    for r in [realA, realB] where !(r.isFinite && r >= 0 && r < exactPowerOfTwo(30)) {
      throw .multiplierOutOfRange(r)
    }
    let larger = max(realA, realB)
    var n = larger == 0 ? 62 : min(30 - Int(larger.exponent), 62)
    var ma = (realA * exactPowerOfTwo(n)).rounded()
    var mb = (realB * exactPowerOfTwo(n)).rounded()
    if max(ma, mb) == exactPowerOfTwo(31) {
      // Round again from the reals at the smaller shift: halving ma or mb would round twice.
      n -= 1
      ma = (realA * exactPowerOfTwo(n)).rounded()
      mb = (realB * exactPowerOfTwo(n)).rounded()
    }
    guard n >= 1 else { throw .multiplierOutOfRange(larger) }
    (a, b, shift) = (Int32(ma), Int32(mb), Int32(n))
  }

  /// `a · 2^-n` and `b · 2^-n`, exactly.
  public var realA: Double { Double(a) * exactPowerOfTwo(-Int(shift)) }
  public var realB: Double { Double(b) * exactPowerOfTwo(-Int(shift)) }

  /// `floor((da · a + db · b) / 2^n + 1/2)` for the centred inputs `da = q_a - z_a`,
  /// `db = q_b - z_b`: one rounding, ties toward +infinity, no clamp. The sum needs no bound on
  /// da and db: |da · a| + |db · b| <= 2 · 2^31 · (2^31 - 1) < 2^63. docs/quantization.md §8.
  @inlinable public func apply(_ da: Int32, _ db: Int32) -> Int64 {
    roundingShiftRight(Int64(da) * Int64(a) + Int64(db) * Int64(b), by: Int64(shift))
  }

  private enum CodingKeys: String, CodingKey { case a, b, shift }

  /// Decoding checks the ranges, so that a damaged model file is an error, not a crash.
  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let a = try c.decode(Int32.self, forKey: .a)
    let b = try c.decode(Int32.self, forKey: .b)
    let n = try c.decode(Int32.self, forKey: .shift)
    guard (1...62).contains(n), a >= 0, b >= 0 else {
      throw DecodingError.dataCorrupted(
        .init(
          codingPath: c.codingPath,
          debugDescription: "residual-add multipliers (a: \(a), b: \(b), n: \(n)) are out of range;"
            + " re-quantize the model"))
    }
    (self.a, self.b, self.shift) = (a, b, n)
  }
}

/// `clamp(y, lo, hi)` as a uint8, where `y` already includes the output zero point and
/// 0 <= lo <= hi <= 255 (asserted in debug builds). lo/hi fuse ReLU and ReLU6
/// (`ActivationQuantization.clampBounds`). docs/quantization.md §7 Fused activations.
@inlinable public func clampToUInt8(_ y: Int64, lo: Int32, hi: Int32) -> UInt8 {
  assert(0 <= lo && lo <= hi && hi <= 255, "clamp bounds [\(lo), \(hi)] must lie in 0...255")
  return UInt8(truncatingIfNeeded: min(max(y, Int64(lo)), Int64(hi)))
}

/// `y` saturated to Int32: the classifier's int32 logits. docs/quantization.md §11 Classifier.
@inlinable public func saturatingInt32(_ y: Int64) -> Int32 {
  Int32(truncatingIfNeeded: min(max(y, Int64(Int32.min)), Int64(Int32.max)))
}
