import CFloatKernels
import OctetCore

/// `activation(a + b)` for two tensors of the same shape (any rank).
public func add(_ a: Tensor, _ b: Tensor, activation: Activation) -> Tensor {
  precondition(a.shape == b.shape, "add of shapes \(a.shape) and \(b.shape); they must match")
  let count = a.count
  guard count > 0 else { return a }
  let scalars = [Float](unsafeUninitializedCapacity: count) { out, initialized in
    a.scalars.withUnsafeBufferPointer { pa in
      b.scalars.withUnsafeBufferPointer { pb in
        octet_f32_add_act(
          pa.baseAddress!, pb.baseAddress!, out.baseAddress!, count, activation.kernelCode)
      }
    }
    initialized = count
  }
  return Tensor(shape: a.shape, scalars: scalars)
}

/// Applies `activation` to every element of `x`, in place.
public func applyActivation(_ x: inout Tensor, _ activation: Activation) {
  guard activation != .none, x.count > 0 else { return }
  let count = x.count
  x.scalars.withUnsafeMutableBufferPointer {
    octet_f32_act_inplace($0.baseAddress!, count, activation.kernelCode)
  }
}

/// Inference batch norm folded to an affine map per channel (the last dimension, C in NHWC):
/// `y[..., c] = x[..., c] * scale[c] + shift[c]`, with `scale = gamma / sqrt(var + eps)` and
/// `shift = beta - mean * scale`. For a BN the planner could not fold into a convolution.
public func batchNormInference(_ x: Tensor, scale: [Float], shift: [Float]) -> Tensor {
  let channels = x.shape.last ?? 0
  precondition(
    scale.count == channels && shift.count == channels,
    "batch norm over \(channels) channels got \(scale.count) scales and \(shift.count) shifts")
  let count = x.count
  guard count > 0 else { return x }
  let scalars = [Float](unsafeUninitializedCapacity: count) { out, initialized in
    x.scalars.withUnsafeBufferPointer { px in
      octet_f32_scale_shift(
        px.baseAddress!, scale, shift, out.baseAddress!, count / channels, channels)
    }
    initialized = count
  }
  return Tensor(shape: x.shape, scalars: scalars)
}

/// `x[…, c] = min(x[…, c], upper[c])` over the last dimension (C in NHWC), in place: a ReLU6 whose
/// bound 6 became a per-channel `upper` under cross-layer equalization (the kernel applied the ReLU).
public func clampChannels(_ x: inout Tensor, upper: [Float]) {
  let c = upper.count
  precondition(c > 0 && x.count % c == 0, "per-channel bounds of \(c) channels for shape \(x.shape)")
  upper.withUnsafeBufferPointer { hi in
    x.scalars.withUnsafeMutableBufferPointer { v in
      var i = 0
      while i < v.count {
        for ch in 0..<c { v[i + ch] = Swift.min(v[i + ch], hi[ch]) }
        i += c
      }
    }
  }
}
