import Foundation
import OctetModels
import OctetTestSupport
import Testing

/// `octet quantize --a16-layers` (docs/quantization.md §17): a bad layer name is one line naming it
/// with no output file; good names give a version-3 file whose report lists the 16-bit layers.
@Suite struct A16CLITests {
  @Test func badA16LayerIsNamedAndNothingIsWritten() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("m.safetensors")
    for (name, fragment) in [
      ("_blocks.99._bn2", "is not a layer of this model"), ("_blocks.2.add", "only convolutions"),
    ] {
      let result = try OctetProcess.run([
        "quantize", files.float.path, "--ranges", files.ranges.path, "--a16-layers", name, "-o", out.path,
      ])
      expectCleanFailure(result, mentions: ["'\(name)'", fragment], noFile: out)
    }
    let w16 = try OctetProcess.run([
      "quantize", files.float.path, "--ranges", files.ranges.path, "--w16-layers", "_fc", "-o", out.path,
    ])
    expectCleanFailure(w16, mentions: ["'_fc'", "only convolutions can have 16-bit weights"], noFile: out)
    let bits = try OctetProcess.run([
      "quantize", files.float.path, "--ranges", files.ranges.path, "--a16-layers", "_blocks.9._bn2",
      "--a16-weight-bits", "12", "-o", out.path,
    ])
    expectCleanFailure(bits, mentions: ["--a16-weight-bits must be 8 or 16"], noFile: out)
  }

  @Test func a16LayersAreReportedAndWrittenAsVersion3() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("m.safetensors")
    let json = dir.appendingPathComponent("q.json")
    let result = try OctetProcess.run([
      "quantize", files.float.path, "--ranges", files.ranges.path, "--a16-layers", "_blocks.9._bn2,_bn1.relu6",
      "--a16-weight-bits", "16", "--json", json.path, "-o", out.path,
    ])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("16-bit layers: _blocks.9._bn2 (a16w16), _bn1.relu6 (a16w16)"), "\(result.stdout)")
    let report = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [String: Any]
    let layers = report?["a16_layers"] as? [[String: String]]
    #expect(layers?.map { $0["layer"] ?? "" } == ["_blocks.9._bn2", "_bn1.relu6"])
    let model = try QuantizedModelFile.read(contentsOf: out)
    #expect(model.node(named: "_blocks.9._bn2")?.precision == "a16w16")
    #expect(try SafeTensors.read(contentsOf: out).1["octet.format_version"] == "3")
  }

  /// `--w16-layers` (§17.2): 16-bit weights on the 8-bit input, the stem included.
  @Test func w16LayersAreReportedAsA8W16() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("m.safetensors")
    let result = try OctetProcess.run([
      "quantize", files.float.path, "--ranges", files.ranges.path, "--w16-layers", "_bn0.relu6,_blocks.15._bn2",
      "-o", out.path,
    ])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("16-bit layers: _bn0.relu6 (a8w16), _blocks.15._bn2 (a8w16)"), "\(result.stdout)")
    #expect(result.stdout.contains("16-bit weights of 2 layer(s)"), "\(result.stdout)")
    let model = try QuantizedModelFile.read(contentsOf: out)
    #expect(model.node(named: "_blocks.15._bn2")?.inputBits == nil)
    #expect(model.node(named: "_blocks.15._bn2")?.weights16.count == 320 * 1152)
  }
}
