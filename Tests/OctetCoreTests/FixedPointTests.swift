import Foundation
import Testing

@testable import OctetCore

// Every fixed-point result is checked against exact integer arithmetic in Int128, which is computed
// a different way from the code under test (a floor division, not a shift), so that the two cannot
// share a mistake. docs/quantization.md §3 and §8 state the rule: floor(x / 2^n + 1/2).

/// `floor(x / 2^n + 1/2) = floor((2x + 2^n) / 2^(n+1))`, with an explicit floor division.
private func exactRoundedQuotient(_ x: Int128, shift n: Int) -> Int128 {
  let numerator = 2 * x + (Int128(1) << n)
  let denominator = Int128(1) << (n + 1)
  var q = numerator / denominator  // truncates toward zero
  if numerator % denominator != 0 && numerator < 0 { q -= 1 }
  return q
}

private func exactRequant(_ acc: Int64, _ r: RequantMultiplier) -> Int128 {
  exactRoundedQuotient(Int128(acc) * Int128(r.multiplier), shift: Int(r.shift))
}

/// `M = u · 2^k` with u uniform in [1, 2): spreads values evenly over orders of magnitude.
private func logUniform(_ g: inout SeededGenerator, exponents: ClosedRange<Int>) -> Double {
  Double.random(in: 1..<2, using: &g)
    * Double(
      sign: .plus, exponent: Int.random(in: exponents, using: &g),
      significand: 1)
}

private let twoTo30: Int32 = 1 << 30

@Suite struct RequantMultiplierTests {
  @Test func applyMatchesExactArithmeticOverTheWholeRange() {
    let seed: UInt64 = 0x0C7E_7001
    var g = SeededGenerator(seed: seed)
    var failures: [String] = []
    for i in 0..<300_000 {
      let r = RequantMultiplier(
        multiplier: Int32.random(in: twoTo30...Int32.max, using: &g),
        shift: Int32.random(in: 1...62, using: &g))
      // Half the accumulators over all of Int32, half small like real convolution sums.
      let acc =
        i % 2 == 0
        ? Int32.random(in: .min ... .max, using: &g) : Int32.random(in: -70_000...70_000, using: &g)
      let wide = Int64.random(in: -(1 << 32) + 1...(1 << 32) - 1, using: &g)
      if Int128(r.apply(acc)) != exactRequant(Int64(acc), r)
        || Int128(r.apply(Int64(acc))) != exactRequant(Int64(acc), r)
        || Int128(r.apply(wide)) != exactRequant(wide, r)
      {
        failures.append("seed \(seed) iteration \(i): m \(r.multiplier) n \(r.shift) acc \(acc) wide \(wide)")
        if failures.count > 5 { break }
      }
    }
    #expect(failures.isEmpty, "\(failures)")
  }

  @Test func applyAtTheEdges() {
    let accs: [Int64] = [Int64(Int32.min), Int64(Int32.max), 0, 1, -1, 2, -2]
    let wideAccs: [Int64] = accs + [(1 << 32) - 1, -(1 << 32) + 1, 1 << 31, -(1 << 31) - 1]
    for m in [0, twoTo30, twoTo30 + 1, Int32.max - 1, Int32.max] {
      for n: Int32 in [1, 2, 30, 31, 32, 61, 62] where m == 0 || m >= twoTo30 {
        let r = RequantMultiplier(multiplier: m, shift: n)
        for acc in accs {
          #expect(Int128(r.apply(Int32(acc))) == exactRequant(acc, r), "m \(m) n \(n) acc \(acc)")
        }
        for acc in wideAccs {
          #expect(Int128(r.apply(acc)) == exactRequant(acc, r), "m \(m) n \(n) acc \(acc)")
        }
      }
    }
    // The largest magnitudes: Int32.min · (2^31 - 1) at n = 1.
    let r = RequantMultiplier(multiplier: .max, shift: 1)
    #expect(r.apply(Int32.min) == -(Int64(1) << 61) + (1 << 30))
    #expect(r.apply(Int32.max) == (Int64(Int32.max) * Int64(Int32.max) + 1) / 2)
  }

