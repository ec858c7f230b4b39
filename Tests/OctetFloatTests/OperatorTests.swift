import CFloatKernels
import Foundation
import OctetCore
import OctetFloat
import Testing

// Each float operator against a plain reference loop in Double, on every kernel path this CPU can
// run. Data comes from a seeded generator (OctetCore's SeededGenerator); a failure prints the seed
// and every parameter.

func referenceActivation(_ v: Double, _ activation: Activation) -> Double {
  switch activation {
  case .none: v
  case .relu: max(v, 0)
  case .relu6: min(max(v, 0), 6)
  }
}

/// Largest violation of `|got - want| <= tolerance * (1 + magnitude)`, or nil if all pass.
/// `magnitude` is the sum of the absolute values of the terms that made `want`, which bounds the
/// float rounding error of any summation order.
func worstMismatch(
  _ got: [Float], _ want: [Double], magnitude: [Double], tolerance: Double = 1e-5
) -> String? {
  guard got.count == want.count else { return "count \(got.count) != \(want.count)" }
  var worst: (index: Int, excess: Double)? = nil
  for i in got.indices {
    let error = abs(Double(got[i]) - want[i])
    let allowed = tolerance * (1 + magnitude[i])
    if !(error <= allowed), error - allowed > (worst?.excess ?? -1) { worst = (i, error - allowed) }
  }
  guard let worst else { return nil }
  let i = worst.index
  return "element \(i): got \(got[i]), want \(want[i]) (magnitude \(magnitude[i]))"
}

// MARK: - Convolution

struct ConvCase: CustomTestStringConvertible, Sendable {
  var name: String
  var batch = 1, height: Int, width: Int
  var geometry: Conv2DGeometry
  var bias = true
  var activation = Activation.none
  var residual = false
  var seed: UInt64

  var testDescription: String { name }
  var parameters: String {
    "\(name) seed=\(seed) batch=\(batch) input=\(height)x\(width) \(geometry) bias=\(bias) "
      + "activation=\(activation) residual=\(residual)"
  }
}

func conv(
  _ name: String, seed: UInt64, batch: Int = 1, hw: (Int, Int), cin: Int, cout: Int,
  kernel: (Int, Int), stride: (Int, Int) = (1, 1), pad: (Int, Int, Int, Int) = (0, 0, 0, 0),
  groups: Int = 1, dilation: (Int, Int) = (1, 1), bias: Bool = true,
  activation: Activation = .none, residual: Bool = false
) -> ConvCase {
  ConvCase(
    name: name, batch: batch, height: hw.0, width: hw.1,
    geometry: Conv2DGeometry(
      inChannels: cin, outChannels: cout, kernelH: kernel.0, kernelW: kernel.1,
      strideH: stride.0, strideW: stride.1, padTop: pad.0, padLeft: pad.1, padBottom: pad.2,
      padRight: pad.3, groups: groups, dilationH: dilation.0, dilationW: dilation.1),
    bias: bias, activation: activation, residual: residual, seed: seed)
}

