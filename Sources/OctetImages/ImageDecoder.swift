import CImageGlue
import Foundation

/// Decodes JPEG and PNG files to 8-bit RGB exactly as `PIL.Image.open(path).convert("RGB")` does,
/// which is what torchvision's `ImageFolder` loader feeds its transforms.
///
/// The format is sniffed from the first bytes, never from the file extension (ImageNet has PNG
/// data in files named `.JPEG`). Alpha is dropped, not composited, as Pillow's `convert("RGB")`
/// does; see `ImageDecoder+JPEG.swift` and `ImageDecoder+PNG.swift` for the per-format rules.
public enum ImageDecoder {
  /// The default bound on `width * height`, checked against the file header before any pixel
  /// memory is allocated (a 100-megapixel RGB image is 300 MB).
  public static let defaultPixelLimit = 100_000_000

  public enum Format: String, Sendable {
    case jpeg = "JPEG"
    case png = "PNG"
  }

  /// The format named by the file's signature, or nil if it is neither JPEG nor PNG.
  public static func format(of bytes: some Collection<UInt8>) -> Format? {
    let jpegSignature: [UInt8] = [0xFF, 0xD8, 0xFF]
    let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    if bytes.starts(with: pngSignature) { return .png }
    if bytes.starts(with: jpegSignature) { return .jpeg }
    return nil
  }

  /// Reads and decodes the file at `url`; errors name the file by its last path component.
  public static func decode(contentsOf url: URL, pixelLimit: Int = defaultPixelLimit) throws
    -> RGBImage
  {
    let name = url.lastPathComponent
    let data: Data
    do {
      data = try Data(contentsOf: url)
    } catch {
      let reason =
        FileManager.default.fileExists(atPath: url.path) ? "\(error)" : "no such file"
      throw ImageError.unreadable(name: name, reason: reason)
    }
    return try decode(data: [UInt8](data), name: name, pixelLimit: pixelLimit)
  }

  /// Decodes an in-memory JPEG or PNG file. `name` is used only in error messages.
  public static func decode(data: [UInt8], name: String, pixelLimit: Int = defaultPixelLimit)
    throws -> RGBImage
  {
    guard !data.isEmpty else { throw ImageError.empty(name: name) }
    switch format(of: data) {
    case .jpeg: return try decodeJPEG(data, name: name, pixelLimit: pixelLimit)
    case .png: return try decodePNG(data, name: name, pixelLimit: pixelLimit)
    case nil: throw ImageError.unrecognizedFormat(name: name)
    }
  }

  static func checkSize(name: String, width: Int, height: Int, pixelLimit: Int) throws {
    // Both factors are < 2^32, so the product cannot overflow Int64.
    if width * height > pixelLimit {
      throw ImageError.tooLarge(name: name, width: width, height: height, limit: pixelLimit)
    }
  }
}
