import OctetCore

/// Errors about architectures, graphs and model files. Messages name the file, tensor or layer.
public enum ModelError: Error, CustomStringConvertible, Equatable {
  case invalidGraph(String)
  case unknownArchitecture(String)
  case architectureMismatch(String)
  case tensor(TensorError)
  case tensors([TensorError])
  case notAModelFile(path: String, reason: String)
  /// An Octet model file of another kind than expected, e.g. an int8 model (`found` "octet-int8")
  /// where a float model is needed.
  case wrongModelKind(path: String, found: String, expected: String)
  case unsupportedFormatVersion(path: String, found: String, supported: String)
  /// A model file whose tensors do not match their checksums; `remedy` says how to make it again.
  case damaged(path: String, reason: String, remedy: String)

  /// "an int8 model" for "octet-int8", "a float model" for "octet-float".
  static func phrase(_ format: String) -> String {
    switch format {
    case "octet-int8": "an int8 model"
    case "octet-float": "a float model"
    default: "a model of format '\(format)'"
    }
  }

  public var description: String {
    switch self {
    case let .invalidGraph(message): "invalid graph: \(message)"
    case let .unknownArchitecture(message): message
    case let .architectureMismatch(message): message
    case let .tensor(error): error.description
    case let .tensors(errors):
      errors.count == 1
        ? errors[0].description
        : "\(errors.count) tensors do not fit the architecture:\n  " + errors.map(\.description).joined(separator: "\n  ")
    case let .notAModelFile(path, reason): "'\(path)' is not an Octet model file: \(reason)"
    case let .wrongModelKind(path, found, expected):
      "'\(path)' is \(Self.phrase(found)) (format '\(found)'), but \(Self.phrase(expected)) is expected here"
    case let .unsupportedFormatVersion(path, found, supported):
      "'\(path)' has model format version \(found); this Octet reads versions \(supported). Upgrade Octet, or re-import the checkpoint with this one (`octet import`)."
    case let .damaged(path, reason, remedy):
      "'\(path)' is damaged: \(reason); \(remedy)"
    }
  }
}
