import CInt8Kernels
import Foundation
import OctetCore
import OctetModels
import Testing

@testable import OctetInt8

// Exact ties (a requantized value exactly halfway between two integers, which docs/quantization.md
// §3 rounds toward +infinity) almost never happen with the random multipliers of the other
// bit-exact tests: a kernel that rounded them the other way would pass those. Here every
// multiplier is odd * 2^p (p = 28...30), so acc * m / 2^n is a tie whenever
// acc * odd = 2^(j-1) mod 2^j with j = n - p small (1 to 6): one accumulator in 2^j. Weights and
// biases are scaled to 2^j so the results stay inside the uint8 range, and the network's input
// sits on half-steps of a power-of-two input scale, so the input quantization meets ties too.

/// The layers run with ties: every GEMM form (1x1 direct, im2col with stride and padding, the
/// stem's K = 27 and 147), depthwise 3x3 and 5x5 at strides 1 and 2, residual adds fused in both
/// input orders (into a GEMM and into a depthwise conv), and N, M and K tails.
let tieCases: [LayerCase] = [
  LayerCase(size: 16, cin: 3, cout: 64, kernel: 7, stride: 2, pad: [3, 3, 3, 3], groups: 1),
  LayerCase(size: 9, cin: 3, cout: 32, kernel: 3, stride: 2, pad: [0, 0, 1, 1], groups: 1),
  LayerCase(size: 7, cin: 64, cout: 64, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1),
  LayerCase(size: 7, cin: 32, cout: 48, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 1),
  LayerCase(size: 7, cin: 32, cout: 64, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1, residual: .layerSecond),
  LayerCase(size: 8, cin: 48, cout: 32, kernel: 1, stride: 2, pad: [0, 0, 0, 0], groups: 1, residual: .layerFirst),
  LayerCase(size: 9, cin: 32, cout: 32, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 32),
  LayerCase(size: 9, cin: 40, cout: 40, kernel: 5, stride: 2, pad: [1, 1, 2, 2], groups: 40),
  LayerCase(size: 8, cin: 24, cout: 24, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 24, residual: .layerSecond),
  LayerCase(size: 4, cin: 17, cout: 7, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1),
  LayerCase(size: 5, cin: 130, cout: 33, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1),
  LayerCase(size: 11, cin: 9, cout: 40, kernel: 5, stride: 3, pad: [2, 2, 2, 2], groups: 1, residual: .layerFirst),
]

/// The scale of the network input: a power of two, so that x = (k + 1/2) * scale divides exactly.
let tieInputScale: Float = 1.0 / 32

/// A multiplier odd * 2^p with shift p + j, and the j it has: ties at one accumulator in 2^j.
func tieMultiplier(shift n: Int32, using rng: inout SeededGenerator) -> (RequantMultiplier, j: Int) {
  // odd * 2^p must lie in [2^30, 2^31): odd 1 with p = 30, odd 3 with p = 29, odd 5 or 7 with p = 28.
  let (odd, p): (Int32, Int32) = [(1, 30), (3, 29), (5, 28), (7, 28)].filter { n - $0.1 >= 1 }
    .randomElement(using: &rng)!
  return (RequantMultiplier(multiplier: odd << p, shift: n), Int(n - p))
}

