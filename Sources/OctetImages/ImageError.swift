/// Why an image file could not be decoded. Every message names the file.
public enum ImageError: Error, CustomStringConvertible, Equatable {
  /// The file could not be read from disk.
  case unreadable(name: String, reason: String)
  /// The file has zero bytes.
  case empty(name: String)
  /// The first bytes are neither the JPEG nor the PNG signature.
  case unrecognizedFormat(name: String)
  /// The decoder gave up, or (JPEG) would have had to invent pixels; `reason` is the library's
  /// own message, e.g. "Premature end of JPEG file".
  case corrupt(name: String, format: String, reason: String)
  /// A valid file of a kind this decoder does not handle (e.g. a 2-component JPEG).
  case unsupported(name: String, reason: String)
  /// The header announces more pixels than `limit`; refused before any pixel memory is allocated.
  case tooLarge(name: String, width: Int, height: Int, limit: Int)
  /// The decoder library could not allocate its state.
  case outOfMemory(name: String)

  public var description: String {
    switch self {
    case let .unreadable(name, reason):
      "cannot read '\(name)': \(reason)"
    case let .empty(name):
      "'\(name)' is empty (0 bytes); re-copy or re-download it"
    case let .unrecognizedFormat(name):
      "'\(name)' is not a JPEG or PNG file (its first bytes match neither signature)"
    case let .corrupt(name, format, reason):
      "'\(name)' is truncated or corrupt: \(reason) (\(format)); re-copy or re-encode the file"
    case let .unsupported(name, reason):
      "'\(name)' cannot be decoded: \(reason)"
    case let .tooLarge(name, width, height, limit):
      "'\(name)' is \(width)x\(height) pixels, more than the limit of \(limit) pixels; "
        + "downscale it first or raise the limit"
    case let .outOfMemory(name):
      "out of memory while starting to decode '\(name)'"
    }
  }
}
