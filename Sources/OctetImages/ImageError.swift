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
    case .unreadable(let name, let reason):
      "cannot read '\(name)': \(reason)"
    case .empty(let name):
      "'\(name)' is empty (0 bytes); re-copy or re-download it"
    case .unrecognizedFormat(let name):
      "'\(name)' is not a JPEG or PNG file (its first bytes match neither signature)"
    case .corrupt(let name, let format, let reason):
      "'\(name)' is truncated or corrupt: \(reason) (\(format)); re-copy or re-encode the file"
    case .unsupported(let name, let reason):
      "'\(name)' cannot be decoded: \(reason)"
    case .tooLarge(let name, let width, let height, let limit):
      "'\(name)' is \(width)x\(height) pixels, more than the limit of \(limit) pixels; "
        + "downscale it first or raise the limit"
    case .outOfMemory(let name):
      "out of memory while starting to decode '\(name)'"
    }
  }
}
