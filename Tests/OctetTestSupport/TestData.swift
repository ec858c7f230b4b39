import Foundation

/// Where the tests find data: ../shared beside the repository (the team's images and weights), and
/// .cache/ where Scripts/setup.sh puts the default model on a machine without ../shared. Tests that
/// need either are `.enabled(if:)` on its presence.
public enum TestData {
  /// The package root.
  public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
  public static let shared = root.deletingLastPathComponent().appendingPathComponent("shared")
  public static let data = shared.appendingPathComponent("data")
  public static let valImages = data.appendingPathComponent("imagenet-val-1300")
  public static let calibrationImages = data.appendingPathComponent("imagenet-train-calibration-500")

  /// A weight file from ../shared/models, or from .cache/models where Scripts/setup.sh put it.
  public static func model(_ name: String) -> URL? {
    [shared.appendingPathComponent("models/\(name)"), root.appendingPathComponent(".cache/models/\(name)")]
      .first { FileManager.default.fileExists(atPath: $0.path) }
  }

  public static var hasImages: Bool { FileManager.default.fileExists(atPath: valImages.path) }
}

/// Cosine similarity, summed in Double.
public func cosine(_ a: [Float], _ b: [Float]) -> Double {
  var dot = 0.0, na = 0.0, nb = 0.0
  for (x, y) in zip(a, b) {
    dot += Double(x) * Double(y)
    na += Double(x) * Double(x)
    nb += Double(y) * Double(y)
  }
  return dot / (na.squareRoot() * nb.squareRoot())
}
