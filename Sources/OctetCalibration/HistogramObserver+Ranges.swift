import Foundation

/// The range choosers: each turns a histogram into a clipping range [lo, hi] inside the observed
/// [min, max]. The caller widens it to include 0 (docs/quantization.md §1).
extension HistogramObserver {
  /// Bins the entropy and MSE searches work on: TensorRT's 2048 over the used range.
  public static let searchBinCount = 2048

  /// The range `method` chooses; nil when nothing finite was observed.
  public func range(for method: CalibrationMethod) -> (lo: Double, hi: Double)? {
    guard count > 0 else { return nil }
    if min == max { return (Double(min), Double(max)) }
    switch method {
    case .minmax: return (Double(min), Double(max))
    case .percentile(let p): return percentileRange(p)
    case .entropy: return entropyRange()
    case .mse: return mseRange()
    }
  }

  // MARK: Percentile

  /// The value below which the fraction `q` (0...1) of the observed values lie. Values are taken as
  /// spread evenly inside their bin (the outer bins clipped to the observed min and max); exact zeros
  /// are a point mass at 0.
  public func quantile(_ q: Double) -> Double {
    guard count > 0 else { return 0 }
    if q <= 0 { return Double(min) }
    if q >= 1 { return Double(max) }
    let target = q * Double(count)
    let w = binWidth
    let zeroBin = -offset
    var cumulative = 0.0
    for i in 0..<binCount where counts[i] > 0 {
      var n = Double(counts[i])
      if i == zeroBin && zeroCount > 0 {
        let zeros = Double(zeroCount)
        if cumulative + zeros >= target { return 0 }
        cumulative += zeros
        n -= zeros
      }
      if n > 0 && cumulative + n >= target {
        let lo = Swift.max(Double(offset + i) * w, Double(min))
        let hi = Swift.min(Double(offset + i + 1) * w, Double(max))
        return lo + (target - cumulative) / n * (hi - lo)
      }
      cumulative += n
    }
    return Double(max)
  }

  /// [(100 − p)th percentile, pth percentile]: both tails are clipped, since uint8 activations are
  /// asymmetric (for a ReLU output the low end is 0 anyway).
  public func percentileRange(_ p: Double) -> (lo: Double, hi: Double) {
    (quantile(1 - p / 100), quantile(p / 100))
  }

  // MARK: Entropy

  /// TensorRT's entropy calibration (Migacz, "8-bit Inference with TensorRT", GTC 2017), adapted to
  /// uint8 activations:
  /// - a tensor with no negative values (ReLU/ReLU6 outputs) is clipped to [0, T] where all 256 codes
  ///   fall, so its candidates are quantized into 255 levels (TensorRT: 128 for int8's half);
  /// - a tensor with no positive values, mirrored, the same;
  /// - a tensor with both signs: TensorRT's symmetric search on |x| with 128 levels, giving
  ///   [max(−T, min), min(T, max)].
  /// The |x| histogram is re-binned (exactly, by summing) to at most `searchBinCount` bins; T is the
  /// upper edge of the last bin kept by the KL-optimal candidate. Exact zeros are left out: the zero
  /// point represents them exactly whatever T is, and as TensorRT keeps them, the spike of a ReLU
  /// output (often half its values) shares a level with its neighbours and swamps the divergence.
  public func entropyRange() -> (lo: Double, hi: Double) {
    let (lo, hi) = (Double(min), Double(max))
    let oneSided = min >= 0 || max <= 0
    let (histogram, width) = magnitudeHistogram(maxBins: Self.searchBinCount, excludingZeros: true)
    let kept = Self.klOptimalBinCount(histogram, levels: oneSided ? 255 : 128)
    let t = Double(kept) * width
    if min >= 0 { return (lo, Swift.min(t, hi)) }
    if max <= 0 { return (Swift.max(-t, lo), hi) }
    return (Swift.max(-t, lo), Swift.min(t, hi))
  }

  /// Histogram of |x| from 0 with bins of `width` (a multiple of the bin width), at most `maxBins`.
  /// A fine bin [k·w, (k+1)·w) with k < 0 holds |x| in ((−k−1)·w, −k·w], so it goes to |x|-bin −k−1.
  func magnitudeHistogram(maxBins: Int, excludingZeros: Bool) -> (counts: [Double], width: Double) {
    guard let first = counts.firstIndex(where: { $0 > 0 }), let last = counts.lastIndex(where: { $0 > 0 }) else {
      return ([], binWidth)
    }
    // |x|-bins 0..<used hold data; summing `factor` of them at a time never needs the fine array.
    let used = Swift.max(offset + last + 1, -(offset + first))
    let factor = (used + maxBins - 1) / maxBins
    var coarse = [Double](repeating: 0, count: (used + factor - 1) / factor)
    for i in first...last where counts[i] > 0 {
      let k = offset + i
      let c = Double(counts[i]) - (k == 0 && excludingZeros ? Double(zeroCount) : 0)
      coarse[(k >= 0 ? k : -k - 1) / factor] += c
    }
    return (coarse, Double(factor) * binWidth)
  }

  /// The number of leading bins i (levels <= i <= histogram.count) that minimizes KL(P || Q), where P
  /// is the first i bins with every count beyond added to bin i − 1, and Q is the first i bins
  /// quantized into `levels` groups (bin j in group ⌊j·levels/i⌋), each group's total spread evenly
  /// over its nonempty bins. Where Q is 0 but P is not (the last bin, when it is empty and values lie
  /// beyond), the normalized Q is taken as `klSmoothing` (1e-4), as MXNet's and TVM's implementations
  /// of the method smooth it, rather than infinite: else every threshold in an empty stretch of the
  /// tail would be ruled out. With no more bins than levels, nothing needs clipping: all bins.
  static let klSmoothing = 1e-4

