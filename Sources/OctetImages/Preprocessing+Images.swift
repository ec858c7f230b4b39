import Foundation
import OctetCore

/// torchvision's ImageNet evaluation transform on a PIL image, reproduced exactly:
/// `Resize(resizeShorter)` (bilinear, antialiased, Pillow's uint8 arithmetic), `CenterCrop(cropSize)`,
/// `ToTensor()`, `Normalize(mean, std)`.
extension Preprocessing {
  /// The size `Resize(resizeShorter)` gives a `width` x `height` image: the shorter side becomes
  /// `resizeShorter`, the longer `Int(Double(resizeShorter * long) / Double(short))` (Python's
  /// `int(size * long / short)`, truncating). A square image becomes `resizeShorter` squared.
  public func resizedSize(width: Int, height: Int) -> (width: Int, height: Int) {
    precondition(width > 0 && height > 0, "cannot resize a \(width)x\(height) image")
    let short = min(width, height)
    let long = max(width, height)
    let newLong = Int(Double(resizeShorter * long) / Double(short))
    return width <= height ? (resizeShorter, newLong) : (newLong, resizeShorter)
  }

  /// Pillow's `image.resize((width, height), Image.BILINEAR)`, bit for bit (Pillow 13's pass
  /// order; see `PillowBilinear`). Returns the image unchanged when the size is unchanged, as
  /// Pillow does.
  public func resizeBilinear(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
    PillowBilinear.resize(image, width: width, height: height, window: 0, 0, width, height)
  }

  /// torchvision's `CenterCrop((height, width))`: the crop starts at
  /// `round((size - crop) / 2)` with Python's round-half-to-even. A side shorter than the crop is
  /// padded with zeros (black) first, `(crop - size) / 2` before and the rest after, as torchvision
  /// pads before cropping.
  public func centerCrop(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
    let columns = Self.cropPlan(size: image.width, crop: width)
    let rows = Self.cropPlan(size: image.height, crop: height)
    var pixels = [UInt8](repeating: 0, count: width * height * 3)
    image.pixels.withUnsafeBufferPointer { src in
      pixels.withUnsafeMutableBufferPointer { dst in
        for r in 0..<rows.length {
          let from = src.baseAddress! + ((rows.source + r) * image.width + columns.source) * 3
          let to = dst.baseAddress! + ((rows.padding + r) * width + columns.padding) * 3
          to.update(from: from, count: columns.length * 3)
        }
      }
    }
    return RGBImage(width: width, height: height, pixels: pixels)
  }

  /// Resize then center-crop, in uint8: equal to `centerCrop(resizeBilinear(image, ...), ...)`
  /// but computes only the resized pixels inside the crop.
  /// Output: `cropSize` x `cropSize` RGB.
  public func resizeAndCrop(_ image: RGBImage) -> RGBImage {
    let size = resizedSize(width: image.width, height: image.height)
    guard size.width >= cropSize, size.height >= cropSize else {
      return centerCrop(
        resizeBilinear(image, width: size.width, height: size.height),
        width: cropSize, height: cropSize)
    }
    let columns = Self.cropPlan(size: size.width, crop: cropSize)
    let rows = Self.cropPlan(size: size.height, crop: cropSize)
    return PillowBilinear.resize(
      image, width: size.width, height: size.height,
      window: columns.source, rows.source, cropSize, cropSize)
  }

  /// `ToTensor()` then `Normalize(mean, std)` in float32, in torchvision's order:
  /// `(Float(v) / 255 - mean[c]) / std[c]`.
  /// Output: shape `[1, image.height, image.width, 3]`, NHWC.
  public func normalize(_ image: RGBImage) -> Tensor {
    precondition(mean.count == 3 && std.count == 3, "mean and std need 3 channels each")
    // 256 possible inputs per channel: a table holds every result, computed with the same float32
    // operations torchvision performs per pixel.
    var table = [Float](repeating: 0, count: 3 * 256)
    for c in 0..<3 {
      for v in 0..<256 { table[c * 256 + v] = (Float(v) / 255 - mean[c]) / std[c] }
    }
    let count = image.pixels.count
    let scalars = [Float](unsafeUninitializedCapacity: count) { out, initialized in
      image.pixels.withUnsafeBufferPointer { src in
        table.withUnsafeBufferPointer { lut in
          var i = 0
          while i < count {
            out[i] = lut[Int(src[i])]
            out[i + 1] = lut[256 + Int(src[i + 1])]
            out[i + 2] = lut[512 + Int(src[i + 2])]
            i += 3
          }
        }
      }
      initialized = count
    }
    return Tensor(shape: [1, image.height, image.width, 3], scalars: scalars)
  }

  /// The whole transform. Output: shape `[1, cropSize, cropSize, 3]`, NHWC, float32.
  public func apply(to image: RGBImage) -> Tensor {
    normalize(resizeAndCrop(image))
  }

  /// Along one axis: where the crop starts in the source, how many source pixels it copies, and
  /// how many zero pixels precede them.
  static func cropPlan(size: Int, crop: Int) -> (source: Int, length: Int, padding: Int) {
    if crop > size { return (0, size, (crop - size) / 2) }
    let start = Int((Double(size - crop) / 2).rounded(.toNearestOrEven))
    return (start, crop, 0)
  }
}