let convCases: [ConvCase] = [
  conv("1x1 s1", seed: 1, hw: (8, 8), cin: 16, cout: 32, kernel: (1, 1), activation: .relu),
  conv(
    "1x1 s1 odd channels batch 2", seed: 2, batch: 2, hw: (5, 7), cin: 13, cout: 21,
    kernel: (1, 1), bias: false),
  conv(
    "1x1 s2 downsample", seed: 3, hw: (9, 9), cin: 24, cout: 40, kernel: (1, 1), stride: (2, 2),
    residual: true),
  conv(
    "1x1 s1 K and M blocking", seed: 4, hw: (12, 12), cin: 300, cout: 24, kernel: (1, 1),
    activation: .relu6, residual: true),
  conv(
    "3x3 s1 p1 residual relu6", seed: 5, hw: (10, 10), cin: 12, cout: 20, kernel: (3, 3),
    pad: (1, 1, 1, 1), activation: .relu6, residual: true),
  conv(
    "3x3 s2 p1 batch 2", seed: 6, batch: 2, hw: (11, 11), cin: 7, cout: 9, kernel: (3, 3),
    stride: (2, 2), pad: (1, 1, 1, 1), activation: .relu),
  conv(
    "3x3 s1 p1 K=576 N tail", seed: 7, hw: (14, 14), cin: 64, cout: 70, kernel: (3, 3),
    pad: (1, 1, 1, 1), activation: .relu, residual: true),
  conv(
    "3x3 s1 im2col tiles across images", seed: 8, batch: 2, hw: (40, 40), cin: 3, cout: 8,
    kernel: (3, 3), pad: (1, 1, 1, 1), activation: .relu),
  conv(
    "7x7 s2 p3", seed: 9, hw: (23, 23), cin: 3, cout: 16, kernel: (7, 7), stride: (2, 2),
    pad: (3, 3, 3, 3), activation: .relu),
  conv(
    "3x3 s2 pad (0,0,1,1)", seed: 10, hw: (10, 10), cin: 8, cout: 12, kernel: (3, 3),
    stride: (2, 2), pad: (0, 0, 1, 1), bias: false, activation: .relu6),
  conv(
    "5x5 s2 pad (1,1,2,2)", seed: 11, hw: (12, 12), cin: 5, cout: 11, kernel: (5, 5),
    stride: (2, 2), pad: (1, 1, 2, 2), activation: .relu6),
  conv(
    "3x3 rectangular stride", seed: 12, hw: (9, 13), cin: 6, cout: 10, kernel: (3, 2),
    stride: (1, 2), pad: (1, 0, 1, 1)),
  conv(
    "3x3 dilation 2", seed: 13, hw: (11, 11), cin: 6, cout: 10, kernel: (3, 3),
    pad: (2, 2, 2, 2), dilation: (2, 2), activation: .relu),
  conv(
    "grouped 3x3 groups=2 batch 2", seed: 14, batch: 2, hw: (8, 8), cin: 8, cout: 12,
    kernel: (3, 3), pad: (1, 1, 1, 1), groups: 2, activation: .relu, residual: true),
  conv("grouped 1x1 groups=4", seed: 15, hw: (6, 6), cin: 16, cout: 8, kernel: (1, 1), groups: 4),
  conv(
    "grouped 3x3 channel multiplier 2", seed: 16, hw: (7, 7), cin: 6, cout: 12, kernel: (3, 3),
    pad: (1, 1, 1, 1), groups: 6),
  conv(
    "depthwise 3x3 s1 C=37 batch 2", seed: 17, batch: 2, hw: (9, 9), cin: 37, cout: 37,
    kernel: (3, 3), pad: (1, 1, 1, 1), groups: 37, activation: .relu6),
  conv(
    "depthwise 3x3 s2 pad (0,0,1,1)", seed: 18, hw: (12, 12), cin: 48, cout: 48, kernel: (3, 3),
    stride: (2, 2), pad: (0, 0, 1, 1), groups: 48, activation: .relu6),
  conv(
    "depthwise 5x5 s1 residual", seed: 19, hw: (10, 10), cin: 44, cout: 44, kernel: (5, 5),
    pad: (2, 2, 2, 2), groups: 44, bias: false, residual: true),
  conv(
    "depthwise 5x5 s2 pad (1,1,2,2)", seed: 20, hw: (13, 13), cin: 72, cout: 72, kernel: (5, 5),
    stride: (2, 2), pad: (1, 1, 2, 2), groups: 72, activation: .relu),
  conv(
    "depthwise 3x3 C=5 dilation 2", seed: 21, hw: (9, 9), cin: 5, cout: 5, kernel: (3, 3),
    pad: (2, 2, 2, 2), groups: 5, dilation: (2, 2), activation: .relu),
  conv(
    "depthwise 3x3 window larger than input", seed: 22, hw: (1, 2), cin: 12, cout: 12,
    kernel: (3, 3), pad: (1, 1, 1, 1), groups: 12),
]

/// Direct convolution in Double, straight from the definition. Returns values and magnitudes.
func referenceConv(
  input: [Float], weight: [Float], bias: [Float]?, residual: [Float]?, c: ConvCase
) -> (values: [Double], magnitudes: [Double]) {
  let g = c.geometry
  let (oh, ow) = g.outputSize(inputHeight: c.height, inputWidth: c.width)
  let cinG = g.inChannels / g.groups
  let coutG = g.outChannels / g.groups
  var values: [Double] = []
  var magnitudes: [Double] = []
  for n in 0..<c.batch {
    for y in 0..<oh {
      for x in 0..<ow {
        for o in 0..<g.outChannels {
          var sum = Double(bias?[o] ?? 0)
          var magnitude = abs(sum)
          let group = o / coutG
          for ky in 0..<g.kernelH {
            for kx in 0..<g.kernelW {
              let iy = y * g.strideH - g.padTop + ky * g.dilationH
              let ix = x * g.strideW - g.padLeft + kx * g.dilationW
              guard iy >= 0, iy < c.height, ix >= 0, ix < c.width else { continue }
              for i in 0..<cinG {
                let xv = Double(
                  input[((n * c.height + iy) * c.width + ix) * g.inChannels + group * cinG + i])
                let wv = Double(weight[((o * cinG + i) * g.kernelH + ky) * g.kernelW + kx])
                sum += xv * wv
                magnitude += abs(xv * wv)
              }
            }
          }
          if let residual {
            let r = Double(residual[((n * oh + y) * ow + x) * g.outChannels + o])
            sum += r
            magnitude += abs(r)
          }
          values.append(referenceActivation(sum, c.activation))
          magnitudes.append(magnitude)
        }
      }
    }
  }
  return (values, magnitudes)
}

