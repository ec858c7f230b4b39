import Foundation
import Octet
import OctetModels
import OctetQuantizer
import OctetTestSupport
import Testing

@testable import OctetInt8

/// A real checkpoint quantized (min/max ranges of 2 validation images at full size), one input, and
/// the reference's output of every node: what each backend is held to, bit for bit.
/// The network runs at `size` (a centre crop of a real preprocessed image): every layer keeps its
/// K and N, only M shrinks, which keeps the scalar reference affordable in debug builds.
/// `OCTET_FULL_SIZE=1` runs at the model's own size instead.
struct RealModelCase: Sendable {
  var checkpoint: String
  var quantized: QuantizedModel
  var input: Tensor
  var expected: [String: QuantizedTensor]
  var logits: Int32Logits
  var weightBits: WeightBits

  /// With `exactInput` (docs/quantization.md §12) the float model is quantized at `size`, since
  /// the stem's border classes depend on the input size. `equalization`: cross-layer equalization
  /// first (the ReLU6 layers get per-channel clamps).
  init(
    _ checkpoint: String, size: Int, weightBits: WeightBits, exactInput: Bool = false, equalization: Bool = false
  ) throws {
    self.checkpoint = checkpoint + (exactInput ? " (exact input)" : "") + (equalization ? " equalized" : "")
    self.weightBits = weightBits
    var model = try ModelLoader.load(contentsOf: try #require(TestData.model(checkpoint)))
    let inputs = try validationInputs(for: model, count: 3)
    let calibrated = equalization ? try CrossLayerEqualization.apply(to: model).model : model
    let ranges = try minMaxRanges(of: calibrated, over: Array(inputs.prefix(2)))
    let full = model.info.inputSize
    let s = ProcessInfo.processInfo.environment["OCTET_FULL_SIZE"] == "1" ? full : size
    var options = QuantizationOptions(weightBits: weightBits)
    options.exactInput = exactInput
    options.equalization = equalization
    if exactInput { model.info.inputSize = s }
    var quantized = try Quantizer.quantize(model: model, options: options) { ranges[$0] }.model
    let limit = Int8(weightBits.maxMagnitude)
    #expect(quantized.nodes.allSatisfy { $0.weights.allSatisfy { -limit <= $0 && $0 <= limit } })
    #expect(quantized.readsPixels == exactInput)
    #expect(quantized.nodes.contains { !$0.channelClampHi.isEmpty } == equalization)
    quantized.info.inputSize = s
    // Centre crop of the third image, [1, s, s, 3].
    let x = inputs[2]
    let offset = (full - s) / 2
    var crop: [Float] = []
    crop.reserveCapacity(s * s * 3)
    for y in 0..<s {
      let row = ((y + offset) * full + offset) * 3
      crop += x.scalars[row..<(row + s * 3)]
    }
    input = Tensor(shape: [1, s, s, 3], scalars: crop)
    self.quantized = quantized
    let reference = try Int8ReferenceExecutor(model: quantized)
    var expected: [String: QuantizedTensor] = [:]
    logits = reference.run(input) { name, t in expected[name] = t }
    self.expected = expected
  }

  /// Unfused (every node) and fused (every node it materializes, and that set as fusion predicts)
  /// on `path`, 2 threads, against the reference.
  func check(_ path: TiePath) throws {
    let context = "\(checkpoint) (\(weightBits)-bit weights) on \(path)"
    let unfused = try Int8FastExecutor(
      model: quantized, backend: path.backend, threads: 2, fuseResidualAdds: false, emulatedISA: path.emulated,
      avx2Kernel: path.avx2Kernel)
    let got = expectFusedNodesEqual(unfused, input: input, expected: expected, context: "\(context) (unfused)")
    #expect(got == logits, "\(context): logits differ (unfused)")
    let fused = try Int8FastExecutor(
      model: quantized, backend: path.backend, threads: 2, fuseResidualAdds: true, emulatedISA: path.emulated,
      avx2Kernel: path.avx2Kernel)
    #expect(!convolutionsFusedAway(quantized).isEmpty, "\(context): no residual add to fuse")
    let fusedLogits = expectFusedNodesEqual(fused, input: input, expected: expected, context: "\(context), fused")
    #expect(fusedLogits == logits, "\(context): logits differ (fused)")
    if let kernel = path.avx2Kernel {
      let kernels = Set(fused.layers.map(\.kernel).filter { !$0.isEmpty })
      if kernel == .avx2Pairs, weightBits == .eight {
        // Pairs is exact only where every adjacent weight pair fits (|w0| + |w1| <= 128); 8-bit
        // layers mostly do not, and run on vpmaddwd instead.
        let allowed: Set = [GemmKernel.avx2Pairs.rawValue, GemmKernel.avx2Int16.rawValue]
        #expect(kernels.isSubset(of: allowed), "\(context): kernels used \(kernels)")
      } else {
        #expect(kernels.contains(kernel.rawValue), "\(context): kernels used \(kernels)")
      }
    } else if path.backend == .avx2, weightBits == .seven {
      // 7-bit weights: every GEMM of the model runs on a vpmaddubsw kernel (quads, or pairs).
      let kernels = Set(fused.layers.map(\.kernel).filter { !$0.isEmpty })
      #expect(kernels.isSubset(of: [GemmKernel.avx2Quads.rawValue, GemmKernel.avx2Pairs.rawValue]), "\(kernels)")
    }
  }
}

/// Each model and weight width is quantized and run on the reference once, for all the paths.
enum RealModelCases {
  static let efficientNet8 = Result {
    try RealModelCase("efficientnet-lite0-57934424.pth", size: 96, weightBits: .eight)
  }
  static let efficientNet7 = Result {
    try RealModelCase("efficientnet-lite0-57934424.pth", size: 96, weightBits: .seven)
  }
  /// ../shared's resnet50-random-bnstats.pth, else the seeded one Scripts/setup.sh makes.
  static let resNet8 = Result {
    try RealModelCase(try #require(TestData.resNet50).lastPathComponent, size: 64, weightBits: .eight)
  }
  static let resNet7 = Result {
    try RealModelCase(try #require(TestData.resNet50).lastPathComponent, size: 64, weightBits: .seven)
  }

  static let efficientNetExact = Result {
    try RealModelCase("efficientnet-lite0-57934424.pth", size: 96, weightBits: .eight, exactInput: true)
  }
  static let resNetExact = Result {
    try RealModelCase(
      try #require(TestData.resNet50).lastPathComponent, size: 64, weightBits: .eight, exactInput: true)
  }
  /// Equalized (per-channel ReLU6 clamps), 8-bit weights.
  static let efficientNetEqualized = Result {
    try RealModelCase("efficientnet-lite0-57934424.pth", size: 96, weightBits: .eight, equalization: true)
  }

  static func efficientNet(_ bits: WeightBits) throws -> RealModelCase {
    try (bits == .eight ? efficientNet8 : efficientNet7).get()
  }
  static func resNet(_ bits: WeightBits) throws -> RealModelCase { try (bits == .eight ? resNet8 : resNet7).get() }
}

/// The paths every machine runs: the scalar kernels, and the avx512vnni and amx kernels' own C code
/// compiled against scalar stand-ins of their intrinsics (with the real builds' epilogue).
let portableRealPaths = [
  TiePath(backend: .scalar), TiePath(backend: .avx512vnni, emulated: true), TiePath(backend: .amx, emulated: true),
]
/// The AVX2 backend as it chooses, and each of its GEMM kernels forced on the whole network.
let avx2RealPaths = [
  TiePath(backend: .avx2), TiePath(backend: .avx2, avx2Kernel: .avx2Int16),
  TiePath(backend: .avx2, avx2Kernel: .avx2Pairs), TiePath(backend: .avx2, avx2Kernel: .avx2Quads),
]

/// Quantizes real checkpoints and holds every backend path to the reference, bit for bit, on every
/// node output of the real network, fused and unfused. A path this CPU cannot run is a skipped test
/// with its reason, not a pass. 8-bit weights (AVX2: mostly the quads kernel) and 7-bit ones (the
/// vpmaddubsw kernels).
@Suite struct RealModelBitExactTests {
  static let bits: [WeightBits] = [.eight, .seven]

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)),
    arguments: bits, portableRealPaths)
  func efficientNetLite0(_ bits: WeightBits, _ path: TiePath) throws {
    try RealModelCases.efficientNet(bits).check(path)
  }

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)),
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"),
    arguments: bits, avx2RealPaths)
  func efficientNetLite0AVX2(_ bits: WeightBits, _ path: TiePath) throws {
    try RealModelCases.efficientNet(bits).check(path)
  }

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)),
    .enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"), arguments: bits)
  func efficientNetLite0AVX512VNNI(_ bits: WeightBits) throws {
    try RealModelCases.efficientNet(bits).check(TiePath(backend: .avx512vnni))
  }

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)),
    .enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"), arguments: bits)
  func efficientNetLite0AMX(_ bits: WeightBits) throws {
    try RealModelCases.efficientNet(bits).check(TiePath(backend: .amx))
  }

  /// Equalized Lite0: the per-channel clamp post-pass on every path.
  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)),
    arguments: portableRealPaths)
  func efficientNetLite0Equalized(_ path: TiePath) throws {
    try RealModelCases.efficientNetEqualized.get().check(path)
  }

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)),
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"), arguments: avx2RealPaths)
  func efficientNetLite0EqualizedAVX2(_ path: TiePath) throws {
    try RealModelCases.efficientNetEqualized.get().check(path)
  }

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)),
    .enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"))
  func efficientNetLite0EqualizedAVX512VNNI() throws {
    try RealModelCases.efficientNetEqualized.get().check(TiePath(backend: .avx512vnni))
  }

  @Test(
    .enabled(if: TestData.resNet50 != nil && TestData.hasImages, Comment(rawValue: TestData.needsResNet50AndImages)),
    arguments: bits, portableRealPaths)
  func resNet50(_ bits: WeightBits, _ path: TiePath) throws {
    try RealModelCases.resNet(bits).check(path)
  }

  @Test(
    .enabled(if: TestData.resNet50 != nil && TestData.hasImages, Comment(rawValue: TestData.needsResNet50AndImages)),
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"),
    arguments: bits, avx2RealPaths)
  func resNet50AVX2(_ bits: WeightBits, _ path: TiePath) throws {
    try RealModelCases.resNet(bits).check(path)
  }

  @Test(
    .enabled(if: TestData.resNet50 != nil && TestData.hasImages, Comment(rawValue: TestData.needsResNet50AndImages)),
    .enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"), arguments: bits)
  func resNet50AVX512VNNI(_ bits: WeightBits) throws {
    try RealModelCases.resNet(bits).check(TiePath(backend: .avx512vnni))
  }

  @Test(
    .enabled(if: TestData.resNet50 != nil && TestData.hasImages, Comment(rawValue: TestData.needsResNet50AndImages)),
    .enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"), arguments: bits)
  func resNet50AMX(_ bits: WeightBits) throws {
    try RealModelCases.resNet(bits).check(TiePath(backend: .amx))
  }

  // Exact input quantization (docs/quantization.md §12), 8-bit weights: the stems' border positions
  // are recomputed after the GEMM on every backend.
  static let needsLite0 = Comment(rawValue: TestData.needsLite0AndImages)
  static let needsResNet = Comment(rawValue: TestData.needsResNet50AndImages)

  @Test(.enabled(if: TestData.lite0 != nil && TestData.hasImages, needsLite0), arguments: portableRealPaths)
  func efficientNetLite0ExactInput(_ path: TiePath) throws { try RealModelCases.efficientNetExact.get().check(path) }

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, needsLite0),
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"), arguments: avx2RealPaths)
  func efficientNetLite0ExactInputAVX2(_ path: TiePath) throws {
    try RealModelCases.efficientNetExact.get().check(path)
  }

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, needsLite0),
    .enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"))
  func efficientNetLite0ExactInputAVX512VNNI() throws {
    try RealModelCases.efficientNetExact.get().check(TiePath(backend: .avx512vnni))
  }

  @Test(
    .enabled(if: TestData.lite0 != nil && TestData.hasImages, needsLite0),
    .enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"))
  func efficientNetLite0ExactInputAMX() throws {
    try RealModelCases.efficientNetExact.get().check(TiePath(backend: .amx))
  }

  @Test(.enabled(if: TestData.resNet50 != nil && TestData.hasImages, needsResNet), arguments: portableRealPaths)
  func resNet50ExactInput(_ path: TiePath) throws { try RealModelCases.resNetExact.get().check(path) }

  @Test(
    .enabled(if: TestData.resNet50 != nil && TestData.hasImages, needsResNet),
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"), arguments: avx2RealPaths)
  func resNet50ExactInputAVX2(_ path: TiePath) throws { try RealModelCases.resNetExact.get().check(path) }

  @Test(
    .enabled(if: TestData.resNet50 != nil && TestData.hasImages, needsResNet),
    .enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"))
  func resNet50ExactInputAVX512VNNI() throws {
    try RealModelCases.resNetExact.get().check(TiePath(backend: .avx512vnni))
  }

  @Test(
    .enabled(if: TestData.resNet50 != nil && TestData.hasImages, needsResNet),
    .enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"))
  func resNet50ExactInputAMX() throws { try RealModelCases.resNetExact.get().check(TiePath(backend: .amx)) }
}
