import Foundation
import OctetCore

/// The images of a calibration folder. Calibration needs no labels: a folder with a `labels.tsv`
/// gives its files in its order (the class column is ignored), any other folder gives every .jpg,
/// .jpeg and .png in it (any letter case), sorted by name.
public enum CalibrationImages {
  public static func list(folder path: String) throws -> [URL] {
    let folder = URL(fileURLWithPath: path)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
      throw FileError(path: path, reason: "is not a folder")
    }
    let labels = folder.appendingPathComponent("labels.tsv")
    var urls: [URL] = []
    if FileManager.default.fileExists(atPath: labels.path) {
      guard let text = try? String(contentsOf: labels, encoding: .utf8) else {
        throw FileError(path: labels.path, reason: "cannot be read as UTF-8 text")
      }
      for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        guard let file = line.split(separator: "\t").first?.trimmingCharacters(in: .whitespacesAndNewlines),
          !file.isEmpty
        else { continue }
        let url = folder.appendingPathComponent(file)
        guard FileManager.default.fileExists(atPath: url.path) else {
          throw FileError(path: "\(labels.path):\(number + 1)", reason: "image '\(file)' does not exist in \(path)")
        }
        urls.append(url)
      }
    } else {
      let names: [String]
      do { names = try FileManager.default.contentsOfDirectory(atPath: path) } catch {
        throw FileError(path: path, reason: "cannot be listed: \(error.localizedDescription)")
      }
      urls = names.filter { ["jpg", "jpeg", "png"].contains(($0 as NSString).pathExtension.lowercased()) }
        .sorted().map { folder.appendingPathComponent($0) }
    }
    guard !urls.isEmpty else { throw CalibrationError.noImages(folder: path) }
    return urls
  }

  /// `count` of `urls` spread evenly (indices ⌊i·n/count⌋), so that a list sorted by class keeps its
  /// class coverage; all of them when `count` is nil or not smaller.
  public static func spread(_ urls: [URL], count: Int?) -> [URL] {
    guard let count, count < urls.count else { return urls }
    return (0..<Swift.max(count, 0)).map { urls[$0 * urls.count / count] }
  }
}
