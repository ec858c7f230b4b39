import CInt8Kernels
import Foundation
import OctetCore
import OctetModels
import Testing

@testable import OctetInt8

/// One convolution layer under test, inside a small valid int8 graph:
/// input [S, S, 3] -> 1x1 conv to `cin` channels -> the layer (and, with `residual`, a side conv of
/// the same geometry and a residual add of the two) -> global average pool -> linear (10 classes).
struct LayerCase: CustomStringConvertible, Sendable {
  var size: Int, cin: Int, cout: Int, kernel: Int, stride: Int, pad: [Int], groups: Int
  var residual: Residual = .none
  /// Scales the add's multipliers, to reach every form of the SIMD add: its shift n is about 30
  /// at 1, above 46 at 1e-6, below 9 at 2^22.
  var addScale: Double = 1
  /// The layer's weights all +-127 in runs of one sign, so that nearly every group of the AVX2
  /// vpmaddubsw kernels would overflow int16 (the quads kernel's worst case for its fixups).
  var extremeWeights = false
  enum Residual: Sendable { case none, layerFirst, layerSecond }
  var description: String {
    "\(size)x\(size)x\(cin)->\(cout) k\(kernel) s\(stride) pad\(pad) g\(groups) residual \(residual) x\(addScale)"
      + (extremeWeights ? " extreme" : "")
  }
}