/// `makeLayerModel(c, seed:)` turned into a tie-rich network (see above). Even seeds mix shifts
/// 31 to 34 (the SIMD epilogues' general 64-bit form); odd seeds have every shift >= 32 (their
/// 32-bit form), with one channel at exactly 32 in seeds 1 mod 4 and all >= 33 in seeds 3 mod 4
/// (the form that rounds in 32 bits).
func makeTieModel(_ c: LayerCase, seed: UInt64) throws -> QuantizedModel {
  var model = try makeLayerModel(c, seed: seed)
  var rng = SeededGenerator(seed: seed ^ 0x71E5)
  let shifts: ClosedRange<Int32> = seed % 2 == 0 ? 31...34 : (seed % 4 == 1 ? 32...34 : 33...35)
  var input = model.nodes[0]
  input.output = ActivationQuantization(scale: tieInputScale, zeroPoint: input.output.zeroPoint)
  model.nodes[0] = input
  for i in model.nodes.indices {
    var node = model.nodes[i]
    if node.inputs == ["input"] { node.inputQuantization = [input.output] }
    switch node.op {
    case .conv2d, .linear:
      let cout = node.outChannels!
      let perChannel = node.weights.count / cout
      var multipliers: [Int32] = []
      var nodeShifts: [Int32] = []
      var weights = [Int8](repeating: 0, count: node.weights.count)
      var bias = [Int32](repeating: 0, count: cout)
      for ch in 0..<cout {
        let n = seed % 4 == 1 && ch == 5 ? 32 : Int32.random(in: shifts, using: &rng)
        let (m, j) = tieMultiplier(shift: n, using: &rng)
        multipliers.append(m.multiplier)
        nodeShifts.append(m.shift)
        // About four taps per channel, |w| up to 2^j / (2 odd): results spread over tens of codes.
        let odd = Int(m.multiplier >> (m.shift - Int32(j)))
        let w = Int8(clamping: max(1, (1 << j) / (2 * odd)))
        for _ in 0..<min(perChannel, 4) {
          weights[ch * perChannel + Int.random(in: 0..<perChannel, using: &rng)] = Int8.random(in: -w...w, using: &rng)
        }
        let b = Int32((1 << j) * 40 / odd)
        bias[ch] = Int32.random(in: -b...b, using: &rng)
      }
      node.weights = weights
      node.bias = bias
      node.multipliers = multipliers
      node.shifts = nodeShifts
    case .add:
      // (2 da + 3 db) / 4 and its mirror: ties at one value in four.
      var add = node.addMultipliers!
      (add.a, add.b, add.shift) = seed % 2 == 0 ? (1 << 30, 3 << 29, 31) : (3 << 29, 1 << 30, 32)
      node.addMultipliers = add
    case .globalAveragePool:
      // sum / 2^j with 2^j about the pixel count (the mean): ties at one channel sum in 2^j.
      let side = (c.size + c.pad[0] + c.pad[2] - c.kernel) / c.stride + 1
      let j = max(1, Int(log2(Double(side * side)).rounded()))
      node.requant = RequantMultiplier(multiplier: 1 << 30, shift: Int32(30 + j))
    default: break
    }
    model.nodes[i] = node
  }
  try model.validate()
  return model
}

/// A batch of `count` network inputs on half-steps of `tieInputScale` (each one a tie of the input
/// quantization), and whole steps in between.
func tieInput(size: Int, count: Int, zeroPoint: Int32, seed: UInt64) -> Tensor {
  var rng = SeededGenerator(seed: seed ^ 0x1A9)
  let scalars = (0..<(count * size * size * 3)).map { i -> Float in
    let k = Float(Int.random(in: (-Int(zeroPoint) - 8)...(263 - Int(zeroPoint)), using: &rng))
    return (i % 2 == 0 ? k + 0.5 : k) * tieInputScale
  }
  return Tensor(shape: [count, size, size, 3], scalars: scalars)
}

/// The accumulators (bias included) of conv node `node` on its input codes `x` ([N, H, W, C]),
/// [N, outH, outW, outChannels]: plain Swift loops over the definition (§5), independent of both
/// executors.
func naiveConvAccumulators(of node: QuantizedNode, input x: QuantizedTensor) -> [Int64] {
  let (h, w, cin) = (x.shape[1], x.shape[2], x.shape[3])
  let (kh, kw) = (node.kernel![0], node.kernel![1])
  let (sh, sw) = (node.stride![0], node.stride![1])
  let (top, left, bottom, right) = (node.padding![0], node.padding![1], node.padding![2], node.padding![3])
  let groups = node.groups ?? 1
  let cout = node.outChannels!
  let outH = (h + top + bottom - kh) / sh + 1
  let outW = (w + left + right - kw) / sw + 1
  let perGroupIn = cin / groups
  let perGroupOut = cout / groups
  let zIn = Int64(node.inputQuantization![0].zeroPoint)
  var accumulators: [Int64] = []
  accumulators.reserveCapacity(x.shape[0] * outH * outW * cout)
  for image in 0..<x.shape[0] {
    for oy in 0..<outH {
      for ox in 0..<outW {
        for oc in 0..<cout {
          let g = oc / perGroupOut
          // The stored bias has -z_in * sum(w) folded in (§5): the sum runs over the codes
          // themselves, and taps in the padding read z_in.
          var acc = Int64(node.bias[oc])
          for ky in 0..<kh {
            let iy = oy * sh - top + ky
            for kx in 0..<kw {
              let ix = ox * sw - left + kx
              let inside = iy >= 0 && iy < h && ix >= 0 && ix < w
              for ci in 0..<perGroupIn {
                let code = inside ? Int64(x.values[((image * h + iy) * w + ix) * cin + g * perGroupIn + ci]) : zIn
                acc += code * Int64(node.weights[((oc * kh + ky) * kw + kx) * perGroupIn + ci])
              }
            }
          }
          accumulators.append(acc)
        }
      }
    }
  }
  return accumulators
}

