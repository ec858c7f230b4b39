import Foundation
import OctetCore
import OctetModels
import OctetTestSupport
import Testing

// Messages a person can act on (issue 12 item 4): each wrong input gets one line saying which argument
// of which command expected what, and a non-zero exit; quantize's warnings come one line per kind.

/// The first line of standard error (ArgumentParser adds the usage after a validation error).
private func firstLine(_ text: String) -> String {
  String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
}

/// A safetensors file with no tensors whose metadata says `format`: enough for the checks made in
/// `validate()`, which read the header alone.
private func fakeModel(format: String, in dir: URL, name: String) throws -> URL {
  let url = dir.appendingPathComponent(name)
  try SafeTensors.write(TensorDictionary(), metadata: ["octet.format": format, "octet.format_version": "2"], to: url)
  return url
}

/// Exit status of a `validate()` failure (ArgumentParser: EX_USAGE).
private let usageError: Int32 = 64

@Suite struct ModelKindMessageTests {
  let dir: URL
  let float: URL
  let int8: URL

  init() throws {
    dir = try Paths.temporaryDirectory()
    float = try fakeModel(format: "octet-float", in: dir, name: "f.safetensors")
    int8 = try fakeModel(format: "octet-int8", in: dir, name: "q.safetensors")
  }

  @Test func quantizeAndCalibrateSayTheirModelMustBeFloat() throws {
    let out = dir.appendingPathComponent("out.safetensors")
    let ranges = dir.appendingPathComponent("ranges.json")
    try Data("{}".utf8).write(to: ranges)
    let quantize = try OctetProcess.run(["quantize", int8.path, "--ranges", ranges.path, "-o", out.path])
    #expect(quantize.status == usageError)
    #expect(
      firstLine(quantize.stderr)
        == "Error: quantize: <model> '\(int8.path)' is an int8 model, but quantize quantizes a float model (this one is quantized already): give the float model (an `octet import` output or the checkpoint) that the int8 model was quantized from"
    )
    #expect(!FileManager.default.fileExists(atPath: out.path))

    let table = dir.appendingPathComponent("table.json")
    let calibrate = try OctetProcess.run(["calibrate", int8.path, "--images", dir.path, "-o", table.path])
    #expect(calibrate.status == usageError)
    #expect(
      firstLine(calibrate.stderr)
        == "Error: calibrate: <model> '\(int8.path)' is an int8 model, but calibrate runs the float model over the images: give the float model (an `octet import` output or the checkpoint) that the int8 model was quantized from"
    )
    #expect(!FileManager.default.fileExists(atPath: table.path))
  }

  @Test func compareWithSwappedModelsSuggestsTheOrder() throws {
    let swapped = try OctetProcess.run(["compare", int8.path, float.path, "--images", dir.path])
    #expect(swapped.status == usageError)
    #expect(
      firstLine(swapped.stderr)
        == "Error: compare: the models are swapped: <float-model> '\(int8.path)' is an int8 model and <int8-model> '\(float.path)' is a float model; the float model comes first: `octet compare \(float.path) \(int8.path) --images <images>`"
    )
    // A checkpoint in second place is "a checkpoint", still swapped.
    let checkpoint = Paths.fixtures.appendingPathComponent("tiny_zip.pth")
    let withCheckpoint = try OctetProcess.run(["compare", int8.path, checkpoint.path, "--images", dir.path])
    #expect(withCheckpoint.status == usageError)
    #expect(
      firstLine(withCheckpoint.stderr).contains("'\(checkpoint.path)' is a checkpoint; the float model comes first"))

    let twoInt8 = try OctetProcess.run(["compare", int8.path, int8.path, "--images", dir.path])
    #expect(twoInt8.status == usageError)
    #expect(
      firstLine(twoInt8.stderr)
        == "Error: compare: <float-model> '\(int8.path)' is an int8 model, but compare's first argument is the float model the int8 one was quantized from (`octet compare <float-model> <int8-model> --images <images>`)"
    )

    let twoFloat = try OctetProcess.run(["compare", float.path, float.path, "--images", dir.path])
    #expect(twoFloat.status == usageError)
    #expect(
      firstLine(twoFloat.stderr)
        == "Error: compare: <int8-model> '\(float.path)' is a float model, but compare's second argument is the int8 model (`octet compare <float-model> <int8-model> --images <images>`); make it with `octet quantize \(float.path) --ranges RANGES -o INT8_MODEL`"
    )
    // The right order passes validation and fails later, on the folder, not on the models.
    let right = try OctetProcess.run(["compare", float.path, int8.path, "--images", dir.path])
    #expect(right.status != 0)
    #expect(!right.stderr.contains("is an int8 model") && !right.stderr.contains("is a float model"), "\(right.stderr)")
  }

  @Test func importRefusesAnInt8Model() throws {
    let out = dir.appendingPathComponent("imported.safetensors")
    let result = try OctetProcess.run(["import", int8.path, "-o", out.path])
    #expect(result.status == usageError)
    #expect(
      firstLine(result.stderr)
        == "Error: import: <checkpoint> '\(int8.path)' is an int8 model, but import reads PyTorch checkpoints and safetensors state_dicts; an int8 model needs no import (classify, eval, bench and compare read it as it is)"
    )
    #expect(!FileManager.default.fileExists(atPath: out.path))
  }

  /// Commands that take either kind do not refuse an int8 model: they fail later, on the (empty) file.
  @Test func classifyEvalAndBenchTakeEitherKind() throws {
    for arguments in [
      ["classify", int8.path, dir.appendingPathComponent("none.jpg").path],
      ["eval", int8.path, "--images", dir.path],
      ["bench", int8.path, "--iterations", "1", "--warmup", "0"],
    ] {
      let result = try OctetProcess.run(arguments)
      #expect(result.status != 0)
      #expect(!result.stderr.contains("is an int8 model, but"), "\(arguments[0]): \(result.stderr)")
    }
  }
}

