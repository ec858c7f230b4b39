/// A dense float32 tensor in row-major order.
///
/// Activations are NHWC: `shape == [batch, height, width, channels]`. Weights keep the layout of the
/// checkpoint they came from (PyTorch: OIHW for convolutions, [out, in] for linear layers); the
/// executors re-pack them once when a plan is built.
public struct Tensor: Sendable, Equatable {
  public var shape: [Int]
  public var scalars: [Float]

  public init(shape: [Int], scalars: [Float]) {
    precondition(shape.reduce(1, *) == scalars.count, "shape \(shape) does not hold \(scalars.count) scalars")
    self.shape = shape
    self.scalars = scalars
  }

  public init(zeros shape: [Int]) {
    self.shape = shape
    self.scalars = [Float](repeating: 0, count: shape.reduce(1, *))
  }

  public var count: Int { scalars.count }
  public var rank: Int { shape.count }
}

extension Tensor {
  /// NHWC accessors; valid only for rank-4 tensors.
  public var batch: Int { shape[0] }
  public var height: Int { shape[1] }
  public var width: Int { shape[2] }
  public var channels: Int { shape[3] }
}
