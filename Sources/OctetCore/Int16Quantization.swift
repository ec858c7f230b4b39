// 16-bit activations and the 64-bit accumulator of 16-bit layers (docs/quantization.md §17).

extension ActivationQuantization {
  /// The 16-bit parameters of a calibrated range: widened to include 0, `s = (hi − lo) / 65535`,
  /// `z = clamp(round(−lo / s) − 32768, −32768, 32767)` (Float, round half away from zero); a
  /// zero-width range gets `s = 1, z = 0`. The zero point is in the int16 domain, which
  /// `init(scale:zeroPoint:)` (uint8 only) does not accept. docs/quantization.md §17.
  public static func int16(range lo: Float, hi: Float) -> ActivationQuantization {
    precondition(lo.isFinite && hi.isFinite, "range [\(lo), \(hi)] must be finite")
    let lo = min(lo, 0)
    let hi = max(hi, 0)
    var s = (hi - lo) / 65535
    if !(s > 0) { s = 1 }
    let z = (-lo / s).rounded() - 32768
    var q = ActivationQuantization(scale: s, zeroPoint: 0)
    q.zeroPoint = Int32(min(max(z, -32768), 32767))
    return q
  }

  /// `clamp(round(r / s) + z, −32768, 32767)`, rounding half away from zero; NaN maps to −32768.
  @inlinable public func quantize16(_ r: Float) -> Int16 {
    let v = (r / scale).rounded() + Float(zeroPoint)
    if !(v >= -32768) { return .min }
    if v >= 32767 { return .max }
    return Int16(v)
  }

  /// `s * (q - z)` for a 16-bit code.
  @inlinable public func dequantize16(_ q: Int16) -> Float { scale * Float(Int32(q) - zeroPoint) }

  /// The int16 clamp bounds fusing an activation that clamps reals to `[min, max]` (§7 with
  /// [−32768, 32767] for [0, 255]).
  public func clampBounds16(min lower: Float = -.infinity, max upper: Float = .infinity) -> (
    lo: Int32, hi: Int32
  ) {
    func bound(_ r: Float) -> Int32 {
      let v = (r / scale).rounded() + Float(zeroPoint)
      return Int32(Swift.min(Swift.max(v, -32768), 32767))
    }
    return (bound(lower), bound(upper))
  }
}

extension RequantMultiplier {
  /// §3's rounding applied to a 64-bit accumulator of any size: `floor((acc · m + 2^(n−1)) / 2^n)`,
  /// computed exactly in 128 bits (|acc · m| < 2^94). The 16-bit layers' accumulators (§17) exceed
  /// the 2^32 that `apply(_: Int64)` allows. The result is clamped to ±2^62 so that adding a zero
  /// point never traps; any clamp of §17 then gives the same code.
  @inlinable public func applyWide(_ acc: Int64) -> Int64 {
    let x = Int128(acc) * Int128(multiplier) + (Int128(1) << (Int(shift) - 1))
    let y = x >> Int(shift)
    if y > Int128(1) << 62 { return 1 << 62 }
    if y < -(Int128(1) << 62) { return -(1 << 62) }
    return Int64(y)
  }
}
