/// Errors of the calibration stage. Every message names the file, image or tensor at fault and says
/// what to do about it.
public enum CalibrationError: Error, CustomStringConvertible, Equatable {
  /// A `--method` string that is not minmax, percentile[:P], entropy or mse.
  case badMethod(String)
  /// A folder without a single .jpg/.jpeg/.png (or an empty labels.tsv).
  case noImages(folder: String)
  /// More than half of the images could not be decoded: the set is not what it was meant to be.
  case tooManyUnreadableImages(failed: Int, total: Int, first: String)
  /// The float model produced NaN or infinity: the ranges would be meaningless.
  case nonFinite(tensor: String, count: UInt64)
  /// A range table that cannot be used; `path` is the file (or "<memory>").
  case badTable(path: String, reason: String)
  /// A range table that does not cover the tensors of the model it is used with.
  case tableMismatch(path: String, reason: String)
  /// A calibration recipe that cannot be used.
  case badRecipe(path: String, reason: String)
  /// A calibration recipe (Calibration/*.json) where a range table is expected.
  case recipeGivenAsTable(path: String)
  /// A range table where a calibration recipe is expected.
  case tableGivenAsRecipe(path: String)

  public var description: String {
    switch self {
    case .badMethod(let text):
      "unknown calibration method '\(text)': use minmax, percentile[:P] (50 < P <= 100, e.g. percentile:99.99), entropy or mse"
    case .noImages(let folder):
      "'\(folder)': no images to calibrate on (expected .jpg, .jpeg or .png files, or a labels.tsv listing them)"
    case .tooManyUnreadableImages(let failed, let total, let first):
      "\(failed) of \(total) images could not be read (first: \(first)); fix or remove them, calibration stops when more than half fail"
    case .nonFinite(let tensor, let count):
      "tensor '\(tensor)' holds \(count) NaN or infinite values on the calibration images; the float model is broken"
    case .badTable(let path, let reason): "range table '\(path)': \(reason)"
    case .tableMismatch(let path, let reason): "range table '\(path)': \(reason)"
    case .badRecipe(let path, let reason): "calibration recipe '\(path)': \(reason)"
    case .recipeGivenAsTable(let path):
      "'\(path)' is a calibration recipe, not a range table: run `octet calibrate MODEL --recipe \(path) --images DIR -o RANGES` to make one"
    case .tableGivenAsRecipe(let path):
      "'\(path)' is a range table, not a calibration recipe: `octet calibrate` wrote it; give it to `octet quantize MODEL --ranges \(path)`"
    }
  }
}
