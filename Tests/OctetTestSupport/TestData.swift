import Foundation

/// Where the tests find data. Scripts/setup.sh (which Scripts/test.sh runs first) puts it in .cache/
/// on every machine: the EfficientNet-Lite0 weights in .cache/models, labeled ImageNet evaluation
/// images in .cache/data/eval and calibration images in .cache/data/calibration. Where ../shared is
/// beside the repository (the team's machines, CI), its bigger sets are used directly; elsewhere
/// .cache/data holds what PyPI packages ship (foolbox's 20 ImageNet JPEGs, scikit-image's photos).
/// Tests that need data are `.enabled(if:)` on its presence, with one of the reasons below
/// (`Comment(rawValue: TestData.needsImages)`: a Comment from a variable).
public enum TestData {
  /// The package root.
  public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
  public static let shared = root.deletingLastPathComponent().appendingPathComponent("shared")
  public static let data = shared.appendingPathComponent("data")
  /// What Scripts/setup.sh fetched (links into ../shared/data where it exists).
  /// The ONNX fixtures and their ONNX Runtime goldens (Scripts/make_onnx_fixtures.py).
  public static let onnxFixtures = root.appendingPathComponent("Tests/OctetModelsTests/Fixtures/onnx")
  public static let cacheData = root.appendingPathComponent(".cache/data")

  /// Labeled ImageNet validation images with a labels.tsv: ../shared/data/imagenet-val-1300 (1300), or
  /// .cache/data/eval (foolbox's 20 without ../shared).
  public static let valImages = firstFolder(
    data.appendingPathComponent("imagenet-val-1300"), cacheData.appendingPathComponent("eval"))
  /// Calibration images, disjoint from `valImages`: ../shared/data/imagenet-train-calibration-500 (with
  /// a labels.tsv), or .cache/data/calibration (9 photos, no labels, without ../shared).
  public static let calibrationImages = firstFolder(
    data.appendingPathComponent("imagenet-train-calibration-500"), cacheData.appendingPathComponent("calibration"))
  /// Whether `valImages` is ../shared's 1300-image set (goldens of named images in it apply).
  public static var hasSharedImages: Bool {
    FileManager.default.fileExists(atPath: data.appendingPathComponent("imagenet-val-1300").path)
  }

  /// A weight file from ../shared/models, or from .cache/models where Scripts/setup.sh put it.
  public static func model(_ name: String) -> URL? {
    [shared.appendingPathComponent("models/\(name)"), root.appendingPathComponent(".cache/models/\(name)")]
      .first { FileManager.default.fileExists(atPath: $0.path) }
  }

  public static var lite0: URL? { model("efficientnet-lite0-57934424.pth") }
  /// A torchvision-layout ResNet50 state_dict: ../shared's resnet50-random-bnstats.pth, or the seeded
  /// random one Scripts/make_resnet50_seeded.py writes into .cache/models (Scripts/setup.sh).
  public static var resNet50: URL? { model("resnet50-random-bnstats.pth") ?? model("resnet50-seeded.pth") }

  public static var hasImages: Bool {
    FileManager.default.fileExists(atPath: valImages.appendingPathComponent("labels.tsv").path)
  }
  public static var hasCalibrationImages: Bool { FileManager.default.fileExists(atPath: calibrationImages.path) }
  public static var hasLite0AndImages: Bool { lite0 != nil && hasImages && hasCalibrationImages }

  public static let needsLite0AndImages =
    "needs EfficientNet-Lite0 (.cache/models) and .cache/data/eval and calibration: run Scripts/setup.sh"
  public static let needsLite0 = "needs EfficientNet-Lite0 (.cache/models): run Scripts/setup.sh"
  public static let needsResNet50 =
    "needs a ResNet50 checkpoint (.cache/models/resnet50-seeded.pth): run Scripts/setup.sh"
  public static let needsImages = "needs .cache/data/eval: run Scripts/setup.sh"
  public static let needsResNet50AndImages =
    "needs a ResNet50 checkpoint (.cache/models/resnet50-seeded.pth) and .cache/data/eval: run Scripts/setup.sh"

  /// The first file of `valImages`'s labels.tsv (for tests that need one labeled image).
  public static func firstValImage() throws -> URL {
    let labels = try String(contentsOf: valImages.appendingPathComponent("labels.tsv"), encoding: .utf8)
    return valImages.appendingPathComponent(String(labels.prefix { $0 != "\t" && $0 != "\n" }))
  }

  private static func firstFolder(_ a: URL, _ b: URL) -> URL {
    FileManager.default.fileExists(atPath: a.path) ? a : b
  }
}

/// Cosine similarity, summed in Double.
public func cosine(_ a: [Float], _ b: [Float]) -> Double {
  var dot = 0.0
  var na = 0.0
  var nb = 0.0
  for (x, y) in zip(a, b) {
    dot += Double(x) * Double(y)
    na += Double(x) * Double(x)
    nb += Double(y) * Double(y)
  }
  return dot / (na.squareRoot() * nb.squareRoot())
}
