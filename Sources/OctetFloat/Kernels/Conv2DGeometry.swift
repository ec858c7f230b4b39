import OctetModels

/// Shape of a 2-D convolution over NHWC activations.
///
/// Padding is explicit and may be asymmetric (TensorFlow "same" pads the bottom/right more). The
/// output size follows PyTorch/ONNX:
/// `out = (in + padBefore + padAfter - dilation * (kernel - 1) - 1) / stride + 1` (floor division).
/// `groups` splits the channels into independent convolutions: 1 is a dense convolution,
/// `groups == inChannels == outChannels` a depthwise one; any `groups` dividing both channel counts
/// works.
public struct Conv2DGeometry: Sendable, Equatable {
  public var inChannels: Int
  public var outChannels: Int
  public var kernelH: Int
  public var kernelW: Int
  public var strideH: Int
  public var strideW: Int
  public var padTop: Int
  public var padLeft: Int
  public var padBottom: Int
  public var padRight: Int
  public var groups: Int
  public var dilationH: Int
  public var dilationW: Int

  public init(
    inChannels: Int, outChannels: Int, kernelH: Int, kernelW: Int,
    strideH: Int = 1, strideW: Int = 1,
    padTop: Int = 0, padLeft: Int = 0, padBottom: Int = 0, padRight: Int = 0,
    groups: Int = 1, dilationH: Int = 1, dilationW: Int = 1
  ) {
    self.inChannels = inChannels
    self.outChannels = outChannels
    self.kernelH = kernelH
    self.kernelW = kernelW
    self.strideH = strideH
    self.strideW = strideW
    self.padTop = padTop
    self.padLeft = padLeft
    self.padBottom = padBottom
    self.padRight = padRight
    self.groups = groups
    self.dilationH = dilationH
    self.dilationW = dilationW
  }

  /// Output height and width for an input of `inputHeight x inputWidth` (may be <= 0 when the
  /// window does not fit; callers check).
  public func outputSize(inputHeight: Int, inputWidth: Int) -> (height: Int, width: Int) {
    WindowShape.outputSize(
      height: inputHeight, width: inputWidth, kernel: [kernelH, kernelW], stride: [strideH, strideW],
      padding: [padTop, padLeft, padBottom, padRight], dilation: [dilationH, dilationW])
  }

  /// Input channels seen by each output channel.
  public var inChannelsPerGroup: Int { inChannels / groups }
  /// Output channels produced by each group.
  public var outChannelsPerGroup: Int { outChannels / groups }
  /// True for a depthwise convolution with channel multiplier 1.
  public var isDepthwise: Bool { groups > 1 && groups == inChannels && groups == outChannels }
  /// Multiply-accumulates per image for an input of the given size.
  public func macs(inputHeight: Int, inputWidth: Int) -> Int {
    let (oh, ow) = outputSize(inputHeight: inputHeight, inputWidth: inputWidth)
    return oh * ow * outChannels * inChannelsPerGroup * kernelH * kernelW
  }
}
