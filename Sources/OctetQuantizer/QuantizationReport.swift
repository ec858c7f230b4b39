import OctetModels

/// Something a quantized model's user should know about one node: a degenerate range, an all-zero
/// channel, a multiplier clamped at the smallest representable value, an accumulator bound.
public struct QuantizationWarning: Codable, Sendable, Equatable, CustomStringConvertible {
  public var node: String
  public var message: String

  public init(node: String, message: String) {
    self.node = node
    self.message = message
  }

  public var description: String { "\(node): \(message)" }
}

/// What `Quantizer.quantize` did: how many integer nodes it made, which float nodes it could not
/// express in integers (none for ResNet50 and EfficientNet-Lite; the integer runtime has no float
/// fallback, so the quantizer throws for them), and its warnings.
public struct QuantizationReport: Codable, Sendable, Equatable {
  /// Integer nodes by operator, e.g. ["conv2d": 53, "add": 16, …].
  public var nodesByOperator: [String: Int]
  /// Float graph nodes the integer graph implements (fused members included).
  public var floatNodesCovered: Int
  /// Float graph nodes or tensors left in float, by name. Empty for every supported model.
  public var leftInFloat: [String]
  public var warnings: [QuantizationWarning]

  public var quantizedNodes: Int { nodesByOperator.values.reduce(0, +) }
}

/// A quantized model and the report of how it was made.
public struct QuantizationResult: Sendable {
  public var model: QuantizedModel
  public var report: QuantizationReport
}

/// Errors of the quantizer; each names the node or tensor and says what to do.
public enum QuantizerError: Error, CustomStringConvertible, Equatable {
  /// The range table has no entry for a tensor the integer graph needs.
  case missingRange(tensor: String)
  case invalidRange(tensor: String, lo: Float, hi: Float)
  case unsupported(node: String, reason: String)
  case layer(String, String)

  public var description: String {
    switch self {
    case .missingRange(let tensor):
      "the range table has no range for tensor '\(tensor)'; calibrate this model with `octet calibrate` (the table must come from the same model)"
    case .invalidRange(let tensor, let lo, let hi):
      "the range of tensor '\(tensor)' is [\(lo), \(hi)]; a range must be finite with lo <= hi"
    case .unsupported(let node, let reason):
      "node '\(node)' cannot be quantized: \(reason)"
    case .layer(let name, let message): "layer '\(name)': \(message)"
    }
  }
}