/// Declares a test case of a kernel path this CPU cannot run skipped (cancelled, with the reason),
/// so that no path drops out of the results silently.
func skipUnlessAvailable(_ path: FloatKernels.Path) throws {
  if !FloatKernels.isAvailable(path) { try Test.cancel("kernel path \(path): this CPU does not have it") }
}

@Suite("Float operators against reference loops")
struct OperatorTests {
  @Test("kernel paths", arguments: FloatKernels.Path.allCases)
  func pathIsAvailable(path: FloatKernels.Path) throws {
    try skipUnlessAvailable(path)
    #expect(FloatKernels.isAvailable(path))
    #expect(FloatKernels.availablePaths.contains(FloatKernels.path))
  }

  /// OCTET_FLOAT_KERNEL=<path> selects that path (run for each path the CPU has; the others are
  /// declared skips), and the process's own path is what its environment asked for.
  @Test("OCTET_FLOAT_KERNEL selects the kernel path", arguments: FloatKernels.Path.allCases)
  func environmentSelectsPath(path: FloatKernels.Path) throws {
    try skipUnlessAvailable(path)
    #expect(
      octet_f32_path_for_request(path.rawValue)
        == (path == .portable ? OCTET_F32_PATH_PORTABLE : OCTET_F32_PATH_AVX2FMA))
    let best = FloatKernels.isAvailable(.avx2fma) ? OCTET_F32_PATH_AVX2FMA : OCTET_F32_PATH_PORTABLE
    #expect(octet_f32_path_for_request(nil) == best)
    #expect(octet_f32_path_for_request("avx9") == best)
    let request = ProcessInfo.processInfo.environment["OCTET_FLOAT_KERNEL"]
    let own: FloatKernels.Path =
      request.flatMap(FloatKernels.Path.init(rawValue:)).flatMap {
        FloatKernels.isAvailable($0) ? $0 : nil
      } ?? (FloatKernels.isAvailable(.avx2fma) ? .avx2fma : .portable)
    #expect(FloatKernels.path == own, "OCTET_FLOAT_KERNEL=\(request ?? "(unset)")")
  }

  @Test("conv2d", arguments: convCases, FloatKernels.Path.allCases)
  func conv2d(c: ConvCase, path: FloatKernels.Path) throws {
    try skipUnlessAvailable(path)
    var rng = SeededGenerator(seed: c.seed)
    let g = c.geometry
    let (oh, ow) = g.outputSize(inputHeight: c.height, inputWidth: c.width)
    let input = rng.floats(c.batch * c.height * c.width * g.inChannels)
    let weight = rng.floats(g.outChannels * g.inChannels / g.groups * g.kernelH * g.kernelW)
    let bias = c.bias ? rng.floats(g.outChannels) : nil
    let outShape = [c.batch, oh, ow, g.outChannels]
    let residual = c.residual ? rng.floats(outShape.reduce(1, *), in: -2...2) : nil

    let packed = PackedConv2D(weightOIHW: weight, bias: bias, geometry: g, activation: c.activation)
    let got = packed(
      Tensor(shape: [c.batch, c.height, c.width, g.inChannels], scalars: input),
      residual: residual.map { Tensor(shape: outShape, scalars: $0) }, kernelPath: path)
    let want = referenceConv(input: input, weight: weight, bias: bias, residual: residual, c: c)

    #expect(got.shape == outShape, "path=\(path) \(c.parameters)")
    let mismatch = worstMismatch(got.scalars, want.values, magnitude: want.magnitudes)
    #expect(mismatch == nil, "path=\(path) \(c.parameters): \(mismatch ?? "")")
  }

  @Test("conv2d with GEMMs split across threads", arguments: FloatKernels.Path.allCases)
  func conv2dThreaded(path: FloatKernels.Path) throws {
    try skipUnlessAvailable(path)
    let cases = [
      // Many rows: row slices.
      conv(
        "threads: 1x1 rows", seed: 30, hw: (12, 12), cin: 40, cout: 24, kernel: (1, 1),
        activation: .relu, residual: true),
      // Few rows, many panels: column slices with a partial last panel.
      conv(
        "threads: 3x3 panels", seed: 31, hw: (4, 4), cin: 8, cout: 100, kernel: (3, 3),
        pad: (1, 1, 1, 1), activation: .relu6, residual: true),
      // Several im2col tiles (K = 144: 504 rows a tile, 576 rows): whole tiles per thread.
      conv(
        "threads: 3x3 tiles", seed: 32, hw: (24, 24), cin: 16, cout: 40, kernel: (3, 3),
        pad: (1, 1, 1, 1), activation: .relu, residual: true),
      // One tile's worth of rows (K = 288: 227 rows a tile, 196 rows) cut in two equal tiles of 102
      // and 94 rows (avx2fma), so im2col runs on both threads.
      conv(
        "threads: 3x3 split tile", seed: 33, hw: (14, 14), cin: 32, cout: 24, kernel: (3, 3),
        pad: (1, 1, 1, 1), activation: .relu6, residual: true),
    ]
    FloatKernels.setThreads(2)
    defer { FloatKernels.setThreads(1) }
    for c in cases {
      var rng = SeededGenerator(seed: c.seed)
      let g = c.geometry
      let (oh, ow) = g.outputSize(inputHeight: c.height, inputWidth: c.width)
      let input = rng.floats(c.height * c.width * g.inChannels)
      let weight = rng.floats(g.outChannels * g.inChannels * g.kernelH * g.kernelW)
      let bias = rng.floats(g.outChannels)
      let residual = rng.floats(oh * ow * g.outChannels)
      let packed = PackedConv2D(
        weightOIHW: weight, bias: bias, geometry: g, activation: c.activation)
      let got = packed(
        Tensor(shape: [1, c.height, c.width, g.inChannels], scalars: input),
        residual: Tensor(shape: [1, oh, ow, g.outChannels], scalars: residual), kernelPath: path)
      let want = referenceConv(input: input, weight: weight, bias: bias, residual: residual, c: c)
      let mismatch = worstMismatch(got.scalars, want.values, magnitude: want.magnitudes)
      #expect(mismatch == nil, "path=\(path) threads=2 \(c.parameters): \(mismatch ?? "")")
      // Each row's sums are computed alike whatever the slicing: the same floats as one thread.
      FloatKernels.setThreads(1)
      let single = packed(
        Tensor(shape: [1, c.height, c.width, g.inChannels], scalars: input),
        residual: Tensor(shape: [1, oh, ow, g.outChannels], scalars: residual), kernelPath: path)
      FloatKernels.setThreads(2)
      // Only for Octet's own GEMMs: OpenBLAS (portable) picks its kernels by thread count (on
      // AVX-512 CPUs its small-matrix kernels run on one thread only), so its last bits may differ;
      // the reference check above holds for it either way.
      if path != .portable {
        let differing = zip(got.scalars, single.scalars).filter { $0.0.bitPattern != $0.1.bitPattern }.count
        #expect(differing == 0, "path=\(path) \(c.parameters): 2 threads differ from 1 in \(differing) floats")
      }
    }
  }

  /// Winograd F(2x2, 3x3) (avx2fma) against the Double reference: even and odd output sizes
  /// (partial tiles), tiles across images, asymmetric padding, and enough tiles and channels for
  /// two chunks (128 channels: 64 tiles a chunk, 81 tiles). On the portable path `winograd: true`
  /// falls back to im2col. Two threads give the same floats as one.
  @Test("conv2d Winograd F(2x2, 3x3)", arguments: FloatKernels.Path.allCases)
  func conv2dWinograd(path: FloatKernels.Path) throws {
    try skipUnlessAvailable(path)
    let cases = [
      conv(
        "winograd 3x3 even", seed: 40, hw: (10, 10), cin: 16, cout: 24, kernel: (3, 3), pad: (1, 1, 1, 1),
        activation: .relu6, residual: true),
      conv(
        "winograd 3x3 odd batch 2", seed: 41, batch: 2, hw: (7, 7), cin: 8, cout: 8, kernel: (3, 3),
        pad: (1, 1, 1, 1), activation: .relu),
      conv("winograd 3x3 unpadded", seed: 42, hw: (9, 8), cin: 8, cout: 16, kernel: (3, 3), bias: false),
      conv(
        "winograd 3x3 pad (0,1,1,0)", seed: 43, hw: (6, 9), cin: 24, cout: 8, kernel: (3, 3), pad: (0, 1, 1, 0),
        residual: true),
      conv(
        "winograd 3x3 two chunks", seed: 44, hw: (18, 18), cin: 128, cout: 32, kernel: (3, 3), pad: (1, 1, 1, 1),
        activation: .relu, residual: true),
    ]
    for c in cases {
      #expect(PackedConv2D.winogradApplies(c.geometry), "\(c.name)")
      var rng = SeededGenerator(seed: c.seed)
      let g = c.geometry
      let (oh, ow) = g.outputSize(inputHeight: c.height, inputWidth: c.width)
      let input = rng.floats(c.batch * c.height * c.width * g.inChannels)
      let weight = rng.floats(g.outChannels * g.inChannels * 9)
      let bias = c.bias ? rng.floats(g.outChannels) : nil
      let outShape = [c.batch, oh, ow, g.outChannels]
      let residual = c.residual ? rng.floats(outShape.reduce(1, *), in: -2...2) : nil
      let packed = PackedConv2D(
        weightOIHW: weight, bias: bias, geometry: g, activation: c.activation, winograd: true)
      func run() -> Tensor {
        packed(
          Tensor(shape: [c.batch, c.height, c.width, g.inChannels], scalars: input),
          residual: residual.map { Tensor(shape: outShape, scalars: $0) }, kernelPath: path)
      }
      let got = run()
      let want = referenceConv(input: input, weight: weight, bias: bias, residual: residual, c: c)
      #expect(got.shape == outShape, "path=\(path) \(c.parameters)")
      let mismatch = worstMismatch(got.scalars, want.values, magnitude: want.magnitudes)
      #expect(mismatch == nil, "path=\(path) \(c.parameters): \(mismatch ?? "")")
      // Built on the process's path: Winograd there when it is avx2fma.
      #expect(packed.isWinograd == (FloatKernels.path == .avx2fma), "\(c.name)")
      // (OpenBLAS may round differently with another thread count: the avx2fma path only.)
      if path == .avx2fma {
        FloatKernels.setThreads(2)
        let threaded = run()
        FloatKernels.setThreads(1)
        let differing = zip(threaded.scalars, got.scalars).filter { $0.0.bitPattern != $0.1.bitPattern }.count
        #expect(differing == 0, "path=\(path) \(c.parameters): 2 threads differ from 1 in \(differing) floats")
      }
    }
  }

  @Test("NaN propagates through the fused activation", arguments: FloatKernels.Path.allCases)
  func nanPropagates(path: FloatKernels.Path) throws {
    try skipUnlessAvailable(path)
    for groups in [1, 16] {
      let g = Conv2DGeometry(
        inChannels: 16, outChannels: 16, kernelH: 1, kernelW: 1, groups: groups)
      var input = [Float](repeating: 1, count: 4 * 16)
      input[16] = .nan  // pixel 1, channel 0
      let conv = PackedConv2D(
        weightOIHW: [Float](repeating: 0.5, count: 16 * 16 / groups), bias: nil, geometry: g,
        activation: .relu6)
      let out = conv(Tensor(shape: [1, 2, 2, 16], scalars: input), residual: nil, kernelPath: path)
      // Dense: every channel of pixel 1 reads the NaN; depthwise: only channel 0.
      let nanChannels = (0..<16).filter { out.scalars[16 + $0].isNaN }
      #expect(nanChannels == (groups == 1 ? Array(0..<16) : [0]), "path=\(path) groups=\(groups)")
      #expect(out.scalars[0] == (groups == 1 ? 6 : 0.5), "path=\(path) groups=\(groups)")
    }
  }

  @Test("conv2d output size follows the floor formula")
  func outputSize() {
    let g = Conv2DGeometry(
      inChannels: 3, outChannels: 64, kernelH: 7, kernelW: 7, strideH: 2, strideW: 2,
      padTop: 3, padLeft: 3, padBottom: 3, padRight: 3)
    #expect(g.outputSize(inputHeight: 224, inputWidth: 224) == (112, 112))
    let same = Conv2DGeometry(
      inChannels: 8, outChannels: 8, kernelH: 3, kernelW: 3, strideH: 2, strideW: 2,
      padTop: 0, padLeft: 0, padBottom: 1, padRight: 1, groups: 8)
    #expect(same.outputSize(inputHeight: 224, inputWidth: 224) == (112, 112))
    #expect(same.isDepthwise)
    // An empty batch gives an empty output of the right shape.
    let conv = PackedConv2D(
      weightOIHW: [Float](repeating: 1, count: 72), bias: nil, geometry: same, activation: .relu)
    #expect(conv(Tensor(zeros: [0, 10, 10, 8])).shape == [0, 5, 5, 8])
  }

  @Test(
    "conv2d from concurrent callers shares scratch safely", arguments: FloatKernels.Path.allCases)
  func concurrentCalls(path: FloatKernels.Path) async throws {
    try skipUnlessAvailable(path)
    // Compared with the reference, not bit for bit with each other: another test may change
    // FloatKernels.setThreads meanwhile, and OpenBLAS may then round differently.
    let c = convCases[6]  // 3x3 im2col with residual
    var rng = SeededGenerator(seed: c.seed)
    let g = c.geometry
    let (oh, ow) = g.outputSize(inputHeight: c.height, inputWidth: c.width)
    let input = rng.floats(c.height * c.width * g.inChannels)
    let weight = rng.floats(g.outChannels * g.inChannels * g.kernelH * g.kernelW)
    let bias = rng.floats(g.outChannels)
    let residual = rng.floats(oh * ow * g.outChannels, in: -2...2)
    let want = referenceConv(input: input, weight: weight, bias: bias, residual: residual, c: c)
    let packed = PackedConv2D(weightOIHW: weight, bias: bias, geometry: g, activation: c.activation)
    let inputTensor = Tensor(shape: [1, c.height, c.width, g.inChannels], scalars: input)
    let residualTensor = Tensor(shape: [1, oh, ow, g.outChannels], scalars: residual)
    let mismatches = await withTaskGroup(of: String?.self) { group in
      for _ in 0..<8 {
        group.addTask {
          for _ in 0..<20 {
            let got = packed(inputTensor, residual: residualTensor, kernelPath: path)
            if let mismatch = worstMismatch(got.scalars, want.values, magnitude: want.magnitudes) {
              return mismatch
            }
          }
          return nil
        }
      }
      return await group.reduce(into: [String]()) { if let m = $1 { $0.append(m) } }
    }
    #expect(mismatches.isEmpty, "path=\(path) 8 concurrent callers \(c.parameters): \(mismatches)")
  }

  // MARK: - Linear

  @Test(
    "linear",
    arguments: [(3, 37, 29, true, false), (1, 300, 20, false, false), (2, 64, 17, true, true)],
    FloatKernels.Path.allCases)
  func linear(shape: (Int, Int, Int, Bool, Bool), path: FloatKernels.Path) throws {
    try skipUnlessAvailable(path)
    let (batch, inFeatures, outFeatures, hasBias, rank4) = shape
    let seed = UInt64(100 + inFeatures)
    var rng = SeededGenerator(seed: seed)
    let x = rng.floats(batch * inFeatures)
    let weight = rng.floats(outFeatures * inFeatures)
    let bias = hasBias ? rng.floats(outFeatures) : nil
    let layer = PackedLinear(
      weight: weight, bias: bias, inFeatures: inFeatures, outFeatures: outFeatures)
    let input = Tensor(shape: rank4 ? [batch, 1, 1, inFeatures] : [batch, inFeatures], scalars: x)
    let got = layer(input, kernelPath: path)

    var want: [Double] = []
    var magnitude: [Double] = []
    for n in 0..<batch {
      for o in 0..<outFeatures {
        var sum = Double(bias?[o] ?? 0)
        var m = abs(sum)
        for i in 0..<inFeatures {
          let t = Double(x[n * inFeatures + i]) * Double(weight[o * inFeatures + i])
          sum += t
          m += abs(t)
        }
        want.append(sum)
        magnitude.append(m)
      }
    }
    let parameters =
      "path=\(path) seed=\(seed) batch=\(batch) in=\(inFeatures) out=\(outFeatures) bias=\(hasBias)"
    #expect(got.shape == [batch, outFeatures], "\(parameters)")
    let mismatch = worstMismatch(got.scalars, want, magnitude: magnitude)
    #expect(mismatch == nil, "\(parameters): \(mismatch ?? "")")
  }

  // MARK: - Pooling and element-wise

  @Test(
    "max pool",
    arguments: [
      (3, 2, 1, 1, 1, 1),  // ResNet stem: 3x3 / 2, pad 1
      (2, 2, 0, 0, 0, 0),
      (3, 2, 0, 0, 1, 1),  // TensorFlow "same"
      (3, 1, 1, 1, 1, 1),
    ])
  func maxPool(window: (Int, Int, Int, Int, Int, Int)) {
    let (k, s, pt, pl, pb, pr) = window
    let seed: UInt64 = 200
    var rng = SeededGenerator(seed: seed)
    let (n, h, w, c) = (2, 9, 8, 5)
    // Negative data: a padding value of 0 would win if padding were treated as zero.
    let x = rng.floats(n * h * w * c, in: -3 ... -0.5)
    let got = maxPool2D(
      Tensor(shape: [n, h, w, c], scalars: x), kernelH: k, kernelW: k, strideH: s, strideW: s,
      padTop: pt, padLeft: pl, padBottom: pb, padRight: pr)
    let oh = (h + pt + pb - k) / s + 1
    let ow = (w + pl + pr - k) / s + 1
    var want: [Double] = []
    for b in 0..<n {
      for y in 0..<oh {
        for xo in 0..<ow {
          for ch in 0..<c {
            var best = -Double.infinity
            for ky in 0..<k {
              for kx in 0..<k {
                let iy = y * s - pt + ky
                let ix = xo * s - pl + kx
                if iy >= 0, iy < h, ix >= 0, ix < w {
                  best = max(best, Double(x[((b * h + iy) * w + ix) * c + ch]))
                }
              }
            }
            want.append(best)
          }
        }
      }
    }
    let parameters =
      "seed=\(seed) input=[\(n),\(h),\(w),\(c)] kernel=\(k) stride=\(s) pad=(\(pt),\(pl),\(pb),\(pr))"
    #expect(got.shape == [n, oh, ow, c], "\(parameters)")
    #expect(got.scalars.map(Double.init) == want, "\(parameters)")
  }

  @Test("global average pool")
  func globalAverage() {
    let seed: UInt64 = 300
    var rng = SeededGenerator(seed: seed)
    let (n, h, w, c) = (2, 5, 7, 19)
    let x = rng.floats(n * h * w * c)
    let got = globalAveragePool(Tensor(shape: [n, h, w, c], scalars: x))
    var want: [Double] = []
    var magnitude: [Double] = []
    for b in 0..<n {
      for ch in 0..<c {
        var sum = 0.0
        var m = 0.0
        for p in 0..<(h * w) {
          sum += Double(x[(b * h * w + p) * c + ch])
          m += abs(Double(x[(b * h * w + p) * c + ch]))
        }
        want.append(sum / Double(h * w))
        magnitude.append(m / Double(h * w))
      }
    }
    #expect(got.shape == [n, 1, 1, c], "seed=\(seed)")
    let mismatch = worstMismatch(got.scalars, want, magnitude: magnitude)
    #expect(mismatch == nil, "seed=\(seed) input=[\(n),\(h),\(w),\(c)]: \(mismatch ?? "")")
  }

  @Test("add", arguments: [Activation.none, .relu, .relu6])
  func addTensors(activation: Activation) {
    let seed: UInt64 = 400
    var rng = SeededGenerator(seed: seed)
    let shape = [2, 3, 5, 7]
    let a = rng.floats(210, in: -5...5)
    let b = rng.floats(210, in: -5...5)
    let got = add(
      Tensor(shape: shape, scalars: a), Tensor(shape: shape, scalars: b), activation: activation)
    let want = zip(a, b).map { referenceActivation(Double($0) + Double($1), activation) }
    let mismatch = worstMismatch(
      got.scalars, want, magnitude: zip(a, b).map { abs(Double($0)) + abs(Double($1)) })
    #expect(got.shape == shape)
    #expect(mismatch == nil, "seed=\(seed) activation=\(activation): \(mismatch ?? "")")
  }

  @Test("activation in place", arguments: [Activation.none, .relu, .relu6])
  func activationInPlace(activation: Activation) {
    var rng = SeededGenerator(seed: 500)
    let values = rng.floats(101, in: -8...8)
    var x = Tensor(shape: [101], scalars: values)
    applyActivation(&x, activation)
    #expect(
      x.scalars == values.map { Float(referenceActivation(Double($0), activation)) },
      "seed=500 \(activation)")
  }

  @Test("batch norm inference")
  func batchNorm() {
    let seed: UInt64 = 600
    var rng = SeededGenerator(seed: seed)
    let shape = [2, 3, 4, 6]
    let x = rng.floats(144)
    let scale = rng.floats(6, in: 0.5...2)
    let shift = rng.floats(6)
    let got = batchNormInference(Tensor(shape: shape, scalars: x), scale: scale, shift: shift)
    let want = x.indices.map { Double(x[$0]) * Double(scale[$0 % 6]) + Double(shift[$0 % 6]) }
    let magnitude = x.indices.map {
      abs(Double(x[$0]) * Double(scale[$0 % 6])) + abs(Double(shift[$0 % 6]))
    }
    let mismatch = worstMismatch(got.scalars, want, magnitude: magnitude)
    #expect(mismatch == nil, "seed=\(seed): \(mismatch ?? "")")
  }
}