/// The decisive ties of conv node `node` on its input codes `x`: accumulators whose requantized
/// value is exactly halfway and whose two roundings give different clamped codes.
func decisiveTies(of node: QuantizedNode, input x: QuantizedTensor) -> Int {
  let cout = node.outChannels!
  let zOut = Int64(node.output.zeroPoint)
  let (lo, hi) = (Int64(node.clamp![0]), Int64(node.clamp![1]))
  var ties = 0
  for (i, acc) in naiveConvAccumulators(of: node, input: x).enumerated() {
    let oc = i % cout
    let m = Int64(node.multipliers[oc])
    let n = Int64(node.shifts[oc])
    let product = acc * m
    if m != 0, product & ((1 << n) - 1) == 1 << (n - 1) {
      let up = (product >> n) + 1 + zOut  // the tie rounded toward +infinity; down is one less
      if up > lo, up - 1 < hi { ties += 1 }
    }
  }
  return ties
}

/// One path a tie-rich network runs through.
struct TiePath: CustomStringConvertible, Sendable {
  var backend: Int8Backend
  var emulated = false
  var avx2Kernel: GemmKernel?
  var description: String {
    "\(backend.rawValue)\(emulated ? " (emulated)" : "")\(avx2Kernel.map { " \($0.rawValue)" } ?? "")"
  }
}

/// Every tie case through `path`, against the reference: every node of an unfused run and every
/// materialized node of a fused one (1 and 2 threads), and the logits. Each case must meet at least
/// 10 decisive ties in its layer, so a wrong tie rounding cannot hide.
func checkTies(_ path: TiePath) throws {
  for (i, c) in tieCases.enumerated() {
    let seed = UInt64(0x71E0 + i)
    let model = try makeTieModel(c, seed: seed)
    let context = "tie case \(i) \(c) seed \(seed) on \(path)"
    let input = tieInput(size: c.size, count: 2, zeroPoint: model.nodes[0].output.zeroPoint, seed: seed)
    let reference = try Int8ReferenceExecutor(model: model)
    var expected: [String: QuantizedTensor] = [:]
    let logits = reference.run(input) { name, t in expected[name] = t }
    let layer = model.nodes.first { $0.name == "layer" }!
    let ties = decisiveTies(of: layer, input: expected["pre"]!)
    #expect(ties >= 10, "\(context): only \(ties) decisive ties in the layer")
    for threads in [1, 2] {
      let unfused = try Int8FastExecutor(
        model: model, backend: path.backend, threads: threads, fuseResidualAdds: false, emulatedISA: path.emulated,
        avx2Kernel: path.avx2Kernel)
      let got = expectFusedNodesEqual(
        unfused, input: input, expected: expected, context: "\(context), \(threads) threads (unfused)")
      #expect(got == logits, "\(context), \(threads) threads: logits differ (unfused)")
      let fused = try Int8FastExecutor(
        model: model, backend: path.backend, threads: threads, fuseResidualAdds: true, emulatedISA: path.emulated,
        avx2Kernel: path.avx2Kernel)
      let fusedLogits = expectFusedNodesEqual(fused, input: input, expected: expected, context: "\(context) fused")
      #expect(fusedLogits == logits, "\(context), \(threads) threads: logits differ (fused)")
      if let kernel = path.avx2Kernel, layer.groups == 1,
        kernel != .avx2Pairs || layer.weights.allSatisfy({ abs(Int($0)) <= 64 })
      {
        let used = fused.layers.first { $0.name == "layer" }?.kernel
        #expect(used == kernel.rawValue, "\(context): the layer ran on \(used ?? "nothing")")
      }
    }
  }
}

