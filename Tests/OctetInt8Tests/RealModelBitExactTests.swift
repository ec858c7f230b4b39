import Foundation
import Octet
@testable import OctetInt8
import OctetQuantizer
import OctetTestSupport
import Testing

/// Quantizes a real checkpoint (min/max ranges of 2 validation images at full size) and holds every
/// backend this CPU has to the reference, bit for bit, on every node output of the real network.
/// The network runs at `size` (a centre crop of a real preprocessed image): every layer keeps its
/// K and N, only M shrinks, which keeps the scalar reference affordable in debug builds.
/// `OCTET_FULL_SIZE=1` runs at the model's own size instead.
func realModelBitExact(_ checkpoint: String, size: Int, weightBits: WeightBits = .eight) throws {
  let model = try ModelLoader.load(contentsOf: try #require(TestData.model(checkpoint)))
  let inputs = try validationInputs(for: model, count: 3)
  let ranges = try minMaxRanges(of: model, over: Array(inputs.prefix(2)))
  var quantized = try Quantizer.quantize(model: model, weightBits: weightBits) { ranges[$0] }.model
  let limit = Int8(weightBits.maxMagnitude)
  #expect(quantized.nodes.allSatisfy { $0.weights.allSatisfy { -limit <= $0 && $0 <= limit } })
  if weightBits == .seven, Int8Backend.avx2.isSupported {
    // 7-bit weights: every GEMM of the model runs on a vpmaddubsw kernel (quads, or pairs).
    let plan = try Int8FastExecutor(model: quantized, backend: .avx2, threads: 1)
    let kernels = Set(plan.layers.map(\.kernel).filter { !$0.isEmpty })
    #expect(kernels.isSubset(of: [GemmKernel.avx2Quads.rawValue, GemmKernel.avx2Pairs.rawValue]), "\(kernels)")
  }
  let full = model.info.inputSize
  let s = ProcessInfo.processInfo.environment["OCTET_FULL_SIZE"] == "1" ? full : size
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
  let input = Tensor(shape: [1, s, s, 3], scalars: crop)
  let reference = try Int8ReferenceExecutor(model: quantized)
  var expected: [String: QuantizedTensor] = [:]
  let logits = reference.run(input) { name, t in expected[name] = t }
  for backend in [Int8Backend.scalar, .avx2, .avx512vnni, .amx] where backend.isSupported {
    let unfused = try Int8FastExecutor(model: quantized, backend: backend, threads: 2, fuseResidualAdds: false)
    var differing: [String] = []
    let got = unfused.run(input) { name, t in if expected[name] != t { differing.append(name) } }
    #expect(differing.isEmpty, "\(checkpoint) on \(backend): nodes differ: \(differing)")
    #expect(got == logits, "\(checkpoint) on \(backend): logits differ (unfused)")
    let fused = try Int8FastExecutor(model: quantized, backend: backend, threads: 2)
    #expect(fused.run(input, observe: nil) == logits, "\(checkpoint) on \(backend): logits differ (fused)")
  }
  // The AVX2 kernels the cost model did not choose, forced on the whole network.
  if Int8Backend.avx2.isSupported {
    for kernel in [GemmKernel.avx2Int16, .avx2Pairs, .avx2Quads] {
      let forced = try Int8FastExecutor(
        model: quantized, backend: .avx2, threads: 2, fuseResidualAdds: true, emulatedISA: false, avx2Kernel: kernel)
      #expect(forced.run(input, observe: nil) == logits, "\(checkpoint) on avx2 \(kernel.rawValue): logits differ")
    }
  }
}

@Suite struct RealModelBitExactTests {
  @Test(.enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)))
  func efficientNetLite0() throws {
    try realModelBitExact("efficientnet-lite0-57934424.pth", size: 96)
    try realModelBitExact("efficientnet-lite0-57934424.pth", size: 96, weightBits: .seven)
  }

  /// 8-bit weights (AVX2: the vpmaddwd kernel) and 7-bit ones (the vpmaddubsw kernel).
  @Test(.enabled(if: TestData.resNet50 != nil && TestData.hasImages, Comment(rawValue: TestData.needsResNet50AndImages)))
  func resNet50() throws {
    let checkpoint = try #require(TestData.resNet50).lastPathComponent
    try realModelBitExact(checkpoint, size: 64)
    try realModelBitExact(checkpoint, size: 64, weightBits: .seven)
  }
}