/// Builds the graph of a `LayerCase` with seeded random weights, biases, multipliers and zero points.
/// With a seed divisible by 3 the weights are 7-bit ([-63, 63]). With an even seed a few channels get multipliers >= 0.5 (shift < 32: the SIMD epilogues' general
/// 64-bit form); with an odd seed every shift is >= 32 (their 32-bit fast form; seeds 1 mod 4 give
/// channel 5 a shift of exactly 32, the others all >= 33). Channel 1's
/// multiplier is 0.
func makeLayerModel(_ c: LayerCase, seed: UInt64) throws -> QuantizedModel {
  var rng = SeededGenerator(seed: seed)
  // Every third model has 7-bit weights, which the AVX2 backend runs on its vpmaddubsw kernel.
  let weightMax: Int8 = seed % 3 == 0 ? 63 : 127
  func q(_ z: Int32? = nil) -> ActivationQuantization {
    ActivationQuantization(
      scale: Float.random(in: 0.01...0.1, using: &rng), zeroPoint: z ?? Int32.random(in: 0...255, using: &rng))
  }
  func conv(
    _ name: String, input: String, inQ: ActivationQuantization, cin: Int, cout: Int, k: Int, stride: Int, pad: [Int],
    groups: Int, relu: Bool
  ) throws -> QuantizedNode {
    let out = q(relu ? 0 : nil)
    var node = QuantizedNode(name: name, op: .conv2d, inputs: [input], fused: [name], output: out)
    node.inChannels = cin
    node.outChannels = cout
    node.kernel = [k, k]
    node.stride = [stride, stride]
    node.padding = pad
    node.groups = groups
    node.inputQuantization = [inQ]
    let lo = relu ? out.zeroPoint : Int32.random(in: 0...20, using: &rng)
    // Seeds 0 and 1 mod 4 keep the top of the uint8 range (with lo = 0, the kernels' form where
    // the saturating packs clamp), 2 and 3 lower it.
    let hi = Int.random(in: 235...255, using: &rng)
    node.clamp = [Int(lo), seed % 4 < 2 ? 255 : hi]
    let perChannel = k * k * cin / groups
    node.weights = (0..<(cout * perChannel)).map { _ in Int8.random(in: -weightMax...weightMax, using: &rng) }
    // Accumulators spread about sqrt(K) * 127 * 74; biases and multipliers are sized to that.
    let spread = Double(perChannel).squareRoot() * 127 * 74
    let biasRange = Int32(2 * spread)
    node.bias = (0..<cout).map { _ in Int32.random(in: -biasRange...biasRange, using: &rng) }
    let typical = 60.0 / spread
    let requant = try (0..<cout).map { c -> RequantMultiplier in
      if c == 1 { return try RequantMultiplier(real: 0) }
      if seed % 2 == 0, c % 7 == 3 { return try RequantMultiplier(real: Double.random(in: 0.5...3, using: &rng)) }
      // Seeds 1 mod 4: one channel with shift exactly 32 (multiplier in [1/4, 1/2)), the lowest the
      // SIMD epilogues' 32-bit form takes and the one its 32-bit rounding (shifts >= 33) does not.
      if seed % 4 == 1, c == 5 { return try RequantMultiplier(real: Double.random(in: 0.25..<0.5, using: &rng)) }
      return try RequantMultiplier(real: typical * Double.random(in: 0.3...3, using: &rng))
    }
    node.multipliers = requant.map(\.multiplier)
    node.shifts = requant.map(\.shift)
    node.weightScales = [Float](repeating: 0.01, count: cout)
    return node
  }
  let input = QuantizedNode(name: "input", op: .quantizeInput, inputs: [], fused: [], output: q())
  let pre = try conv(
    "pre", input: "input", inQ: input.output, cin: 3, cout: c.cin, k: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1,
    relu: false)
  var nodes = [input, pre]
  var layer = try conv(
    "layer", input: "pre", inQ: pre.output, cin: c.cin, cout: c.cout, k: c.kernel, stride: c.stride, pad: c.pad,
    groups: c.groups, relu: Bool.random(using: &rng))
  if c.extremeWeights {
    layer.weights = (0..<layer.weights.count).map { i in (i / 5) % 3 == 2 ? -127 : 127 }
  }
  var last = layer
  if c.residual == .none {
    nodes.append(layer)
  } else {
    let side = try conv(
      "side", input: "pre", inQ: pre.output, cin: c.cin, cout: c.cout, k: c.kernel, stride: c.stride, pad: c.pad,
      groups: 1, relu: false)
    // The add is fused into whichever of its inputs is computed last.
    nodes += c.residual == .layerFirst ? [layer, side] : [side, layer]
    // Seeds 0 and 1 mod 4: a zero output zero point and the full uint8 range (the kernels' form
    // where the saturating packs clamp); 2 and 3: any zero point and a clamp within the range.
    let fullRange = seed % 4 < 2
    let out = q(fullRange ? 0 : Int32.random(in: 1...60, using: &rng))
    var add = QuantizedNode(
      name: "add", op: .add, inputs: c.residual == .layerFirst ? ["layer", "side"] : ["side", "layer"], fused: ["add"],
      output: out)
    add.inputQuantization = add.inputs.map { $0 == "layer" ? layer.output : side.output }
    let (a, b) = (add.inputQuantization![0], add.inputQuantization![1])
    add.addMultipliers = try AddMultipliers(
      realA: Double(a.scale / out.scale) * Double.random(in: 0.3...1, using: &rng) * c.addScale,
      realB: Double(b.scale / out.scale) * Double.random(in: 0.3...1, using: &rng) * c.addScale)
    add.clamp = fullRange ? [0, 255] : [Int(out.zeroPoint), Int.random(in: 200...255, using: &rng)]
    nodes.append(add)
    last = add
  }
  let pooledQ = q()
  var pool = QuantizedNode(name: "pool", op: .globalAveragePool, inputs: [last.name], fused: ["pool"], output: pooledQ)
  pool.inputQuantization = [last.output]
  pool.requant = try RequantMultiplier(real: Double.random(in: 0.001...0.05, using: &rng))
  let flatten = QuantizedNode(name: "flatten", op: .flatten, inputs: ["pool"], fused: ["flatten"], output: pooledQ)
  var fc = QuantizedNode(
    name: "fc", op: .linear, inputs: ["flatten"], fused: ["fc"],
    output: ActivationQuantization(scale: 0.001, zeroPoint: 0))
  fc.inChannels = c.cout
  fc.outChannels = 10
  fc.inputQuantization = [pooledQ]
  fc.weights = (0..<(10 * c.cout)).map { _ in Int8.random(in: -127...127, using: &rng) }
  fc.bias = (0..<10).map { _ in Int32.random(in: -100_000...100_000, using: &rng) }
  let fcRequant = try (0..<10).map { _ in try RequantMultiplier(real: Double.random(in: 0.1...1, using: &rng)) }
  fc.multipliers = fcRequant.map(\.multiplier)
  fc.shifts = fcRequant.map(\.shift)
  fc.weightScales = [Float](repeating: 0.01, count: 10)
  nodes += [pool, flatten, fc]
  let info = ModelInfo(architecture: "layer-test", inputSize: c.size, classes: 10, preprocessing: .imagenet)
  let model = QuantizedModel(info: info, nodes: nodes, output: "fc")
  try model.validate()
  return model
}

