import CInt8Kernels
import Foundation
import OctetCore
import Testing

@testable import OctetInt8

/// A GEMM of each kernel family, fed its own layouts, with one epilogue.
enum GemmFamily: String, CaseIterable, CustomStringConvertible, Sendable {
  case scalar
  case avx2Int16 = "avx2 int16 (vpmaddwd)"
  case avx2Pairs = "avx2 pairs (vpmaddubsw)"
  case avx2Quads = "avx2 quads"
  case vnniEmulated = "avx512vnni (emulated)"
  case amxEmulated = "amx (emulated)"
  case vnni = "avx512vnni"
  case amx
  var description: String { rawValue }

  var supported: Bool {
    switch self {
    case .scalar, .vnniEmulated, .amxEmulated: true
    case .avx2Int16, .avx2Pairs, .avx2Quads: Int8Backend.avx2.isSupported
    case .vnni: Int8Backend.avx512vnni.isSupported
    case .amx: Int8Backend.amx.isSupported
    }
  }
  /// The packing layout of A and B.
  var layout: octet_i8_isa {
    switch self {
    case .scalar, .avx2Pairs, .avx2Quads, .vnniEmulated, .vnni: OCTET_I8_SCALAR
    case .avx2Int16: OCTET_I8_AVX2
    case .amxEmulated, .amx: OCTET_I8_AMX
    }
  }
}

/// One GEMM problem: A codes [m][k], weights [n][k], a residual [m][n].
struct GemmProblem {
  var m: Int, n: Int, k: Int
  var a: [UInt8], w: [Int8], residual: [UInt8]

  /// acc[r][c] = sum_k a[r][k] * w[c][k] (the bias is added by the caller), in Swift.
  func accumulators() -> [Int64] {
    var acc = [Int64](repeating: 0, count: m * n)
    for r in 0..<m {
      for c in 0..<n {
        var s: Int64 = 0
        for t in 0..<k { s += Int64(a[r * k + t]) * Int64(w[c * k + t]) }
        acc[r * n + c] = s
      }
    }
    return acc
  }

  /// Runs `family` on this problem with epilogue `ep` (its bias, multiplier, shift and residual
  /// pointers are filled in here) and returns the uint8 output [m][n].
  func run(
    _ family: GemmFamily, ep template: octet_i8_epilogue, bias: [Int32], multiplier: [Int32], shift: [Int32],
    withResidual: Bool
  ) -> [UInt8] {
    var out = [UInt8](repeating: 0xA5, count: m * n)
    out.withUnsafeMutableBytes {
      run(
        family, ep: template, bias: bias, multiplier: multiplier, shift: shift, withResidual: withResidual,
        into: $0.baseAddress!)
    }
    return out
  }

  /// The same with int32 outputs (a classifier's logits, §11): [m][n].
  func runInt32(_ family: GemmFamily, bias: [Int32], multiplier: [Int32], shift: [Int32]) -> [Int32] {
    var ep = octet_i8_epilogue()
    ep.int32_output = 1
    var out = [Int32](repeating: 0x5A5A_5A5A, count: m * n)
    out.withUnsafeMutableBytes {
      run(family, ep: ep, bias: bias, multiplier: multiplier, shift: shift, withResidual: false, into: $0.baseAddress!)
    }
    return out
  }

