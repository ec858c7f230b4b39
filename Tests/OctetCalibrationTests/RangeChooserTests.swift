import Foundation
import OctetCore
import Testing

@testable import OctetCalibration

@Suite struct RangeChooserTests {
  /// The KL search against the definition written out plainly: build P and Q for every candidate,
  /// normalize, sum p·log(p/q).
  static func bruteForceKL(_ h: [Double], levels: Int) -> Int {
    var best = h.count
    var bestKL = Double.infinity
    for i in levels...h.count {
      var p = Array(h[0..<i])
      p[i - 1] += h[i...].reduce(0, +)
      var q = [Double](repeating: 0, count: i)
      for level in 0..<levels {
        let members = (0..<i).filter { $0 * levels / i == level }
        let nonEmpty = members.filter { h[$0] > 0 }
        for j in nonEmpty { q[j] = members.map { h[$0] }.reduce(0, +) / Double(nonEmpty.count) }
      }
      let (ps, qs) = (p.reduce(0, +), q.reduce(0, +))
      var kl = 0.0
      for j in 0..<i where p[j] > 0 {
        // Q = 0 where P is not: smoothed to 1e-4 (MXNet, TVM).
        kl += p[j] / ps * log((p[j] / ps) / (q[j] == 0 ? 1e-4 : q[j] / qs))
      }
      if kl < bestKL {
        bestKL = kl
        best = i
      }
    }
    return best
  }

  @Test(arguments: [UInt64(21), 22, 23, 24, 25])
  func klSearchMatchesBruteForce(seed: UInt64) {
    var g = SeededGenerator(seed: seed)
    // A decaying histogram with empty bins and a far outlier bin.
    var h = (0..<60).map { j in (Double(Int.random(in: 0...1000, using: &g)) * exp(-Double(j) / 8)).rounded() }
    h[5] = 0
    h[59] = 3
    let levels = 8
    let fast = HistogramObserver.klOptimalBinCount(h, levels: levels)
    let slow = Self.bruteForceKL(h, levels: levels)
    #expect(fast == slow, "seed \(seed), histogram \(h)")
  }

  /// Laplace data with a few far outliers: entropy clips well inside the outliers but keeps the body.
  @Test(arguments: [UInt64(31), 32])
  func entropyClipsOutliers(seed: UInt64) {
    var g = SeededGenerator(seed: seed)
    var twoSided = HistogramObserver()
    var relu = HistogramObserver()
    for _ in 0..<5 {
      let batch = g.laplace(200_000, b: 1)
      twoSided.observe(batch + [100, -80])
      relu.observe(batch.map { max($0, 0) } + [100])
    }
    let (lo, hi) = twoSided.entropyRange()
    #expect(hi > 4 && hi < 25, "seed \(seed): hi \(hi) with an outlier at 100")
    #expect(lo < -4 && lo > -25, "seed \(seed): lo \(lo) with an outlier at -80")
    let (rlo, rhi) = relu.entropyRange()
    #expect(rlo == 0)
    #expect(rhi > 4 && rhi < 25, "seed \(seed): ReLU hi \(rhi)")
  }

  /// Uniform data: the clipping that minimizes the MSE is (almost) the whole range — clipping costs
  /// (x − hi)², far more than the rounding it saves (the continuous optimum is 0.16 % inside).
  @Test func mseOfUniformIsItsRange() {
    var g = SeededGenerator(seed: 41)
    var positive = HistogramObserver()
    var mixed = HistogramObserver()
    for _ in 0..<10 {
      positive.observe(g.floats(100_000, in: 0...1))
      mixed.observe(g.floats(100_000, in: -1...3))
    }
    let (lo, hi) = positive.mseRange()
    #expect(lo == Double(positive.min))
    #expect(hi > 0.99 && hi <= 1, "hi \(hi)")
    let (mlo, mhi) = mixed.mseRange()
    #expect(mlo < -0.99 && mlo >= -1, "lo \(mlo)")
    #expect(mhi > 2.97 && mhi <= 3, "hi \(mhi)")
  }

  /// Gaussian data: the reference is a brute-force search of symmetric clips c on the samples with
  /// the contract's uint8 quantizer (for 8 bits the known optimum is near 3.9σ; ACIQ, Banner et al.).
  @Test func mseOfGaussianMatchesBruteForce() {
    let seed: UInt64 = 43
    var g = SeededGenerator(seed: seed)
    let xs = g.gaussians(100_000)
    var observer = HistogramObserver()
    observer.observe(xs)
    var bestC = 0.0
    var bestError = Double.infinity
    for step in 0...150 {
      let c = 2.5 + 0.02 * Double(step)
      let e = quantizationMSE(xs, lo: -c, hi: c)
      if e < bestError { (bestC, bestError) = (c, e) }
    }
    let (lo, hi) = observer.mseRange()
    let chosenError = quantizationMSE(xs, lo: lo, hi: hi)
    #expect(bestC > 3.0 && bestC < 4.8, "seed \(seed): brute-force optimum \(bestC)σ")
    #expect(abs(hi - bestC) < 0.5 && abs(-lo - bestC) < 0.5, "seed \(seed): [\(lo), \(hi)] vs ±\(bestC)")
    #expect(chosenError < bestError * 1.03, "seed \(seed): MSE \(chosenError) vs brute force \(bestError)")
    // And it beats min/max, the point of clipping.
    #expect(chosenError < quantizationMSE(xs, lo: Double(observer.min), hi: Double(observer.max)))
  }
}