  @Test func tiesRoundTowardPlusInfinity() {
    // M = 1/2: every odd accumulator is a tie.
    let half = RequantMultiplier(multiplier: twoTo30, shift: 31)
    #expect(half.apply(Int32(3)) == 2)
    #expect(half.apply(Int32(-3)) == -1)
    #expect(half.apply(Int32(1)) == 1)
    #expect(half.apply(Int32(-1)) == 0)
    #expect(half.apply(Int32(-5)) == -2)
    #expect(half.apply(Int64(-5)) == -2)

    // m = odd · 2^t and acc = odd · 2^(n-1-t) make acc · m = k · 2^n + 2^(n-1) exactly.
    let seed: UInt64 = 0x71E5
    var g = SeededGenerator(seed: seed)
    var ties = 0
    for i in 0..<100_000 {
      let t = Int.random(in: 0...30, using: &g)
      let mOdd = Int64.random(in: (1 << (30 - t))..<(1 << (31 - t)), using: &g) | 1
      let m = mOdd << t
      guard m < 1 << 31 else { continue }
      let n = Int.random(in: (t + 1)...min(62, t + 31), using: &g)
      let accMagnitude = Int64(1) << (n - 1 - t)
      let oddLimit = (Int64(1) << 31) / accMagnitude
      let accOdd = Int64.random(in: -oddLimit...oddLimit - 1, using: &g) | 1
      let acc = accOdd * accMagnitude
      guard acc >= Int64(Int32.min), acc <= Int64(Int32.max) else { continue }
      let r = RequantMultiplier(multiplier: Int32(m), shift: Int32(n))
      let x = Int128(acc) * Int128(m)
      let modulus = Int128(1) << n
      #expect(((x % modulus) + modulus) % modulus == modulus / 2, "not a tie: seed \(seed) iteration \(i)")
      let up = x >= 0 ? x / modulus + 1 : -((-x) / modulus)  // the tie resolved toward +infinity
      guard Int128(r.apply(Int32(acc))) == up, Int128(r.apply(acc)) == up else {
        Issue.record(
          "seed \(seed) iteration \(i): m \(m) n \(n) acc \(acc) gave \(r.apply(Int32(acc))), want \(up)")
        return
      }
      ties += 1
    }
    #expect(ties > 90_000)
  }

  @Test func realMultipliersWithinHalfAnUlp() throws {
    let seed: UInt64 = 0xF2E7
    var g = SeededGenerator(seed: seed)
    for i in 0..<100_000 {
      let real = logUniform(&g, exponents: -80...29)
      let r = try RequantMultiplier(real: real)
      // real · 2^n is exact (a power-of-two scaling), and so is its difference from m < 2^31.
      let error = abs(
        real * Double(sign: .plus, exponent: Int(r.shift), significand: 1) - Double(r.multiplier))
      #expect(error <= 0.5, "seed \(seed) iteration \(i): M \(real) -> m \(r.multiplier) n \(r.shift)")
      #expect((1...62).contains(r.shift))
      #expect(r.multiplier >= twoTo30 || r.shift == 62, "seed \(seed) iteration \(i): M \(real)")
      if abs(r.realValue - real) > real * 0x1p-30 && r.shift < 62 {
        Issue.record("seed \(seed) iteration \(i): M \(real) represented as \(r.realValue)")
        return
      }
    }
  }

