/// The output size of a sliding window (convolution or pool) along one axis, for every executor
/// and the quantizer (PyTorch/ONNX rule):
/// `out = floor((in + padBefore + padAfter - dilation * (kernel - 1) - 1) / stride) + 1`.
/// It may be <= 0 when the window does not fit the padded input; planners check.
public enum WindowShape {
  public static func outputSize(
    input: Int, kernel: Int, stride: Int, padBefore: Int, padAfter: Int, dilation: Int = 1
  ) -> Int {
    let span = dilation * (kernel - 1) + 1
    let room = input + padBefore + padAfter - span
    // Floor division that stays correct for a negative numerator (a window larger than the input).
    return (room >= 0 ? room / stride : -((-room + stride - 1) / stride)) + 1
  }

  /// Output [height, width] for an input of `height` x `width`, kernel [kh, kw], stride [sh, sw],
  /// padding [top, left, bottom, right] and dilation [dh, dw].
  public static func outputSize(
    height: Int, width: Int, kernel: [Int], stride: [Int], padding: [Int], dilation: [Int] = [1, 1]
  ) -> (height: Int, width: Int) {
    (
      outputSize(
        input: height, kernel: kernel[0], stride: stride[0], padBefore: padding[0], padAfter: padding[2],
        dilation: dilation[0]),
      outputSize(
        input: width, kernel: kernel[1], stride: stride[1], padBefore: padding[1], padAfter: padding[3],
        dilation: dilation[1])
    )
  }
}
