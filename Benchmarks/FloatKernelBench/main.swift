// Times the float kernels on real layer shapes: every ResNet50 convolution (M, N, K), the
// EfficientNet-Lite0 depthwise convolutions, and a whole ResNet50 forward pass at batch 1.
// Baseline in the same run: OpenBLAS cblas_sgemm on the same (M, N, K) (what the portable path
// calls). ONNX Runtime numbers come from Benchmarks/FloatKernelBench/ort_baseline.py.
//
// Usage (release build): octet-float-bench [--reps N] [--path portable|avx2fma] [--filter text] [--wall]
//   [--threads N] (the GEMMs' threads; implies --wall) [--winograd] (3x3 stride-1 convolutions as Winograd F(2x2, 3x3), as `octet classify` runs them)
// (default: 15 runs, every available path, every layer; --filter keeps the rows whose name
// contains the text, "net" selects the whole network). Times are the calling thread's CPU time
// (CLOCK_THREAD_CPUTIME_ID), which a busy shared machine inflates far less than wall time; every
// kernel runs on the calling thread at the default of one thread. --wall switches to wall time
// (needed with FloatKernels.setThreads > 1).
import COpenBLAS
import Foundation
import OctetCore
import OctetFloat

// MARK: - Options and timing

var reps = 15
var filter: String? = nil
var useWallClock = false
var winograd = false
var paths = FloatKernels.availablePaths
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
  switch argument {
  case "--reps": reps = Int(arguments.next() ?? "") ?? reps
  case "--filter": filter = arguments.next()
  case "--wall": useWallClock = true
  case "--threads":
    // The GEMMs' worker threads (FloatKernels.setThreads); wall time, since CPU time counts one thread.
    FloatKernels.setThreads(max(1, Int(arguments.next() ?? "") ?? 1))
    useWallClock = true
  case "--winograd": winograd = true
  case "--path":
    guard let name = arguments.next(), let path = FloatKernels.Path(rawValue: name),
      FloatKernels.isAvailable(path)
    else {
      print("error: --path needs one of \(FloatKernels.availablePaths.map(\.rawValue))")
      exit(2)
    }
    paths = [path]
  default:
    print(
      "usage: octet-float-bench [--reps N] [--path portable|avx2fma] [--filter substring] [--wall] [--threads N] [--winograd]"
    )
    exit(2)
  }
}

struct Timing {
  var samples: [Double]  // milliseconds, sorted
  var median: Double { samples[samples.count / 2] }
  var min: Double { samples[0] }
  /// Spread: (p90 - min) / median, as a percentage.
  var spread: Double {
    (samples[Swift.min(samples.count - 1, samples.count * 9 / 10)] - min) / median * 100
  }
}

/// Milliseconds on the selected clock (thread CPU time unless --wall).
func milliseconds(wall: Bool) -> Double {
  var ts = timespec()
  clock_gettime(wall ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ts)
  return Double(ts.tv_sec) * 1e3 + Double(ts.tv_nsec) / 1e6
}

/// Warms up twice, then times `reps` runs of `body`.
@MainActor func time(_ body: () -> Void) -> Timing {
  body()
  body()
  var samples: [Double] = []
  for _ in 0..<reps {
    let start = milliseconds(wall: useWallClock)
    body()
    samples.append(milliseconds(wall: useWallClock) - start)
  }
  return Timing(samples: samples.sorted())
}

var rng = SeededGenerator(seed: 42)
@MainActor func randomFloats(_ count: Int, scale: Float = 1) -> [Float] {
  (0..<count).map { _ in Float.random(in: -scale...scale, using: &rng) }
}

func pad(_ s: String, _ width: Int) -> String {
  s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}
func f(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }

print(
  "octet-float-bench: \(reps) timed runs after 2 warm-ups; paths \(paths.map(\.rawValue)); one thread; "
    + (useWallClock ? "wall time" : "thread CPU time"))

// MARK: - ResNet50 convolutions

