import Foundation
import Octet
import Synchronization

/// An image skipped because it could not be decoded: its path and why.
struct Unreadable: Encodable {
  var image: String
  var reason: String
}

/// Decodes the images of a run for `eval` and `compare`, so that both skip and report unreadable
/// images alike: an image that cannot be decoded is skipped with a warning naming it (or, `strict`,
/// stops the run), left out of every statistic, and listed (`unreadable` in the JSON reports).
final class UnreadableImages: Sendable {
  let strict: Bool
  private let skipped = Mutex<[(index: Int, entry: Unreadable)]>([])

  init(strict: Bool) { self.strict = strict }

  /// The image at `url`, the `index`th of the run; nil when it cannot be decoded and was skipped.
  func decode(_ url: URL, index: Int) throws -> RGBImage? {
    do {
      return try ImageDecoder.decode(contentsOf: url)
    } catch let error as ImageError where !strict {
      skipped.withLock { list in
        list.append((index, Unreadable(image: url.path, reason: error.description)))
        // Clear a progress bar's line first, so that the warning starts a line of its own.
        if isatty(2) == 1 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        FileHandle.standardError.write(Data("warning: skipped \(url.path): \(error)\n".utf8))
      }
      return nil
    }
  }

  /// The skipped images, in the run's order.
  var list: [Unreadable] { skipped.withLock { $0 }.sorted { $0.index < $1.index }.map(\.entry) }

  /// Throws when no image of `total` could be decoded: there is nothing to report on.
  func checkSomeDecoded(total: Int, folder: String) throws {
    guard skipped.withLock({ $0.count }) >= total else { return }
    throw FileError(path: folder, reason: "none of its \(total) images could be decoded (see the warnings above)")
  }

  /// "N of M images could not be decoded and were skipped: a.jpg, b.jpg, …", or nil when none was.
  func summary(total: Int) -> String? {
    let unreadable = list
    guard !unreadable.isEmpty else { return nil }
    let names = unreadable.prefix(10).map { URL(fileURLWithPath: $0.image).lastPathComponent }
    return "\(unreadable.count) of \(total) images could not be decoded and were skipped: "
      + names.joined(separator: ", ") + (unreadable.count > 10 ? ", …" : "")
  }
}
