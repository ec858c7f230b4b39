import Foundation

/// What a model path holds, told from the safetensors header alone (the tensors are not read), so a
/// command can say at once that it was given the wrong kind of model.
public enum ModelFileKind: Sendable, Equatable {
  /// An Octet float model file (`octet import`).
  case float
  /// An Octet int8 model file (`octet quantize`).
  case int8
  /// Anything else: a PyTorch checkpoint, a safetensors state_dict or an ONNX model, imported on the
  /// fly as a float model (or a file that is none of these, which loading reports).
  case checkpoint

  /// The kind of the file at `url`; nil when there is no such file or it is a folder (loading says so).
  public static func of(_ url: URL) -> ModelFileKind? {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue
    else { return nil }
    switch SafeTensors.peekMetadata(contentsOf: url)?["octet.format"] {
    case ModelFile.floatFormat: return .float
    case QuantizedModelFile.format: return .int8
    default: return .checkpoint
    }
  }

  /// "an int8 model", "a float model", "a checkpoint".
  public var phrase: String {
    switch self {
    case .float: "a float model"
    case .int8: "an int8 model"
    case .checkpoint: "a checkpoint"
    }
  }
}