struct ConvShape {
  var name: String
  var size: Int  // input height == width
  var cin: Int, cout: Int, kernel: Int, stride: Int, pad: Int
  var count: Int  // occurrences in the network
  var geometry: Conv2DGeometry {
    Conv2DGeometry(
      inChannels: cin, outChannels: cout, kernelH: kernel, kernelW: kernel, strideH: stride,
      strideW: stride, padTop: pad, padLeft: pad, padBottom: pad, padRight: pad)
  }
}

let resnet50Convs: [ConvShape] = [
  ConvShape(
    name: "conv1 7x7/2", size: 224, cin: 3, cout: 64, kernel: 7, stride: 2, pad: 3, count: 1),
  ConvShape(
    name: "l1 1x1 64>64", size: 56, cin: 64, cout: 64, kernel: 1, stride: 1, pad: 0, count: 1),
  ConvShape(
    name: "l1 1x1 256>64", size: 56, cin: 256, cout: 64, kernel: 1, stride: 1, pad: 0, count: 2),
  ConvShape(name: "l1 3x3 64", size: 56, cin: 64, cout: 64, kernel: 3, stride: 1, pad: 1, count: 3),
  ConvShape(
    name: "l1 1x1 64>256 (+ds)", size: 56, cin: 64, cout: 256, kernel: 1, stride: 1, pad: 0,
    count: 4),
  ConvShape(
    name: "l2 1x1 256>128", size: 56, cin: 256, cout: 128, kernel: 1, stride: 1, pad: 0, count: 1),
  ConvShape(
    name: "l2 3x3/2 128", size: 56, cin: 128, cout: 128, kernel: 3, stride: 2, pad: 1, count: 1),
  ConvShape(
    name: "l2 ds 1x1/2 256>512", size: 56, cin: 256, cout: 512, kernel: 1, stride: 2, pad: 0,
    count: 1),
  ConvShape(
    name: "l2 1x1 512>128", size: 28, cin: 512, cout: 128, kernel: 1, stride: 1, pad: 0, count: 3),
  ConvShape(
    name: "l2 3x3 128", size: 28, cin: 128, cout: 128, kernel: 3, stride: 1, pad: 1, count: 3),
  ConvShape(
    name: "l2 1x1 128>512", size: 28, cin: 128, cout: 512, kernel: 1, stride: 1, pad: 0, count: 4),
  ConvShape(
    name: "l3 1x1 512>256", size: 28, cin: 512, cout: 256, kernel: 1, stride: 1, pad: 0, count: 1),
  ConvShape(
    name: "l3 3x3/2 256", size: 28, cin: 256, cout: 256, kernel: 3, stride: 2, pad: 1, count: 1),
  ConvShape(
    name: "l3 ds 1x1/2 512>1024", size: 28, cin: 512, cout: 1024, kernel: 1, stride: 2, pad: 0,
    count: 1),
  ConvShape(
    name: "l3 1x1 1024>256", size: 14, cin: 1024, cout: 256, kernel: 1, stride: 1, pad: 0, count: 5),
  ConvShape(
    name: "l3 3x3 256", size: 14, cin: 256, cout: 256, kernel: 3, stride: 1, pad: 1, count: 5),
  ConvShape(
    name: "l3 1x1 256>1024", size: 14, cin: 256, cout: 1024, kernel: 1, stride: 1, pad: 0, count: 6),
  ConvShape(
    name: "l4 1x1 1024>512", size: 14, cin: 1024, cout: 512, kernel: 1, stride: 1, pad: 0, count: 1),
  ConvShape(
    name: "l4 3x3/2 512", size: 14, cin: 512, cout: 512, kernel: 3, stride: 2, pad: 1, count: 1),
  ConvShape(
    name: "l4 ds 1x1/2 1024>2048", size: 14, cin: 1024, cout: 2048, kernel: 1, stride: 2, pad: 0,
    count: 1),
  ConvShape(
    name: "l4 1x1 2048>512", size: 7, cin: 2048, cout: 512, kernel: 1, stride: 1, pad: 0, count: 2),
  ConvShape(
    name: "l4 3x3 512", size: 7, cin: 512, cout: 512, kernel: 3, stride: 1, pad: 1, count: 2),
  ConvShape(
    name: "l4 1x1 512>2048", size: 7, cin: 512, cout: 2048, kernel: 1, stride: 1, pad: 0, count: 3),
]

