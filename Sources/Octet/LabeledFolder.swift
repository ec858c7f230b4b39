import Foundation

/// A folder of images with a `labels.tsv`: one line per image, file name TAB class index.
public struct LabeledFolder: Sendable {
  public struct Entry: Sendable, Equatable {
    public var url: URL
    public var label: Int
  }

  public var entries: [Entry]

  /// Reads `path/labels.tsv`. Blank lines are skipped; anything else that is not `file<TAB>index`, an
  /// index outside 0..<classes, or a listed file that does not exist is an error naming the line.
  public init(path: String, classes: Int = 1000) throws {
    let folder = URL(fileURLWithPath: path)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
      throw FileError(path: path, reason: "is not a folder")
    }
    let labels = folder.appendingPathComponent("labels.tsv")
    guard let text = try? String(contentsOf: labels, encoding: .utf8) else {
      throw FileError(
        path: labels.path, reason: "cannot be read; an image folder needs a labels.tsv (file TAB class index)")
    }
    var entries: [Entry] = []
    for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
      if trimmed.isEmpty { continue }
      let fields = line.split(separator: "\t").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
      let where_ = "\(labels.path):\(number + 1)"
      guard fields.count == 2, let label = Int(fields[1]) else {
        throw FileError(path: where_, reason: "expected 'file<TAB>class index', got '\(trimmed.prefix(80))'")
      }
      guard (0..<classes).contains(label) else {
        throw FileError(path: where_, reason: "class \(label) is outside 0...\(classes - 1)")
      }
      let url = folder.appendingPathComponent(fields[0])
      guard FileManager.default.fileExists(atPath: url.path) else {
        throw FileError(path: where_, reason: "image '\(fields[0])' does not exist in \(path)")
      }
      entries.append(Entry(url: url, label: label))
    }
    guard !entries.isEmpty else { throw FileError(path: labels.path, reason: "lists no images") }
    self.entries = entries
  }
}
