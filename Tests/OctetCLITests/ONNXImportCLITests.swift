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
    let fixture = TestData.onnxFixtures.appendingPathComponent("unsupported_tanh.onnx").path
    let result = try OctetProcess.run(["import", fixture, "-o", out.path, "--crop", "16"])
    expectCleanFailure(
      result, mentions: [fixture, "node 'relu1' (Tanh, opset 17) is not supported yet"], noFile: out)
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

  /// ONNX fixture -> import -> quantize (minmax on the JPEG fixtures) -> classify: the int8 logits
  /// follow the float ones, and the reference and the fastest backend give the same bits.
  @Test(arguments: ["matmul_opset13", "reshape_opset21", "reducemean_opset18", "onnx_ops_opset17"])
  func quantizesAndClassifies(fixture: String) throws {
    let dir = try Paths.temporaryDirectory()
    let float = dir.appendingPathComponent("f.safetensors").path
    let int8 = dir.appendingPathComponent("q.safetensors").path
    let jpegs = imageFixtures.appendingPathComponent("jpeg")
    let images = try FileManager.default.contentsOfDirectory(atPath: jpegs.path).filter { $0.hasSuffix(".jpg") }
      .sorted().prefix(4).map { jpegs.appendingPathComponent($0).path }
    try #require(images.count == 4)
    for step in [
      ["import", TestData.onnxFixtures.appendingPathComponent(fixture + ".onnx").path, "-o", float],
      ["quantize", float, "--images", jpegs.path, "--method", "minmax", "-o", int8],
    ] {
      let r = try OctetProcess.run(step)
      try #require(r.status == 0, "\(step[0]): \(r.stderr)")
    }
    func logits(_ model: String, _ backend: String) throws -> [[Float]] {
      let json = dir.appendingPathComponent("\(backend)-\(model.hasSuffix("q.safetensors")).json").path
      let r = try OctetProcess.run(["classify", model] + images + ["--backend", backend, "--json", json])
      try #require(r.status == 0, "classify: \(r.stderr)")
      let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json)))
      let results = try #require((object as? [String: Any])?["results"] as? [[String: Any]])
      return try results.map { try #require(($0["logits"] as? [Double])?.map { Float($0) }) }
    }
    let f = try logits(float, "auto")
    let reference = try logits(int8, "reference")
    let fast = try logits(int8, "auto")
    #expect(reference == fast, "\(fixture): the fastest backend differs from the reference")
    for (a, b) in zip(f, reference) { #expect(cosine(a, b) >= 0.99, "\(fixture): int8 cosine \(cosine(a, b))") }
  }
}
