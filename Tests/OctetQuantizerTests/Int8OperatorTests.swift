import Foundation
import OctetCore
import OctetModels
import Testing

@testable import OctetInt8

/// `floor(v + 1/2)` of a Double model, allowing ±1 only where v sits within rounding noise of a tie
/// (the Double product acc · m can lose low bits; the integer one cannot).
func expectRounded(_ got: Int64, _ v: Double, _ context: @autoclosure () -> String) {
  let expected = (v + 0.5).rounded(.down)
  let nearTie =
    abs((v + 0.5) - expected) < 1e-9 * max(1, abs(v)) || abs((v + 0.5) - expected - 1) < 1e-9 * max(1, abs(v))
  if nearTie {
    #expect(abs(Double(got) - expected) <= 1, "\(context()): \(got) vs Double \(v)")
  } else {
    #expect(Double(got) == expected, "\(context()): \(got) vs Double \(v)")
  }
}

@Suite struct Int8OperatorTests {
  struct ConvCase: CustomStringConvertible {
    var h: Int, w: Int, cin: Int, cout: Int, k: [Int], stride: Int, pad: [Int], groups: Int
    var description: String { "\(h)x\(w)x\(cin)->\(cout) k\(k) s\(stride) pad\(pad) g\(groups)" }
  }

  static let convCases: [ConvCase] = [
    // asymmetric (TF SAME, stride 2)
    ConvCase(h: 7, w: 6, cin: 3, cout: 5, k: [3, 3], stride: 2, pad: [0, 0, 1, 1], groups: 1),
    ConvCase(h: 5, w: 5, cin: 5, cout: 7, k: [3, 3], stride: 1, pad: [1, 2, 0, 1], groups: 1),
    ConvCase(h: 6, w: 6, cin: 9, cout: 9, k: [3, 3], stride: 1, pad: [1, 1, 1, 1], groups: 9),  // depthwise, same
    ConvCase(h: 9, w: 8, cin: 6, cout: 6, k: [5, 5], stride: 2, pad: [1, 1, 2, 2], groups: 6),  // depthwise 5x5/2
    ConvCase(h: 4, w: 4, cin: 17, cout: 3, k: [1, 1], stride: 1, pad: [0, 0, 0, 0], groups: 1),  // 1x1, K = 17
    ConvCase(h: 11, w: 11, cin: 3, cout: 4, k: [7, 7], stride: 2, pad: [3, 3, 3, 3], groups: 1),  // ResNet stem shape
    ConvCase(h: 5, w: 4, cin: 4, cout: 6, k: [3, 3], stride: 1, pad: [1, 1, 1, 1], groups: 2),  // grouped
  ]

