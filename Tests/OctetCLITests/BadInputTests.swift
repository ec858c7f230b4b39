import Foundation
import OctetCore
import OctetModels
import OctetTestSupport
import Testing

// One test per row of docs/errors.md's "Bad input" table: each bad input gives a non-zero exit and one line
// naming the file, tensor or layer (or, for unusual images, is decoded).

/// EfficientNet-Lite0 imported, calibrated on 2 images and quantized once, shared by the tests below.
enum Lite0Files {
  struct Files: Sendable {
    var dir: URL
    var float: URL
    var ranges: URL
    var int8: URL
  }

  static let prepared: Result<Files, Error> = Result {
    let dir = try Paths.temporaryDirectory()
    let files = Files(
      dir: dir, float: dir.appendingPathComponent("lite0.safetensors"),
      ranges: dir.appendingPathComponent("lite0-ranges.json"),
      int8: dir.appendingPathComponent("lite0-int8.safetensors"))
    for step in [
      ["import", Paths.lite0!.path, "-o", files.float.path],
      [
        "calibrate", files.float.path, "--images", TestData.calibrationImages.path, "--limit", "2", "--method",
        "minmax",
        "-o", files.ranges.path,
      ],
      ["quantize", files.float.path, "--ranges", files.ranges.path, "-o", files.int8.path],
    ] {
      let result = try OctetProcess.run(step)
      guard result.status == 0 else { throw FileError(path: step[0], reason: result.stderr) }
    }
    return files
  }

  static func get() throws -> Files { try prepared.get() }
}

/// A copy of a safetensors file with its tensors or metadata changed.
func rewriteSafeTensors(
  _ source: URL, to destination: URL, _ change: (inout TensorDictionary, inout [String: String]) -> Void
) throws {
  var (tensors, metadata) = try SafeTensors.read(contentsOf: source)
  change(&tensors, &metadata)
  try SafeTensors.write(tensors, metadata: metadata, to: destination)
}

let imageFixtures = TestData.root.appendingPathComponent("Tests/OctetImagesTests/Fixtures")

@Suite struct BadInputWithoutModelTests {
  let tinyModel = Paths.fixtures.appendingPathComponent("tiny_zip.pth").path

  @Test func emptyImageFolder() throws {
    let dir = try Paths.temporaryDirectory()
    let eval = try OctetProcess.run(["eval", tinyModel, "--images", dir.path])
    expectCleanFailure(eval, mentions: [dir.appendingPathComponent("labels.tsv").path, "needs a labels.tsv"])
    let calibrate = try OctetProcess.run(
      ["calibrate", tinyModel, "--images", dir.path, "-o", dir.appendingPathComponent("r.json").path])
    expectCleanFailure(calibrate, mentions: [dir.path, "no images"], noFile: dir.appendingPathComponent("r.json"))
    try Data().write(to: dir.appendingPathComponent("labels.tsv"))
    let emptyList = try OctetProcess.run(["eval", tinyModel, "--images", dir.path])
    expectCleanFailure(emptyList, mentions: ["labels.tsv", "lists no images"])
  }

  @Test func labelsNameAFileThatIsNotThere() throws {
    let dir = try Paths.temporaryDirectory()
    try Data("nothere.JPEG\t3\n".utf8).write(to: dir.appendingPathComponent("labels.tsv"))
    let result = try OctetProcess.run(["eval", tinyModel, "--images", dir.path])
    expectCleanFailure(result, mentions: ["labels.tsv:1", "'nothere.JPEG' does not exist"])
  }

  @Test func labelsHoldAClassOutside0To999() throws {
    let dir = try Paths.temporaryDirectory()
    try FileManager.default.copyItem(
      at: imageFixtures.appendingPathComponent("jpeg/baseline-420.jpg"), to: dir.appendingPathComponent("a.jpg"))
    for bad in ["1000", "-1"] {
      try Data("a.jpg\t\(bad)\n".utf8).write(to: dir.appendingPathComponent("labels.tsv"))
      let result = try OctetProcess.run(["eval", tinyModel, "--images", dir.path])
      expectCleanFailure(result, mentions: ["labels.tsv:1", "class \(bad) is outside 0...999"])
    }
  }
}

