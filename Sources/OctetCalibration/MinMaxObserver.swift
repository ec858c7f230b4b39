/// Running minimum and maximum of the finite values of a tensor. Constant storage; merging two
/// observers equals observing the concatenation of their data.
public struct MinMaxObserver: Sendable, Equatable {
  /// `+infinity` until a finite value is seen.
  public private(set) var min: Float = .infinity
  /// `-infinity` until a finite value is seen.
  public private(set) var max: Float = -.infinity
  /// Finite values seen.
  public private(set) var count: UInt64 = 0
  /// NaN and ±infinity seen (skipped).
  public private(set) var nonFiniteCount: UInt64 = 0

  public init() {}

  public mutating func observe(_ values: UnsafeBufferPointer<Float>) {
    // Branch-free, so that it vectorizes: NaN never wins a comparison, and NaN/±inf (exponent bits
    // all ones) are only counted here; if there are any, a second pass leaves them out.
    var mn = min
    var mx = max
    var special: UInt32 = 0
    for v in values {
      mn = v < mn ? v : mn
      mx = v > mx ? v : mx
      special |= (v.bitPattern & 0x7F80_0000) == 0x7F80_0000 ? 1 : 0
    }
    var bad: UInt64 = 0
    if special != 0 {
      (mn, mx) = (min, max)
      for v in values {
        guard v.magnitude <= .greatestFiniteMagnitude else {
          bad &+= 1
          continue
        }
        mn = Swift.min(mn, v)
        mx = Swift.max(mx, v)
      }
    }
    min = mn
    max = mx
    nonFiniteCount &+= bad
    count &+= UInt64(values.count) &- bad
  }

  public mutating func observe(_ values: [Float]) {
    values.withUnsafeBufferPointer { observe($0) }
  }

  public mutating func merge(_ other: MinMaxObserver) {
    min = Swift.min(min, other.min)
    max = Swift.max(max, other.max)
    count &+= other.count
    nonFiniteCount &+= other.nonFiniteCount
  }

  /// The observed [min, max]; nil when no finite value was seen.
  public var range: ClosedRange<Float>? { count > 0 ? min...max : nil }
}
