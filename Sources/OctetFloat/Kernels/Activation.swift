import CFloatKernels

/// Activation fused into an operator's output: `none` (identity), `relu` (max(x, 0)) or `relu6`
/// (min(max(x, 0), 6)).
public enum Activation: String, Codable, Sendable {
  case none, relu, relu6
}

extension Activation {
  /// The C kernels' code for this activation.
  var kernelCode: Int32 {
    switch self {
    case .none: Int32(OCTET_F32_ACT_NONE.rawValue)
    case .relu: Int32(OCTET_F32_ACT_RELU.rawValue)
    case .relu6: Int32(OCTET_F32_ACT_RELU6.rawValue)
    }
  }
}
