import CInt8Kernels
import Foundation
import Octet
import OctetModels
import OctetQuantizer
import OctetTestSupport
import Testing

@testable import OctetInt8

/// A stem under test for exact input quantization (docs/quantization.md §12): input [S, S, 3] ->
/// stem conv (+ BN + ReLU6) -> 1x1 conv + ReLU -> global average pool -> linear (10 classes).
/// With `residual`, a second convolution of the same geometry also reads the input and is added to
/// the stem, so two convolutions read the pixels and the add is fused into the later one.
struct StemCase: CustomStringConvertible, Sendable {
  var size: Int, kernel: Int, stride: Int
  /// [top, left, bottom, right]; nil: TensorFlow "same".
  var padding: [Int]?
  var channels = 16
  var symmetric = false
  var residual = false
  var description: String {
    "\(size)x\(size) k\(kernel) s\(stride) pad \(padding.map { "\($0)" } ?? "same") \(symmetric ? "mean/std 0.5" : "imagenet")"
      + (residual ? " residual" : "")
  }
}

/// The float model of a `StemCase` with seeded random weights.
func makeStemFloatModel(_ c: StemCase, seed: UInt64) -> Model {
  var rng = SeededGenerator(seed: seed)
  func uniform(_ count: Int, _ lo: Float, _ hi: Float) -> [Float] {
    (0..<count).map { _ in Float.random(in: lo...hi, using: &rng) }
  }
  var weights = TensorDictionary()
  var nodes: [Node] = []
  func stem(_ prefix: String) -> String {
    let k = c.kernel
    weights["\(prefix).conv.weight"] = HostTensor(
      shape: [c.channels, 3, k, k], float32: uniform(c.channels * 3 * k * k, -0.3, 0.3))
    weights["\(prefix).bn.weight"] = HostTensor(shape: [c.channels], float32: uniform(c.channels, 0.5, 1.5))
    weights["\(prefix).bn.bias"] = HostTensor(shape: [c.channels], float32: uniform(c.channels, -0.5, 0.5))
    weights["\(prefix).bn.running_mean"] = HostTensor(shape: [c.channels], float32: uniform(c.channels, -0.2, 0.2))
    weights["\(prefix).bn.running_var"] = HostTensor(shape: [c.channels], float32: uniform(c.channels, 0.5, 2))
    nodes.append(
      .conv2d(
        "\(prefix).conv", input: Graph.inputName, weight: "\(prefix).conv.weight", kernel: [k, k], stride: c.stride,
        padding: c.padding, same: c.padding == nil))
    nodes.append(.batchNorm("\(prefix).bn", input: "\(prefix).conv", prefix: "\(prefix).bn", epsilon: 1e-3))
    return "\(prefix).bn"
  }
  var last = stem("stem")
  if c.residual {
    let side = stem("side")
    // The side convolution comes after the stem: the add is fused into it.
    nodes.append(Node(name: "add", op: .add, inputs: [last, side]))
    last = "add"
  }
  nodes.append(Node(name: "stem.relu6", op: .relu6, inputs: [last]))
  weights["head.conv.weight"] = HostTensor(shape: [24, c.channels, 1, 1], float32: uniform(24 * c.channels, -0.4, 0.4))
  weights["head.conv.bias"] = HostTensor(shape: [24], float32: uniform(24, -0.2, 0.2))
  nodes.append(
    .conv2d(
      "head.conv", input: "stem.relu6", weight: "head.conv.weight", bias: "head.conv.bias", kernel: [1, 1], stride: 1))
  nodes.append(Node(name: "head.relu", op: .relu, inputs: ["head.conv"]))
  nodes.append(Node(name: "pool", op: .globalAveragePool, inputs: ["head.relu"]))
  nodes.append(Node(name: "flatten", op: .flatten, inputs: ["pool"]))
  weights["fc.weight"] = HostTensor(shape: [10, 24], float32: uniform(240, -0.5, 0.5))
  weights["fc.bias"] = HostTensor(shape: [10], float32: uniform(10, -0.1, 0.1))
  nodes.append(.linear("fc", input: "flatten", weight: "fc.weight", bias: "fc.bias"))
  let info = ModelInfo(
    architecture: "stem-net", inputSize: c.size, classes: 10, preprocessing: c.symmetric ? .symmetric : .imagenet)
  return Model(info: info, graph: Graph(nodes: nodes, output: "fc"), weights: weights)
}

