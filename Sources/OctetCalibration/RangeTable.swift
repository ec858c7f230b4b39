import Foundation
import OctetCore

/// The calibrated activation ranges of a model: what the quantizer reads (docs/quantization.md:
/// s = (max − min)/255, z = round(−min/s)).
///
/// On disk it is JSON, one tensor per line so that a hand edit or a re-calibration diffs line by line:
///
/// ```json
/// {
///   "format": "octet-ranges",
///   "version": 1,
///   "model": {"architecture": "efficientnet-lite0", "source": "efficientnet-lite0-57934424.pth"},
///   "method": "percentile:99.99",
///   "images": 500,
///   "calibration_images": [
///     {"file": "n01440764_10026.JPEG", "sha256": "9f86d0…"},
///     ...
///   ],
///   "tensors": [
///     {"name": "input", "min": -2.1179039, "max": 2.64, "observed_min": -2.1179039, "observed_max": 2.64},
///     ...
///   ]
/// }
/// ```
///
/// Tensors are in graph order: "input", then every step output of the float executor. `min`/`max` is
/// the range to quantize with (chosen by `method`, widened to include 0); `observed_min`/`observed_max`
/// is what the calibration images produced. A `note` marks entries that are informational, such as
/// the classifier's logits (int32 in the quantized model). `calibration_images` (optional: tables
/// written before it existed have none) names the images the ranges came from with the SHA-256 of
/// each file's bytes, so that `octet compare` can tell when it is evaluated on calibration images.
public struct RangeTable: Sendable, Equatable {
  public static let format = "octet-ranges"
  public static let version = 1

  public struct ModelDescription: Sendable, Equatable, Codable {
    public var architecture: String
    public var source: String?
    public init(architecture: String, source: String? = nil) {
      self.architecture = architecture
      self.source = source
    }
  }

  public struct Entry: Sendable, Equatable, Codable {
    public var name: String
    public var min: Float
    public var max: Float
    public var observedMin: Float
    public var observedMax: Float
    public var note: String?

    public init(name: String, min: Float, max: Float, observedMin: Float, observedMax: Float, note: String? = nil) {
      self.name = name
      self.min = min
      self.max = max
      self.observedMin = observedMin
      self.observedMax = observedMax
      self.note = note
    }

    enum CodingKeys: String, CodingKey {
      case name, min, max, note
      case observedMin = "observed_min"
      case observedMax = "observed_max"
    }
  }

  /// One calibration image: its file name and the SHA-256 (lowercase hex) of the file's bytes.
  public struct CalibrationImage: Sendable, Equatable, Codable {
    public var file: String
    public var sha256: String
    public init(file: String, sha256: String) {
      self.file = file
      self.sha256 = sha256
    }
  }

  public var model: ModelDescription
  /// `CalibrationMethod.description` of the method used ("percentile:99.99"), or any text after a
  /// hand edit.
  public var method: String
  /// Images the ranges were computed from.
  public var images: Int
  public var tensors: [Entry]
  /// The images calibrated on, when known (nil in tables written before it was recorded).
  public var calibrationImages: [CalibrationImage]?
  /// The ranges are those of the model after cross-layer equalization (`octet calibrate --equalize`,
  /// `CrossLayerEqualization` in OctetQuantizer), so the quantizer must equalize the model too.
  /// JSON `"equalized": true`, absent otherwise.
  public var equalized = false

  public init(
    model: ModelDescription, method: String, images: Int, tensors: [Entry], calibrationImages: [CalibrationImage]? = nil
  ) {
    self.model = model
    self.method = method
    self.images = images
    self.tensors = tensors
    self.calibrationImages = calibrationImages
  }

  /// The entry named `name`.
  public subscript(name: String) -> Entry? { tensors.first { $0.name == name } }

