import CInt8Kernels
import Foundation
import Octet
import OctetModels
import OctetQuantizer
import OctetTestSupport
import Testing

@testable import OctetInt8

/// EfficientNet-Lite0 with several 16-bit layers (docs/quantization.md §17): a depthwise one
/// (`_blocks.10._bn1.relu6`) chained into a 1x1 with K = 672 (`_blocks.10._bn2`, so the depthwise
/// layer has a 16-bit input and output), a 1x1 with K = 1152 (`_blocks.13._bn2`) and the head
/// (`_bn1.relu6`); quantized from min/max ranges of 2 images and run at 96x96 like RealModelCase.
/// The three cases: `layers` at a16 with 8- or 16-bit weights, or the a8w16 one.
enum A16Variant: String, CaseIterable, Sendable, CustomStringConvertible {
  case a16w8, a16w16, a8w16
  var description: String { rawValue }
}

struct A16RealModelCase: Sendable {
  static let layers = ["_blocks.10._bn1.relu6", "_blocks.10._bn2", "_blocks.13._bn2", "_bn1.relu6"]
  /// The a8w16 case (§17.2): the stem (K = 27, the network input), a 5x5 stride-2 depthwise layer,
  /// a 1x1 with K = 1152 and the head with 16-bit weights on 8-bit inputs; `_blocks.12._bn1.relu6`
  /// too, whose 16-bit twin (8-bit input, 16-bit weights and output) feeds `_blocks.12._bn2` at a16
  /// (with 8-bit weights).
  static let w16Layers = [
    "_bn0.relu6", "_blocks.3._bn1.relu6", "_blocks.12._bn1.relu6", "_blocks.15._bn2", "_bn1.relu6",
  ]
  static let w16A16Layers = ["_blocks.12._bn2"]
  var quantized: QuantizedModel
  var input: Tensor
  var expected: [String: QuantizedTensor]
  var logits: Int32Logits
  var variant: A16Variant

  init(_ variant: A16Variant, size: Int = 96) throws {
    self.variant = variant
    let model = try ModelLoader.load(contentsOf: try #require(TestData.lite0))
    let inputs = try validationInputs(for: model, count: 3)
    let ranges = try minMaxRanges(of: model, over: Array(inputs.prefix(2)))
    var options = QuantizationOptions()
    options.a16Layers = variant == .a8w16 ? Self.w16A16Layers : Self.layers
    options.w16Layers = variant == .a8w16 ? Self.w16Layers : []
    options.a16WeightBits = variant == .a16w16 ? .sixteen : .eight
    var quantized = try Quantizer.quantize(model: model, options: options) { ranges[$0] }.model
    let full = model.info.inputSize
    quantized.info.inputSize = size
    let x = inputs[2]
    let offset = (full - size) / 2
    var crop: [Float] = []
    for y in 0..<size {
      let row = ((y + offset) * full + offset) * 3
      crop += x.scalars[row..<(row + size * 3)]
    }
    input = Tensor(shape: [1, size, size, 3], scalars: crop)
    self.quantized = quantized
    var expected: [String: QuantizedTensor] = [:]
    logits = try Int8ReferenceExecutor(model: quantized).run(input) { name, t in expected[name] = t }
    self.expected = expected
  }

  /// The quantized model has the case's 16-bit layers, with the precisions asked for.
  func checkLayers() {
    switch variant {
    case .a16w8, .a16w16:
      #expect(
        Set(quantized.nodes.filter { $0.inputBits == 16 && !MixedPrecision.isTwin($0.name) }.map(\.name))
          == Set(Self.layers))
    case .a8w16:
      let precisions = Dictionary(uniqueKeysWithValues: quantized.nodes.map { ($0.name, $0.precision) })
      for layer in Self.w16Layers { #expect(precisions[layer] == "a8w16", "\(layer)") }
      #expect(precisions["_blocks.12._bn2"] == "a16w8")
      #expect(quantized.node(named: MixedPrecision.twinName("_blocks.12._bn1.relu6"))?.weightBits == 16)
    }
  }

  func check(_ path: TiePath) throws {
    let context = "Lite0 \(variant) on \(path)"
    // a16: 4 layers and the 16-bit twins of their 4 producers; a8w16: 5 layers, 1 at a16, 1 twin.
    let expectedWide = variant == .a8w16 ? 7 : 8
    #expect(quantized.nodes.filter(\.isWide).count == expectedWide)
    for fuse in [false, true] {
      let fast = try Int8FastExecutor(
        model: quantized, backend: path.backend, threads: 2, fuseResidualAdds: fuse, emulatedISA: path.emulated,
        avx2Kernel: path.avx2Kernel)
      let wide = fast.layers.filter { $0.kernel.hasPrefix("a16") }
      #expect(wide.count == expectedWide, "\(context): 16-bit steps \(wide.map(\.name))")
      let got = expectFusedNodesEqual(fast, input: input, expected: expected, context: "\(context) fuse \(fuse)")
      #expect(got == logits, "\(context): logits differ (fuse \(fuse))")
    }
  }
}

enum A16RealModelCases {
  static let a16w8 = Result { try A16RealModelCase(.a16w8) }
  static let a16w16 = Result { try A16RealModelCase(.a16w16) }
  static let a8w16 = Result { try A16RealModelCase(.a8w16) }
  static func get(_ variant: A16Variant) throws -> A16RealModelCase {
    switch variant {
    case .a16w8: try a16w8.get()
    case .a16w16: try a16w16.get()
    case .a8w16: try a8w16.get()
    }
  }
}

@Suite struct MixedPrecisionBitExactTests {
  static let variants = A16Variant.allCases

