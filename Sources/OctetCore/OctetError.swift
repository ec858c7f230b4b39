/// Errors about tensors and shapes that more than one stage can raise. Each stage has its own error
/// type as well (checkpoint, image, model); every message names the file, tensor or layer at fault.
public enum TensorError: Error, CustomStringConvertible, Equatable {
  case shapeMismatch(name: String, expected: [Int], actual: [Int])
  case missing(name: String)
  case unexpected(name: String)
  case nonFinite(name: String)

  public var description: String {
    switch self {
    case .shapeMismatch(let name, let expected, let actual):
      "tensor '\(name)' has shape \(actual), expected \(expected)"
    case .missing(let name): "tensor '\(name)' is missing"
    case .unexpected(let name): "tensor '\(name)' is not part of the architecture"
    case .nonFinite(let name): "tensor '\(name)' holds NaN or infinite values"
    }
  }
}