@Suite struct RecipeMessageTests {
  @Test func aRecipeGivenAsRangesSaysWhatToRun() throws {
    let dir = try Paths.temporaryDirectory()
    let float = try fakeModel(format: "octet-float", in: dir, name: "f.safetensors")
    let out = dir.appendingPathComponent("q.safetensors")
    let recipe = "Calibration/efficientnet-lite0.json"
    let result = try OctetProcess.run(["quantize", float.path, "--ranges", recipe, "-o", out.path], in: TestData.root)
    #expect(result.status == usageError)
    #expect(
      firstLine(result.stderr)
        == "Error: --ranges: '\(recipe)' is a calibration recipe, not a range table: run `octet calibrate MODEL --recipe \(recipe) --images DIR -o RANGES` to make one"
    )
    #expect(!FileManager.default.fileExists(atPath: out.path))
  }

  @Test func aRangeTableGivenAsRecipeSaysWhatItIs() throws {
    let dir = try Paths.temporaryDirectory()
    let float = try fakeModel(format: "octet-float", in: dir, name: "f.safetensors")
    let table = dir.appendingPathComponent("ranges.json")
    try Data(
      """
      {"format": "octet-ranges", "version": 1, "model": {"architecture": "efficientnet-lite0"}, "method": "minmax",
       "images": 1, "tensors": [{"name": "input", "min": -1.0, "max": 1.0, "observed_min": -1.0, "observed_max": 1.0}]}
      """.utf8
    ).write(to: table)
    let out = dir.appendingPathComponent("out.json")
    let result = try OctetProcess.run(
      ["calibrate", float.path, "--recipe", table.path, "--images", dir.path, "-o", out.path])
    #expect(result.status == usageError)
    #expect(
      firstLine(result.stderr)
        == "Error: --recipe: '\(table.path)' is a range table, not a calibration recipe: `octet calibrate` wrote it; give it to `octet quantize MODEL --ranges \(table.path)`"
    )
    #expect(!FileManager.default.fileExists(atPath: out.path))
  }

  @Test func withoutImagesOrARecipeFolderCalibrateSaysWhatToGive() throws {
    let dir = try Paths.temporaryDirectory()
    let float = try fakeModel(format: "octet-float", in: dir, name: "f.safetensors")
    let recipe = dir.appendingPathComponent("recipe.json")
    try Data(#"{"format": "octet-calibration-recipe", "architecture": "x", "method": "mse", "images": 5}"#.utf8)
      .write(to: recipe)
    let out = dir.appendingPathComponent("out.json")
    let noFolder = try OctetProcess.run(["calibrate", float.path, "--recipe", recipe.path, "-o", out.path])
    #expect(noFolder.status == usageError)
    #expect(
      firstLine(noFolder.stderr)
        == "Error: the recipe \(recipe.path) names no folder: give the calibration images with --images DIR")
    let nothing = try OctetProcess.run(["calibrate", float.path, "-o", out.path])
    #expect(nothing.status == usageError)
    #expect(firstLine(nothing.stderr) == "Error: give the calibration images with --images DIR")
    #expect(!FileManager.default.fileExists(atPath: out.path))
  }

  @Test func theShippedRecipesSayWhatTheyAre() throws {
    for name in ["efficientnet-lite0", "resnet50"] {
      let url = TestData.root.appendingPathComponent("Calibration/\(name).json")
      let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
      #expect(object["format"] as? String == "octet-calibration-recipe", "\(url.path)")
      #expect(object["architecture"] as? String == name)
    }
  }
}