  private func run(
    _ family: GemmFamily, ep template: octet_i8_epilogue, bias: [Int32], multiplier: [Int32], shift: [Int32],
    withResidual: Bool, into out: UnsafeMutableRawPointer
  ) {
    let layout = family.layout
    let align = octet_i8_k_align(layout)
    let kp = (k + align - 1) / align * align
    let bBytes = octet_i8_packed_b_size(layout, k, n)
    let packed = AlignedBytes(count: bBytes)
    var fixups: QuadFixups?
    if family == .avx2Quads {
      fixups = QuadFixups(weights: w, k: k, n: n)
      octet_i8_pack_b(layout, fixups!.fit, k, n, packed.pointer)
    } else {
      octet_i8_pack_b(layout, w, k, n, packed.pointer)
    }
    // A in rows of kp elements (uint8, or the codes widened to int16 for the vpmaddwd kernel).
    let aBytes = AlignedBytes(count: m * kp * (layout == OCTET_I8_AVX2 ? 2 : 1))
    for r in 0..<m {
      for t in 0..<k {
        if layout == OCTET_I8_AVX2 {
          aBytes.pointer.assumingMemoryBound(to: Int16.self)[r * kp + t] = Int16(a[r * k + t])
        } else {
          aBytes.pointer.assumingMemoryBound(to: UInt8.self)[r * kp + t] = a[r * k + t]
        }
      }
    }
    bias.withUnsafeBufferPointer { b in
      multiplier.withUnsafeBufferPointer { mu in
        shift.withUnsafeBufferPointer { s in
          residual.withUnsafeBufferPointer { r in
            var ep = template
            ep.bias = b.baseAddress
            ep.multiplier = mu.baseAddress
            ep.shift = s.baseAddress
            ep.shifts_at_least_32 = shift.allSatisfy { $0 >= 32 } ? 1 : 0
            ep.residual = withResidual ? r.baseAddress : nil
            ep.ld_residual = n
            let a8 = aBytes.pointer.assumingMemoryBound(to: UInt8.self)
            let b8 = packed.pointer.assumingMemoryBound(to: Int8.self)
            switch family {
            case .scalar: octet_i8_gemm__scalar(a8, kp, b8, kp, n, 0, m, 0, n, &ep, out, n)
            case .vnniEmulated: octet_i8_gemm__avx512vnni_emulated(a8, kp, b8, kp, n, 0, m, 0, n, &ep, out, n)
            case .amxEmulated: octet_i8_gemm__amx_emulated(a8, kp, b8, kp, n, 0, m, 0, n, &ep, out, n)
            case .avx2Int16:
              octet_i8_gemm__avx2(
                aBytes.pointer.assumingMemoryBound(to: Int16.self), packed.pointer.assumingMemoryBound(to: Int16.self),
                kp, n, 0, m, 0, n, &ep, out, n)
            case .avx2Pairs: octet_i8_gemm__avx2_pairs(a8, kp, b8, kp, n, 0, m, 0, n, &ep, out, n)
            case .avx2Quads:
              withUnsafePointer(to: fixups!.table) {
                octet_i8_gemm__avx2_quads(a8, kp, b8, $0, kp, n, 0, m, 0, n, &ep, out, n)
              }
            case .vnni: octet_i8_gemm__avx512vnni(a8, kp, b8, kp, n, 0, m, 0, n, &ep, out, n)
            case .amx: octet_i8_gemm__amx(a8, kp, b8, kp, n, 0, m, 0, n, &ep, out, n)
            }
          }
        }
      }
    }
  }
}

/// docs/quantization.md §3, §7, §8 for one accumulator, from the Swift fixed-point primitives
/// (RequantMultiplier.apply, AddMultipliers.apply): not from any C code.
func swiftEpilogue(
  acc: Int64, requant: RequantMultiplier, ep: octet_i8_epilogue, residual: UInt8?
) -> UInt8 {
  let q = clampToUInt8(requant.apply(Int32(truncatingIfNeeded: acc)) + Int64(ep.out_zero_point), lo: ep.lo, hi: ep.hi)
  guard let residual else { return q }
  var add = try! AddMultipliers(realA: 0, realB: 0)
  (add.a, add.b, add.shift) = (ep.add_mult_conv, ep.add_mult_residual, ep.add_shift)
  let y = add.apply(Int32(q) - ep.out_zero_point, Int32(residual) - ep.residual_zero_point)
  return clampToUInt8(y + Int64(ep.add_zero_point), lo: ep.add_lo, hi: ep.add_hi)
}

/// Random A, and weights whose accumulators, at requantization shift `shift`, land mostly inside
/// the uint8 range: every column's accumulator is about 2^(shift - 31) * 150 wide.
func makeGemmProblem(m: Int, n: Int, k: Int, shift: Int32, pairsSafe: Bool, using rng: inout SeededGenerator)
  -> GemmProblem
{
  let a = (0..<(m * k)).map { _ in UInt8.random(in: 0...255, using: &rng) }
  let target = Double(1 << Int(shift - 31)) * 150
  let taps = min(k, 8)
  let cap = pairsSafe ? 64 : 127
  let wMax = Int8(max(1, min(cap, Int((target / (Double(taps).squareRoot() * 74)).rounded(.up)))))
  // Beyond what 8 taps reach, every tap: the widest accumulators the shift can take.
  let dense = wMax == Int8(cap)
  var w = [Int8](repeating: 0, count: n * k)
  for c in 0..<n {
    if dense {
      for t in 0..<k { w[c * k + t] = Int8.random(in: -wMax...wMax, using: &rng) }
    } else {
      for _ in 0..<taps { w[c * k + Int.random(in: 0..<k, using: &rng)] = Int8.random(in: -wMax...wMax, using: &rng) }
    }
  }
  let residual = (0..<(m * n)).map { _ in UInt8.random(in: 0...255, using: &rng) }
  return GemmProblem(m: m, n: n, k: k, a: a, w: w, residual: residual)
}