/// Every layer shape of ResNet50 and EfficientNet-Lite0 (K, N, kernel, stride, padding; spatial size
/// reduced where that does not change the kernel's path), plus awkward ones: K not a multiple of
/// 4/64, N and M tails, stride 2, asymmetric padding, fused residual adds in both input orders.
let layerCases: [LayerCase] = {
  var cases: [LayerCase] = []
  // ResNet50: stem 7x7/2 on 3 channels (K = 147).
  cases.append(LayerCase(size: 32, cin: 3, cout: 64, kernel: 7, stride: 2, pad: [3, 3, 3, 3], groups: 1))
  // Bottleneck 1x1 and 3x3 convolutions of each stage, and the stride-2 ones.
  for (c, w) in [(64, 56), (128, 28), (256, 14), (512, 7)] {
    let s = min(w, 9)
    cases.append(
      LayerCase(size: s, cin: c * 4 == 256 ? 64 : c * 2, cout: c, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1))
    cases.append(LayerCase(size: s, cin: c, cout: c, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 1))
    cases.append(
      LayerCase(
        size: s, cin: c, cout: c * 4, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1, residual: .layerSecond))
    cases.append(
      LayerCase(
        size: s, cin: c * 2, cout: c * 4, kernel: 1, stride: 2, pad: [0, 0, 0, 0], groups: 1, residual: .layerFirst))
    cases.append(LayerCase(size: s, cin: c, cout: c, kernel: 3, stride: 2, pad: [1, 1, 1, 1], groups: 1))
  }
  // EfficientNet-Lite0: stem 3x3/2 (K = 27), depthwise 3x3 and 5x5 at stride 1 and 2 (TF-same
  // padding), expand/project 1x1 with K = 16, 24, 40, 80, 112, 192, 1152 and a residual project.
  cases.append(LayerCase(size: 17, cin: 3, cout: 32, kernel: 3, stride: 2, pad: [0, 0, 1, 1], groups: 1))
  for (c, k, s) in [(32, 3, 1), (96, 3, 2), (144, 5, 2), (240, 3, 1), (480, 5, 1), (672, 5, 2), (1152, 3, 1)] {
    let p = k / 2
    cases.append(
      LayerCase(
        size: 9, cin: c, cout: c, kernel: k, stride: s, pad: s == 2 ? [p - 1, p - 1, p, p] : [p, p, p, p], groups: c))
  }
  for (cin, cout) in [(16, 96), (24, 144), (40, 240), (80, 480), (112, 672), (192, 1152), (1152, 320), (320, 1280)] {
    cases.append(LayerCase(size: 5, cin: cin, cout: cout, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1))
  }
  cases.append(
    LayerCase(size: 7, cin: 144, cout: 24, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1, residual: .layerSecond))
  // Awkward shapes: K = 17, 5, 130 (not multiples of 4 or 64), N = 3, 7, 33, 250 (tails),
  // M = 1, 9, 13 (row tails), odd sizes, asymmetric padding, depthwise with 17 and 40 channels.
  cases.append(LayerCase(size: 4, cin: 17, cout: 7, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1))
  cases.append(LayerCase(size: 1, cin: 5, cout: 33, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1))
  cases.append(LayerCase(size: 3, cin: 130, cout: 3, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1))
  cases.append(LayerCase(size: 13, cin: 5, cout: 250, kernel: 3, stride: 2, pad: [1, 2, 0, 1], groups: 1))
  cases.append(
    LayerCase(size: 11, cin: 9, cout: 40, kernel: 5, stride: 3, pad: [2, 2, 2, 2], groups: 1, residual: .layerFirst))
  cases.append(LayerCase(size: 6, cin: 17, cout: 17, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 17))
  cases.append(
    LayerCase(size: 8, cin: 40, cout: 40, kernel: 5, stride: 2, pad: [1, 1, 2, 2], groups: 40, residual: .layerSecond))
  // Residual adds whose shift is above 46 and below 9 (the SIMD add's other two forms).
  cases.append(
    LayerCase(
      size: 6, cin: 24, cout: 40, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1, residual: .layerSecond,
      addScale: 1e-6))
  cases.append(
    LayerCase(
      size: 6, cin: 24, cout: 40, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1, residual: .layerFirst,
      addScale: 4_194_304))
  // Weights at the int16 limits of vpmaddubsw (K = 8 * 16, and K = 68 with a lone last group).
  cases.append(
    LayerCase(size: 7, cin: 128, cout: 48, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1, extremeWeights: true))
  cases.append(
    LayerCase(
      size: 6, cin: 68, cout: 20, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1, residual: .layerSecond,
      extremeWeights: true))
  // Grouped (not depthwise) convolutions, a GEMM per group (last, so that the cases above keep their
  // seeds): ResNeXt-50 32x4d's 3x3s (4 and 8
  // channels per group, stride 1 and 2), 2 groups of 40 (column tails past 32), 3 groups of K = 36
  // with asymmetric padding, a grouped 1x1 (the GEMM reads the gathered channels directly where K
  // fits) and a grouped layer whose add is not fused into it.
  cases.append(LayerCase(size: 9, cin: 128, cout: 128, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 32))
  cases.append(LayerCase(size: 9, cin: 256, cout: 256, kernel: 3, stride: 2, pad: [1, 1, 1, 1], groups: 32))
  cases.append(LayerCase(size: 5, cin: 16, cout: 80, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 2))
  cases.append(LayerCase(size: 7, cin: 12, cout: 18, kernel: 3, stride: 2, pad: [0, 1, 1, 0], groups: 3))
  cases.append(LayerCase(size: 6, cin: 256, cout: 64, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 4))
  cases.append(
    LayerCase(size: 6, cin: 24, cout: 24, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 6, residual: .layerSecond))
  return cases
}()

