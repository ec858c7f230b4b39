import Foundation
import OctetCore
import Testing

@testable import OctetCalibration

@Suite struct ObserverTests {
  @Test func minMaxIsExact() {
    let seed: UInt64 = 1
    var g = SeededGenerator(seed: seed)
    var observer = MinMaxObserver()
    var all: [Float] = []
    for _ in 0..<10 {
      let batch = g.floats(1000, in: -3...7)
      all += batch
      observer.observe(batch)
    }
    #expect(observer.min == all.min()!, "seed \(seed)")
    #expect(observer.max == all.max()!, "seed \(seed)")
    #expect(observer.count == 10_000)
    var histogram = HistogramObserver()
    histogram.observe(all)
    #expect(histogram.min == all.min()! && histogram.max == all.max()!)
    #expect(histogram.range(for: .minmax)! == (Double(all.min()!), Double(all.max()!)))
  }

  @Test func nonFiniteValuesAreCountedAndSkipped() {
    var histogram = HistogramObserver()
    histogram.observe([1, .nan, -2, .infinity, -.infinity, 0.5])
    #expect(histogram.nonFiniteCount == 3)
    #expect(histogram.count == 3)
    #expect(histogram.min == -2 && histogram.max == 1)
    #expect(histogram.counts.reduce(0, +) == 3)
    var minMax = MinMaxObserver()
    minMax.observe([.nan, 4])
    #expect(minMax.nonFiniteCount == 1 && minMax.range == 4...4)
  }

  /// The true 99.99th percentile of N(0, 1) is 3.7190σ; a sample's, at 2M draws, has a standard error
  /// of about 0.018σ. The histogram's estimate must match the sample's own (sorted) quantile closely.
  @Test func gaussianPercentile() {
    let seed: UInt64 = 7
    var g = SeededGenerator(seed: seed)
    let sigma = 0.8
    var observer = HistogramObserver()
    var all: [Float] = []
    for _ in 0..<20 {
      let batch = g.gaussians(100_000, sigma: sigma, mean: 0)
      observer.observe(batch)
      all += batch
    }
    all.sort()
    let (lo, hi) = observer.percentileRange(99.99)
    let sampleHi = Double(all[Int(0.9999 * Double(all.count))])
    let sampleLo = Double(all[Int(0.0001 * Double(all.count))])
    #expect(abs(hi - sampleHi) < 0.005 * sigma, "seed \(seed): histogram \(hi), sorted sample \(sampleHi)")
    #expect(abs(lo - sampleLo) < 0.005 * sigma, "seed \(seed): histogram \(lo), sorted sample \(sampleLo)")
    #expect(abs(hi / sigma - 3.7190) < 0.08, "seed \(seed): \(hi / sigma)σ, expected 3.719σ")
    #expect(abs(-lo / sigma - 3.7190) < 0.08, "seed \(seed): \(-lo / sigma)σ, expected 3.719σ")
    #expect(observer.percentileRange(100) == (Double(observer.min), Double(observer.max)))
  }

  @Test func percentileOfReLUOutputKeepsZero() {
    var g = SeededGenerator(seed: 3)
    var observer = HistogramObserver()
    observer.observe(g.gaussians(200_000).map { max($0, 0) })
    #expect(observer.zeroCount > 90_000)
    let (lo, hi) = observer.percentileRange(99.99)
    #expect(lo == 0)
    #expect(hi > 3.3 && hi < 4.0, "hi \(hi)")
  }

  /// Merging is exact: the same struct as one observer that saw everything, whatever the split.
  @Test(arguments: [UInt64(11), 12, 13])
  func mergeEqualsConcatenation(seed: UInt64) {
    var g = SeededGenerator(seed: seed)
    let a = g.gaussians(30_000, sigma: 0.01, mean: 0.2) + [0, 0, 0]
    let b = g.laplace(20_000, b: 3) + [150]
    let c = g.floats(5_000, in: -1000 ... -999)
    var left = HistogramObserver(binCount: 1024)
    var right = HistogramObserver(binCount: 1024)
    var whole = HistogramObserver(binCount: 1024)
    left.observe(a)
    right.observe(c)
    right.observe(b)
    left.merge(right)
    whole.observe(a + b + c)
    #expect(left == whole, "seed \(seed)")
    var reversed = HistogramObserver(binCount: 1024)
    reversed.observe(c)
    reversed.observe(b)
    reversed.observe(a)
    #expect(reversed == whole, "seed \(seed)")
    var empty = HistogramObserver(binCount: 1024)
    empty.merge(whole)
    #expect(empty == whole)
    var minMaxLeft = MinMaxObserver()
    var minMaxRight = MinMaxObserver()
    var minMaxWhole = MinMaxObserver()
    minMaxLeft.observe(a)
    minMaxRight.observe(b + c)
    minMaxLeft.merge(minMaxRight)
    minMaxWhole.observe(a + b + c)
    #expect(minMaxLeft == minMaxWhole)
  }

  @Test func storageDoesNotGrowWithBatches() {
    var g = SeededGenerator(seed: 5)
    var observer = HistogramObserver()
    observer.observe(g.gaussians(1000))
    let bytes = observer.storageBytes
    for i in 1...500 {
      // A range that keeps growing forces re-binning, the case that could leak storage.
      observer.observe(g.gaussians(1000, sigma: Double(i)))
    }
    #expect(observer.storageBytes == bytes)
    #expect(observer.counts.count == HistogramObserver.defaultBinCount)
    #expect(observer.count == 501_000)
    #expect(observer.counts.reduce(0, +) == 501_000)
  }

  /// Wherever the data sits, it fills between half and all of the bins.
  @Test func binsAreWellUsed() {
    for (lo, hi) in [(Float(0), Float(6)), (-2.5, 2.7), (1000, 1000.5), (-1e-6, 3e-6)] {
      var g = SeededGenerator(seed: 9)
      var observer = HistogramObserver()
      observer.observe(g.floats(50_000, in: lo...hi))
      let used = Double(hi - lo) / observer.binWidth
      #expect(
        used > Double(observer.binCount) / 2 - 2 && used <= Double(observer.binCount), "[\(lo), \(hi)]: \(used) bins")
    }
  }

  @Test func constantTensorHasADefinedRange() {
    for value: Float in [0, 3.5, -1e-30] {
      var observer = HistogramObserver()
      for _ in 0..<3 { observer.observe([Float](repeating: value, count: 1000)) }
      for method: CalibrationMethod in [.minmax, .percentile(99.99), .entropy, .mse] {
        let range = observer.range(for: method)!
        #expect(range == (Double(value), Double(value)), "\(value) \(method)")
      }
      #expect(observer.quantile(0.5) == Double(value) || value == 0)
    }
  }

  @Test func methodsParse() throws {
    #expect(try CalibrationMethod(parsing: "minmax") == .minmax)
    #expect(try CalibrationMethod(parsing: "percentile") == .percentile(99.99))
    #expect(try CalibrationMethod(parsing: "percentile:99.9") == .percentile(99.9))
    #expect(try CalibrationMethod(parsing: "Entropy") == .entropy)
    #expect(try CalibrationMethod(parsing: "mse") == .mse)
    #expect(CalibrationMethod.percentile(99.99).description == "percentile:99.99")
    #expect(CalibrationMethod.percentile(100).description == "percentile:100")
    for bad in ["percentile:", "percentile:101", "percentile:abc", "percentile:40", "kld", ""] {
      #expect(throws: CalibrationError.badMethod(bad)) { try CalibrationMethod(parsing: bad) }
    }
    #expect(CalibrationMethod.default == .mse)
  }
}
