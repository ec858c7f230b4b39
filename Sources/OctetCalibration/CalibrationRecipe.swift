import Foundation
import OctetCore

/// How a model's shipped ranges are made (Calibration/*.json): the method and the number of
/// images, and for information the folder they came from and why the method was chosen. A recipe
/// is not a range table: `octet calibrate MODEL --recipe FILE --images DIR -o RANGES` follows it
/// and writes one.
///
/// ```json
/// {
///   "format": "octet-calibration-recipe",
///   "architecture": "efficientnet-lite0",
///   "method": "mse",
///   "images": 500,
///   "folder": "../shared/data/imagenet-train-calibration-500",
///   "why": "…"
/// }
/// ```
public struct CalibrationRecipe: Sendable, Equatable {
  public static let format = "octet-calibration-recipe"

  public var architecture: String
  public var method: CalibrationMethod
  /// How many images the recipe calibrates on (spread over the folder's list).
  public var images: Int
  /// Where the recipe's images came from, for information: the command takes its folder from --images.
  public var folder: String?
  public var why: String?

  public init(architecture: String, method: CalibrationMethod, images: Int, folder: String? = nil, why: String? = nil) {
    self.architecture = architecture
    self.method = method
    self.images = images
    self.folder = folder
    self.why = why
  }

  private struct Document: Decodable {
    var format: String?
    var architecture: String?
    var method: String?
    var images: Int?
    var folder: String?
    var why: String?
  }

  public static func read(contentsOf url: URL) throws -> CalibrationRecipe {
    let data: Data
    do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
      throw FileError(path: url.path, reason: "cannot be read: \(error.localizedDescription)")
    }
    return try decode(data, path: url.path)
  }

  public static func decode(_ data: Data, path: String = "<memory>") throws(CalibrationError) -> CalibrationRecipe {
    func fail(_ reason: String) -> CalibrationError { .badRecipe(path: path, reason: reason) }
    guard data.count <= 1 << 20 else { throw fail("is \(data.count) bytes; a recipe is a few lines of JSON") }
    let document: Document
    do { document = try JSONDecoder().decode(Document.self, from: data) } catch {
      throw fail("is not a JSON object with the recipe's fields (\(error))")
    }
    if document.format == RangeTable.format { throw .tableGivenAsRecipe(path: path) }
    guard let format = document.format else { throw fail("has no \"format\"; expected \"\(Self.format)\"") }
    guard format == Self.format else { throw fail("format is \"\(format)\", expected \"\(Self.format)\"") }
    guard let architecture = document.architecture, !architecture.isEmpty else { throw fail("has no \"architecture\"") }
    guard let methodText = document.method else { throw fail("has no \"method\"") }
    let method: CalibrationMethod
    do { method = try CalibrationMethod(parsing: methodText) } catch { throw fail("\"method\": \(error)") }
    guard let images = document.images else { throw fail("has no \"images\"") }
    guard images >= 1 else { throw fail("\"images\" is \(images), expected at least 1") }
    return CalibrationRecipe(
      architecture: architecture, method: method, images: images, folder: document.folder, why: document.why)
  }
}
