import CInt8Kernels
import Foundation
import Octet
import OctetCore
import OctetFloat
import OctetModels
import OctetQuantizer
import OctetTestSupport
import Testing

@testable import OctetInt8

/// The ONNX operators of docs/quantization.md §20-§23 end to end on the fixture
/// onnx_ops_opset17 (Scripts/make_onnx_fixtures.py: HardSwish, SE with HardSigmoid and a
/// broadcast Mul, LeakyRelu, SiLU = Mul(x, Sigmoid(x)), Concat, two windowed AveragePools, a
/// hidden Gemm before the classifier):
/// import, calibrate (min/max of seeded inputs), quantize, then every backend path against the
/// reference bit for bit on every node, and the int8 logits against the float ones.
enum ONNXOpsCase {
  static let fixture = "onnx_ops_opset17"
  static let size = 16

  /// `count` seeded images `[1, 16, 16, 3]`, values in [-2.5, 2.5] (a normalized image's span).
  static func inputs(count: Int, seed: UInt64) -> [Tensor] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Tensor(shape: [1, size, size, 3], scalars: g.floats(size * size * 3, in: -2.5...2.5))
    }
  }

  static func batch(_ images: [Tensor]) -> Tensor {
    Tensor(shape: [images.count, size, size, 3], scalars: images.flatMap(\.scalars))
  }

  static let float: Result<Model, any Error> = Result {
    try ONNXImporter.load(contentsOf: TestData.onnxFixtures.appendingPathComponent(fixture + ".onnx"))
  }

  static let quantized: Result<QuantizedModel, any Error> = Result {
    let model = try float.get()
    let ranges = try minMaxRanges(of: model, over: inputs(count: 16, seed: 0x15_02))
    return try Quantizer.quantize(model: model) { ranges[$0] }.model
  }
}

@Suite struct ONNXOperatorsBitExactTests {
  /// Batch 3 (the squeeze-and-excitation factor is per image), 1 and 2 threads, fused and unfused.
  func check(_ path: TiePath) throws {
    let model = try ONNXOpsCase.quantized.get()
    let input = ONNXOpsCase.batch(ONNXOpsCase.inputs(count: 3, seed: 0x15_03))
    let reference = try Int8ReferenceExecutor(model: model)
    var expected: [String: QuantizedTensor] = [:]
    let logits = reference.run(input) { name, t in expected[name] = t }
    for fuse in [false, true] {
      for threads in [1, 2] {
        let fast = try Int8FastExecutor(
          model: model, backend: path.backend, threads: threads, fuseResidualAdds: fuse, emulatedISA: path.emulated,
          avx2Kernel: path.avx2Kernel)
        let context = "\(ONNXOpsCase.fixture) on \(path), fuse \(fuse), \(threads) threads"
        let kinds = Set(fast.layers.map(\.kind))
        #expect(kinds.isSuperset(of: ["lookup", "mul", "concat", "average_pool"]), "\(context): \(kinds.sorted())")
        let got = expectFusedNodesEqual(fast, input: input, expected: expected, context: context)
        #expect(got == logits, "\(context): logits differ")
      }
    }
  }

  @Test(arguments: portableRealPaths)
  func portable(_ path: TiePath) throws { try check(path) }