@Suite struct TieTests {
  @Test func scalarRoundsTiesAsTheReference() throws { try checkTies(TiePath(backend: .scalar)) }

  /// The AVX2 backend as it chooses, and each of its GEMM kernel families forced.
  @Test(
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"),
    arguments: [nil, GemmKernel.avx2Int16, .avx2Pairs, .avx2Quads])
  func avx2RoundsTiesAsTheReference(_ kernel: GemmKernel?) throws {
    try checkTies(TiePath(backend: .avx2, avx2Kernel: kernel))
  }

  @Test func emulatedAVX512VNNIRoundsTiesAsTheReference() throws {
    try checkTies(TiePath(backend: .avx512vnni, emulated: true))
  }

  @Test func emulatedAMXRoundsTiesAsTheReference() throws { try checkTies(TiePath(backend: .amx, emulated: true)) }

  @Test(.enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"))
  func avx512vnniRoundsTiesAsTheReference() throws { try checkTies(TiePath(backend: .avx512vnni)) }

  @Test(.enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"))
  func amxRoundsTiesAsTheReference() throws { try checkTies(TiePath(backend: .amx)) }

  /// The global-average-pool and residual-add kernels on inputs where every other result is a tie,
  /// against the reference's Swift kernels.
  @Test func poolingAndAddRoundTiesAsTheReference() {
    var rng = SeededGenerator(seed: 0x71E9)
    for (pixels, channels) in [(49, 70), (1, 3), (9, 300)] {
      // Codes within 3 of the input zero point: sums small enough to stay inside [0, 255] at / 4.
      let zIn: Int32 = 100
      let input = (0..<(pixels * channels)).map { _ in UInt8(Int.random(in: 97...103, using: &rng)) }
      let requant = RequantMultiplier(multiplier: 1 << 30, shift: 32)  // sum / 4
      var got = [UInt8](repeating: 0, count: channels)
      var want = [UInt8](repeating: 1, count: channels)
      octet_i8_global_avgpool(input, pixels, channels, zIn, requant.multiplier, requant.shift, 128, &got)
      input.withUnsafeBufferPointer { x in
        want.withUnsafeMutableBufferPointer { out in
          int8GlobalAveragePool(
            x, out, pixels: pixels, channels: channels, inputZeroPoint: zIn, requant: requant, outputZeroPoint: 128)
        }
      }
      #expect(got == want, "global average pool, \(pixels) pixels x \(channels) channels")
      var sums = 0
      for c in 0..<channels {
        let s = (0..<pixels).map { Int(input[$0 * channels + c]) - Int(zIn) }.reduce(0, +)
        if s & 3 == 2 { sums += 1 }
      }
      #expect(sums * 8 >= channels, "only \(sums) of \(channels) channel sums are ties")
    }
    for (a, b, shift): (Int32, Int32, Int32) in [
      (1 << 30, 1 << 30, 31), (1 << 30, 3 << 29, 31), (3 << 29, 1 << 30, 32),
    ] {
      var add = try! AddMultipliers(realA: 0, realB: 0)
      (add.a, add.b, add.shift) = (a, b, shift)
      let count = 1000
      let x = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
      let y = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
      var got = [UInt8](repeating: 0, count: count)
      var want = [UInt8](repeating: 1, count: count)
      octet_i8_add(x, y, count, 120, 131, add.a, add.b, add.shift, 127, 0, 255, &got)
      x.withUnsafeBufferPointer { xa in
        y.withUnsafeBufferPointer { yb in
          want.withUnsafeMutableBufferPointer { out in
            int8Add(
              xa, yb, out, zeroPointA: 120, zeroPointB: 131, multipliers: add, outputZeroPoint: 127, lo: 0, hi: 255)
          }
        }
      }
      #expect(got == want, "add \(add)")
    }
  }
}
