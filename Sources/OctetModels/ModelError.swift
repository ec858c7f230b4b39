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
    case .invalidGraph(let message): "invalid graph: \(message)"
    case .unknownArchitecture(let message): message
    case .architectureMismatch(let message): message
    case .tensor(let error): error.description
    case .tensors(let errors):
      errors.count == 1
        ? errors[0].description
        : "\(errors.count) tensors do not fit the architecture:\n  "
          + errors.map(\.description).joined(separator: "\n  ")
    case .notAModelFile(let path, let reason): "'\(path)' is not an Octet model file: \(reason)"
    case .wrongModelKind(let path, let found, let expected):
      "'\(path)' is \(Self.phrase(found)) (format '\(found)'), but \(Self.phrase(expected)) is expected here"
    case .unsupportedFormatVersion(let path, let found, let supported):
      "'\(path)' has model format version \(found); this Octet reads versions \(supported). Upgrade Octet, or re-import the checkpoint with this one (`octet import`)."
    case .damaged(let path, let reason, let remedy):
      "'\(path)' is damaged: \(reason); \(remedy)"
    }
  }
}
