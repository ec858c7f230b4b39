/// How an image becomes the network's input, as torchvision does it:
/// resize the shorter side to `resizeShorter` (bilinear, PIL's arithmetic), center-crop
/// `cropSize` x `cropSize`, scale to [0, 1], then subtract `mean` and divide by `std` per RGB channel.
/// The result is a `[1, cropSize, cropSize, 3]` NHWC float tensor.
public struct Preprocessing: Codable, Sendable, Equatable {
  public var resizeShorter: Int
  public var cropSize: Int
  public var mean: [Float]
  public var std: [Float]

  public init(resizeShorter: Int, cropSize: Int, mean: [Float], std: [Float]) {
    self.resizeShorter = resizeShorter
    self.cropSize = cropSize
    self.mean = mean
    self.std = std
  }

  /// torchvision's ImageNet normalization (ResNet50 and most torchvision models).
  public static let imagenet = Preprocessing(
    resizeShorter: 256, cropSize: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

  /// Mean 0.5, std 0.5 per channel: EfficientNet-Lite (see ../shared/models/README.md).
  public static let symmetric = Preprocessing(
    resizeShorter: 256, cropSize: 224, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
}