print("\nResNet50 convolutions, batch 1, ReLU fused (ms per call; GFLOPS = 2*M*N*K / time)")
let pathColumns: String = paths.map { pad("\($0) med/min ms (spread)", 30) + pad("GF/s", 7) }
  .joined()
var header = pad("layer", 24) + pad("M", 7) + pad("N", 6) + pad("K", 6) + pad("x", 3)
print(header + pathColumns + pad("sgemm ms", 10) + "GF/s")
var totals = [Double](repeating: 0, count: paths.count)
var minTotals = [Double](repeating: 0, count: paths.count)
var sgemmTotal = 0.0
var totalMACs = 0
@MainActor func selected(_ name: String) -> Bool { filter.map { name.contains($0) } ?? true }

for shape in resnet50Convs where selected(shape.name) {
  let g = shape.geometry
  let (oh, ow) = g.outputSize(inputHeight: shape.size, inputWidth: shape.size)
  let (m, n, k) = (oh * ow, shape.cout, shape.cin * shape.kernel * shape.kernel)
  let flops = 2.0 * Double(m * n * k)
  totalMACs += m * n * k * shape.count
  let conv = PackedConv2D(
    weightOIHW: randomFloats(n * k, scale: 0.1), bias: randomFloats(n), geometry: g,
    activation: .relu, winograd: winograd)
  let input = Tensor(
    shape: [1, shape.size, shape.size, shape.cin],
    scalars: randomFloats(shape.size * shape.size * shape.cin))
  var line = pad(shape.name, 24) + pad("\(m)", 7) + pad("\(n)", 6)
  line += pad("\(k)", 6) + pad("\(shape.count)", 3)
  for (index, path) in paths.enumerated() {
    let t = time { _ = conv(input, residual: nil, kernelPath: path) }
    totals[index] += t.median * Double(shape.count)
    minTotals[index] += t.min * Double(shape.count)
    line += pad("\(f(t.median, 3)) / \(f(t.min, 3)) (\(f(t.spread, 0))%)", 30)
    line += pad(f(flops / t.median / 1e6, 1), 7)
  }
  // Baseline: the bare OpenBLAS GEMM on the same (M, N, K), no im2col or epilogue.
  let a = randomFloats(m * k)
  let b = randomFloats(k * n)
  var c = [Float](repeating: 0, count: m * n)
  let t = time {
    cblas_sgemm(
      CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b,
      Int32(n), 0, &c, Int32(n))
  }
  sgemmTotal += t.median * Double(shape.count)
  line += pad(f(t.median, 3), 10) + f(flops / t.median / 1e6, 1)
  print(line)
}
let gflop = 2.0 * Double(totalMACs) / 1e9
for (index, path) in paths.enumerated() {
  print(
    "sum of conv medians, \(path): \(f(totals[index], 1)) ms (\(f(gflop / totals[index] * 1e3, 1)) GFLOPS over \(f(gflop, 2)) GFLOP); sum of minima \(f(minTotals[index], 1)) ms"
  )
}
print("sum of bare sgemm medians (OpenBLAS): \(f(sgemmTotal, 1)) ms")

// MARK: - EfficientNet-Lite0 depthwise convolutions

struct DepthwiseShape {
  var size: Int, channels: Int, kernel: Int, stride: Int, count: Int
  var name: String { "dw \(kernel)x\(kernel)/\(stride) \(size)x\(size)x\(channels)" }
  /// TensorFlow "same" padding: the extra row/column goes bottom/right.
  var geometry: Conv2DGeometry {
    let out = (size + stride - 1) / stride
    let total = max((out - 1) * stride + kernel - size, 0)
    return Conv2DGeometry(
      inChannels: channels, outChannels: channels, kernelH: kernel, kernelW: kernel,
      strideH: stride, strideW: stride, padTop: total / 2, padLeft: total / 2,
      padBottom: total - total / 2, padRight: total - total / 2, groups: channels)
  }
}

