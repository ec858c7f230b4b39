/// An 8-bit RGB image: `pixels` holds `height` rows of `width` pixels, each pixel three bytes
/// R, G, B (row-major HWC, no padding), so `pixels.count == width * height * 3`.
public struct RGBImage: Sendable, Equatable {
  public var width: Int
  public var height: Int
  public var pixels: [UInt8]

  public init(width: Int, height: Int, pixels: [UInt8]) {
    precondition(width >= 0 && height >= 0, "negative image size \(width)x\(height)")
    precondition(
      pixels.count == width * height * 3,
      "\(pixels.count) bytes do not make a \(width)x\(height) RGB image")
    self.width = width
    self.height = height
    self.pixels = pixels
  }

  /// The pixel at column `x`, row `y`.
  public subscript(x: Int, y: Int) -> (r: UInt8, g: UInt8, b: UInt8) {
    let i = (y * width + x) * 3
    return (pixels[i], pixels[i + 1], pixels[i + 2])
  }
}