  @Test(arguments: convCases)
  func convolutionMatchesTheDoubleModel(_ c: ConvCase) throws {
    let seed = testSeed(0xC0417)
    var rng = SeededGenerator(seed: seed)
    let icg = c.cin / c.groups
    let ocg = c.cout / c.groups
    let taps = c.k[0] * c.k[1] * icg
    let zIn = Int32.random(in: 0...255, using: &rng)
    let zOut = Int32.random(in: 0...255, using: &rng)
    let x = (0..<(c.h * c.w * c.cin)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let w = (0..<(c.cout * taps)).map { _ in Int8.random(in: -127...127, using: &rng) }  // [O, kh, kw, I/g]
    let rawBias = (0..<c.cout).map { _ in Int32.random(in: -50_000...50_000, using: &rng) }
    let requant = try (0..<c.cout).map { _ in
      try RequantMultiplier(real: Double.random(in: 1e-5...2e-3, using: &rng))
    }
    var node = QuantizedNode(
      name: "conv", op: .conv2d, inputs: ["input"], fused: ["conv"],
      output: ActivationQuantization(scale: 1, zeroPoint: zOut))
    node.inChannels = c.cin
    node.outChannels = c.cout
    node.kernel = c.k
    node.stride = [c.stride, c.stride]
    node.padding = c.pad
    node.groups = c.groups
    node.inputQuantization = [ActivationQuantization(scale: 1, zeroPoint: zIn)]
    node.clamp = [10, 240]
    node.weights = w
    // Zero point folded into the bias: b' = b − z_in · Σw.
    node.bias = (0..<c.cout).map { o in
      rawBias[o] - zIn * (0..<taps).reduce(Int32(0)) { $0 + Int32(w[o * taps + $1]) }
    }
    node.multipliers = requant.map(\.multiplier)
    node.shifts = requant.map(\.shift)
    let plan = Int8ConvPlan(node: node, inHeight: c.h, inWidth: c.w)
    var out = [UInt8](repeating: 0, count: plan.outHeight * plan.outWidth * c.cout)
    x.withUnsafeBufferPointer { x in out.withUnsafeMutableBufferPointer { plan.run(x, $0) } }

    // Double model: centred inputs (x − z_in), padding is real 0, the unfolded bias.
    for oy in 0..<plan.outHeight {
      for ox in 0..<plan.outWidth {
        for o in 0..<c.cout {
          let g = o / ocg
          var acc = Double(rawBias[o])
          for ky in 0..<c.k[0] {
            for kx in 0..<c.k[1] {
              let iy = oy * c.stride - c.pad[0] + ky
              let ix = ox * c.stride - c.pad[1] + kx
              guard iy >= 0, iy < c.h, ix >= 0, ix < c.w else { continue }
              for i in 0..<icg {
                let xv = Double(Int32(x[(iy * c.w + ix) * c.cin + g * icg + i]) - zIn)
                acc += xv * Double(w[o * taps + (ky * c.k[1] + kx) * icg + i])
              }
            }
          }
          let v = acc * requant[o].realValue
          let expected = min(max((v + 0.5).rounded(.down) + Double(zOut), 10), 240)
          let got = Double(out[(oy * plan.outWidth + ox) * c.cout + o])
          #expect(
            abs(got - expected) <= (abs(v + 0.5 - (v + 0.5).rounded()) < 1e-9 ? 1 : 0),
            "seed \(seed) \(c) at (\(oy), \(ox), \(o)): \(got) vs Double \(expected)")
        }
      }
    }
  }