@Suite(.enabled(if: TestData.hasLite0AndImages, Comment(rawValue: TestData.needsLite0AndImages)))
struct BadInputTests {
  @Test func wrongArchitecture() throws {
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("m.safetensors")
    let result = try OctetProcess.run(["import", Paths.lite0!.path, "--arch", "resnet50", "-o", out.path])
    expectCleanFailure(
      result, mentions: [Paths.lite0!.lastPathComponent, "not a ResNet50", "--arch efficientnet-lite"], noFile: out)
  }

  @Test func missingTensorIsNamed() throws {
    let dir = try Paths.temporaryDirectory()
    let tensors = try PyTorchCheckpoint.load(contentsOf: Paths.lite0!)
    for name in ["_blocks.3._depthwise_conv.weight", "_blocks.9._bn1.running_var"] {
      var cut = tensors
      cut[name] = nil
      let checkpoint = dir.appendingPathComponent("cut.safetensors")
      try SafeTensors.write(cut, to: checkpoint)
      let out = dir.appendingPathComponent("m.safetensors")
      let result = try OctetProcess.run(["import", checkpoint.path, "-o", out.path])
      expectCleanFailure(result, mentions: ["cut.safetensors", "tensor '\(name)' is missing"], noFile: out)
    }
  }

  @Test func nonFiniteWeightIsNamedOnImportAndQuantize() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    var tensors = try PyTorchCheckpoint.load(contentsOf: Paths.lite0!)
    let name = "_blocks.5._project_conv.weight"
    var values = tensors[name]!.floats()
    values[5] = .nan
    values[7] = .infinity
    tensors[name] = HostTensor(shape: tensors[name]!.shape, float32: values)
    let checkpoint = dir.appendingPathComponent("nan.safetensors")
    try SafeTensors.write(tensors, to: checkpoint)
    let out = dir.appendingPathComponent("m.safetensors")
    let imported = try OctetProcess.run(["import", checkpoint.path, "-o", out.path])
    expectCleanFailure(imported, mentions: ["nan.safetensors", "'\(name)' holds NaN or infinite values"], noFile: out)
    let quantized = try OctetProcess.run(["quantize", checkpoint.path, "--ranges", files.ranges.path, "-o", out.path])
    expectCleanFailure(quantized, mentions: ["nan.safetensors", "'\(name)' holds NaN or infinite values"], noFile: out)
  }

  @Test(.enabled(if: TestData.resNet50 != nil, Comment(rawValue: TestData.needsResNet50AndImages)))
  func rangeTableOfAnotherModel() throws {
    let files = try Lite0Files.get()
    let out = try Paths.temporaryDirectory().appendingPathComponent("r50-int8.safetensors")
    let resnet = TestData.resNet50!
    let result = try OctetProcess.run(["quantize", resnet.path, "--ranges", files.ranges.path, "-o", out.path])
    expectCleanFailure(
      result, mentions: [files.ranges.path, "ranges of efficientnet-lite0", "is resnet50", "octet calibrate"],
      noFile: out)
  }

  @Test func newerFormatVersionSaysUpgrade() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    let image = try TestData.firstValImage().path
    for (source, kind, remedy) in [
      (files.int8, "int8 format version 99", "octet quantize"),
      (files.float, "model format version 99", "octet import"),
    ] {
      let newer = dir.appendingPathComponent("v99-\(source.lastPathComponent)")
      try rewriteSafeTensors(source, to: newer) { _, metadata in metadata["octet.format_version"] = "99" }
      let result = try OctetProcess.run(["classify", newer.path, image])
      expectCleanFailure(result, mentions: [newer.path, kind, "Upgrade Octet", remedy])
    }
  }

  @Test func flippedByteFailsTheChecksumNamingFileAndTensor() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    let image = try TestData.firstValImage().path
    for source in [files.float, files.int8] {
      var bytes = try Data(contentsOf: source)
      let (tensors, _) = try SafeTensors.read(contentsOf: source)
      // The last tensor's data ends the file; flip a bit 100 bytes before the end.
      let last = tensors.names.last!
      bytes[bytes.count - 100] ^= 0x04
      let damaged = dir.appendingPathComponent("flipped-\(source.lastPathComponent)")
      try bytes.write(to: damaged)
      let result = try OctetProcess.run(["classify", damaged.path, image])
      expectCleanFailure(result, mentions: [damaged.path, "is damaged", "tensor '\(last)'", "checksum"])
    }
  }

  @Test func unusualImagesAreDecodedOrRefusedWithAReason() throws {
    let files = try Lite0Files.get()
    // Each is checked pixel for pixel against Pillow in OctetImagesTests (decode.json); here they go
    // through the whole CLI, 1x1 included.
    let decodable = [
      "jpeg/cmyk.jpg", "jpeg/progressive-420.jpg", "jpeg/gray-progressive.jpg", "jpeg/rgb-1x1.jpg",
      "png/rgb8-adam7.png", "png/rgb8-1x1.png", "png/rgb8-1x1-adam7.png", "png/rgb16.png", "png/gray16.png",
      "png/palette8-trns.png", "png/rgba16-adam7.png",
    ].map { imageFixtures.appendingPathComponent($0).path }
    let ok = try OctetProcess.run(["classify", files.float.path] + decodable + ["--top", "1"])
    #expect(ok.status == 0, "\(ok.stderr)")
    for path in decodable { #expect(ok.stdout.contains(path)) }
    for (bad, reason) in [
      ("bad/truncated.jpg", "is truncated or corrupt"), ("bad/text.png", "is not a JPEG or PNG file"),
      ("bad/empty.png", "is empty"), ("bad/huge-header.png", "more than the limit"),
    ] {
      let result = try OctetProcess.run(["classify", files.float.path, imageFixtures.appendingPathComponent(bad).path])
      expectCleanFailure(result, mentions: [URL(fileURLWithPath: bad).lastPathComponent, reason])
    }
  }

  /// A folder with unreadable images in the middle: counted, named (JSON too) and skipped; --strict stops.
  @Test func evalSkipsAndNamesUnreadableImages() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    let labels = try String(contentsOf: Paths.valImages.appendingPathComponent("labels.tsv"), encoding: .utf8)
      .split(separator: "\n").prefix(4).map(String.init)
    for line in labels {
      let name = String(line.split(separator: "\t")[0])
      try FileManager.default.createSymbolicLink(
        at: dir.appendingPathComponent(name), withDestinationURL: Paths.valImages.appendingPathComponent(name))
    }
    let jpeg = try Data(contentsOf: Paths.valImages.appendingPathComponent(String(labels[1].split(separator: "\t")[0])))
    try jpeg.prefix(3000).write(to: dir.appendingPathComponent("cut.JPEG"))
    try Data("hello\n".utf8).write(to: dir.appendingPathComponent("text.JPEG"))
    let listed = [labels[0], labels[1], "cut.JPEG\t1", "text.JPEG\t2", labels[2], labels[3]]
    try Data((listed.joined(separator: "\n") + "\n").utf8).write(to: dir.appendingPathComponent("labels.tsv"))

    let json = dir.appendingPathComponent("eval.json")
    let result = try OctetProcess.run(["eval", files.float.path, "--images", dir.path, "--json", json.path])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.contains("skipped \(dir.appendingPathComponent("cut.JPEG").path)"))
    #expect(result.stderr.contains("'text.JPEG' is not a JPEG or PNG file"))
    #expect(result.stdout.contains("2 of 6 images could not be decoded and were skipped: cut.JPEG, text.JPEG"))
    let report = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any]
    #expect(report["count"] as? Int == 4)
    let unreadable = try #require(report["unreadable"] as? [[String: String]])
    #expect(unreadable.map { $0["image"] } == ["cut.JPEG", "text.JPEG"].map { dir.appendingPathComponent($0).path })
    #expect(unreadable[0]["reason"]?.contains("truncated or corrupt") == true)

    let strictJSON = dir.appendingPathComponent("strict.json")
    let strict = try OctetProcess.run(
      ["eval", files.float.path, "--images", dir.path, "--strict", "--threads", "1", "--json", strictJSON.path])
    expectCleanFailure(strict, mentions: ["cut.JPEG", "truncated or corrupt"], noFile: strictJSON)
  }
}