let liteDepthwise: [DepthwiseShape] = [
  DepthwiseShape(size: 112, channels: 32, kernel: 3, stride: 1, count: 1),
  DepthwiseShape(size: 112, channels: 96, kernel: 3, stride: 2, count: 1),
  DepthwiseShape(size: 56, channels: 144, kernel: 3, stride: 1, count: 1),
  DepthwiseShape(size: 56, channels: 144, kernel: 5, stride: 2, count: 1),
  DepthwiseShape(size: 28, channels: 240, kernel: 5, stride: 1, count: 1),
  DepthwiseShape(size: 28, channels: 240, kernel: 3, stride: 2, count: 1),
  DepthwiseShape(size: 14, channels: 480, kernel: 3, stride: 1, count: 2),
  DepthwiseShape(size: 14, channels: 480, kernel: 5, stride: 1, count: 1),
  DepthwiseShape(size: 14, channels: 672, kernel: 5, stride: 1, count: 2),
  DepthwiseShape(size: 14, channels: 672, kernel: 5, stride: 2, count: 1),
  DepthwiseShape(size: 7, channels: 1152, kernel: 5, stride: 1, count: 3),
  DepthwiseShape(size: 7, channels: 1152, kernel: 3, stride: 1, count: 1),
]

print("\nEfficientNet-Lite0 depthwise convolutions, batch 1, ReLU6 fused (ms per call)")
header = pad("layer", 24) + pad("out", 9) + pad("x", 3)
print(header + pathColumns)
var depthwiseTotals = [Double](repeating: 0, count: paths.count)
var depthwiseMinTotals = [Double](repeating: 0, count: paths.count)
for shape in liteDepthwise where selected(shape.name) {
  let g = shape.geometry
  let (oh, ow) = g.outputSize(inputHeight: shape.size, inputWidth: shape.size)
  let flops = 2.0 * Double(oh * ow * shape.channels * shape.kernel * shape.kernel)
  let conv = PackedConv2D(
    weightOIHW: randomFloats(shape.channels * shape.kernel * shape.kernel),
    bias: randomFloats(shape.channels),
    geometry: g, activation: .relu6)
  let input = Tensor(
    shape: [1, shape.size, shape.size, shape.channels],
    scalars: randomFloats(shape.size * shape.size * shape.channels))
  var line = pad(shape.name, 24) + pad("\(oh)x\(ow)", 9) + pad("\(shape.count)", 3)
  for (index, path) in paths.enumerated() {
    let t = time { _ = conv(input, residual: nil, kernelPath: path) }
    depthwiseTotals[index] += t.median * Double(shape.count)
    depthwiseMinTotals[index] += t.min * Double(shape.count)
    line += pad("\(f(t.median, 3)) / \(f(t.min, 3)) (\(f(t.spread, 0))%)", 30)
    line += pad(f(flops / t.median / 1e6, 1), 7)
  }
  print(line)
}
for (index, path) in paths.enumerated() {
  print(
    "sum of depthwise medians, \(path): \(f(depthwiseTotals[index], 2)) ms; sum of minima \(f(depthwiseMinTotals[index], 2)) ms"
  )
}

// MARK: - Whole ResNet50, batch 1

/// torchvision ResNet50 (v1.5: stride on the 3x3) with BN folded away, random weights.
struct ResNet50 {
  struct Block {
    var conv1, conv2, conv3: PackedConv2D
    var downsample: PackedConv2D?
  }
  var stem: PackedConv2D
  var blocks: [Block] = []
  var fc: PackedLinear