  @Test(.enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"), arguments: avx2RealPaths)
  func avx2(_ path: TiePath) throws { try check(path) }

  @Test(.enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"))
  func avx512vnni() throws { try check(TiePath(backend: .avx512vnni)) }

  @Test(.enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"))
  func amx() throws { try check(TiePath(backend: .amx)) }

  /// The integer graph has the new nodes where the float graph has the operators, and the ReLUs
  /// after convolutions stay fused (the depthwise conv + BN + Relu, the SE reduce conv + Relu).
  @Test func integerGraphShape() throws {
    let model = try ONNXOpsCase.quantized.get()
    let ops = Dictionary(uniqueKeysWithValues: model.nodes.map { ($0.name, $0.op) })
    #expect(ops["hswish"] == .lookup && ops["se_gate"] == .lookup && ops["leaky"] == .lookup)
    #expect(ops["sigmoid"] == .lookup && ops["silu"] == .mul && ops["se_scale"] == .mul)
    #expect(ops["concat"] == .concat && ops["avg3"] == .averagePool && ops["avg2"] == .averagePool)
    #expect(ops["concat_relu"] == .lookup, "a relu after a concat has no convolution to fuse into: a table")
    #expect(ops["relu_dw"] == .conv2d && ops["se_relu"] == .conv2d, "relu fused into the convolution before it")
    #expect(model.node(named: "relu_dw")?.fused == ["dw", "bn1", "relu_dw"])
    #expect(model.node(named: "avg2")?.countIncludePad == true && model.node(named: "avg3")?.countIncludePad == nil)
    // MobileNetV3's head: the hidden Gemm is a 1x1 conv2d with a uint8 output (§24), the last one the classifier.
    #expect(ops["fc1"] == .conv2d && ops["head_hswish"] == .lookup && ops["fc"] == .linear)
    #expect(model.node(named: "fc1")?.inChannels == 16 && model.node(named: "fc1")?.outChannels == 12)
  }

  /// Int8 against float on 32 held-out seeded images: the logits' cosine and the top-1 agreement.
  /// The calibration is min/max on 16 images of the same distribution, so every tensor is quantized
  /// to 8 bits over its whole range; each of the ~12 quantized layers adds an error of about
  /// s/√12 per value, a few tenths of a percent of its range, and these errors add up over the
  /// depth to a few percent of the logits: cosine >= 0.99 and 90 % of the top-1 kept leaves that
  /// room while a wrong operator (a sign, a scale, a broadcast on the wrong axis) costs far more
  /// (a table built with z_in of the wrong sign gives cosine 0.56).
  @Test func int8IsCloseToFloat() throws {
    let model = try ONNXOpsCase.float.get()
    let quantized = try ONNXOpsCase.quantized.get()
    let input = ONNXOpsCase.batch(ONNXOpsCase.inputs(count: 32, seed: 0x15_04))
    let float = try FloatExecutor(model: model).run(input)
    let int8 = try Int8ReferenceExecutor(model: quantized).run(input).dequantized()
    let c = cosine(float.scalars, int8.scalars)
    let classes = model.info.classes
    var agree = 0
    for n in 0..<32 {
      let f = Array(float.scalars[(n * classes)..<((n + 1) * classes)])
      let q = Array(int8.scalars[(n * classes)..<((n + 1) * classes)])
      if f.firstIndex(of: f.max()!) == q.firstIndex(of: q.max()!) { agree += 1 }
    }
    #expect(c >= 0.99, "cosine of int8 and float logits \(c)")
    #expect(agree >= 29, "top-1 agreement \(agree) / 32")
  }

  /// `runNode` (local error, sensitivity, `octet compare`'s per-layer SQNR) on each new node, fed
  /// its producers' outputs in the node's input order, gives the node's output of a whole run: the
  /// squeeze-and-excitation Mul has its [1, 1, C] factor first.
  @Test func runNodeMatchesTheWholeRun() throws {
    let model = try ONNXOpsCase.quantized.get()
    let reference = try Int8ReferenceExecutor(model: model)
    let input = ONNXOpsCase.batch(ONNXOpsCase.inputs(count: 2, seed: 0x15_06))
    var outputs: [String: QuantizedTensor] = [:]
    _ = reference.run(input) { name, t in outputs[name] = t }
    #expect(model.node(named: "se_scale")?.inputs == ["se_gate", "relu_dw"])
    for node in model.nodes where [.lookup, .mul, .concat, .averagePool].contains(node.op) {
      let got = reference.runNode(node.name, inputs: node.inputs.map { outputs[$0]! })
      #expect(got == .uint8(outputs[node.name]!), "\(node.name)")
    }
  }

  /// A (forged) int8 graph whose node reads a classifier's int32 logits is refused by name when
  /// planned, instead of running on logits that are not uint8 codes.
  @Test func readingTheLogitsIsRefused() throws {
    var model = try ONNXOpsCase.quantized.get()
    let i = try #require(model.nodes.firstIndex { $0.name == "fc1" })
    model.nodes[i].op = .linear
    #expect(throws: Int8PlanError.node("head_hswish", "reads the classifier 'fc1', whose output is the int32 logits")) {
      _ = try Int8ReferenceExecutor(model: model)
    }
  }

  /// The table rule of §20 on an identity (leaky ReLU with alpha 1) at s_in 0.5, z_in 128, s_out 1,
  /// z_out 100: x = (q − 128) / 2, round half away from zero, clamp. Ties both ways and both clamps.
  @Test func lookupTableRoundsHalfAwayFromZero() {
    let table = Quantizer.lookupTable(
      .leakyRelu(alpha: 1), input: ActivationQuantization(scale: 0.5, zeroPoint: 128),
      output: ActivationQuantization(scale: 1, zeroPoint: 100))
    #expect(table[129] == 101 && table[127] == 99, "±0.5 round away from zero")
    #expect(table[128] == 100 && table[131] == 102 && table[125] == 98)
    #expect(table[0] == 36 && table[255] == 164)
    let clamped = Quantizer.lookupTable(
      .leakyRelu(alpha: 1), input: ActivationQuantization(scale: 4, zeroPoint: 128),
      output: ActivationQuantization(scale: 1, zeroPoint: 100))
    #expect(clamped[0] == 0 && clamped[255] == 255)
  }

  /// The int8 model file keeps the new nodes (tables as U8 tensors) as version 4; the float one as
  /// version 3; both read back equal.
  @Test func modelFilesRoundTrip() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("onnx-ops-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let model = try ONNXOpsCase.float.get()
    let quantized = try ONNXOpsCase.quantized.get()
    let q = folder.appendingPathComponent("q.safetensors")
    try QuantizedModelFile.write(quantized, to: q)
    #expect(try QuantizedModelFile.read(contentsOf: q) == quantized)
    let (tensors, metadata) = try SafeTensors.read(contentsOf: q)
    #expect(metadata["octet.format_version"] == "4")
    #expect(tensors["hswish.table"]?.shape == [256] && tensors["hswish.table"]?.type == .uint8)
    let f = folder.appendingPathComponent("f.safetensors")
    try ModelFile.write(model, to: f)
    #expect(try ModelFile.read(contentsOf: f).graph == model.graph)
    #expect(try SafeTensors.read(contentsOf: f).metadata["octet.format_version"] == "3")
  }
}

/// Seeded byte mutations of onnx_ops_opset17 through every stage: each import that succeeds is
/// planned and run in float, calibrated on its own output, quantized and run in int8 (reference
/// and scalar fast, which must agree); every failure must be a thrown error, never a crash.
@Suite struct ONNXOperatorsMutationTests {
  @Test func mutatedModelsFailCleanlyOrRunBitExact() throws {
    let good = try Data(contentsOf: TestData.onnxFixtures.appendingPathComponent(ONNXOpsCase.fixture + ".onnx"))
    var rng = SeededGenerator(seed: 0x15_05)
    var ran = 0
    for _ in 0..<200 {
      var bytes = [UInt8](good)
      for _ in 0..<Int.random(in: 1...4, using: &rng) {
        bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
      }
      guard let model = try? ONNXImporter.importModel(Data(bytes)) else { continue }
      let size = model.info.inputSize
      guard size <= 64 else { continue }
      var g = SeededGenerator(seed: 1)
      let input = Tensor(shape: [2, size, size, 3], scalars: g.floats(2 * size * size * 3, in: -2...2))
      guard let ranges = try? minMaxRanges(of: model, over: [input]),
        let quantized = try? Quantizer.quantize(model: model, range: { ranges[$0] }).model
      else { continue }
      let reference = try Int8ReferenceExecutor(model: quantized)
      let fast = try Int8FastExecutor(model: quantized, backend: .scalar, threads: 1)
      #expect(reference.run(input) == fast.run(input, timings: nil), "a mutation of \(ONNXOpsCase.fixture)")
      ran += 1
    }
    #expect(ran > 20, "few mutations survived to run: \(ran)")
  }
}

/// The C kernels of elementwise.c against the reference kernels on every code, with multipliers
/// that make exact ties (§3: ties toward +infinity) and ones that do not.
@Suite struct ONNXOperatorKernelTests {
  /// M = 0.5, 1.5, 2^-9 (odd products tie), and an irregular one; every (q_a, q_b) pair, zero
  /// points 0, 128 and 255; the broadcast form on the same values.
  @Test(arguments: [0.5, 1.5, 1.0 / 512, 0.012_345])
  func mulOnEveryPair(real: Double) throws {
    let r = try RequantMultiplier(real: real)
    let a = (0..<65536).map { UInt8($0 & 255) }
    let b = (0..<65536).map { UInt8($0 >> 8) }
    for (za, zb, zo) in [(Int32(0), Int32(0), Int32(0)), (128, 128, 128), (255, 3, 17)] {
      var want = [UInt8](repeating: 0, count: 65536)
      var got = want
      a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
          want.withUnsafeMutableBufferPointer { out in
            int8Mul(a, b, out, channels: 256, zeroPointX: za, zeroPointY: zb, requant: r, outputZeroPoint: zo)
          }
          octet_i8_mul(a.baseAddress!, b.baseAddress!, 65536, za, zb, r.multiplier, r.shift, zo, &got)
        }
      }
      #expect(got == want, "M \(real), zero points \(za), \(zb), \(zo)")
      // Broadcast: 256 pixels of 256 channels times one factor per channel.
      let factor = (0..<256).map { UInt8(($0 * 7) & 255) }
      var wantB = [UInt8](repeating: 0, count: 65536)
      var gotB = wantB
      a.withUnsafeBufferPointer { a in
        factor.withUnsafeBufferPointer { f in
          wantB.withUnsafeMutableBufferPointer { out in
            int8Mul(a, f, out, channels: 256, zeroPointX: za, zeroPointY: zb, requant: r, outputZeroPoint: zo)
          }
          octet_i8_mul_channels(a.baseAddress!, f.baseAddress!, 256, 256, za, zb, r.multiplier, r.shift, zo, &gotB)
        }
      }
      #expect(gotB == wantB, "broadcast, M \(real)")
    }
  }