  @Test func addMatchesTheDoubleModel() throws {
    let seed = testSeed(0xADD)
    var rng = SeededGenerator(seed: seed)
    for trial in 0..<20 {
      let sa = Double.random(in: 0.01...0.1, using: &rng)
      let sb = Double.random(in: 0.01...0.1, using: &rng)
      let so = Double.random(in: 0.02...0.2, using: &rng)
      let m = try AddMultipliers(realA: sa / so, realB: sb / so)
      let za = Int32.random(in: 0...255, using: &rng)
      let zb = Int32.random(in: 0...255, using: &rng)
      let zo = Int32.random(in: 0...255, using: &rng)
      let a = (0..<64).map { _ in UInt8.random(in: 0...255, using: &rng) }
      let b = (0..<64).map { _ in UInt8.random(in: 0...255, using: &rng) }
      var out = [UInt8](repeating: 0, count: 64)
      a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
          out.withUnsafeMutableBufferPointer {
            int8Add(
              a, b, $0, zeroPointA: za, zeroPointB: zb, multipliers: m, outputZeroPoint: zo, lo: zo, hi: 255)
          }
        }
      }
      for i in 0..<64 {
        let v = Double(Int32(a[i]) - za) * m.realA + Double(Int32(b[i]) - zb) * m.realB
        let y = Int64(min(max((v + 0.5).rounded(.down) + Double(zo), Double(zo)), 255))
        #expect(Int64(out[i]) == y, "seed \(seed) trial \(trial) element \(i): \(out[i]) vs Double \(y)")
      }
    }
  }

  @Test func maxPoolIgnoresPaddingAndKeepsQuantization() {
    let seed = testSeed(0x9001)
    var rng = SeededGenerator(seed: seed)
    let (h, w, c) = (7, 6, 3)
    let x = (0..<(h * w * c)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let oh = (h + 2 - 3) / 2 + 1
    let ow = (w + 2 - 3) / 2 + 1
    var out = [UInt8](repeating: 0, count: oh * ow * c)
    x.withUnsafeBufferPointer { x in
      out.withUnsafeMutableBufferPointer {
        int8MaxPool(
          x, $0, height: h, width: w, channels: c, kernel: [3, 3], stride: [2, 2], padding: [1, 1, 1, 1],
          outHeight: oh, outWidth: ow)
      }
    }
    for oy in 0..<oh {
      for ox in 0..<ow {
        for ch in 0..<c {
          var m = -1
          for y in max(oy * 2 - 1, 0)..<min(oy * 2 + 2, h) {
            for xx in max(ox * 2 - 1, 0)..<min(ox * 2 + 2, w) { m = max(m, Int(x[(y * w + xx) * c + ch])) }
          }
          #expect(Int(out[(oy * ow + ox) * c + ch]) == m, "seed \(seed) at (\(oy), \(ox), \(ch))")
        }
      }
    }
  }

  @Test func globalAveragePoolAndLinearMatchTheDoubleModel() throws {
    let seed = testSeed(0x6A9)
    var rng = SeededGenerator(seed: seed)
    let (pixels, c) = (49, 13)
    let x = (0..<(pixels * c)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let zIn = Int32.random(in: 0...255, using: &rng)
    let zOut = Int32.random(in: 0...255, using: &rng)
    let requant = try RequantMultiplier(real: Double.random(in: 0.5...2, using: &rng) / Double(pixels))
    var out = [UInt8](repeating: 0, count: c)
    x.withUnsafeBufferPointer { x in
      out.withUnsafeMutableBufferPointer {
        int8GlobalAveragePool(
          x, $0, pixels: pixels, channels: c, inputZeroPoint: zIn, requant: requant, outputZeroPoint: zOut)
      }
    }
    for ch in 0..<c {
      let sum = (0..<pixels).reduce(0.0) { $0 + Double(Int32(x[$1 * c + ch]) - zIn) }
      let v = sum * requant.realValue
      #expect(
        Double(out[ch]) == min(max((v + 0.5).rounded(.down) + Double(zOut), 0), 255),
        "seed \(seed) channel \(ch)")
    }

    // Linear: weights [O, I], int32 logits, no clamp.
    let (inF, outF) = (13, 11)
    let w = (0..<(inF * outF)).map { _ in Int8.random(in: -127...127, using: &rng) }
    let bias = (0..<outF).map { _ in Int32.random(in: -100_000...100_000, using: &rng) }
    let ms = try (0..<outF).map { _ in try RequantMultiplier(real: Double.random(in: 0.01...1, using: &rng)) }
    var node = QuantizedNode(
      name: "fc", op: .linear, inputs: ["x"], fused: ["fc"],
      output: ActivationQuantization(scale: 1, zeroPoint: 0))
    node.inChannels = inF
    node.outChannels = outF
    node.weights = w
    node.bias = bias
    node.multipliers = ms.map(\.multiplier)
    node.shifts = ms.map(\.shift)
    var logits = [Int32](repeating: 0, count: outF)
    out.withUnsafeBufferPointer { x in
      logits.withUnsafeMutableBufferPointer { Int8LinearPlan(node: node).run(x, $0) }
    }
    for o in 0..<outF {
      let acc = (0..<inF).reduce(Double(bias[o])) { $0 + Double(out[$1]) * Double(w[o * inF + $1]) }
      expectRounded(Int64(logits[o]), acc * ms[o].realValue, "seed \(seed) logit \(o)")
    }
  }
}