/// Every kernel family's epilogue (the in-register one of whole 6x16 tiles in the AVX2 kernels,
/// the general one elsewhere, and the epilogue the emulated VNNI/AMX builds call) against
/// `swiftEpilogue`, with requantization shifts 31 to 46 (all of them, 32 and 33 included, in
/// turn), tie-rich and random multipliers, with and without a fused residual add whose shift runs
/// over 17 to 46, full and narrowed clamps.
@Suite struct EpilogueFamilyTests {
  static func check(_ family: GemmFamily, shifts: ClosedRange<Int32>, trialsPerShift: Int, seed: UInt64) {
    var rng = SeededGenerator(seed: seed)
    // 24 x 48: whole 6x16 tiles; 13 x 37: row and column tails (the general epilogue).
    for (m, n) in [(24, 48), (13, 37)] {
      for shift in shifts {
        for trial in 0..<trialsPerShift {
          let k = [72, 19, 130][trial % 3]
          let p = makeGemmProblem(m: m, n: n, k: k, shift: shift, pairsSafe: family == .avx2Pairs, using: &rng)
          let acc = p.accumulators()
          // Odd trials: multipliers odd * 2^q (ties at one accumulator in 2^(shift - q)).
          let requants = (0..<n).map { _ -> RequantMultiplier in
            if trial % 2 == 1 { return tieMultiplier(shift: shift, using: &rng).0 }
            return RequantMultiplier(multiplier: Int32.random(in: (1 << 30)...Int32.max, using: &rng), shift: shift)
          }
          let bias = (0..<n).map { _ in
            Int32.random(in: -(1 << Int(shift - 31)) * 100...(1 << Int(shift - 31)) * 100, using: &rng)
          }
          let full = trial % 4 < 2
          var ep = octet_i8_epilogue()
          ep.out_zero_point = Int32.random(in: 0...255, using: &rng)
          ep.lo = full ? 0 : Int32.random(in: 0...30, using: &rng)
          ep.hi = full ? 255 : Int32.random(in: 200...255, using: &rng)
          ep.residual_zero_point = Int32.random(in: 0...255, using: &rng)
          let addShift = Int32(17 + (Int(shift) + trial) % 30)
          func addMultiplier() -> Int32 {
            Int32(
              clamping: Int64(
                Double.random(in: 0.2...1.5, using: &rng) * Double(Int64(1) << Int64(min(addShift - 1, 30)))))
          }
          ep.add_mult_conv = addMultiplier()
          ep.add_mult_residual = addMultiplier()
          ep.add_shift = addShift
          ep.add_zero_point = full ? 0 : Int32.random(in: 0...60, using: &rng)
          ep.add_lo = full ? 0 : ep.add_zero_point
          ep.add_hi = full ? 255 : Int32.random(in: 180...255, using: &rng)
          for withResidual in [false, true] {
            let got = p.run(
              family, ep: ep, bias: bias, multiplier: requants.map(\.multiplier), shift: requants.map(\.shift),
              withResidual: withResidual)
            var wrong = 0
            var distinct = Set<UInt8>()
            for r in 0..<m {
              for c in 0..<n {
                let want = swiftEpilogue(
                  acc: acc[r * n + c] + Int64(bias[c]), requant: requants[c], ep: ep,
                  residual: withResidual ? p.residual[r * n + c] : nil)
                distinct.insert(want)
                if got[r * n + c] != want { wrong += 1 }
              }
            }
            if wrong > 0 {
              Issue.record(
                "\(family) \(m)x\(n)x\(k), shift \(shift), trial \(trial), residual \(withResidual) (add shift \(addShift)): \(wrong) of \(m * n) outputs differ"
              )
              return
            }
            #expect(
              withResidual || distinct.count >= 8,
              "\(family) \(m)x\(n)x\(k) shift \(shift) trial \(trial): only \(distinct.count) distinct outputs")
          }
        }
      }
    }
  }

  @Test(arguments: [GemmFamily.scalar, .vnniEmulated, .amxEmulated])
  func portableEpilogueEqualsSwiftOnShifts31To46(_ family: GemmFamily) {
    Self.check(family, shifts: 31...46, trialsPerShift: 4, seed: 0xE91)
  }

  @Test(
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"),
    arguments: [GemmFamily.avx2Int16, .avx2Pairs, .avx2Quads])
  func avx2EpilogueEqualsSwiftOnShifts31To46(_ family: GemmFamily) {
    Self.check(family, shifts: 31...46, trialsPerShift: 4, seed: 0xE92)
  }

  @Test(.enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"))
  func avx512vnniEpilogueEqualsSwiftOnShifts31To46() {
    Self.check(.vnni, shifts: 31...46, trialsPerShift: 4, seed: 0xE93)
  }

  @Test(.enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"))
  func amxEpilogueEqualsSwiftOnShifts31To46() { Self.check(.amx, shifts: 31...46, trialsPerShift: 4, seed: 0xE94) }

  /// The edge of the 32-bit rounding form (every shift >= 33) and of the 32-bit form itself (>= 32),
  /// many trials each: a threshold off by one there gets most outputs wrong at exactly that shift.
  @Test(
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"),
    arguments: [GemmFamily.avx2Int16, .avx2Pairs, .avx2Quads])
  func avx2EpilogueAtShifts32And33(_ family: GemmFamily) {
    Self.check(family, shifts: 31...34, trialsPerShift: 16, seed: 0xE95)
  }

  /// int32 outputs (the classifier's logits, §11) from GEMMs of whole tiles (24 x 64: 8-row tiles of
  /// the VNNI and AMX kernels and 6-row ones of AVX2, every panel 16 or 32 wide) and of tails
  /// (9 x 37): the in-register 8-bit epilogues of whole tiles must leave them to the general one.
  /// The network planners run a classifier one image (one row) at a time, so only this reaches the
  /// kernels' whole-tile branch with int32 outputs.
  static func checkInt32(_ family: GemmFamily) {
    var rng = SeededGenerator(seed: 0x1A32)
    for (m, n) in [(24, 64), (9, 37)] {
      for shift: Int32 in [31, 38, 46] {
        let p = makeGemmProblem(m: m, n: n, k: 72, shift: shift, pairsSafe: family == .avx2Pairs, using: &rng)
        let acc = p.accumulators()
        let requants = (0..<n).map { _ in
          RequantMultiplier(multiplier: Int32.random(in: (1 << 30)...Int32.max, using: &rng), shift: shift)
        }
        let bias = (0..<n).map { _ in Int32.random(in: -100_000...100_000, using: &rng) }
        let got = p.runInt32(family, bias: bias, multiplier: requants.map(\.multiplier), shift: requants.map(\.shift))
        var wrong = 0
        for r in 0..<m {
          for c in 0..<n {
            let y = requants[c].apply(Int32(truncatingIfNeeded: acc[r * n + c] + Int64(bias[c])))
            if got[r * n + c] != Int32(clamping: y) { wrong += 1 }
          }
        }
        #expect(wrong == 0, "\(family) \(m)x\(n), shift \(shift): \(wrong) of \(m * n) int32 outputs differ")
      }
    }
  }

  @Test(arguments: [GemmFamily.scalar, .vnniEmulated, .amxEmulated])
  func portableInt32OutputsEqualSwift(_ family: GemmFamily) { Self.checkInt32(family) }

  @Test(
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"),
    arguments: [GemmFamily.avx2Int16, .avx2Pairs, .avx2Quads])
  func avx2Int32OutputsEqualSwift(_ family: GemmFamily) { Self.checkInt32(family) }

  @Test(.enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"))
  func avx512vnniInt32OutputsOfWholeTilesEqualSwift() { Self.checkInt32(.vnni) }

  @Test(.enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"))
  func amxInt32OutputsOfWholeTilesEqualSwift() { Self.checkInt32(.amx) }

  /// The emulated VNNI and AMX builds call the real builds' (AVX2) epilogue wherever the CPU has
  /// AVX2; only a CPU without it falls back to the scalar one.
  @Test func emulatedBuildsUseTheAVX2EpilogueWhereTheCPUHasIt() {
    let expected = Int8Backend.avx2.isSupported ? OCTET_I8_AVX2 : OCTET_I8_SCALAR
    #expect(octet_i8_emulated_epilogue_isa() == expected)
  }
}