  /// Checks what `read` checks; `path` names the table in the message.
  public func validate(path: String = "<memory>") throws(CalibrationError) {
    func fail(_ reason: String) -> CalibrationError { .badTable(path: path, reason: reason) }
    guard !model.architecture.isEmpty else { throw fail("model.architecture is empty") }
    guard images >= 0 else { throw fail("images is \(images), expected a count >= 0") }
    guard !tensors.isEmpty else { throw fail("lists no tensors") }
    for (i, image) in (calibrationImages ?? []).enumerated() {
      guard !image.file.isEmpty else { throw fail("calibration_images[\(i)] has an empty file name") }
      guard image.sha256.count == 64, image.sha256.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
        throw fail("calibration_images[\(i)] '\(image.file)': sha256 is not 64 lowercase hex digits")
      }
    }
    var seen: Set<String> = []
    for (i, t) in tensors.enumerated() {
      let what = "tensors[\(i)] '\(t.name)'"
      guard !t.name.isEmpty else { throw fail("tensors[\(i)] has an empty name") }
      guard seen.insert(t.name).inserted else { throw fail("\(what) is listed twice") }
      for (key, value) in [
        ("min", t.min), ("max", t.max), ("observed_min", t.observedMin), ("observed_max", t.observedMax),
      ]
      where !value.isFinite {
        throw fail("\(what): \(key) is not a finite number")
      }
      guard t.min <= t.max else { throw fail("\(what): min \(t.min) is greater than max \(t.max)") }
      guard t.observedMin <= t.observedMax else {
        throw fail("\(what): observed_min \(t.observedMin) is greater than observed_max \(t.observedMax)")
      }
    }
  }

  /// Checks that every one of `names` (a model's quantized tensors) has a range.
  public func checkCovers(_ names: [String], path: String = "<memory>") throws(CalibrationError) {
    let have = Set(tensors.map(\.name))
    let missing = names.filter { !have.contains($0) }
    guard missing.isEmpty else {
      throw .tableMismatch(
        path: path,
        reason:
          "has no range for \(missing.count) tensor(s) of the model, first '\(missing[0])'; was it calibrated for another model?"
      )
    }
  }

  // MARK: Reading and writing

  private struct Document: Codable {
    var format: String?
    var version: Int?
    var model: ModelDescription?
    var method: String?
    var images: Int?
    var tensors: [Entry]?
    var calibrationImages: [CalibrationImage]?
    var equalized: Bool?
    /// Only in calibration recipes: told apart to say what the file is.
    var architecture: String?

    enum CodingKeys: String, CodingKey {
      case format, version, model, method, images, tensors, architecture, equalized
      case calibrationImages = "calibration_images"
    }
  }

  /// The largest table read: a ResNet50 table is about 30 KB, so this only stops a wrong or
  /// hostile file from being read into memory and parsed. (Nesting needs no limit of its own:
  /// JSONDecoder refuses more than 512 levels with an error, and `Document` has three.)
  public static let maxFileSize = 64 << 20

  public static func read(contentsOf url: URL) throws -> RangeTable {
    let data: Data
    do {
      // Mapped, so a huge file is refused by its size without being read.
      data = try Data(contentsOf: url, options: .alwaysMapped)
    } catch {
      throw FileError(path: url.path, reason: "cannot be read: \(error.localizedDescription)")
    }
    return try decode(data, path: url.path)
  }

  public static func decode(_ data: Data, path: String = "<memory>") throws(CalibrationError) -> RangeTable {
    func fail(_ reason: String) -> CalibrationError { .badTable(path: path, reason: reason) }
    guard data.count <= maxFileSize else {
      throw fail(
        "is \(data.count) bytes, more than the \(maxFileSize) bytes a range table can be; is it the right file?")
    }
    let document: Document
    do { document = try JSONDecoder().decode(Document.self, from: data) } catch let error as DecodingError {
      throw fail(Self.explain(error))
    } catch { throw fail("is not JSON: \(error)") }
    // A calibration recipe (Calibration/*.json; before recipes had a "format", they had "architecture"
    // and no "tensors") is the likeliest wrong file: say what it is and what to run.
    if document.format == CalibrationRecipe.format
      || (document.format == nil && document.architecture != nil && document.tensors == nil)
    {
      throw .recipeGivenAsTable(path: path)
    }
    guard let format = document.format else { throw fail("has no \"format\"; expected \"\(Self.format)\"") }
    guard format == Self.format else { throw fail("format is \"\(format)\", expected \"\(Self.format)\"") }
    guard let version = document.version else { throw fail("has no \"version\"") }
    guard version == Self.version else {
      throw fail("unknown version \(version); this Octet reads version \(Self.version) (re-run octet calibrate)")
    }
    guard let model = document.model else { throw fail("has no \"model\"") }
    guard let method = document.method else { throw fail("has no \"method\"") }
    guard let images = document.images else { throw fail("has no \"images\"") }
    guard let tensors = document.tensors else { throw fail("has no \"tensors\"") }
    var table = RangeTable(
      model: model, method: method, images: images, tensors: tensors, calibrationImages: document.calibrationImages)
    table.equalized = document.equalized ?? false
    try table.validate(path: path)
    return table
  }

  private static func explain(_ error: DecodingError) -> String {
    func at(_ path: [CodingKey]) -> String {
      path.isEmpty
        ? "the top level"
        : path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
          .trimmingCharacters(in: CharacterSet(charactersIn: "."))
    }
    switch error {
    case .keyNotFound(let key, let context):
      return "\(at(context.codingPath + [key])) is missing"
    case .typeMismatch(let type, let context):
      return "\(at(context.codingPath)) is not a \(type == Float.self || type == Double.self ? "number" : "\(type)")"
    case .valueNotFound(let type, let context):
      return "\(at(context.codingPath)) is null, expected a \(type)"
    case .dataCorrupted(let context):
      return context.codingPath.isEmpty
        ? "is not valid JSON (\(context.underlyingError.map { "\($0)" } ?? context.debugDescription))"
        : "\(at(context.codingPath)): \(context.debugDescription)"
    @unknown default:
      return "\(error)"
    }
  }

  /// The JSON text: pretty, one tensor per line, keys in a fixed order.
  public func encoded() -> String {
    // Float's description is the shortest text that reads back to the same Float.
    func number(_ v: Float) -> String { v == 0 ? "0.0" : "\(v)" }
    var source = ""
    if let s = model.source { source = ", \"source\": \(jsonStringLiteral(s))" }
    var lines = [
      "{",
      "  \"format\": \(jsonStringLiteral(Self.format)),",
      "  \"version\": \(Self.version),",
      "  \"model\": {\"architecture\": \(jsonStringLiteral(model.architecture))\(source)},",
      "  \"method\": \(jsonStringLiteral(method)),",
      "  \"images\": \(images),",
    ]
    if equalized { lines.append("  \"equalized\": true,") }
    if let calibrationImages {
      lines.append("  \"calibration_images\": [")
      for (i, image) in calibrationImages.enumerated() {
        lines.append(
          "    {\"file\": \(jsonStringLiteral(image.file)), \"sha256\": \(jsonStringLiteral(image.sha256))}"
            + (i == calibrationImages.count - 1 ? "" : ","))
      }
      lines.append("  ],")
    }
    lines.append("  \"tensors\": [")
    for (i, t) in tensors.enumerated() {
      var line = "    {\"name\": \(jsonStringLiteral(t.name)), \"min\": \(number(t.min)), \"max\": \(number(t.max)), "
      line += "\"observed_min\": \(number(t.observedMin)), \"observed_max\": \(number(t.observedMax))"
      if let note = t.note { line += ", \"note\": \(jsonStringLiteral(note))" }
      line += i == tensors.count - 1 ? "}" : "},"
      lines.append(line)
    }
    lines += ["  ]", "}", ""]
    return lines.joined(separator: "\n")
  }

  /// Validates, then writes atomically: a failure leaves the old file (or none).
  public func write(to url: URL) throws {
    try validate(path: url.path)
    try AtomicFile.write(Array(encoded().utf8), to: url)
  }
}