/// The avx2fma path's two GEMM kernels on the same packed B: the AVX-512F one (8x32 tiles, masked
/// column tails) must give the AVX2 one's floats exactly (one FMA per k in the same order, then C,
/// bias, residual, activation), and both the Double reference's within rounding. Shapes cross the
/// 256-row K blocks, the 72-row A blocks, partial row tiles and partial and odd panels, and column
/// ranges that start at a later panel (as the threaded split passes).
@Suite("Packed float GEMM kernels")
struct PackedGEMMKernelTests {
  @Test("OCTET_FLOAT_GEMM=avx2 forces the AVX2 GEMM; else AVX-512F where the CPU has it")
  func requestSelectsKernel() {
    #expect(octet_f32_gemm_isa_for_request("avx2") == OCTET_F32_GEMM_AVX2)
    let best = octet_f32_cpu_has_avx512f() != 0 ? OCTET_F32_GEMM_AVX512 : OCTET_F32_GEMM_AVX2
    #expect(octet_f32_gemm_isa_for_request(nil) == best)
    #expect(octet_f32_gemm_isa_for_request("avx512") == best)
  }

  @Test("AVX-512F GEMM equals the AVX2 GEMM bit for bit, and the reference")
  func avx512EqualsAVX2() throws {
    if octet_f32_cpu_has_avx512f() == 0 { try Test.cancel("this CPU has no AVX-512F") }
    #if arch(x86_64)
      var rng = SeededGenerator(seed: 0x512F)
      let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (7, 15, 3), (8, 16, 64), (9, 17, 257), (13, 31, 100), (16, 32, 256), (30, 33, 7),
        (75, 48, 300), (150, 70, 520), (5, 200, 64), (81, 64, 1),
      ]
      for (index, s) in shapes.enumerated() {
        let (m, n, k) = s
        let a = rng.floats(m * k)
        let b = rng.floats(k * n)
        let bias = rng.floats(n)
        let residual = rng.floats(m * n, in: -2...2)
        let count = Int(octet_f32_gemm_packed_count(k, n))
        let packed = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * 4, alignment: 64)
          .bindMemory(to: Float.self, capacity: max(1, count))
        defer { packed.deallocate() }
        b.withUnsafeBufferPointer { octet_f32_gemm_pack_b(k, n, $0.baseAddress, n, packed) }
        let nr = Int(OCTET_F32_GEMM_NR)
        let panels = (n + nr - 1) / nr
        // Every column range the threaded split can pass: all, and from a later panel to the end.
        let ranges = [(0, n)] + (panels > 1 ? [(nr, n), (0, min(n, 2 * nr))] : [])
        for (variant, act) in [OCTET_F32_ACT_NONE, OCTET_F32_ACT_RELU, OCTET_F32_ACT_RELU6].enumerated() {
          let withBias = variant != 1
          let withResidual = variant != 0
          for (j0, j1) in ranges {
            func run(_ wide: Bool) -> [Float] {
              var c = [Float](repeating: -7, count: m * n)
              a.withUnsafeBufferPointer { a in
                c.withUnsafeMutableBufferPointer { c in
                  bias.withUnsafeBufferPointer { bias in
                    residual.withUnsafeBufferPointer { residual in
                      let f = wide ? octet_f32_gemm_8x32__avx512f : octet_f32_gemm_6x16__avx2fma
                      f(
                        m, n, k, a.baseAddress, k, packed, j0, j1, c.baseAddress, n,
                        withBias ? bias.baseAddress : nil, withResidual ? residual.baseAddress : nil, n,
                        Int32(act.rawValue))
                    }
                  }
                }
              }
              return c
            }
            let narrow = run(false)
            let wide = run(true)
            let label = "shape \(index) (m \(m), n \(n), k \(k)) act \(act.rawValue) columns \(j0)..<\(j1)"
            let differing = zip(narrow, wide).filter { $0.0.bitPattern != $0.1.bitPattern }.count
            #expect(differing == 0, "\(label): \(differing) floats differ between the kernels")
            var want = [Double](repeating: -7, count: m * n)
            var magnitude = [Double](repeating: 0, count: m * n)
            for i in 0..<m {
              for j in j0..<j1 {
                var sum = 0.0
                var mag = 0.0
                for kk in 0..<k {
                  let p = Double(a[i * k + kk]) * Double(b[kk * n + j])
                  sum += p
                  mag += abs(p)
                }
                if withBias {
                  sum += Double(bias[j])
                  mag += abs(Double(bias[j]))
                }
                if withResidual {
                  sum += Double(residual[i * n + j])
                  mag += abs(Double(residual[i * n + j]))
                }
                let activation: Activation =
                  act == OCTET_F32_ACT_RELU ? .relu : act == OCTET_F32_ACT_RELU6 ? .relu6 : .none
                want[i * n + j] = referenceActivation(sum, activation)
                magnitude[i * n + j] = mag
              }
            }
            let mismatch = worstMismatch(wide, want, magnitude: magnitude)
            #expect(mismatch == nil, "\(label): \(mismatch ?? "")")
          }
        }
      }
    #endif
  }
}