  @MainActor init() {
    func conv(_ cin: Int, _ cout: Int, _ k: Int, _ s: Int, _ activation: Activation) -> PackedConv2D {
      let p = k / 2
      let g = Conv2DGeometry(
        inChannels: cin, outChannels: cout, kernelH: k, kernelW: k, strideH: s, strideW: s,
        padTop: p, padLeft: p, padBottom: p, padRight: p)
      let scale = (2 / Float(cin * k * k)).squareRoot()
      return PackedConv2D(
        weightOIHW: randomFloats(cout * cin * k * k, scale: scale),
        bias: randomFloats(cout, scale: 0.01),
        geometry: g, activation: activation, winograd: winograd)
    }
    stem = conv(3, 64, 7, 2, .relu)
    var cin = 64
    for (width, count, stride) in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)] {
      for i in 0..<count {
        let s = i == 0 ? stride : 1
        blocks.append(
          Block(
            conv1: conv(cin, width, 1, 1, .relu), conv2: conv(width, width, 3, s, .relu),
            conv3: conv(width, width * 4, 1, 1, .relu),  // ReLU after the fused residual add
            downsample: i == 0 ? conv(cin, width * 4, 1, s, .none) : nil))
        cin = width * 4
      }
    }
    fc = PackedLinear(
      weight: randomFloats(1000 * 2048, scale: 0.02), bias: randomFloats(1000), inFeatures: 2048,
      outFeatures: 1000)
  }

  /// Runs the network; if `stageTimes` is given, adds each stage's milliseconds to it
  /// (stem + max pool, layer1...layer4, head).
  func callAsFunction(
    _ image: Tensor, path: FloatKernels.Path, stageTimes: UnsafeMutablePointer<Double>? = nil,
    wall: Bool = false
  ) -> Tensor {
    var clock = milliseconds(wall: wall)
    func lap(_ stage: Int) {
      guard let stageTimes else { return }
      let now = milliseconds(wall: wall)
      stageTimes[stage] += now - clock
      clock = now
    }
    var x = stem(image, residual: nil, kernelPath: path)
    x = maxPool2D(
      x, kernelH: 3, kernelW: 3, strideH: 2, strideW: 2, padTop: 1, padLeft: 1, padBottom: 1,
      padRight: 1)
    lap(0)
    for (index, block) in blocks.enumerated() {
      let shortcut = block.downsample.map { $0(x, residual: nil, kernelPath: path) } ?? x
      let y = block.conv2(
        block.conv1(x, residual: nil, kernelPath: path), residual: nil, kernelPath: path)
      x = block.conv3(y, residual: shortcut, kernelPath: path)
      if [2, 6, 12, 15].contains(index) { lap([2: 1, 6: 2, 12: 3, 15: 4][index]!) }
    }
    let logits = fc(globalAveragePool(x), kernelPath: path)
    lap(5)
    return logits
  }
}

print("\nWhole ResNet50 forward, batch 1, one thread (stem, max pool, 16 bottlenecks, GAP, FC)")
print("(paths interleaved run by run, so they see the same machine load)")
if selected("net") {
  let net = ResNet50()
  let image = Tensor(shape: [1, 224, 224, 3], scalars: randomFloats(224 * 224 * 3))
  let stageNames = ["stem+pool", "layer1", "layer2", "layer3", "layer4", "gap+fc"]
  var samples = [[Double]](repeating: [], count: paths.count)
  var stages = [[Double]](
    repeating: [Double](repeating: 0, count: stageNames.count), count: paths.count)
  for path in paths { _ = net(image, path: path) }  // warm-up
  for _ in 0..<reps {
    for (index, path) in paths.enumerated() {
      let start = milliseconds(wall: useWallClock)
      stages[index].withUnsafeMutableBufferPointer {
        _ = net(image, path: path, stageTimes: $0.baseAddress!, wall: useWallClock)
      }
      samples[index].append(milliseconds(wall: useWallClock) - start)
    }
  }
  for (index, path) in paths.enumerated() {
    let t = Timing(samples: samples[index].sorted())
    print(
      "\(pad(path.rawValue, 10)) median \(f(t.median, 1)) ms  min \(f(t.min, 1)) ms  spread \(f(t.spread, 0))%"
    )
    let perStage = zip(stageNames, stages[index]).map { "\($0) \(f($1 / Double(reps), 1))" }
    print("  mean per stage: " + perStage.joined(separator: ", ") + " ms")
  }
}