  @Test func realMultiplierSpecialValues() throws {
    #expect(try RequantMultiplier(real: 0) == RequantMultiplier(multiplier: 0, shift: 62))
    #expect(try RequantMultiplier(real: -0.0) == RequantMultiplier(multiplier: 0, shift: 62))
    #expect(try RequantMultiplier(real: 1) == RequantMultiplier(multiplier: twoTo30, shift: 30))
    #expect(try RequantMultiplier(real: 0.5) == RequantMultiplier(multiplier: twoTo30, shift: 31))
    // Just below 1 rounds up to 2^31, which carries into the exponent.
    #expect(try RequantMultiplier(real: 1.0.nextDown) == RequantMultiplier(multiplier: twoTo30, shift: 30))
    #expect(try RequantMultiplier(real: 0.75) == RequantMultiplier(multiplier: 3 << 29, shift: 31))
    // Tiny multipliers keep n = 62 and lose leading bits; below 2^-63 they round to 0.
    #expect(try RequantMultiplier(real: 0x1p-40) == RequantMultiplier(multiplier: 1 << 22, shift: 62))
    #expect(try RequantMultiplier(real: 0x1p-32) == RequantMultiplier(multiplier: twoTo30, shift: 62))
    // 2^-63 · 2^62 = 1/2 is a tie, rounded away from zero.
    #expect(try RequantMultiplier(real: 0x1p-63) == RequantMultiplier(multiplier: 1, shift: 62))
    #expect(try RequantMultiplier(real: 1e-30) == RequantMultiplier(multiplier: 0, shift: 62))
    #expect(
      try RequantMultiplier(real: .leastNonzeroMagnitude) == RequantMultiplier(multiplier: 0, shift: 62))
    // The largest: n = 1.
    #expect(try RequantMultiplier(real: 0x1p30 - 0.5) == RequantMultiplier(multiplier: .max, shift: 1))
    for bad in [0x1p30, 0x1p30 - 0.25, 1e300, -1, -.leastNonzeroMagnitude, .infinity, -.infinity] {
      #expect(throws: QuantizationError.multiplierOutOfRange(bad)) { try RequantMultiplier(real: bad) }
    }
    do {
      _ = try RequantMultiplier(real: .nan)
      Issue.record("NaN was accepted")
    } catch {
      guard case .multiplierOutOfRange(let v) = error, v.isNaN else {
        Issue.record("NaN gave \(error)")
        return
      }
      #expect(error.description.contains("nan"))
    }
    #expect(QuantizationError.multiplierOutOfRange(0x1p31).description.contains("2147483648"))
  }

  @Test func multiplierFromScales() throws {
    let r = try RequantMultiplier(inputScale: 0.02, weightScale: 0.004, outputScale: 0.05)
    #expect(
      abs(r.realValue - 0.02 * 0.004 / 0.05)
        <= Double(sign: .plus, exponent: -Int(r.shift) - 1, significand: 1))
    for bad in [0, -1, Double.infinity] {
      #expect(throws: QuantizationError.invalidScale(bad)) {
        try RequantMultiplier(inputScale: 1, weightScale: 1, outputScale: bad)
      }
    }
  }

  @Test func codableRoundTripAndRejectsCorruptPairs() throws {
    let r = try RequantMultiplier(real: 0.0123)
    let decoded = try JSONDecoder().decode(RequantMultiplier.self, from: JSONEncoder().encode(r))
    #expect(decoded == r)
    for json in [
      #"{"multiplier":1073741824,"shift":0}"#, #"{"multiplier":5,"shift":30}"#,
      #"{"multiplier":-1,"shift":62}"#,
    ] {
      #expect(throws: DecodingError.self) {
        try JSONDecoder().decode(RequantMultiplier.self, from: Data(json.utf8))
      }
    }
  }
}

@Suite struct AddMultipliersTests {
  @Test func applyMatchesExactArithmetic() throws {
    let seed: UInt64 = 0xADD5
    var g = SeededGenerator(seed: seed)
    for i in 0..<100_000 {
      let realA = logUniform(&g, exponents: -40...20)
      let realB = i % 7 == 0 ? 0 : logUniform(&g, exponents: -40...20)
      let add = try AddMultipliers(realA: realA, realB: realB)
      let n = Int(add.shift)
      let scale = Double(sign: .plus, exponent: n, significand: 1)
      // Each multiplier within half an ulp, and n the largest shift that keeps both below 2^31.
      let ok =
        abs(realA * scale - Double(add.a)) <= 0.5 && abs(realB * scale - Double(add.b)) <= 0.5
        && (n == 62 || (max(realA, realB) * 2 * scale).rounded() >= 0x1p31) && (1...62).contains(n)
      let full = i % 4 == 0
      let da = full ? Int32.random(in: .min ... .max, using: &g) : Int32.random(in: -255...255, using: &g)
      let db = full ? Int32.random(in: .min ... .max, using: &g) : Int32.random(in: -255...255, using: &g)
      let want = exactRoundedQuotient(Int128(da) * Int128(add.a) + Int128(db) * Int128(add.b), shift: n)
      guard ok, Int128(add.apply(da, db)) == want else {
        Issue.record(
          "seed \(seed) iteration \(i): M_a \(realA) M_b \(realB) -> \(add); da \(da) db \(db): got \(add.apply(da, db)), want \(want)"
        )
        return
      }
    }
  }

  @Test func sharedShiftEdges() throws {
    let add = try AddMultipliers(realA: 1, realB: 0.25)
    #expect(add.shift == 30 && add.a == twoTo30 && add.b == 1 << 28)
    #expect(add.apply(1, 2) == 2)  // 1 + 0.5: the tie goes up
    #expect(add.apply(-1, -2) == -1)  // -1.5: the tie goes up too
    // The larger multiplier rounds up to 2^31: both are rounded again at n - 1.
    let carry = try AddMultipliers(realA: 1.0.nextDown, realB: 0.75)
    #expect(carry.shift == 30 && carry.a == twoTo30 && carry.b == 3 << 28)
    // Both zero: the shift is the largest allowed and both multipliers are 0.
    let zero = try AddMultipliers(realA: 0, realB: 0)
    #expect(zero.a == 0 && zero.b == 0 && zero.shift == 62)
    #expect(zero.apply(.max, .min) == 0)
    #expect(try AddMultipliers(realA: 0x1p30 - 0.5, realB: 0).shift == 1)
    for (x, y) in [(0x1p30, 1.0), (1, -0.5), (1, .infinity), (0x1p30 - 0.25, 1)] {
      #expect(throws: QuantizationError.self) { try AddMultipliers(realA: x, realB: y) }
    }
    #expect(throws: QuantizationError.self) { try AddMultipliers(realA: .nan, realB: 1) }
  }
}