  /// Concat's requantization of every code at M = 0.5 (odd codes tie), 1 (the copy), 3 and 0.3.
  @Test(arguments: [0.5, 1.0, 3.0, 0.3])
  func concatOnEveryCode(real: Double) throws {
    let r = try RequantMultiplier(real: real)
    let x = (0..<512).map { UInt8($0 & 255) }  // 256 pixels x 2 channels
    for (zi, zo) in [(Int32(0), Int32(0)), (128, 100), (255, 255)] {
      var want = [UInt8](repeating: 7, count: 256 * 5)
      var got = want
      x.withUnsafeBufferPointer { x in
        want.withUnsafeMutableBufferPointer { out in
          int8ConcatInto(
            x, out, channels: 2, offset: 1, total: 5, inputZeroPoint: zi, requant: r, outputZeroPoint: zo)
        }
        octet_i8_concat_into(x.baseAddress!, 256, 2, 1, 5, zi, r.multiplier, r.shift, zo, 0, &got)
      }
      #expect(got == want, "M \(real), zero points \(zi), \(zo)")
      if real == 1.0, zi == zo {
        var copied = [UInt8](repeating: 7, count: 256 * 5)
        octet_i8_concat_into(x, 256, 2, 1, 5, zi, r.multiplier, r.shift, zo, 1, &copied)
        #expect(copied == want, "the copy equals the requantization at M = 1")
      }
    }
  }