  /// Every case on every portable path; the native ones below.
  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)),
    arguments: variants, portableRealPaths)
  func efficientNetLite0A16(_ variant: A16Variant, _ path: TiePath) throws {
    let c = try A16RealModelCases.get(variant)
    c.checkLayers()
    try c.check(path)
  }

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)),
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"), arguments: variants)
  func efficientNetLite0A16AVX2(_ variant: A16Variant) throws {
    try A16RealModelCases.get(variant).check(TiePath(backend: .avx2))
  }

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)),
    .enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"), arguments: variants)
  func efficientNetLite0A16AVX512VNNI(_ variant: A16Variant) throws {
    try A16RealModelCases.get(variant).check(TiePath(backend: .avx512vnni))
  }

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)),
    .enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"), arguments: variants)
  func efficientNetLite0A16AMX(_ variant: A16Variant) throws {
    try A16RealModelCases.get(variant).check(TiePath(backend: .amx))
  }

  /// The depthwise kernels (§17) against the reference plan, on a layer whose channel count (7) is
  /// not a multiple of the AVX2 kernel's four, with a 5x5 kernel at stride 2 and padding (taps
  /// reading z_in), random codes over the whole input range plus a block of extreme ones (−32768
  /// under ±w_max, where a 32-bit product sum would wrap with 16-bit weights), for 8- and 16-bit
  /// inputs and weights, 8- and 16-bit outputs.
  @Test(arguments: [(8, 8, 16), (16, 8, 8), (16, 16, 16), (16, 16, 8), (8, 16, 8), (8, 16, 16)])
  func depthwiseKernelsEqualTheReference(_ inBits: Int, _ weightBits: Int, _ outBits: Int) throws {
    let (h, w, ch) = (9, 8, 7)
    var g = SeededGenerator(seed: 1717)
    let wMax = weightBits == 16 ? 32767 : 127
    var node = QuantizedNode(
      name: "dw", op: .conv2d, inputs: ["x"], fused: ["dw"], output: ActivationQuantization(scale: 1, zeroPoint: 0))
    node.output.zeroPoint = outBits == 16 ? -7 : 100
    node.inChannels = ch
    node.outChannels = ch
    node.kernel = [5, 5]
    node.stride = [2, 2]
    node.padding = [2, 1, 2, 1]
    node.groups = ch
    var inQ = ActivationQuantization(scale: 1, zeroPoint: 0)
    inQ.zeroPoint = inBits == 16 ? -32768 : 3
    node.inputQuantization = [inQ]
    node.clamp = outBits == 16 ? [-32768, 32767] : [0, 255]
    node.inputBits = inBits == 16 ? 16 : nil
    node.outputBits = outBits == 16 ? 16 : nil
    var weights: [Int] = []
    for i in 0..<(ch * 25) {
      let extreme = i % 2 == 0 ? wMax : -wMax
      weights.append(i % 11 == 0 ? extreme : Int.random(in: -wMax...wMax, using: &g))
    }
    if weightBits == 16 {
      node.weightBits = 16
      node.weights16 = weights.map { Int16($0) }
    } else {
      node.weights = weights.map { Int8($0) }
    }
    // Scales that put typical outputs inside the output range: |acc| ~ 2^accBits, output ~ 2^outBits.
    let accBits = (inBits == 16 ? 15 : 7) + (weightBits == 16 ? 14 : 6) + 2
    let outLog = outBits == 16 ? 13 : 6
    node.bias64 = (0..<ch).map { _ in Int64.random(in: -(1 << accBits)...(1 << accBits), using: &g) }
    node.multipliers = (0..<ch).map { _ in Int32.random(in: (1 << 30)...Int32.max, using: &g) }
    node.shifts = (0..<ch).map { c in Int32(31 + accBits - outLog + c % 3) }
    node.weightScales = [Float](repeating: 1, count: ch)
    let attributes = try #require(
      { if case .conv2d(let a) = try node.operation() { a } else { nil } }())
    let plan = Int8WideConvPlan(node: node, attributes: attributes, inHeight: h, inWidth: w)
    let (lo, hi) = inBits == 16 ? (-32768, 32767) : (0, 255)
    var x = (0..<(h * w * ch)).map { _ in Int32(Int.random(in: lo...hi, using: &g)) }
    for i in 0..<(2 * w * ch) { x[i] = Int32(lo) }  // two rows at the extreme
    var reference = [Int32](repeating: 0, count: plan.outHeight * plan.outWidth * ch)
    x.withUnsafeBufferPointer { xs in reference.withUnsafeMutableBufferPointer { plan.run(xs, $0) } }
    #expect(Set(reference).count > 10, "the case must not saturate every output")
    let step = WideConvStep(plan: plan, avx2: false, input: 0, output: 0)
    for avx2 in Int8Backend.avx2.isSupported ? [false, true] : [false] {
      var out8 = [UInt8](repeating: 0, count: reference.count)
      var out16 = [Int16](repeating: 0, count: reference.count)
      step.withParams { params in
        var c = params
        let x16 = x.map { Int16(truncatingIfNeeded: $0) }
        let x8 = x.map { UInt8(truncatingIfNeeded: $0) }
        let rows = c.out_h
        func run(_ input: UnsafeRawPointer, _ output: UnsafeMutableRawPointer) {
          // Two bands of rows, as the executor splits them.
          for (a, b) in [(0, rows / 2), (rows / 2, rows)] {
            if avx2 {
              octet_a16_dwconv__avx2(&c, input, a, b, output)
            } else {
              octet_a16_dwconv__scalar(&c, input, a, b, output)
            }
          }
        }
        out8.withUnsafeMutableBytes { o8 in
          out16.withUnsafeMutableBytes { o16 in
            let output = outBits == 16 ? o16.baseAddress! : o8.baseAddress!
            if inBits == 16 {
              x16.withUnsafeBytes { run($0.baseAddress!, output) }
            } else {
              x8.withUnsafeBytes { run($0.baseAddress!, output) }
            }
          }
        }
      }
      let got = outBits == 16 ? out16.map(Int32.init) : out8.map(Int32.init)
      #expect(
        got == reference, "a16 depthwise (\(avx2 ? "avx2" : "scalar")), in \(inBits), w \(weightBits), out \(outBits)")
    }
  }

  /// The 64-bit accumulator at the overflow edge (§17): every input code −32768 and every weight
  /// at ±w_max with one sign per channel, K = 1152, so |Σ x·w| is far beyond 2^31 (an int32
  /// accumulator would wrap); the reference plan, the scalar C GEMM and the AVX2 one (int32 blocks
  /// into int64) must all equal the exact value computed here with plain Int64 sums and the
  /// 128-bit rounding of §3.
  /// With an 8-bit input and 16-bit weights (a8w16, §17.2) every code is 255 instead.
  @Test(arguments: [(16, 8), (16, 16), (8, 16)])
  func accumulatorAtTheOverflowEdge(_ inBits: Int, _ weightBits: Int) throws {
    let (k, n) = (1152, 11)
    let wMax = weightBits == 16 ? 32767 : 127
    var node = QuantizedNode(
      name: "edge", op: .conv2d, inputs: ["x"], fused: ["edge"], output: ActivationQuantization(scale: 1, zeroPoint: 0))
    node.output.zeroPoint = -3
    node.inChannels = k
    node.outChannels = n
    node.kernel = [1, 1]
    node.stride = [1, 1]
    node.padding = [0, 0, 0, 0]
    node.groups = 1
    var inQ = ActivationQuantization(scale: 1, zeroPoint: 0)
    inQ.zeroPoint = 5
    node.inputQuantization = [inQ]
    node.clamp = [-32768, 32767]
    node.inputBits = inBits == 16 ? 16 : nil
    node.outputBits = 16
    var w = [Int32](repeating: 0, count: n * k)
    for c in 0..<n {
      for j in 0..<k { w[c * k + j] = Int32(c % 2 == 0 ? wMax : -wMax) * (j % 7 == 6 && c > 6 ? 0 : 1) }
    }
    if weightBits == 16 {
      node.weightBits = 16
      node.weights16 = w.map { Int16($0) }
    } else {
      node.weights = w.map { Int8($0) }
    }
    node.bias64 = (0..<n).map { Int64($0) * 1_000_003 - 5_000_000 }
    // Shifts from 31 (8-bit weights) or 36 (16-bit) up by 2 per channel, odd multipliers: the wide
    // products need the 128-bit rounding, and only the first channels saturate.
    let firstShift = inBits == 8 ? 30 : weightBits == 16 ? 36 : 31
    node.multipliers = (0..<n).map { Int32((1 << 30) + 2 * $0 + 1) }
    node.shifts = (0..<n).map { Int32(firstShift + 2 * $0) }
    node.weightScales = [Float](repeating: 1, count: n)
    let attributes = try #require(
      { if case .conv2d(let a) = try node.operation() { a } else { nil } }())
    let plan = Int8WideConvPlan(node: node, attributes: attributes, inHeight: 2, inWidth: 3)
    let pixels = 6
    var x = [Int32](repeating: inBits == 16 ? -32768 : 255, count: pixels * k)
    x[k + 1] = inBits == 16 ? 32767 : 0  // one pixel not quite uniform
    // Exact expectation.
    var expected = [Int32](repeating: 0, count: pixels * n)
    var wrapped = false
    for p in 0..<pixels {
      for c in 0..<n {
        var acc = node.bias64[c]
        for j in 0..<k { acc += Int64(x[p * k + j]) * Int64(w[c * k + j]) }
        if Int64(Int32(truncatingIfNeeded: acc)) != acc { wrapped = true }
        let m = Int128(node.multipliers[c])
        let s = Int(node.shifts[c])
        let y = (Int128(acc) * m + (Int128(1) << (s - 1))) >> s
        expected[p * n + c] = Int32(max(min(y + Int128(node.output.zeroPoint), 32767), -32768))
      }
    }
    #expect(wrapped, "the case must overflow an int32 accumulator")
    #expect(Set(expected).count > 3, "the case must not saturate every output: \(Set(expected))")
    var reference = [Int32](repeating: 0, count: pixels * n)
    x.withUnsafeBufferPointer { xs in reference.withUnsafeMutableBufferPointer { plan.run(xs, $0) } }
    let context = "\(inBits)-bit input, \(weightBits)-bit weights"
    #expect(reference == expected, "reference plan, \(context)")
    let step = WideConvStep(plan: plan, avx2: false, input: 0, output: 0)
    let x16 = x.map { Int16($0) }
    let x8 = x.map { UInt8(truncatingIfNeeded: $0) }
    for avx2 in Int8Backend.avx2.isSupported ? [false, true] : [false] {
      var out = [Int16](repeating: 0, count: pixels * n)
      step.withParams { params in
        var c = params
        var a = [Int16](repeating: 0, count: pixels * Int(c.kp))
        if inBits == 16 {
          x16.withUnsafeBufferPointer { octet_a16_im2col(&c, $0.baseAddress!, 0, Int32(pixels), &a) }
        } else {
          x8.withUnsafeBufferPointer { octet_a16_im2col(&c, $0.baseAddress!, 0, Int32(pixels), &a) }
        }
        out.withUnsafeMutableBufferPointer { o in
          if avx2 {
            octet_a16_gemm__avx2(&c, a, Int32(pixels), o.baseAddress!)
          } else {
            octet_a16_gemm__scalar(&c, a, Int32(pixels), o.baseAddress!)
          }
        }
      }
      #expect(out.map(Int32.init) == expected, "C a16 GEMM (\(avx2 ? "avx2" : "scalar")), \(context)")
    }
  }
}
