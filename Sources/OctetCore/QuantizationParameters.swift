/// An error in the quantization arithmetic: a scale or multiplier that the int8 scheme cannot
/// represent. Each message names the value and says what usually causes it.
public enum QuantizationError: Error, CustomStringConvertible, Equatable {
  /// A requantization multiplier that is NaN, infinite, negative, or too large for `(m, n)` with
  /// n >= 1 (that is, rounds to 2^30 or more). docs/quantization.md §3, §13.
  case multiplierOutOfRange(Double)
  /// A scale that is NaN, infinite, zero or negative. docs/quantization.md §1, §13.
  case invalidScale(Double)

  public var description: String {
    switch self {
    case .multiplierOutOfRange(let m) where m.isNaN || m < 0:
      "requantization multiplier \(m) is not a non-negative number; a scale upstream is NaN or negative"
    case .multiplierOutOfRange(let m):
      "requantization multiplier \(m) is out of range: it must be finite and below 2^30; the output scale"
        + " is far smaller than the input scale, so check the calibrated range of the layer's output"
    case .invalidScale(let s):
      "scale \(s) is invalid: a scale must be finite and greater than zero"
    }
  }
}

/// A per-tensor affine uint8 quantization: `r = scale * (q - zeroPoint)`, q in [0, 255].
/// docs/quantization.md §1 The affine mapping.
public struct ActivationQuantization: Codable, Sendable, Equatable, Hashable {
  public var scale: Float
  public var zeroPoint: Int32

  /// `scale` must be finite and > 0, `zeroPoint` in 0...255.
  public init(scale: Float, zeroPoint: Int32) {
    precondition(scale.isFinite && scale > 0, "scale \(scale) must be finite and > 0")
    precondition((0...255).contains(zeroPoint), "zero point \(zeroPoint) must be in 0...255")
    self.scale = scale
    self.zeroPoint = zeroPoint
  }

  /// The parameters for a calibrated range: the range is widened to include 0, then
  /// `s = (hi - lo) / 255` and `z = clamp(round(-lo / s), 0, 255)` (Float arithmetic, round half
  /// away from zero); a zero-width range gets `s = 1, z = 0`. `lo` and `hi` must be finite.
  /// docs/quantization.md §1.
  public init(range lo: Float, hi: Float) {
    precondition(lo.isFinite && hi.isFinite, "range [\(lo), \(hi)] must be finite")
    // Real 0 must be exactly representable: it is the padding value and ReLU's floor.
    let lo = min(lo, 0)
    let hi = max(hi, 0)
    var s = (hi - lo) / 255
    if !(s > 0) { s = 1 }
    let z = (-lo / s).rounded()
    self.init(scale: s, zeroPoint: Int32(min(max(z, 0), 255)))
  }

  /// `clamp(round(r / s) + z, 0, 255)`, rounding half away from zero; NaN maps to 0.
  /// docs/quantization.md §1, §12.
  @inlinable public func quantize(_ r: Float) -> UInt8 {
    let v = (r / scale).rounded() + Float(zeroPoint)
    if !(v >= 0) { return 0 }  // also NaN
    if v >= 255 { return 255 }
    return UInt8(v)
  }

  /// `s * (q - z)`.
  @inlinable public func dequantize(_ q: UInt8) -> Float {
    scale * Float(Int32(q) - zeroPoint)
  }

  /// The uint8 clamp bounds `(lo, hi)` that fuse an activation clamping reals to `[min, max]`:
  /// `lo = clamp(z + round(min / s), 0, 255)`, likewise `hi`. No activation: `(-inf, +inf)` gives
  /// (0, 255); ReLU: `(0, +inf)` gives (z, 255); ReLU6: `(0, 6)` gives (z, min(255, z + round(6 / s))).
  /// docs/quantization.md §7 Fused activations.
  public func clampBounds(min lower: Float = -.infinity, max upper: Float = .infinity) -> (
    lo: Int32, hi: Int32
  ) {
    func bound(_ r: Float) -> Int32 {
      let v = (r / scale).rounded() + Float(zeroPoint)
      return Int32(Swift.min(Swift.max(v, 0), 255))
    }
    return (bound(lower), bound(upper))
  }
}

/// The symmetric int8 weight scale of one output channel: `maxAbs / 127`, or 1 for an all-zero
/// channel (its weights all quantize to 0; so does a channel so small that `maxAbs / 127`
/// underflows to 0). `maxAbs` must be finite and >= 0. docs/quantization.md §2 Number formats.
public func symmetricWeightScale(maxAbs: Float, levels: Float = 127) -> Float {
  precondition(maxAbs.isFinite && maxAbs >= 0, "max |w| \(maxAbs) must be finite and >= 0")
  let s = maxAbs / levels
  return s > 0 ? s : 1
}
