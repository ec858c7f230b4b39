import OctetCore

/// A uint8 activation with its per-tensor quantization: NHWC `[N, H, W, C]`, or `[N, C]` after a
/// flatten. Real value = scale · (q − zeroPoint).
public struct QuantizedTensor: Sendable, Equatable {
  public var shape: [Int]
  public var values: [UInt8]
  public var quantization: ActivationQuantization

  public init(shape: [Int], values: [UInt8], quantization: ActivationQuantization) {
    precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
    self.shape = shape
    self.values = values
    self.quantization = quantization
  }

  /// The real values, `s · (q − z)`, same shape.
  public func dequantized() -> Tensor {
    Tensor(shape: shape, scalars: values.map { quantization.dequantize($0) })
  }
}

/// The classifier's output: int32 logits `[N, classes]` at one common `scale` (zero point 0).
/// Argmax can work on the integers; probabilities come from `dequantized()`.
public struct Int32Logits: Sendable, Equatable {
  public var shape: [Int]
  public var values: [Int32]
  public var scale: Float

  public init(shape: [Int], values: [Int32], scale: Float) {
    precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
    self.shape = shape
    self.values = values
    self.scale = scale
  }

  /// `scale · logit`, `[N, classes]`.
  public func dequantized() -> Tensor {
    Tensor(shape: shape, scalars: values.map { scale * Float($0) })
  }
}