/// Runs `model` on the reference and on `backend` (fused and unfused), on a batch of 3 images (an
/// odd batch, so rows and tasks do not split evenly between images or threads), and requires
/// identical bits on every node output and on the logits: unfused with 1 and 3 threads (every
/// node), fused with 1, 2 and 3 threads (every node the fused run materializes, which must be
/// every node but the convolutions whose residual add is fused: `expectFusedNodesEqual`).
func expectBitExact(
  _ model: QuantizedModel, backend: Int8Backend, seed: UInt64, context: String, emulated: Bool = false,
  avx2Kernel: GemmKernel? = nil
) throws {
  let size = model.info.inputSize
  var rng = SeededGenerator(seed: seed ^ 0x5EED)
  let input = Tensor(shape: [3, size, size, 3], scalars: rng.floats(3 * size * size * 3, in: -3...3))
  let reference = try Int8ReferenceExecutor(model: model)
  var expected: [String: QuantizedTensor] = [:]
  let logits = reference.run(input) { name, t in expected[name] = t }
  // The case must exercise the arithmetic, not only the clamps.
  let layerOutput = expected["layer"]?.values ?? []
  let distinct = Set(layerOutput).count
  #expect(
    distinct >= min(8, layerOutput.count / 4),
    "\(context): the layer's \(layerOutput.count) outputs have only \(distinct) distinct values")
  for threads in [1, 2, 3] {
    let fused = try Int8FastExecutor(
      model: model, backend: backend, threads: threads, fuseResidualAdds: true, emulatedISA: emulated,
      avx2Kernel: avx2Kernel)
    let fusedLogits = expectFusedNodesEqual(
      fused, input: input, expected: expected, context: "\(context) (\(backend), fused, \(threads) threads)")
    #expect(fusedLogits == logits, "\(context): logits differ (\(backend), fused, \(threads) threads)")
    guard threads != 2 else { continue }
    let unfused = try Int8FastExecutor(
      model: model, backend: backend, threads: threads, fuseResidualAdds: false, emulatedISA: emulated,
      avx2Kernel: avx2Kernel)
    var seen = 0
    let got = unfused.run(input) { name, t in
      seen += 1
      #expect(expected[name] == t, "\(context): node '\(name)' differs (\(backend), \(threads) threads)")
    }
    #expect(seen == expected.count, "\(context): \(seen) of \(expected.count) node outputs observed")
    #expect(got == logits, "\(context): logits differ (\(backend), unfused, \(threads) threads)")
  }
}

/// Returns the GEMM kernels the plans used. `avx2Kernel` makes the avx2 backend use that kernel
/// wherever it is exact.
@discardableResult
func checkAllLayerCases(_ backend: Int8Backend, emulated: Bool = false, avx2Kernel: GemmKernel? = nil) throws
  -> Set<String>
{
  var kernels: Set<String> = []
  for (i, c) in layerCases.enumerated() {
    let seed = UInt64(0xFA57_0000 + i)
    let model = try makeLayerModel(c, seed: seed)
    let plan = try Int8FastExecutor(
      model: model, backend: backend, threads: 1, fuseResidualAdds: true, emulatedISA: emulated,
      avx2Kernel: avx2Kernel)
    kernels.formUnion(plan.layers.map(\.kernel).filter { !$0.isEmpty })
    try expectBitExact(
      model, backend: backend, seed: seed,
      context: "case \(i) \(c) seed \(seed) kernel \(avx2Kernel?.rawValue ?? "auto")",
      emulated: emulated, avx2Kernel: avx2Kernel)
  }
  return kernels
}

/// One test per backend. A backend this CPU cannot run is reported as skipped (not passed); on a
/// machine with AVX-512 VNNI and AMX all four run.
@Suite struct FastKernelBitExactTests {
  @Test func scalarEqualsReferenceOnEveryLayerShape() throws { try checkAllLayerCases(.scalar) }

