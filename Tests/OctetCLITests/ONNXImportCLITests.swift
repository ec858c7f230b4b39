import Foundation
import OctetCore
import OctetModels
import OctetTestSupport
import Testing

// `octet import model.onnx`: a good ONNX fixture imports with the preprocessing flags stored in the
// model; an unsupported operator or a bad file is one line naming the node, and nothing is written.

@Suite struct ONNXImportCLITests {
  @Test func importsWithPreprocessingFlags() throws {
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("m.safetensors")
    let result = try OctetProcess.run([
      "import", TestData.onnxFixtures.appendingPathComponent("cnn_opset17.onnx").path, "-o", out.path, "--resize", "18",
      "--crop", "16", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.5,0.5",
    ])
    #expect(result.status == 0, "\(result.stderr)")
    let model = try ModelFile.read(contentsOf: out)
    #expect(
      model.info.preprocessing
        == Preprocessing(resizeShorter: 18, cropSize: 16, mean: [0.5, 0.5, 0.5], std: [0.25, 0.5, 0.5]))
    #expect(model.info.architecture == "onnx:cnn_opset17")
  }

  @Test func unsupportedOperatorWritesNothing() throws {
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("m.safetensors")
    let fixture = TestData.onnxFixtures.appendingPathComponent("unsupported_hardswish.onnx").path
    let result = try OctetProcess.run(["import", fixture, "-o", out.path, "--crop", "16"])
    expectCleanFailure(
      result, mentions: [fixture, "node 'relu1' (HardSwish, opset 17) is not supported yet"], noFile: out)
    #expect(
      result.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1,
      "\(result.stderr)")
  }

  @Test func preprocessingFlagsAreForONNXOnly() throws {
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("m.safetensors")
    let result = try OctetProcess.run([
      "import", Paths.fixtures.appendingPathComponent("tiny_zip.pth").path, "-o", out.path, "--mean", "0.5,0.5,0.5",
    ])
    expectCleanFailure(result, mentions: ["--mean", "ONNX models only"], noFile: out)
    let bad = try OctetProcess.run([
      "import", TestData.onnxFixtures.appendingPathComponent("cnn_opset17.onnx").path, "-o", out.path, "--std", "0,1,1",
    ])
    expectCleanFailure(bad, mentions: ["--std '0,1,1'"], noFile: out)
  }
}
