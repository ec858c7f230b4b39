import Foundation
import OctetCore
import OctetModels
import OctetTestSupport
import Testing

// Bad ONNX files (Scripts/make_onnx_fixtures.py writes them): each is one clear error naming the
// node, tensor or input, never a crash, and mutated bytes of a good model never crash or hang.

@Suite struct ONNXImportErrorTests {
  static let cases: [(fixture: String, words: [String])] = [
    ("unsupported_tanh", ["node 'relu1' (Tanh, opset 17) is not supported yet"]),
    ("opset12", ["opset 12", "13…21"]),
    ("external_data", ["tensor 'c1.w'", "external file"]),
    ("cycle", ["cycle"]),
    ("missing_input", ["node 'pad' (Pad) reads 'nowhere'"]),
    ("int64_weight", ["node 'conv1' (Conv)", "weight 'c1.w' must be a float constant"]),
    ("float16_input", ["input 'image'", "FLOAT16", "not float"]),
    ("huge_dims", ["tensor 'c1.w'", "dimension 1099511627776"]),
    ("short_raw_data", ["tensor 'c1.w'", "bytes of raw data"]),
    ("clip_0_7", ["node 'relu6' (Clip, opset 17) is not supported yet", "max 7.0"]),
    ("not_onnx", ["is not an ONNX model"]),
    ("mul_by_constant", ["node 'silu' (Mul, opset 17) is not supported yet", "Mul by the constant 'sw.b'"]),
    ("concat_axis2", ["node 'concat' (Concat, opset 17) is not supported yet", "axis 2"]),
    (
      "mul_broadcast_channels",
      ["node 'se_scale' (Mul, opset 17) is not supported yet", "[N, 4, 1, 1] by [N, 8, 8, 8] (broadcast)"]
    ),
    // Found by fuzz-onnx: an AveragePool without kernel_shape indexed an empty kernel.
    ("fuzz_pool_without_kernel", ["(AveragePool): kernel_shape [] is not two numbers"]),
  ]

  @Test(arguments: cases.map(\.fixture))
  func isRefusedInOneLine(fixture: String) throws {
    let words = Self.cases.first { $0.fixture == fixture }!.words
    let url = TestData.onnxFixtures.appendingPathComponent(fixture + ".onnx")
    do {
      _ = try ONNXImporter.load(contentsOf: url)
      Issue.record("\(fixture) was imported")
    } catch {
      let message = "\(error)"
      #expect(message.hasPrefix("'\(url.path)': "), "names the file: \(message)")
      #expect(!message.contains("\n"), "one line: \(message)")
      for w in words { #expect(message.contains(w), "\(fixture): '\(w)' not in: \(message)") }
    }
  }

  @Test func fixedInputSizeMustMatchTheCrop() throws {
    let url = TestData.onnxFixtures.appendingPathComponent("cnn_opset17.onnx")
    #expect(throws: (any Error).self) { _ = try ONNXImporter.load(contentsOf: url, options: .init(crop: 224)) }
    do { _ = try ONNXImporter.load(contentsOf: url, options: .init(crop: 224)) } catch {
      #expect("\(error)".contains("is 16x16 but --crop is 224; give --crop 16"), "\(error)")
    }
    // Without --crop the model's size is the crop, and the resize keeps torchvision's 256/224.
    let model = try ONNXImporter.load(contentsOf: url)
    #expect(model.info.preprocessing.cropSize == 16 && model.info.preprocessing.resizeShorter == 18)
    #expect(model.info.preprocessing.mean == Preprocessing.imagenet.mean)
  }

  @Test func recognisesONNXByContent() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("octet-onnx-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let copy = dir.appendingPathComponent("model.bin")
    try FileManager.default.copyItem(at: TestData.onnxFixtures.appendingPathComponent("matmul_opset13.onnx"), to: copy)
    #expect(ONNXImporter.looksLikeONNX(copy))
    #expect(
      !ONNXImporter.looksLikeONNX(
        TestData.root.appendingPathComponent("Tests/OctetModelsTests/Fixtures/tiny.safetensors")))
    #expect(
      !ONNXImporter.looksLikeONNX(TestData.root.appendingPathComponent("Tests/OctetModelsTests/Fixtures/tiny_zip.pth")))
    // A safetensors header length of 0x0308 starts like an ONNX file (0x08, then 3); its 9th byte
    // opens the JSON header, which tells them apart.
    let lookalike = dir.appendingPathComponent("lookalike")
    try Data([0x08, 0x03, 0, 0, 0, 0, 0, 0, UInt8(ascii: "{")]).write(to: lookalike)
    #expect(!ONNXImporter.looksLikeONNX(lookalike))
  }

  /// Seeded byte mutations and truncations of a good model: every outcome is a model or an
  /// ONNXError (a crash or hang fails the run). A failure prints the seed and the mutation.
  @Test func mutatedBytesNeverCrash() throws {
    let good = try Data(contentsOf: TestData.onnxFixtures.appendingPathComponent("cnn_opset17.onnx"))
    var rng = SeededGenerator(seed: 15)
    var refused = 0
    for round in 0..<400 {
      var bytes = [UInt8](good)
      if round % 4 == 0 {
        bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng)))
      } else {
        for _ in 0..<Int.random(in: 1...8, using: &rng) {
          bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
        }
      }
      do { _ = try ONNXImporter.importModel(Data(bytes)) } catch { refused += 1 }
    }
    #expect(refused > 100, "most mutations should be refused (seed 15): \(refused) of 400")
  }
}