@Suite struct ActivationQuantizationTests {
  @Test func rangesAreWidenedToIncludeZero() {
    let positive = ActivationQuantization(range: 0.5, hi: 2)
    #expect(positive.scale == 2 / 255 && positive.zeroPoint == 0)
    let negative = ActivationQuantization(range: -3, hi: -1)
    #expect(negative.scale == 3 / 255 && negative.zeroPoint == 255)
    let both = ActivationQuantization(range: -1, hi: 3)
    #expect(both.scale == Float(4) / 255 && both.zeroPoint == 64)  // 63.75 rounds to 64
    #expect(both.quantize(0) == 64 && both.dequantize(64) == 0)
  }

  @Test func zeroWidthRangeIsDefined() {
    let q = ActivationQuantization(range: 0, hi: 0)
    #expect(q == ActivationQuantization(scale: 1, zeroPoint: 0))
    #expect(q.quantize(0) == 0 && q.quantize(0.4) == 0 && q.quantize(3) == 3)
  }

  @Test func roundTripWithinHalfAStep() {
    let seed: UInt64 = 0xAC7
    var g = SeededGenerator(seed: seed)
    for i in 0..<2_000 {
      let lo = Bool.random(using: &g) ? Float.random(in: -50...5, using: &g) : 0
      let hi = lo + Float.random(in: 0.001...60, using: &g)
      let p = ActivationQuantization(range: lo, hi: hi)
      let (a, b) = (min(lo, 0), max(hi, 0))
      for _ in 0..<50 {
        let r = Float.random(in: a...b, using: &g)
        let error = abs(p.dequantize(p.quantize(r)) - r)
        guard error <= p.scale / 2 * (1 + 1e-4) + 4 * b.ulp else {
          Issue.record("seed \(seed) iteration \(i): range [\(lo), \(hi)] \(p) r \(r) error \(error)")
          return
        }
      }
    }
  }

  @Test func quantizeRoundsHalfAwayFromZeroAndClamps() {
    let p = ActivationQuantization(scale: 1, zeroPoint: 128)
    #expect(p.quantize(2.5) == 131)
    #expect(p.quantize(-2.5) == 125)
    #expect(p.quantize(0.5) == 129)
    #expect(p.quantize(-0.5) == 127)
    #expect(p.quantize(0.49) == 128)
    #expect(p.quantize(1000) == 255 && p.quantize(-1000) == 0)
    #expect(p.quantize(.infinity) == 255 && p.quantize(-.infinity) == 0 && p.quantize(.nan) == 0)
    #expect(p.dequantize(0) == -128 && p.dequantize(255) == 127)
  }

  @Test func fusedActivationBounds() {
    let p = ActivationQuantization(scale: 0.05, zeroPoint: 20)
    #expect(p.clampBounds() == (0, 255))
    #expect(p.clampBounds(min: 0) == (20, 255))
    #expect(p.clampBounds(min: 0, max: 6) == (20, 140))
    let wide = ActivationQuantization(scale: 0.1, zeroPoint: 200)
    #expect(wide.clampBounds(min: 0, max: 6) == (200, 255))
    #expect(clampToUInt8(-5, lo: 20, hi: 140) == 20)
    #expect(clampToUInt8(1 << 40, lo: 20, hi: 140) == 140)
    #expect(clampToUInt8(77, lo: 0, hi: 255) == 77)
    #expect(
      saturatingInt32(1 << 40) == .max && saturatingInt32(-(1 << 40)) == .min && saturatingInt32(-7) == -7)
  }

  @Test func weightScales() {
    #expect(symmetricWeightScale(maxAbs: 127) == 1)
    #expect(symmetricWeightScale(maxAbs: 0) == 1)
    #expect(symmetricWeightScale(maxAbs: 2.54) == Float(2.54) / 127)
    #expect(symmetricWeightScale(maxAbs: .leastNonzeroMagnitude) == 1)
  }
}