/// EfficientNet-Lite0 end to end: the warnings of quantize, recipes followed, unreadable images and
/// calibration overlap in compare.
@Suite(.enabled(if: TestData.hasLite0AndImages, Comment(rawValue: TestData.needsLite0AndImages)))
struct Lite0MessageTests {
  /// One line per kind, with the count of every channel of that kind; --verbose and --json list each.
  @Test func quantizePrintsOneLinePerKindOfWarning() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("q.safetensors")
    let json = dir.appendingPathComponent("q.json")
    let result = try OctetProcess.run(
      ["quantize", files.float.path, "--ranges", files.ranges.path, "-o", out.path, "--json", json.path])
    #expect(result.status == 0, "\(result.stderr)")
    let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [String: Any])
    let records = try #require(report["warnings"] as? [[String: Any]])
    // The stock Lite0 has both dead channels and an all-zero channel.
    let raised = records.filter { $0["kind"] as? String == "weight_scale_raised" }
    let zero = records.filter { $0["kind"] as? String == "all_zero_weights" }
    #expect(!raised.isEmpty && !zero.isEmpty)
    #expect(records.allSatisfy { $0["layer"] is String && $0["channel"] is Int })
    let raisedLayers = Set(raised.map { $0["layer"] as! String }).count
    let lines = result.stdout.split(separator: "\n").map(String.init)
    #expect(
      lines.contains(
        "  \(raised.count) output channel(s) in \(raisedLayers) layer(s): weight scale raised so that |bias| fits in 2^30 (near-zero weights, large bias) (docs/quantization.md §5, §13); accuracy effect: negligible: the channel's weights are near 0 and its bias, which carries the output, is kept; the error added is at most K·255/2^31 of |bias| for K weights (< 0.02 % for K ≤ 1152)"
      ), "\(result.stdout)")
    let zeroLayers = Set(zero.map { $0["layer"] as! String }).count
    #expect(
      lines.contains {
        $0.hasPrefix(
          "  \(zero.count) output channel(s) in \(zeroLayers) layer(s): all weights 0 after BatchNorm folding")
      })
    // Without --verbose no per-layer line: the header, two kind lines, and the summary lines around them.
    #expect(!lines.contains { $0.contains("in output channel(s) [") }, "\(result.stdout)")
    let kinds = try #require(report["warning_kinds"] as? [[String: Any]])
    #expect(kinds.map { $0["kind"] as? String } == ["all_zero_weights", "weight_scale_raised"])
    #expect(kinds.first { $0["kind"] as? String == "weight_scale_raised" }?["count"] as? Int == raised.count)

    let verbose = try OctetProcess.run(
      ["quantize", files.float.path, "--ranges", files.ranges.path, "-o", out.path, "--verbose"])
    #expect(verbose.status == 0)
    let layerLines = verbose.stdout.split(separator: "\n").filter { $0.contains("in output channel(s) [") }
    #expect(layerLines.count == raisedLayers + zeroLayers, "\(verbose.stdout)")
  }

  /// --recipe sets the method and the image count; --method and --limit override them. The table
  /// records the images, and the int8 model carries their digests.
  @Test func calibrateFollowsARecipeAndRecordsItsImages() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    let recipe = dir.appendingPathComponent("recipe.json")
    try Data(
      """
      {"format": "octet-calibration-recipe", "architecture": "efficientnet-lite0", "method": "minmax", "images": 2,
       "folder": "\(TestData.calibrationImages.path)"}
      """.utf8
    ).write(to: recipe)
    let table = dir.appendingPathComponent("ranges.json")
    // The method, the count and the folder all come from the recipe.
    let result = try OctetProcess.run(["calibrate", files.float.path, "--recipe", recipe.path, "-o", table.path])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(
      result.stdout.contains(
        "recipe \(recipe.path): method minmax, 2 images from \(TestData.calibrationImages.path)\n"),
      "\(result.stdout)")
    let written = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: table)) as? [String: Any])
    #expect(written["method"] as? String == "minmax")
    #expect(written["images"] as? Int == 2)
    let images = try #require(written["calibration_images"] as? [[String: String]])
    #expect(images.count == 2)
    // The recorded digest is the file's SHA-256.
    let first = try #require(images.first)
    let bytes = try Data(contentsOf: TestData.calibrationImages.appendingPathComponent(first["file"]!))
    #expect(first["sha256"] == SHA256.hex(Array(bytes)))

    let overridden = try OctetProcess.run(
      [
        "calibrate", files.float.path, "--recipe", recipe.path, "--images", TestData.calibrationImages.path, "--limit",
        "1",
        "--method", "percentile:99.9", "-o", table.path,
      ])
    #expect(overridden.status == 0, "\(overridden.stderr)")
    #expect(
      overridden.stdout.contains(
        "method percentile:99.9 (--method), 1 images (--limit) from \(TestData.calibrationImages.path) (--images)"),
      "\(overridden.stdout)")

    // A recipe of another architecture is refused by name.
    let other = dir.appendingPathComponent("resnet.json")
    try Data(#"{"format": "octet-calibration-recipe", "architecture": "resnet50", "method": "mse", "images": 2}"#.utf8)
      .write(to: other)
    let out = dir.appendingPathComponent("other.json")
    let wrong = try OctetProcess.run(
      [
        "calibrate", files.float.path, "--recipe", other.path, "--images", TestData.calibrationImages.path, "-o",
        out.path,
      ])
    expectCleanFailure(wrong, mentions: ["'\(other.path)': a recipe for resnet50", "efficientnet-lite0"], noFile: out)

    // The int8 model made from Lite0Files' table carries the table's digests.
    let tableDigests = try #require(
      (try JSONSerialization.jsonObject(with: Data(contentsOf: files.ranges)) as? [String: Any])?["calibration_images"]
        as? [[String: String]]
    ).map { $0["sha256"]! }
    let (_, metadata) = try SafeTensors.read(contentsOf: files.int8)
    let carried = try JSONDecoder().decode(
      [String].self, from: Data(try #require(metadata["octet.calibration_sha256"]).utf8))
    #expect(carried == tableDigests && carried.count == 2)
  }

  /// Three evaluation images: one that was a calibration image, one good, one unreadable.
  func evaluationFolder(calibrationImage: String) throws -> URL {
    let dir = try Paths.temporaryDirectory()
    let labels = try String(contentsOf: Paths.valImages.appendingPathComponent("labels.tsv"), encoding: .utf8)
      .split(separator: "\n").prefix(1).map(String.init)
    let valName = String(labels[0].split(separator: "\t")[0])
    try FileManager.default.copyItem(
      at: Paths.valImages.appendingPathComponent(valName), to: dir.appendingPathComponent(valName))
    try FileManager.default.copyItem(
      at: TestData.calibrationImages.appendingPathComponent(calibrationImage),
      to: dir.appendingPathComponent("renamed-\(calibrationImage)"))
    try Data("not an image\n".utf8).write(to: dir.appendingPathComponent("text.JPEG"))
    let listed = ["renamed-\(calibrationImage)\t0", "text.JPEG\t1", labels[0]]
    try Data((listed.joined(separator: "\n") + "\n").utf8).write(to: dir.appendingPathComponent("labels.tsv"))
    return dir
  }

  @Test func compareSkipsUnreadableImagesAndWarnsAboutCalibrationImagesAndSmallSets() throws {
    let files = try Lite0Files.get()
    let table = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: files.ranges)) as? [String: Any])
    let calibrated = try #require((table["calibration_images"] as? [[String: String]])?.first?["file"])
    let dir = try evaluationFolder(calibrationImage: calibrated)
    let json = dir.appendingPathComponent("compare.json")
    let result = try OctetProcess.run(
      ["compare", files.float.path, files.int8.path, "--images", dir.path, "--json", json.path, "--threads", "1"])
    #expect(result.status == 0, "\(result.stderr)")
    let stderr = result.stderr.split(separator: "\n").map(String.init)
    #expect(
      stderr.contains(
        "warning: skipped \(dir.appendingPathComponent("text.JPEG").path): 'text.JPEG' is not a JPEG or PNG file (its first bytes match neither signature)"
      ))
    // Matched by content, whatever the file is called.
    #expect(
      stderr.contains(
        "warning: 1 of the 2 compared images are among the 2 images the int8 model was calibrated on (renamed-\(calibrated)): its ranges were fitted to them, so agreement and int8 accuracy here are optimistic; compare on images disjoint from the calibration set"
      ), "\(result.stderr)")
    #expect(
      stderr.contains(
        "warning: only 2 images compared: one image is 50.00 points of top-1 and of agreement, so differences of a few points are noise; compare on 200 or more images for a meaningful result"
      ), "\(result.stderr)")
    #expect(result.stdout.contains("1 of 3 images could not be decoded and were skipped: text.JPEG"))
    let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [String: Any])
    #expect(report["count"] as? Int == 2)
    #expect(report["calibration_overlap"] as? Int == 1)
    #expect(report["calibration_overlap_images"] as? [String] == ["renamed-\(calibrated)"])
    #expect(report["points_per_image"] as? Double == 50)
    #expect((report["warnings"] as? [String])?.count == 2)
    #expect(
      (report["unreadable"] as? [[String: String]])?.map { $0["image"] } == [
        dir.appendingPathComponent("text.JPEG").path
      ])
    #expect(report["top1_agreement"] is Double)

    let strictJSON = dir.appendingPathComponent("strict.json")
    let strict = try OctetProcess.run(
      ["compare", files.float.path, files.int8.path, "--images", dir.path, "--strict", "--json", strictJSON.path])
    expectCleanFailure(strict, mentions: ["text.JPEG", "is not a JPEG or PNG file"], noFile: strictJSON)
  }

  /// An int8 file from before calibration images were recorded still reads; compare says it could not check.
  @Test func anOldInt8ModelIsComparedWithoutTheOverlapCheck() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    let old = dir.appendingPathComponent("old-int8.safetensors")
    try rewriteSafeTensors(files.int8, to: old) { _, metadata in metadata["octet.calibration_sha256"] = nil }
    let json = dir.appendingPathComponent("compare.json")
    let result = try OctetProcess.run(
      ["compare", files.float.path, old.path, "--images", Paths.valImages.path, "--limit", "1", "--json", json.path])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.contains("note: \(old.path) does not record its calibration images"), "\(result.stderr)")
    let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [String: Any])
    #expect(report["calibration_overlap"] is NSNull)
  }
}