/// `count` images of seeded random pixels, normalized as the float runtime sees them.
func stemInputs(_ model: Model, count: Int, seed: UInt64, pixels: ClosedRange<UInt8> = 0...255) -> [Tensor] {
  var rng = SeededGenerator(seed: seed)
  let s = model.info.inputSize
  return (0..<count).map { _ in
    let image = RGBImage(
      width: s, height: s, pixels: (0..<(s * s * 3)).map { _ in UInt8.random(in: pixels, using: &rng) })
    return model.info.preprocessing.normalize(image)
  }
}

let stemCases: [StemCase] = [
  StemCase(size: 17, kernel: 3, stride: 2, padding: nil, symmetric: true),  // Lite0's stem: same, [0, 0, 1, 1]
  StemCase(size: 16, kernel: 3, stride: 2, padding: nil, symmetric: true),  // same at an even size: [0, 0, 1, 1]
  StemCase(size: 13, kernel: 3, stride: 1, padding: [1, 1, 1, 1]),
  StemCase(size: 19, kernel: 7, stride: 2, padding: [3, 3, 3, 3]),  // ResNet50's conv1, odd size
  StemCase(size: 11, kernel: 5, stride: 3, padding: [2, 1, 0, 2], channels: 33),  // asymmetric, N tail
  StemCase(size: 9, kernel: 3, stride: 1, padding: [2, 0, 1, 2], channels: 16, residual: true),
  StemCase(size: 15, kernel: 3, stride: 2, padding: nil, channels: 40, symmetric: true, residual: true),
]

/// A quantized stem case, one batch of two inputs, and the reference's output of every node.
struct StemModelCase {
  var model: QuantizedModel
  var input: Tensor
  var expected: [String: QuantizedTensor]
  var logits: Int32Logits

  init(_ c: StemCase, seed: UInt64) throws {
    let float = makeStemFloatModel(c, seed: seed)
    let inputs = stemInputs(float, count: 2, seed: seed ^ 0xE1)
    let ranges = try minMaxRanges(of: float, over: inputs)
    var options = QuantizationOptions()
    options.exactInput = true
    model = try Quantizer.quantize(model: float, options: options) { ranges[$0] }.model
    input = Tensor(shape: [2, c.size, c.size, 3], scalars: inputs.flatMap(\.scalars))
    var expected: [String: QuantizedTensor] = [:]
    logits = try Int8ReferenceExecutor(model: model).run(input) { name, t in expected[name] = t }
    self.expected = expected
  }
}

/// Reference against every backend path on models quantized with exact input: the stem's GEMM
/// with the full-window bias, then its border positions recomputed with their class bias.
func checkExactStems(_ path: TiePath) throws {
  for (i, c) in stemCases.enumerated() {
    let seed = UInt64(0xE7A0 + i)
    let m = try StemModelCase(c, seed: seed)
    let context = "exact stem case \(i) \(c) seed \(seed) on \(path)"
    let stem = try #require(m.model.nodes.first { $0.inputs == [Graph.inputName] })
    #expect((stem.borderClasses?.count ?? 0) > 1, "\(context): no border class")
    for (threads, fuse) in [(1, false), (2, true), (1, true)] {
      let fast = try Int8FastExecutor(
        model: m.model, backend: path.backend, threads: threads, fuseResidualAdds: fuse, emulatedISA: path.emulated,
        avx2Kernel: path.avx2Kernel)
      let got = expectFusedNodesEqual(
        fast, input: m.input, expected: m.expected, context: "\(context), \(threads) thread(s), fused \(fuse)")
      #expect(got == m.logits, "\(context): logits differ")
    }
  }
}