  @Test(.enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"))
  func avx2EqualsReferenceOnEveryLayerShape() throws {
    let kernels = try checkAllLayerCases(.avx2)
    #expect(kernels.contains(GemmKernel.avx2Quads.rawValue), "AVX2 kernels chosen: \(kernels)")
  }

  /// Each AVX2 GEMM kernel on its own, wherever it is exact: vpmaddwd everywhere, vpmaddubsw pairs
  /// on the 7-bit cases (vpmaddwd elsewhere), quads everywhere (with fixups on 8-bit weights).
  @Test(
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"),
    arguments: [GemmKernel.avx2Int16, .avx2Pairs, .avx2Quads])
  func avx2KernelEqualsReferenceOnEveryLayerShape(_ kernel: GemmKernel) throws {
    let kernels = try checkAllLayerCases(.avx2, avx2Kernel: kernel)
    #expect(kernels.contains(kernel.rawValue), "AVX2 kernels used: \(kernels)")
  }

  @Test(.enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"))
  func avx512vnniEqualsReferenceOnEveryLayerShape() throws { try checkAllLayerCases(.avx512vnni) }

  @Test(.enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"))
  func amxEqualsReferenceOnEveryLayerShape() throws { try checkAllLayerCases(.amx) }

  /// The avx512vnni and amx kernels' own C code (loops, packed offsets, tiles, tails), compiled
  /// against scalar stand-ins of their intrinsics: runs on every machine.
  @Test func avx512vnniKernelCodeEqualsReferenceUnderEmulation() throws {
    try checkAllLayerCases(.avx512vnni, emulated: true)
  }

  @Test func amxKernelCodeEqualsReferenceUnderEmulation() throws { try checkAllLayerCases(.amx, emulated: true) }

  /// A batch of 3 through a layer whose weights do not stay in L2 (K = 2304, N = 256), so that with
  /// 2 and 3 threads the rows of all images are split into bands, which start and end inside
  /// images (49 rows each: bands of 56 with 3 threads).
  func checkBandsAcrossImages(_ backend: Int8Backend, emulated: Bool = false) throws {
    let c = LayerCase(size: 7, cin: 256, cout: 256, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 1)
    let seed: UInt64 = 0xBA4D_0001
    let model = try makeLayerModel(c, seed: seed)
    let plan = try Int8FastExecutor(
      model: model, backend: backend, threads: 2, fuseResidualAdds: true, emulatedISA: emulated)
    #expect(plan.layers.contains { $0.name == "layer" && $0.k == 2304 && $0.n == 256 })
    try expectBitExact(
      model, backend: backend, seed: seed, context: "\(c)\(emulated ? " emulated" : "")", emulated: emulated)
  }

  @Test func bandsAcrossImagesScalarAndEmulated() throws {
    try checkBandsAcrossImages(.scalar)
    try checkBandsAcrossImages(.avx512vnni, emulated: true)
  }

  @Test(.enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"))
  func bandsAcrossImagesAVX2() throws { try checkBandsAcrossImages(.avx2) }

  @Test(.enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"))
  func bandsAcrossImagesAVX512VNNI() throws { try checkBandsAcrossImages(.avx512vnni) }

  @Test(.enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"))
  func bandsAcrossImagesAMX() throws { try checkBandsAcrossImages(.amx) }

  @Test func residualAddsAreFusedIntoTheLaterConvolution() throws {
    let model = try makeLayerModel(layerCases.first { $0.residual == .layerFirst }!, seed: 1)
    let fused = try Int8FastExecutor(model: model, backend: .scalar, threads: 1)
    #expect(fused.layers.contains { $0.nodes == ["side", "add"] })
    #expect(!fused.layers.contains { $0.kind == "add" })
    let unfused = try Int8FastExecutor(model: model, backend: .scalar, threads: 1, fuseResidualAdds: false)
    #expect(unfused.layers.contains { $0.kind == "add" })
  }
}

/// octet_i8_quads_split: fit + d = w, every int16 lane set of fit within [-128, 128] per sign,
/// d sparse and listed per panel in k order; on random 8-bit, 7-bit and extreme weights.
@Suite struct QuadsSplitTests {
  func check(_ w: [Int8], k: Int, n: Int, context: String) {
    let count = w.withUnsafeBufferPointer { octet_i8_quads_split($0.baseAddress, k, n, nil, nil, nil, nil, 0) }
    let panels = (n + 15) / 16
    // Too little room: the count is still returned, and nothing is written past the room.
    if count >= 2 {
      let room = count / 2
      var ks = [UInt32](repeating: 7, count: room + 1)
      var ds = [Int32](repeating: 7, count: (room + 1) * 16)
      let needed = octet_i8_quads_split(w, k, n, nil, nil, &ks, &ds, room)
      #expect(needed == count && ks[room] == 7 && ds[(room * 16)...].allSatisfy { $0 == 7 }, "\(context)")
    }
    var fit = [Int8](repeating: 0, count: w.count)
    var start = [UInt32](repeating: 0, count: panels + 1)
    var ks = [UInt32](repeating: 0, count: count)
    var ds = [Int32](repeating: 0, count: count * 16)
    let again = octet_i8_quads_split(w, k, n, &fit, &start, &ks, &ds, count)
    #expect(again == count, "\(context): counted \(count), filled \(again)")
    // Rebuild w from fit and the entries.
    var rebuilt = fit.map(Int32.init)
    for p in 0..<panels {
      var last = -1
      for e in Int(start[p])..<Int(start[p + 1]) {
        #expect(Int(ks[e]) > last && Int(ks[e]) < k, "\(context): entry \(e) of panel \(p) has k \(ks[e])")
        last = Int(ks[e])
        for j in 0..<16 where p * 16 + j < n { rebuilt[(p * 16 + j) * k + Int(ks[e])] += ds[e * 16 + j] }
      }
    }
    #expect(rebuilt == w.map(Int32.init), "\(context): fit + fixups differ from the weights")
    // The pairs the kernel reads hold the same entries: two per pair, the last one alone when odd.
    let pairs = octet_i8_quads_pair_count(start, panels)
    var pairStart = [UInt32](repeating: 0, count: panels + 1)
    var pairK = [UInt32](repeating: 0, count: max(1, pairs))
    var pairD = [Int32](repeating: 0, count: max(1, pairs) * 16)
    #expect(octet_i8_quads_pair(start, ks, ds, panels, &pairStart, &pairK, &pairD) == 0, "\(context)")
    #expect(
      Int(pairStart[panels]) == pairs
        && pairs == (0..<panels).map { (Int(start[$0 + 1] - start[$0]) + 1) / 2 }.reduce(0, +))
    var fromPairs = fit.map(Int32.init)
    for p in 0..<panels {
      for q in Int(pairStart[p])..<Int(pairStart[p + 1]) {
        let k1 = Int(pairK[q] & 0xffff)
        let k2 = Int(pairK[q] >> 16)
        for j in 0..<16 where p * 16 + j < n {
          let v = UInt32(bitPattern: pairD[q * 16 + j])
          fromPairs[(p * 16 + j) * k + k1] += Int32(Int16(truncatingIfNeeded: v & 0xffff))
          fromPairs[(p * 16 + j) * k + k2] += Int32(Int16(truncatingIfNeeded: v >> 16))
        }
      }
    }
    #expect(fromPairs == w.map(Int32.init), "\(context): fit + fixup pairs differ from the weights")
    // Lane sets of the kernel: {8j, 8j+1, 8j+4, 8j+5} and {8j+2, 8j+3, 8j+6, 8j+7}, pairs in a lone last group.
    let groups = (k + 3) / 4
    for col in 0..<n {
      var g = 0
      while g < groups {
        let both = g + 1 < groups  // g is even: groups pair up, a last odd one stands alone
        for h in 0..<2 {
          var members = [4 * g + 2 * h, 4 * g + 2 * h + 1]
          if both { members += [4 * g + 4 + 2 * h, 4 * g + 5 + 2 * h] }
          let values = members.filter { $0 < k }.map { Int(fit[col * k + $0]) }
          let positive = values.filter { $0 > 0 }.reduce(0, +)
          let negative = values.filter { $0 < 0 }.reduce(0, +)
          if positive > 128 || negative < -128 {
            Issue.record("\(context): column \(col) group \(g) lane \(h) sums to \(positive) / \(negative)")
          }
        }
        g += both ? 2 : 1
      }
    }
  }

  @Test func splitRebuildsTheWeightsAndFitsInt16() {
    var rng = SeededGenerator(seed: 44)
    for (k, n) in [(64, 32), (147, 20), (17, 5), (8, 16), (130, 33), (4, 1)] {
      for bound in [Int8(127), 63] {
        let w = (0..<(k * n)).map { _ in Int8.random(in: -bound...bound, using: &rng) }
        check(w, k: k, n: n, context: "random |w| <= \(bound), K \(k) N \(n)")
      }
      check((0..<(k * n)).map { ($0 / 5) % 3 == 2 ? -127 : 127 }, k: k, n: n, context: "extreme K \(k) N \(n)")
      check([Int8](repeating: -127, count: k * n), k: k, n: n, context: "all -127 K \(k) N \(n)")
    }
  }

  @Test func sevenBitWeightsNeedFewFixups() {
    var rng = SeededGenerator(seed: 45)
    let (k, n) = (576, 64)
    // Roughly Gaussian 7-bit weights, as per-channel quantization of a trained layer gives.
    let w = (0..<(k * n)).map { _ -> Int8 in
      let g = (0..<4).map { _ in Double.random(in: -1...1, using: &rng) }.reduce(0, +) / 2
      return Int8(max(-63, min(63, (g * 20).rounded())))
    }
    let entries = octet_i8_quads_split(w, k, n, nil, nil, nil, nil, 0)
    #expect(entries < k * n / 16 / 20, "\(entries) fixup entries for \(k * n / 16) k-column-panel slots")
  }
}

@Suite struct BackendSelectionTests {
  @Test func autoObeysTheEnvironmentAndRefusesWhatTheCPULacks() throws {
    #expect(try Int8Backend.auto.resolved(environment: ["OCTET_INT8_BACKEND": "scalar"]) == .scalar)
    #expect(try Int8Backend.auto.resolved(environment: ["OCTET_INT8_BACKEND": "reference"]) == .reference)
    #expect(try Int8Backend.auto.resolved(environment: [:]) == Int8Backend.best)
    #expect(throws: Int8BackendError.unknown("avx9", source: "OCTET_INT8_BACKEND")) {
      try Int8Backend.auto.resolved(environment: ["OCTET_INT8_BACKEND": "avx9"])
    }
    for backend in [Int8Backend.avx2, .avx512vnni, .amx] where !backend.isSupported {
      #expect(throws: Int8BackendError.unsupported(backend)) { try backend.resolved(environment: [:]) }
    }
    #expect(Int8Backend.scalar.isSupported)
  }
}

@Suite struct InputQuantizationTests {
  /// Ties, NaN, infinities, signed zeros, out-of-range values and random values, and the
  /// quantizations they are tried with.
  static let values: [Float] = {
    var rng = SeededGenerator(seed: 12)
    var xs: [Float] = [
      .nan, .infinity, -.infinity, 0, -0.0, 1e30, -1e30, .leastNonzeroMagnitude, 8_388_607.5, -8_388_607.5,
    ]
    xs += [0.49999997, -0.49999997, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 16_777_215, -16_777_215, 8_388_608.0]
    for k in -600...600 { xs.append((Float(k) + 0.5) * 0.25) }  // exact ties at scale 0.25
    xs += rng.floats(5000, in: -5...5)
    return xs
  }()
  static let quantizations = [
    ActivationQuantization(scale: 0.25, zeroPoint: 128), ActivationQuantization(scale: 0.0078125, zeroPoint: 0),
    ActivationQuantization(scale: 0.0173, zeroPoint: 117), ActivationQuantization(scale: 3, zeroPoint: 255),
  ]

  /// The C input quantizer equals ActivationQuantization.quantize on `values`, for several scales
  /// and zero points.
  @Test func cQuantizerEqualsTheSwiftOne() {
    let xs = Self.values
    for q in Self.quantizations {
      var out = [UInt8](repeating: 0, count: xs.count)
      octet_i8_quantize_input(xs, xs.count, q.scale, q.zeroPoint, &out)
      for (i, x) in xs.enumerated() where out[i] != q.quantize(x) {
        Issue.record("x = \(x), \(q): C gives \(out[i]), Swift \(q.quantize(x))")
      }
    }
  }

  /// The same for the AVX2 input quantizer.
  @Test(.enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"))
  func avx2QuantizerEqualsTheSwiftOne() {
    let xs = Self.values
    for q in Self.quantizations {
      var simd = [UInt8](repeating: 0, count: xs.count)
      octet_i8_quantize_input__avx2(xs, xs.count, q.scale, q.zeroPoint, &simd)
      for (i, x) in xs.enumerated() where simd[i] != q.quantize(x) {
        Issue.record("x = \(x), \(q): AVX2 gives \(simd[i]), Swift \(q.quantize(x))")
      }
    }
  }
}

/// The C pooling kernels against plain Swift loops, with channel counts that are not multiples
/// of their 64- and 256-channel blocks, padding and stride 2.
@Suite struct PoolingKernelTests {
  @Test func maxPoolEqualsNaiveLoops() {
    var rng = SeededGenerator(seed: 51)
    for c in [3, 64, 70, 130] {
      var w = octet_i8_window(
        in_h: 9, in_w: 7, channels: Int32(c), out_h: 5, out_w: 4, kernel_h: 3, kernel_w: 3, stride_h: 2, stride_w: 2,
        pad_top: 1, pad_left: 1, zero_point: 0)
      let input = (0..<(9 * 7 * c)).map { _ in UInt8.random(in: 0...255, using: &rng) }
      var out = [UInt8](repeating: 7, count: 5 * 4 * c)
      octet_i8_maxpool(&w, input, &out)
      // Bands of rows, as the threads run them, give the same image.
      var banded = [UInt8](repeating: 9, count: 5 * 4 * c)
      for (oy0, oy1) in [(0, 2), (2, 3), (3, 5)] { octet_i8_maxpool_rows(&w, input, Int32(oy0), Int32(oy1), &banded) }
      #expect(banded == out, "c \(c): maxpool in row bands differs")
      for oy in 0..<5 {
        for ox in 0..<4 {
          for ch in 0..<c {
            var m: UInt8 = 0
            for ky in 0..<3 {
              for kx in 0..<3 {
                let iy = oy * 2 - 1 + ky
                let ix = ox * 2 - 1 + kx
                if iy >= 0, iy < 9, ix >= 0, ix < 7 { m = max(m, input[(iy * 7 + ix) * c + ch]) }
              }
            }
            if out[(oy * 4 + ox) * c + ch] != m {
              Issue.record("c \(c) (\(oy), \(ox), \(ch)): \(out[(oy * 4 + ox) * c + ch]) != \(m)")
              return
            }
          }
        }
      }
    }
  }

  @Test func globalAveragePoolEqualsNaiveLoops() {
    var rng = SeededGenerator(seed: 52)
    for (pixels, c) in [(49, 2048), (1, 3), (10, 300), (7, 257)] {
      let input = (0..<(pixels * c)).map { _ in UInt8.random(in: 0...255, using: &rng) }
      let (zIn, m, shift, zOut): (Int32, Int32, Int32, Int32) = (117, 1_234_567_890, 36, 9)
      var out = [UInt8](repeating: 0, count: c)
      octet_i8_global_avgpool(input, pixels, c, zIn, m, shift, zOut, &out)
      for ch in 0..<c {
        var sum: Int64 = 0
        for p in 0..<pixels { sum += Int64(input[p * c + ch]) - Int64(zIn) }
        let x = sum * Int64(m)
        let y = (x >> Int64(shift)) + ((x >> Int64(shift - 1)) & 1) + Int64(zOut)
        let expected = UInt8(clamping: min(max(y, 0), 255))
        if out[ch] != expected {
          Issue.record("pixels \(pixels) c \(c) channel \(ch): \(out[ch]) != \(expected)")
          return
        }
      }
    }
  }
}

/// The quads GEMM's in-register epilogue (requantization, the fused residual add in its folded
/// form, the saturating packs) against the scalar GEMM, on random parameters: residual-add shifts
/// 17 to 46 (multipliers not normalized to 31 bits, so the low halves of the vpmaddwd split decide
/// many roundings), any zero points, full and narrowed clamps. The layer cases above only meet
/// the shifts near 31 that quantization produces.
@Suite struct FusedEpilogueTests {
  @Test(.enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"))
  func quadsEpilogueEqualsScalarOnRandomParameters() {
    var rng = SeededGenerator(seed: 61)
    let (m, n, k) = (24, 48, 72)
    let kp = (k + 3) / 4 * 4
    let a = (0..<(m * kp)).map { i in i % kp < k ? UInt8.random(in: 0...255, using: &rng) : 0 }
    let w = (0..<(n * k)).map { _ in Int8.random(in: -127...127, using: &rng) }
    let residual = (0..<(m * n)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    // Scalar layout B from w, quads layout B from its fit plus the fixup pairs (64-byte aligned,
    // as the kernels load B with aligned loads).
    let bytes = octet_i8_packed_b_size(OCTET_I8_SCALAR, k, n)
    let packedStorage = AlignedBytes(count: bytes)
    let fitStorage = AlignedBytes(count: bytes)
    let packed = packedStorage.pointer.assumingMemoryBound(to: Int8.self)
    let packedFit = fitStorage.pointer.assumingMemoryBound(to: Int8.self)
    octet_i8_pack_b(OCTET_I8_SCALAR, w, k, n, packed)
    let fixups = QuadFixups(weights: w, k: k, n: n)!
    octet_i8_pack_b(OCTET_I8_SCALAR, fixups.fit, k, n, packedFit)
    var mismatches = 0
    for trial in 0..<200 {
      let bias = (0..<n).map { _ in Int32.random(in: -40_000...40_000, using: &rng) }
      let multiplier = (0..<n).map { _ in Int32.random(in: (1 << 29)...Int32.max, using: &rng) }
      let shift = (0..<n).map { _ in Int32.random(in: 36...44, using: &rng) }
      let addShift = Int32(17 + trial % 30)
      func addMultiplier() -> Int32 {
        Int32(
          clamping: Int64(Double.random(in: 0.2...1.5, using: &rng) * Double(Int64(1) << Int64(min(addShift - 1, 30)))))
      }
      let full = trial % 2 == 0
      var out1 = [UInt8](repeating: 1, count: m * n)
      var out2 = [UInt8](repeating: 2, count: m * n)
      bias.withUnsafeBufferPointer { b in
        multiplier.withUnsafeBufferPointer { mu in
          shift.withUnsafeBufferPointer { s in
            residual.withUnsafeBufferPointer { r in
              var ep = octet_i8_epilogue()
              ep.bias = b.baseAddress
              ep.multiplier = mu.baseAddress
              ep.shift = s.baseAddress
              ep.out_zero_point = Int32.random(in: 0...255, using: &rng)
              ep.lo = full ? 0 : Int32.random(in: 0...30, using: &rng)
              ep.hi = full ? 255 : Int32.random(in: 200...255, using: &rng)
              ep.shifts_at_least_32 = 1
              ep.residual = r.baseAddress
              ep.ld_residual = n
              ep.residual_zero_point = Int32.random(in: 0...255, using: &rng)
              ep.add_mult_conv = addMultiplier()
              ep.add_mult_residual = addMultiplier()
              ep.add_shift = addShift
              ep.add_zero_point = full ? 0 : Int32.random(in: 0...60, using: &rng)
              ep.add_lo = full ? 0 : ep.add_zero_point
              ep.add_hi = full ? 255 : Int32.random(in: 180...255, using: &rng)
              octet_i8_gemm__scalar(a, kp, packed, kp, n, 0, m, 0, n, &ep, &out1, n)
              withUnsafePointer(to: fixups.table) {
                octet_i8_gemm__avx2_quads(a, kp, packedFit, $0, kp, n, 0, m, 0, n, &ep, &out2, n)
              }
            }
          }
        }
      }
      if out1 != out2 {
        mismatches += 1
        if mismatches <= 3 {
          Issue.record("trial \(trial), add shift \(addShift): the quads epilogue differs from scalar")
        }
      }
    }
    #expect(mismatches == 0, "\(mismatches) of 200 trials differ")
  }
}