@Suite struct FolderAsModelTests {
  /// A folder where a model belongs is one line, not a crash (the kind check reads the file's header).
  @Test func aFolderGivenAsAModelIsNamed() throws {
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("out.safetensors")
    let ranges = dir.appendingPathComponent("ranges.json")
    try Data(
      """
      {"format": "octet-ranges", "version": 1, "model": {"architecture": "efficientnet-lite0"}, "method": "minmax",
       "images": 1, "tensors": [{"name": "input", "min": -1.0, "max": 1.0, "observed_min": -1.0, "observed_max": 1.0}]}
      """.utf8
    ).write(to: ranges)
    // A labeled folder, so that compare gets as far as loading the models.
    let images = dir.appendingPathComponent("images")
    try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
    try Data("x".utf8).write(to: images.appendingPathComponent("a.jpg"))
    try Data("a.jpg\t1\n".utf8).write(to: images.appendingPathComponent("labels.tsv"))
    for arguments in [
      ["quantize", dir.path, "--ranges", ranges.path, "-o", out.path],
      ["compare", dir.path, dir.path, "--images", images.path],
      ["import", dir.path, "-o", out.path],
      ["classify", dir.path, "x.jpg"],
    ] {
      let result = try OctetProcess.run(arguments)
      expectCleanFailure(result, mentions: ["'\(dir.path)'", "is a folder"], noFile: out)
      #expect(!result.stderr.contains("crashed"), "\(arguments[0]): \(result.stderr)")
    }
  }
}
