import Foundation
import Octet
import OctetModels
import OctetQuantizer
import OctetTestSupport
import Testing

@testable import OctetInt8

extension RealModelCase {
  /// A torchvision-layout fixture (Tests/OctetModelsTests/Fixtures/torchvision) at its 32x32 size,
  /// quantized with min/max ranges of its two golden inputs; the first input is the one checked.
  init(torchvisionFixture name: String, weightBits: WeightBits) throws {
    let model = try TorchvisionFixtures.model(name)
    let golden = try TorchvisionFixtures.golden(name)
    let size = golden.inputSize
    let inputs = golden.inputsNHWC.map { Tensor(shape: [1, size, size, 3], scalars: $0) }
    let ranges = try minMaxRanges(of: model, over: inputs)
    let quantized = try Quantizer.quantize(model: model, options: QuantizationOptions(weightBits: weightBits)) {
      ranges[$0]
    }.model
    let reference = try Int8ReferenceExecutor(model: quantized)
    var expected: [String: QuantizedTensor] = [:]
    let logits = reference.run(inputs[0]) { name, t in expected[name] = t }
    self.checkpoint = name
    self.quantized = quantized
    self.input = inputs[0]
    self.expected = expected
    self.logits = logits
    self.weightBits = weightBits
  }
}

enum TorchvisionCases {
  static let names = ["tiny_resnet_basic", "tiny_resnext", "tiny_mobilenet_v2"]
  static let cases: [String: Result<RealModelCase, any Error>] = Dictionary(
    uniqueKeysWithValues: names.map { name in
      (name, Result { try RealModelCase(torchvisionFixture: name, weightBits: .eight) })
    })
  static func get(_ name: String) throws -> RealModelCase { try cases[name]!.get() }
}

/// torchvision's BasicBlock ResNet, ResNeXt (grouped 3x3s, a GEMM per group on the fast backends)
/// and MobileNetV2 (depthwise, ReLU6, linear bottlenecks), quantized: every backend path against
/// the reference, bit for bit, on every node, fused and unfused. Paths this CPU lacks are skipped.
@Suite struct TorchvisionBitExactTests {
  @Test(arguments: TorchvisionCases.names, portableRealPaths)
  func portable(_ name: String, _ path: TiePath) throws { try TorchvisionCases.get(name).check(path) }

  @Test(
    .enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"), arguments: TorchvisionCases.names, avx2RealPaths
  )
  func avx2(_ name: String, _ path: TiePath) throws { try TorchvisionCases.get(name).check(path) }

  @Test(
    .enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"), arguments: TorchvisionCases.names)
  func avx512vnni(_ name: String) throws { try TorchvisionCases.get(name).check(TiePath(backend: .avx512vnni)) }

  @Test(
    .enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"), arguments: TorchvisionCases.names)
  func amx(_ name: String) throws { try TorchvisionCases.get(name).check(TiePath(backend: .amx)) }

  /// ResNeXt's grouped 3x3s run on the GEMM-per-group path, not on the reference loop.
  @Test func resnextGroupedLayersRunOnTheFastPath() throws {
    let c = try TorchvisionCases.get("tiny_resnext")
    let fast = try Int8FastExecutor(model: c.quantized, backend: .scalar, threads: 1)
    let grouped = fast.layers.filter { $0.name.hasSuffix("relu2") }
    #expect(grouped.count == 4)
    #expect(grouped.allSatisfy { $0.kind == "grouped_conv" }, "\(grouped.map(\.kind))")
    #expect(!fast.layers.contains { $0.kind == "grouped_conv_reference" })
  }
}