let portableExactPaths = portableRealPaths
let avx2ExactPaths = avx2RealPaths

@Suite struct ExactInputTests {
  @Test(arguments: portableExactPaths)
  func stemsBitExact(_ path: TiePath) throws { try checkExactStems(path) }

  @Test(.enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"), arguments: avx2ExactPaths)
  func stemsBitExactAVX2(_ path: TiePath) throws { try checkExactStems(path) }

  @Test(.enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"))
  func stemsBitExactAVX512VNNI() throws { try checkExactStems(TiePath(backend: .avx512vnni)) }

  @Test(.enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"))
  func stemsBitExactAMX() throws { try checkExactStems(TiePath(backend: .amx)) }

  /// The integer graph reads exactly the pixels the float input was normalized from, for every
  /// uint8 value of every channel of both preprocessings.
  @Test func pixelsAreRecoveredExactly() throws {
    for pre in [Preprocessing.imagenet, .symmetric] {
      let pixels = PixelNormalization(mean: pre.mean, std: pre.std)
      let image = RGBImage(
        width: 256, height: 1, pixels: (0..<256).flatMap { [UInt8($0), UInt8(255 - $0), UInt8($0)] })
      let x = pre.normalize(image)
      for i in 0..<x.scalars.count {
        #expect(pixels.pixel(x.scalars[i], channel: i % 3) == image.pixels[i], "\(pre.mean) value \(i)")
      }
    }
  }

  /// The fast runtimes' pixel recovery (C) gives the reference's (Swift) bytes on any float, not
  /// only on normalized pixels: NaN, infinities, values far outside, and values whose pixel is within
  /// 10^-12 of a half (where a different rounding rule or an FMA would show).
  @Test func cPixelRecoveryEqualsSwiftOnAnyFloat() throws {
    var rng = SeededGenerator(seed: 0x9E1)
    for pre in [Preprocessing.imagenet, .symmetric] {
      let pixels = PixelNormalization(mean: pre.mean, std: pre.std)
      var x: [Float] = [.nan, -.nan, .infinity, -.infinity, 0, -0.0, 1e30, -1e30, .leastNonzeroMagnitude]
      while x.count % 3 != 0 { x.append(0) }
      for i in 0..<30_000 {
        let c = x.count % 3
        switch i % 3 {
        case 0: x.append(Float.random(in: -4...4, using: &rng))
        case 1:
          // The float nearest to the input whose pixel would be k + 1/2.
          let k = Double(Int.random(in: -2...257, using: &rng)) + 0.5
          let v = Float((k / 255 - Double(pre.mean[c])) / Double(pre.std[c]))
          x.append([v, v.nextUp, v.nextDown][Int.random(in: 0...2, using: &rng)])
        default: x.append(Float.random(in: -1e6...1e6, using: &rng))
        }
      }
      while x.count % 3 != 0 { x.append(0) }
      let expected = x.indices.map { pixels.pixel(x[$0], channel: $0 % 3) }
      var got = [UInt8](repeating: 0, count: x.count)
      octet_i8_input_pixels(x, x.count, pixels.mean, pixels.std, &got)
      let differing = x.indices.filter { got[$0] != expected[$0] }
      #expect(
        differing.isEmpty,
        "\(differing.count) values differ, first \(differing.first.map { "x \(x[$0]) C \(got[$0]) Swift \(expected[$0])" } ?? "")"
      )
    }
  }

  /// The point of §12, measured where it differs from plain input quantization: at the border.
  /// A stem whose weights are exactly representable (so the only errors left are the bias's and
  /// the output's roundings) on a bright image (pixels 200...255, where the half-step offset of
  /// z_in = 128 for mean = std = 0.5 always rounds the same way), with the input range [-1, 1] a
  /// calibration on real images gives: exact input stays within half an output step (plus half
  /// a bias unit) of the float stem at every position; plain input quantization does not.
  @Test func borderOutputWithinHalfAStepOfFloat() throws {
    let c = StemCase(size: 12, kernel: 3, stride: 1, padding: [1, 1, 1, 1], channels: 8, symmetric: true)
    var float = makeStemFloatModel(c, seed: 0xB0)
    // Weights k · 2^-10 with k in [20, 127] and 127 in every channel: w / (255 · 0.5) is k times
    // the weight scale, so w_q = k exactly; no BatchNorm change (γ = 1, β = 0, μ = 0, σ² = 1 − ε).
    var rng = SeededGenerator(seed: 0xB1)
    var w = (0..<(8 * 27)).map { _ in Float(Int.random(in: 20...127, using: &rng)) / 1024 }
    for o in 0..<8 { w[o * 27 + o] = 127.0 / 1024 }
    float.weights["stem.conv.weight"] = HostTensor(shape: [8, 3, 3, 3], float32: w)
    float.weights["stem.bn.weight"] = HostTensor(shape: [8], float32: [Float](repeating: 1, count: 8))
    float.weights["stem.bn.bias"] = HostTensor(shape: [8], float32: [Float](repeating: 0, count: 8))
    float.weights["stem.bn.running_mean"] = HostTensor(shape: [8], float32: [Float](repeating: 0, count: 8))
    float.weights["stem.bn.running_var"] = HostTensor(shape: [8], float32: [Float](repeating: 1 - 1e-3, count: 8))
    // Keep the ReLU6 out of the way: the stem's own output (its range from the float run).
    let input = stemInputs(float, count: 1, seed: 0xB2, pixels: 200...255)[0]
    var ranges = try minMaxRanges(of: float, over: [input])
    ranges["input"] = (-1, 1)
    let floatStem = try FloatExecutor(model: float, fuseResidualAdd: false)
    var reference: [Float] = []
    _ = floatStem.run(input) { name, t in if name == "stem.relu6" { reference = t.scalars } }
    #expect(reference.allSatisfy { $0 > 0 && $0 < 6 }, "the stem's ReLU6 must not clamp in this test")
    // BatchNorm ε: its folding factor is 1 / √(1 − ε + ε) = 1 up to Double rounding.

    func worst(_ exact: Bool) throws -> (error: Float, bound: Float) {
      var options = QuantizationOptions()
      options.exactInput = exact
      let q = try Quantizer.quantize(model: float, options: options) { ranges[$0] }.model
      let node = try #require(q.node(named: "stem.relu6"))
      var stem: QuantizedTensor?
      _ = try Int8ReferenceExecutor(model: q).run(input) { name, t in if name == "stem.relu6" { stem = t } }
      let got = try #require(stem).dequantized().scalars
      // The worst error over the border positions (first and last rows and columns).
      var worst: Float = 0
      for i in got.indices {
        let (y, x) = (i / 8 / 12, i / 8 % 12)
        if y == 0 || y == 11 || x == 0 || x == 11 { worst = max(worst, abs(got[i] - reference[i])) }
      }
      // Half an output step, and half a unit of the bias (at scale s_w, the input scale being 1).
      let bound = node.output.scale / 2 + (node.weightScales.max() ?? 0) / 2 + 1e-5
      return (worst, bound)
    }
    let exact = try worst(true)
    #expect(exact.error <= exact.bound, "exact input: worst error \(exact.error) > \(exact.bound)")
    let plain = try worst(false)
    #expect(plain.error > exact.bound, "plain input: worst error \(plain.error), expected above \(exact.bound)")
    print("border error: exact \(exact.error) (bound \(exact.bound)), plain \(plain.error)")
  }
}
