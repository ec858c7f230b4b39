import CFloatKernels
import OctetCore

/// A fully connected layer whose weights are packed once, at plan-build time.
///
/// Input `[N, inFeatures]` or `[N, 1, 1, inFeatures]` -> output `[N, outFeatures]`:
/// `y = x * W^T + bias`.
public final class PackedLinear: @unchecked Sendable {
  public let inFeatures: Int
  public let outFeatures: Int
  private let weights: GEMMWeights
  private let bias: AlignedFloatBuffer?

  /// `weight` is `[outFeatures, inFeatures]` row-major (PyTorch layout); `bias` is `[outFeatures]`
  /// or nil.
  public init(weight: [Float], bias: [Float]?, inFeatures: Int, outFeatures: Int) {
    precondition(inFeatures > 0 && outFeatures > 0, "linear layer needs positive feature counts")
    precondition(
      weight.count == inFeatures * outFeatures,
      "weight holds \(weight.count) floats, expected [\(outFeatures), \(inFeatures)]")
    if let bias {
      precondition(
        bias.count == outFeatures, "bias holds \(bias.count) floats, expected \(outFeatures)")
    }
    FloatKernels.configureOnce()
    self.inFeatures = inFeatures
    self.outFeatures = outFeatures
    // B = W^T: [inFeatures][outFeatures].
    var transposed = [Float](repeating: 0, count: weight.count)
    for o in 0..<outFeatures {
      for i in 0..<inFeatures { transposed[i * outFeatures + o] = weight[o * inFeatures + i] }
    }
    weights = GEMMWeights(
      k: inFeatures, n: outFeatures, rowMajor: transposed, eagerPath: FloatKernels.path)
    self.bias = bias.map(AlignedFloatBuffer.init(copying:))
  }

  /// `[N, inFeatures]` or `[N, 1, 1, inFeatures]` -> `[N, outFeatures]`.
  public func callAsFunction(_ input: Tensor) -> Tensor {
    callAsFunction(input, kernelPath: FloatKernels.path)
  }

  /// As `callAsFunction(_:)`, on the given kernel path (which must be available).
  public func callAsFunction(_ input: Tensor, kernelPath path: FloatKernels.Path) -> Tensor {
    let flat = input.rank == 2 || (input.rank == 4 && input.shape[1] == 1 && input.shape[2] == 1)
    precondition(
      flat && input.shape.last == inFeatures,
      "linear input has shape \(input.shape), expected [N, \(inFeatures)] or [N, 1, 1, \(inFeatures)]"
    )
    precondition(FloatKernels.isAvailable(path), "kernel path \(path) is not supported by this CPU")
    let n = input.shape[0]
    let count = n * outFeatures
    guard count > 0 else { return Tensor(zeros: [n, outFeatures]) }
    let scalars = [Float](unsafeUninitializedCapacity: count) { out, initialized in
      input.scalars.withUnsafeBufferPointer { x in
        gemm(
          path: path, m: n, a: x.baseAddress!, lda: inFeatures, b: weights, c: out.baseAddress!,
          ldc: outFeatures, bias: bias.map { UnsafePointer($0.pointer) }, residual: nil, ldr: 0,
          activation: .none)
      }
      initialized = count
    }
    return Tensor(shape: [n, outFeatures], scalars: scalars)
  }
}
