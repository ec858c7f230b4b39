import Foundation
import OctetCore
import OctetInt8
import OctetModels
import OctetQuantizer
import Testing

@Suite struct BatchNormFoldingTests {
  /// conv(x, w') + b' equals BN(conv(x, w) + b) for a random small convolution.
  @Test func foldingEqualsBatchNormAfterTheConvolution() {
    let seed = testSeed(0xB4)
    var rng = SeededGenerator(seed: seed)
    let (o, i, k) = (4, 3, 3)
    let w = rng.floats(o * i * k * k, in: -1...1)
    let b = rng.floats(o, in: -0.5...0.5)
    let gamma = rng.floats(o, in: 0.5...1.5)
    let beta = rng.floats(o, in: -1...1)
    let mean = rng.floats(o, in: -0.3...0.3)
    let variance = rng.floats(o, in: 0.1...2)
    let eps: Float = 1e-3
    let folded = Quantizer.foldBatchNorm(
      weights: w, bias: b, gamma: gamma, beta: beta, mean: mean, variance: variance, epsilon: eps)
    for trial in 0..<10 {
      let patch = rng.floats(i * k * k, in: -2...2)  // one receptive field, OIHW order per channel
      for c in 0..<o {
        var conv = Double(b[c])
        var foldedConv = folded.bias[c]
        for j in 0..<(i * k * k) {
          conv += Double(w[c * i * k * k + j]) * Double(patch[j])
          foldedConv += folded.weights[c * i * k * k + j] * Double(patch[j])
        }
        let bn =
          (conv - Double(mean[c])) / (Double(variance[c]) + Double(eps)).squareRoot() * Double(gamma[c])
          + Double(beta[c])
        #expect(
          abs(bn - foldedConv) <= 1e-9 * max(1, abs(bn)),
          "seed \(seed) trial \(trial) channel \(c): \(foldedConv) vs \(bn)")
      }
    }
  }
}

@Suite struct QuantizedModelFileTests {
  func smallModel() throws -> QuantizedModel {
    let golden = try SmallNetGolden.load()
    return try Quantizer.quantize(model: golden.model, range: golden.range).model
  }

  func temporaryURL(_ name: String) -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("octet-q-\(UUID().uuidString)-\(name)")
  }

  @Test func writeThenReadGivesTheSameModelAndTheSameLogits() throws {
    let model = try smallModel()
    let url = temporaryURL("small.safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try QuantizedModelFile.write(model, to: url)
    let back = try QuantizedModelFile.read(contentsOf: url)
    #expect(back == model)
    let (tensors, metadata) = try SafeTensors.read(contentsOf: url)
    #expect(metadata["octet.format"] == "octet-int8")
    #expect(
      tensors["stem.relu6.weight"]?.type == .int8 && tensors["stem.relu6.weight"]?.shape == [8, 3, 3, 3])
    #expect(tensors["stem.relu6.bias"]?.type == .int32)
    let input = try SmallNetGolden.load().inputTensor
    #expect(
      try Int8ReferenceExecutor(model: back).run(input) == Int8ReferenceExecutor(model: model).run(input))
  }

  @Test func truncatedAndDamagedFilesAreClearErrors() throws {
    let model = try smallModel()
    let url = temporaryURL("small.safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try QuantizedModelFile.write(model, to: url)
    let bytes = try Data(contentsOf: url)

    let short = temporaryURL("short.safetensors")
    defer { try? FileManager.default.removeItem(at: short) }
    try bytes.prefix(bytes.count - 10).write(to: short)
    #expect { try QuantizedModelFile.read(contentsOf: short) } throws: {
      "\($0)".contains("data buffer") || "\($0)".contains("truncated")
    }

    // A tensor missing: the error names it.
    var tensors = QuantizedModelFile.tensors(for: model)
    tensors["dw.relu6.shift"] = nil
    #expect {
      try QuantizedModelFile.decode(
        tensors: tensors, metadata: try QuantizedModelFile.metadata(for: model), path: "x")
    } throws: { "\($0)".contains("dw.relu6.shift") }

    // A wrong-size bias: the error names the tensor.
    tensors = QuantizedModelFile.tensors(for: model)
    tensors["fc.bias"] = HostTensor(type: .int32, shape: [3], bytes: [UInt8](repeating: 0, count: 12))
    #expect {
      try QuantizedModelFile.decode(
        tensors: tensors, metadata: try QuantizedModelFile.metadata(for: model), path: "x")
    } throws: { "\($0)".contains("fc.bias") }

    // A float model file is not an int8 one, and the message says which is which.
    #expect {
      try QuantizedModelFile.decode(
        tensors: TensorDictionary(), metadata: ["octet.format": "octet-float"], path: "f.safetensors")
    } throws: {
      "\($0)" == "'f.safetensors' is a float model (format 'octet-float'), but an int8 model is expected here"
    }
  }
}
