import Foundation
import OctetCore
import OctetModels
import OctetTestSupport
import Testing

/// `octet quantize FLOAT --images DIR`: calibrate and quantize in one run.
@Suite(
  .enabled(
    if: TestData.lite0 != nil && TestData.hasCalibrationImages, "needs EfficientNet-Lite0 and the calibration images"))
struct OneStepTests {
  /// Without a data-driven pass, one step gives the nodes of calibrate then quantize --ranges, bit
  /// for bit (same images, same method); both record their ranges and recipe.
  @Test func oneStepEqualsTwoStepsWithoutDataDrivenPasses() throws {
    let files = try Lite0Files.get()
    let out = files.dir.appendingPathComponent("one-step-\(UUID().uuidString).safetensors")
    let run = try OctetProcess.run([
      "quantize", files.float.path, "--images", TestData.calibrationImages.path, "--limit", "2", "--method",
      "minmax", "--no-bias-correction", "-o", out.path,
    ])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.stdout.contains("recipe: minmax ranges on 2 images, 8-bit weights (one-step)"), "\(run.stdout)")
    let one = try QuantizedModelFile.read(contentsOf: out)
    let two = try QuantizedModelFile.read(contentsOf: files.int8)
    #expect(one.nodes == two.nodes)
    #expect(one.calibrationImages == two.calibrationImages)
    #expect(one.ranges == two.ranges, "the same table, as the two-step file stores it")
    #expect(
      one.recipe?.contains("\"mode\":\"one-step\"") == true && two.recipe?.contains("\"mode\":\"ranges\"") == true)
    #expect(one.recipe?.contains("\"biasCorrection\":false") == true)
    // classify --verbose shows how the model was made.
    let shown = try OctetProcess.run([
      "classify", out.path, try TestData.firstValImage().path, "--verbose", "--top", "1",
    ])
    #expect(shown.status == 0, "\(shown.stderr)")
    #expect(shown.stdout.contains("recipe: minmax ranges on 2 images"), "\(shown.stdout)")
  }

  /// `--bias-correction` alone runs bias correction and records it; the biases differ from the plain
  /// model's, the weights do not.
  @Test func biasCorrectionOneStep() throws {
    let files = try Lite0Files.get()
    let out = files.dir.appendingPathComponent("one-step-bc-\(UUID().uuidString).safetensors")
    let run = try OctetProcess.run([
      "quantize", files.float.path, "--images", TestData.calibrationImages.path, "--limit", "2", "--method",
      "minmax", "--bias-correction", "-o", out.path,
    ])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.stdout.contains("bias correction (one-step)"), "\(run.stdout)")
    let corrected = try QuantizedModelFile.read(contentsOf: out)
    let plain = try QuantizedModelFile.read(contentsOf: files.int8)
    #expect(corrected.recipe?.contains("\"passes\":[\"bias_correction\"]") == true)
    #expect(zip(corrected.nodes, plain.nodes).allSatisfy { $0.weights == $1.weights && $0.output == $1.output })
    #expect(zip(corrected.nodes, plain.nodes).contains { $0.bias != $1.bias })
  }
}

/// With no technique flag, one step runs the recommended recipe (AdaRound, then bias correction). On
/// a tiny float model written by the test (2x2 input), so that AdaRound's 500 steps per layer stay
/// quick in a debug build; any folder of images feeds it.
@Suite(.enabled(if: TestData.hasCalibrationImages, "needs calibration images (.cache/data or ../shared)"))
struct DefaultRecipeTests {
  @Test func defaultOneStepRunsAdaRoundThenBiasCorrection() throws {
    let dir = try Paths.temporaryDirectory()
    var tiny = TinyNet().model
    tiny.info.preprocessing = Preprocessing(
      resizeShorter: 2, cropSize: 2, mean: Preprocessing.imagenet.mean, std: Preprocessing.imagenet.std)
    let float = dir.appendingPathComponent("tiny.safetensors")
    try ModelFile.write(tiny, to: float)
    let out = dir.appendingPathComponent("q.safetensors")
    let run = try OctetProcess.run([
      "quantize", float.path, "--images", TestData.calibrationImages.path, "--limit", "8", "-o", out.path,
    ])
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.stdout.contains("8-bit weights, adaround, bias correction (one-step)"), "\(run.stdout)")
    let model = try QuantizedModelFile.read(contentsOf: out)
    #expect(model.recipe?.contains("\"passes\":[\"adaround\",\"bias_correction\"]") == true, "\(model.recipe ?? "")")
    // A technique flag replaces the recipe: exactly what is given.
    let only = dir.appendingPathComponent("bc.safetensors")
    let bc = try OctetProcess.run([
      "quantize", float.path, "--images", TestData.calibrationImages.path, "--limit", "8", "--bias-correction", "-o",
      only.path,
    ])
    #expect(bc.status == 0, "\(bc.stderr)")
    let bcModel = try QuantizedModelFile.read(contentsOf: only)
    #expect(bcModel.recipe?.contains("\"passes\":[\"bias_correction\"]") == true, "\(bcModel.recipe ?? "")")
  }
}