  /// The k x k average pool on a seeded 7x9x5 image, 3x3 stride 2 with asymmetric padding, both
  /// count_include_pad rules, with every tap count's multiplier 0.5 (odd sums tie) or irregular.
  @Test(arguments: [0.5, 0.0371])
  func averagePoolWindows(real: Double) throws {
    var g = SeededGenerator(seed: 0x15_07)
    let (h, w, c) = (7, 9, 5)
    let x = (0..<(h * w * c)).map { _ in UInt8.random(in: 0...255, using: &g) }
    let r = try RequantMultiplier(real: real)
    for countIncludePad in [false, true] {
      let a = Int8WindowAveragePoolAttributes(
        kernel: [3, 3], stride: [2, 2], padding: [1, 0, 2, 1], input: ActivationQuantization(scale: 1, zeroPoint: 77),
        requant: [RequantMultiplier](repeating: r, count: 9), countIncludePad: countIncludePad)
      let (oh, ow) = WindowShape.outputSize(
        height: h, width: w, kernel: [3, 3], stride: [2, 2], padding: [1, 0, 2, 1])
      var want = [UInt8](repeating: 0, count: oh * ow * c)
      var got = want
      x.withUnsafeBufferPointer { x in
        want.withUnsafeMutableBufferPointer { out in
          int8AveragePool(
            x, out, height: h, width: w, channels: c, attributes: a, outputZeroPoint: 9, outHeight: oh, outWidth: ow)
        }
      }
      var window = octet_i8_window(
        in_h: Int32(h), in_w: Int32(w), channels: Int32(c), out_h: Int32(oh), out_w: Int32(ow), kernel_h: 3,
        kernel_w: 3, stride_h: 2, stride_w: 2, pad_top: 1, pad_left: 0, zero_point: 77)
      let m = [Int32](repeating: r.multiplier, count: 9)
      let n = [Int32](repeating: r.shift, count: 9)
      var sum = [Int32](repeating: 0, count: c)
      octet_i8_avgpool_rows(&window, x, 0, Int32(oh), m, n, countIncludePad ? 1 : 0, 9, &sum, &got)
      #expect(got == want, "M \(real), count_include_pad \(countIncludePad)")
    }
  }
}
