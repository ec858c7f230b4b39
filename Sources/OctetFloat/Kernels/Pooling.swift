import CFloatKernels
import OctetCore

/// Max pooling over NHWC: `[N, H, W, C]` -> `[N, OH, OW, C]` with
/// `OH = (H + padTop + padBottom - kernelH) / strideH + 1` (floor; likewise OW).
/// Padding never wins: it acts as -infinity, like PyTorch.
public func maxPool2D(
  _ x: Tensor, kernelH: Int, kernelW: Int, strideH: Int, strideW: Int,
  padTop: Int, padLeft: Int, padBottom: Int, padRight: Int
) -> Tensor {
  precondition(x.rank == 4, "max pool input has shape \(x.shape), expected [N, H, W, C]")
  precondition(
    kernelH > 0 && kernelW > 0 && strideH > 0 && strideW > 0
      && padTop >= 0 && padLeft >= 0 && padBottom >= 0 && padRight >= 0,
    "invalid max pool window")
  let oh = (x.height + padTop + padBottom - kernelH) / strideH + 1
  let ow = (x.width + padLeft + padRight - kernelW) / strideW + 1
  precondition(
    x.height + padTop + padBottom >= kernelH && x.width + padLeft + padRight >= kernelW,
    "max pool window \(kernelH)x\(kernelW) does not fit input \(x.shape)")
  var window = octet_f32_window(
    batch: Int32(x.batch), in_h: Int32(x.height), in_w: Int32(x.width),
    in_stride: Int32(x.channels), out_h: Int32(oh), out_w: Int32(ow),
    kernel_h: Int32(kernelH), kernel_w: Int32(kernelW),
    stride_h: Int32(strideH), stride_w: Int32(strideW),
    pad_top: Int32(padTop), pad_left: Int32(padLeft), dilation_h: 1, dilation_w: 1)
  let count = x.batch * oh * ow * x.channels
  guard count > 0 else { return Tensor(zeros: [x.batch, oh, ow, x.channels]) }
  let scalars = [Float](unsafeUninitializedCapacity: count) { out, initialized in
    x.scalars.withUnsafeBufferPointer {
      octet_f32_maxpool_nhwc(&window, $0.baseAddress!, out.baseAddress!)
    }
    initialized = count
  }
  return Tensor(shape: [x.batch, oh, ow, x.channels], scalars: scalars)
}

/// Mean over height and width: `[N, H, W, C]` -> `[N, 1, 1, C]`.
public func globalAveragePool(_ x: Tensor) -> Tensor {
  precondition(x.rank == 4, "global average pool input has shape \(x.shape), expected [N, H, W, C]")
  precondition(x.height * x.width > 0, "global average pool of an empty image \(x.shape)")
  let count = x.batch * x.channels
  guard count > 0 else { return Tensor(zeros: [x.batch, 1, 1, x.channels]) }
  let scalars = [Float](unsafeUninitializedCapacity: count) { out, initialized in
    x.scalars.withUnsafeBufferPointer {
      octet_f32_global_avgpool_nhwc(
        $0.baseAddress!, x.batch, x.height * x.width, x.channels, out.baseAddress!)
    }
    initialized = count
  }
  return Tensor(shape: [x.batch, 1, 1, x.channels], scalars: scalars)
}