/// Bad input to `octet quantize`: one line naming the problem, a non-zero exit, no output file.
@Suite struct QuantizeBadInputTests {
  let tinyModel = Paths.fixtures.appendingPathComponent("tiny_zip.pth").path

  @Test func rangesAndImagesAreOneOrTheOther() throws {
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("q.safetensors")
    let ranges = dir.appendingPathComponent("r.json")
    try Data("{}".utf8).write(to: ranges)
    let both = try OctetProcess.run([
      "quantize", tinyModel, "--ranges", ranges.path, "--images", dir.path, "-o", out.path,
    ])
    expectCleanFailure(both, mentions: ["--ranges and --images together"], noFile: out)
    let neither = try OctetProcess.run(["quantize", tinyModel, "-o", out.path])
    expectCleanFailure(neither, mentions: ["--images DIR", "--ranges RANGES"], noFile: out)
  }

  @Test func limitZeroAndFlagsThatNeedImages() throws {
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("q.safetensors")
    let zero = try OctetProcess.run(["quantize", tinyModel, "--images", dir.path, "--limit", "0", "-o", out.path])
    expectCleanFailure(zero, mentions: ["--limit must be at least 1"], noFile: out)
    let ranges = dir.appendingPathComponent("r.json")
    try Data("{}".utf8).write(to: ranges)
    for flag in ["--bias-correction", "--adaround"] {
      let run = try OctetProcess.run(["quantize", tinyModel, "--ranges", ranges.path, flag, "-o", out.path])
      expectCleanFailure(run, mentions: [flag, "--images DIR"], noFile: out)
    }
    let limit = try OctetProcess.run(["quantize", tinyModel, "--ranges", ranges.path, "--limit", "3", "-o", out.path])
    expectCleanFailure(limit, mentions: ["--limit", "goes with --images"], noFile: out)
  }

  @Test func folderWithoutImages() throws {
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("q.safetensors")
    let empty = dir.appendingPathComponent("empty")
    try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
    try Data("not an image".utf8).write(to: empty.appendingPathComponent("notes.txt"))
    let run = try OctetProcess.run(["quantize", tinyModel, "--images", empty.path, "-o", out.path])
    expectCleanFailure(run, mentions: [empty.path, "no images"], noFile: out)
  }

  /// Images that are all unreadable: calibration stops, nothing is written.
  @Test(.enabled(if: TestData.lite0 != nil && TestData.hasCalibrationImages, "needs EfficientNet-Lite0"))
  func folderOfUnreadableImages() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    let out = dir.appendingPathComponent("q.safetensors")
    for i in 0..<2 { try Data("not a jpeg".utf8).write(to: dir.appendingPathComponent("\(i).jpg")) }
    let unreadable = try OctetProcess.run(["quantize", files.float.path, "--images", dir.path, "-o", out.path])
    expectCleanFailure(unreadable, mentions: ["2 of 2 images could not be read"], noFile: out)
  }

  @Test(.enabled(if: TestData.lite0 != nil && TestData.hasCalibrationImages, "needs EfficientNet-Lite0"))
  func int8ModelIsRefused() throws {
    let files = try Lite0Files.get()
    let out = files.dir.appendingPathComponent("again-\(UUID().uuidString).safetensors")
    let run = try OctetProcess.run([
      "quantize", files.int8.path, "--images", TestData.calibrationImages.path, "--limit", "1", "-o", out.path,
    ])
    expectCleanFailure(run, mentions: ["is an int8 model"], noFile: out)
  }
}
