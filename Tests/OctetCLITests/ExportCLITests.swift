import Foundation
import OctetCore
import OctetModels
import OctetTestSupport
import Testing

// `octet export QMODEL -o model.onnx`: an int8 model becomes a QDQ ONNX file; a float model, a missing
// file, an unwritable destination or a model QDQ cannot express is one line, a non-zero exit and no file.

@Suite struct ExportCLITests {
  /// The ONNX fixture imported and quantized (minmax on the JPEG fixtures), optionally with more flags.
  static func int8Model(in dir: URL, _ extra: [String] = []) throws -> (float: String, int8: String) {
    let float = dir.appendingPathComponent("f.safetensors").path
    let int8 = dir.appendingPathComponent("q\(extra.joined()).safetensors").path
    let jpegs = imageFixtures.appendingPathComponent("jpeg")
    for step in [
      ["import", TestData.onnxFixtures.appendingPathComponent("reshape_opset21.onnx").path, "-o", float],
      ["quantize", float, "--images", jpegs.path, "--method", "minmax", "-o", int8] + extra,
    ] {
      let r = try OctetProcess.run(step)
      try #require(r.status == 0, "\(step[0]): \(r.stderr)")
    }
    return (float, int8)
  }

  @Test func exportsAnInt8Model() throws {
    let dir = try Paths.temporaryDirectory()
    let (_, int8) = try Self.int8Model(in: dir)
    let out = dir.appendingPathComponent("m.onnx")
    let result = try OctetProcess.run(["export", int8, "-o", out.path])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("QDQ ONNX, opset 13"), "\(result.stdout)")
    // A file ONNX readers recognise, and nothing but it in the folder.
    #expect(ONNXImporter.looksLikeONNX(out))
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".tmp") }
    #expect(leftovers.isEmpty, "\(leftovers)")
  }

  @Test func badInputsWriteNothing() throws {
    let dir = try Paths.temporaryDirectory()
    let (float, int8) = try Self.int8Model(in: dir)
    let out = dir.appendingPathComponent("m.onnx")
    expectCleanFailure(
      try OctetProcess.run(["export", float, "-o", out.path]),
      mentions: [float, "is a float model", "octet quantize"], noFile: out)
    let missing = dir.appendingPathComponent("nothere.safetensors").path
    expectCleanFailure(
      try OctetProcess.run(["export", missing, "-o", out.path]), mentions: [missing, "no such file"], noFile: out)
    // A destination whose folder does not exist, and one that is a folder.
    let noFolder = dir.appendingPathComponent("no/such/folder/m.onnx")
    expectCleanFailure(
      try OctetProcess.run(["export", int8, "-o", noFolder.path]), mentions: ["-o", "does not exist"], noFile: noFolder)
    let folder = dir.appendingPathComponent("a-folder")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
    let intoFolder = try OctetProcess.run(["export", int8, "-o", folder.path])
    expectCleanFailure(intoFolder, mentions: [folder.path])
    let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
    #expect(!names.contains { $0.hasSuffix(".tmp") }, "a temporary was left behind: \(names)")
  }

  @Test func exactInputExports() throws {
    let dir = try Paths.temporaryDirectory()
    let (_, int8) = try Self.int8Model(in: dir, ["--exact-input"])
    let out = dir.appendingPathComponent("m.onnx")
    let result = try OctetProcess.run(["export", int8, "-o", out.path])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(ONNXImporter.looksLikeONNX(out))
  }

  @Test func sixteenBitLayersAreRefusedInOneLine() throws {
    let dir = try Paths.temporaryDirectory()
    let (_, int8) = try Self.int8Model(in: dir, ["--a16-layers", "squeeze"])
    let out = dir.appendingPathComponent("m.onnx")
    let result = try OctetProcess.run(["export", int8, "-o", out.path])
    expectCleanFailure(result, mentions: [int8, "is a 16-bit layer", "quantize without --a16-layers"], noFile: out)
    #expect(
      result.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1,
      "\(result.stderr)")
  }
}