  public static func klOptimalBinCount(_ histogram: [Double], levels: Int) -> Int {
    let n = histogram.count
    guard n > levels else { return n }
    var beyond = [Double](repeating: 0, count: n + 1)
    for j in stride(from: n - 1, through: 0, by: -1) { beyond[j] = beyond[j + 1] + histogram[j] }
    let total = beyond[0]
    guard total > 0 else { return n }
    var best = n
    var bestDivergence = Double.infinity
    histogram.withUnsafeBufferPointer { h in
      for i in levels...n {
        let kept = total - beyond[i]  // mass of Q before normalization
        guard kept > 0 else { continue }
        var sum = 0.0  // Σ p·log(p / q) over unnormalized p and q, where q > 0
        var regular = 0.0  // Σ p there
        var smoothed = 0.0  // the normalized terms where q = 0
        for level in 0..<levels {
          let start = (level * i + levels - 1) / levels
          let end = ((level + 1) * i + levels - 1) / levels
          var groupTotal = 0.0
          var nonEmpty = 0
          for j in start..<end where h[j] > 0 {
            groupTotal += h[j]
            nonEmpty += 1
          }
          let q = nonEmpty > 0 ? groupTotal / Double(nonEmpty) : 0
          for j in start..<end {
            let p = j == i - 1 ? h[j] + beyond[i] : h[j]
            guard p > 0 else { continue }
            if h[j] > 0 {
              sum += p * log(p / q)
              regular += p
            } else {
              smoothed += p / total * log(p / total / Self.klSmoothing)
            }
          }
        }
        // KL of the normalized distributions: Σ (p/P)·log((p/P)/(q/Q)) = sum/P + (Σp/P)·log(Q/P).
        let divergence = sum / total + regular / total * log(kept / total) + smoothed
        if divergence < bestDivergence {
          bestDivergence = divergence
          best = i
        }
      }
    }
    return best
  }

  // MARK: MSE

  /// The [lo, hi] (lo <= 0 <= hi, on bin edges, then clipped to the observed range) that minimizes
  /// the expected squared error of an 8-bit uniform quantizer with step s = (hi − lo)/255:
  /// values inside get s²/12 (rounding error of values spread within bins), values outside get their
  /// clipping error (x − hi)² or (x − lo)² with x spread evenly in its bin, and exact zeros get none
  /// (0 is exactly representable). The search runs over every pair of bin edges of a histogram
  /// re-binned to at most `searchBinCount` bins aligned at 0; both ends move, so asymmetric tensors
  /// get asymmetric ranges.
  public func mseRange(levels: Int = 255) -> (lo: Double, hi: Double) {
    let (start, width, bins) = alignedHistogram(maxBins: Self.searchBinCount, excludingZeros: true)
    let m = bins.count
    // Prefix sums of count, Σx and Σx² (x uniform in each bin) over bins 0..<j.
    var n = [Double](repeating: 0, count: m + 1)
    var s1 = n
    var s2 = n
    for j in 0..<m {
      let a = Double(start + j) * width
      let b = a + width
      let c = bins[j]
      n[j + 1] = n[j] + c
      s1[j + 1] = s1[j] + c * (a + b) / 2
      s2[j + 1] = s2[j] + c * (a * a + a * b + b * b) / 3
    }
    guard n[m] > 0 else { return (Double(min), Double(max)) }
    func edge(_ j: Int) -> Double { Double(start + j) * width }
    let lows = (0...m).filter { edge($0) <= 0 }
    let highs = (0...m).filter { edge($0) >= 0 }
    var best = (lo: Double(min), hi: Double(max))
    var bestError = Double.infinity
    for i in lows.isEmpty ? [0] : lows {
      let lo = Swift.min(edge(i), 0)
      let below = s2[i] - 2 * lo * s1[i] + lo * lo * n[i]
      for k in highs.isEmpty ? [m] : highs where k >= i {
        let hi = Swift.max(edge(k), 0)
        guard hi > lo else { continue }
        let step = (hi - lo) / Double(levels)
        let inside = n[k] - n[i]
        let above = (s2[m] - s2[k]) - 2 * hi * (s1[m] - s1[k]) + hi * hi * (n[m] - n[k])
        let error = inside * step * step / 12 + below + above
        if error < bestError {
          bestError = error
          best = (lo, hi)
        }
      }
    }
    return (Swift.max(best.lo, Double(min)), Swift.min(best.hi, Double(max)))
  }

  /// The histogram re-binned by summing runs of `factor` fine bins, aligned at 0 (coarse bin c holds
  /// [c·W, (c+1)·W), W = factor·w), trimmed to the used bins: (global index of the first, W, counts).
  func alignedHistogram(maxBins: Int, excludingZeros: Bool) -> (start: Int, width: Double, counts: [Double]) {
    guard let first = counts.firstIndex(where: { $0 > 0 }), let last = counts.lastIndex(where: { $0 > 0 }) else {
      return (0, binWidth, [])
    }
    let (kmin, kmax) = (offset + first, offset + last)
    func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
    var factor = 1
    while floorDiv(kmax, factor) - floorDiv(kmin, factor) + 1 > maxBins { factor += 1 }
    let start = floorDiv(kmin, factor)
    var coarse = [Double](repeating: 0, count: floorDiv(kmax, factor) - start + 1)
    for i in first...last where counts[i] > 0 {
      var c = Double(counts[i])
      if excludingZeros && offset + i == 0 { c -= Double(zeroCount) }
      coarse[floorDiv(offset + i, factor) - start] += c
    }
    return (start, Double(factor) * binWidth, coarse)
  }
}
