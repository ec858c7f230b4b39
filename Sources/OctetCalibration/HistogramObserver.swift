import Foundation

/// A histogram of a tensor's values over a range that grows as needed, with constant storage.
///
/// Bins have a power-of-two width w = 2^`exponent` and are aligned at 0: bin k (a global index) holds
/// the values in [k·w, (k+1)·w). The `binCount` stored bins start at global index `offset`. When new
/// data does not fit, the width doubles (adjacent bins are summed, which is exact: the coarse bin of a
/// value is the fine bin index shifted right) until the whole observed [min, max] fits; the window
/// always starts at the bin of the minimum.
///
/// The width is the smallest power of two for which [min, max] fits in `binCount` bins (and not
/// below 2^(e−40) for the largest magnitude 2^e, so bin indices stay far inside `Int`). So the state
/// is a function of the multiset of values alone, not of their order or batching: merging two
/// observers gives exactly the histogram of the concatenated data (tested bit for bit).
///
/// The data fills between half and all of the bins (at least 4096 of the default 8192 over
/// [min, max]). Exact zeros (ReLU outputs are half zeros) are also counted apart, because the
/// quantizer represents 0 exactly (docs/quantization.md §1: the zero point is the quantized real 0).
public struct HistogramObserver: Sendable, Equatable {
  public static let defaultBinCount = 8192
  /// Bin widths never go below 2^-100 (a tensor of zeros).
  static let minimumExponent = -100
  /// Bin widths never go below 2^-40 times the largest magnitude, so |k| < 2^41.
  static let magnitudeBits = 40

  public let binCount: Int
  /// `binCount` counts; `counts[i]` is global bin `offset + i`. Never resized.
  public private(set) var counts: [UInt64]
  /// Bin width is 2^exponent.
  public private(set) var exponent: Int = minimumExponent
  /// Global index of `counts[0]`.
  public private(set) var offset: Int = 0
  /// Finite values seen.
  public private(set) var count: UInt64 = 0
  /// Values exactly 0 (±0); they are also in the count of the bin [0, w).
  public private(set) var zeroCount: UInt64 = 0
  public private(set) var nonFiniteCount: UInt64 = 0
  public private(set) var min: Float = .infinity
  public private(set) var max: Float = -.infinity

  public init(binCount: Int = defaultBinCount) {
    precondition(binCount >= 16, "a histogram needs at least 16 bins")
    self.binCount = binCount
    counts = [UInt64](repeating: 0, count: binCount)
  }

  /// Bytes of storage: constant, whatever the number of values observed.
  public var storageBytes: Int { counts.count * MemoryLayout<UInt64>.stride + MemoryLayout<Self>.size }

  /// Width of one bin.
  public var binWidth: Double { exp2(Double(exponent)) }

  public mutating func observe(_ values: [Float]) {
    values.withUnsafeBufferPointer { observe($0) }
  }

  public mutating func observe(_ values: UnsafeBufferPointer<Float>) {
    guard !values.isEmpty else { return }
    var minMax = MinMaxObserver()
    minMax.observe(values)
    nonFiniteCount &+= minMax.nonFiniteCount
    guard let range = minMax.range else { return }
    let grownMin = Swift.min(min, range.lowerBound)
    let grownMax = Swift.max(max, range.upperBound)
    if count == 0 || grownMin < min || grownMax > max { fit(min: grownMin, max: grownMax, atLeast: exponent) }
    min = grownMin
    max = grownMax
    count &+= minMax.count
    // w is a power of two, so v / w = v * (1/w) exactly, and floor gives the global bin index.
    let scale = Float(exp2(Double(-exponent)))
    let base = offset
    let last = binCount - 1
    var zeros: UInt64 = 0
    // floor(y) as truncation corrected by one: x86-64's baseline has no floor instruction, and the
    // libm call cost more than the rest of the loop. |y| < 2^41, so Int(y) cannot trap, and
    // Float(t) is exact wherever y is not already an integer.
    @inline(__always) func bin(_ v: Float) -> Int {
      let y = v * scale
      let t = Int(y)
      // The clamp only guards memory: Float underflow can move a tiny negative value one bin up.
      return Swift.min(Swift.max((Float(t) > y ? t &- 1 : t) &- base, 0), last)
    }
    // 1 for ±0, else 0, without a branch (a `v == 0` branch mispredicts on ReLU outputs): with
    // x = bits << 1, ~x and x − 1 both have the top bit set only when x == 0.
    @inline(__always) func isZero(_ v: Float) -> UInt64 {
      let x = v.bitPattern << 1
      return UInt64((~x & (x &- 1)) >> 31)
    }
    counts.withUnsafeMutableBufferPointer { bins in
      if minMax.nonFiniteCount == 0 {
        for v in values {
          bins[bin(v)] &+= 1
          zeros &+= isZero(v)
        }
      } else {
        for v in values where v.magnitude <= .greatestFiniteMagnitude {
          bins[bin(v)] &+= 1
          zeros &+= isZero(v)
        }
      }
    }
    zeroCount &+= zeros
  }

  /// Adds another observer's data; equal to having observed both data sets in one observer.
  public mutating func merge(_ other: HistogramObserver) {
    precondition(other.binCount == binCount, "cannot merge histograms of \(binCount) and \(other.binCount) bins")
    nonFiniteCount &+= other.nonFiniteCount
    guard other.count > 0 else { return }
    guard count > 0 else {
      let bad = nonFiniteCount
      self = other
      nonFiniteCount = bad
      return
    }
    let grownMin = Swift.min(min, other.min)
    let grownMax = Swift.max(max, other.max)
    fit(min: grownMin, max: grownMax, atLeast: Swift.max(exponent, other.exponent))
    var incoming = other
    incoming.fit(min: grownMin, max: grownMax, atLeast: exponent)
    precondition(incoming.exponent == exponent && incoming.offset == offset)
    for i in 0..<binCount { counts[i] &+= incoming.counts[i] }
    min = grownMin
    max = grownMax
    count &+= other.count
    zeroCount &+= other.zeroCount
  }

  /// Re-bins to the smallest exponent >= `atLeast` at which [min, max] fits, with the window starting
  /// at the bin of `min`. Coarsening sums bins: global bin k becomes k >> shift, exactly.
  mutating func fit(min newMin: Float, max newMax: Float, atLeast: Int) {
    let magnitude = Swift.max(newMin.magnitude, newMax.magnitude)
    var e = Swift.max(atLeast, Self.minimumExponent)
    if magnitude > 0 { e = Swift.max(e, Int(magnitude.exponent) - Self.magnitudeBits) }
    func index(_ v: Float, _ e: Int) -> Int { Int((Double(v) * exp2(Double(-e))).rounded(.down)) }
    while index(newMax, e) - index(newMin, e) + 1 > binCount { e += 1 }
    let newOffset = index(newMin, e)
    guard e != exponent || newOffset != offset else { return }
    let shift = e - exponent
    precondition(shift >= 0, "a histogram never gets finer")
    var rebinned = [UInt64](repeating: 0, count: binCount)
    if count > 0 {
      for i in 0..<binCount where counts[i] != 0 {
        rebinned[((offset + i) >> shift) - newOffset] &+= counts[i]
      }
    }
    counts = rebinned
    exponent = e
    offset = newOffset
  }
}
