import Foundation
import OctetCore
import OctetTestSupport

extension SeededGenerator {
  /// Standard normal (Box–Muller), in Double.
  mutating func gaussian() -> Double {
    let u1 = Double.random(in: Double.leastNormalMagnitude..<1, using: &self)
    let u2 = Double.random(in: 0..<1, using: &self)
    return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
  }

  mutating func gaussians(_ count: Int, sigma: Double = 1, mean: Double = 0) -> [Float] {
    (0..<count).map { _ in Float(mean + sigma * gaussian()) }
  }

  /// Laplace(0, b).
  mutating func laplace(_ count: Int, b: Double = 1) -> [Float] {
    (0..<count).map { _ in
      let u = Double.random(in: -0.5..<0.5, using: &self)
      return Float(-b * (u < 0 ? -1 : 1) * log(1 - 2 * abs(u)))
    }
  }
}

/// Mean squared error of the contract's uint8 quantizer with range [lo, hi] (widened to 0) on `xs`:
/// s = (hi − lo)/255, z = round(−lo/s), q = clamp(round(x/s) + z, 0, 255), x̂ = s·(q − z).
func quantizationMSE(_ xs: [Float], lo: Double, hi: Double) -> Double {
  let lo = min(lo, 0)
  let hi = max(hi, 0)
  let s = (hi - lo) / 255
  let z = min(max((-lo / s).rounded(), 0), 255)
  var total = 0.0
  for x in xs {
    let q = min(max((Double(x) / s).rounded() + z, 0), 255)
    let e = Double(x) - s * (q - z)
    total += e * e
  }
  return total / Double(xs.count)
}
