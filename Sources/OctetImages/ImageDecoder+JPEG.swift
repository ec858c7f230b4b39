import CImageGlue

extension ImageDecoder {
  /// JPEG through libjpeg-turbo with Pillow's settings (islow IDCT, fancy upsampling, RGB output),
  /// so the pixels equal Pillow's bit for bit.
  ///
  /// - Grayscale files are replicated to R = G = B, as Pillow's "L" to "RGB" conversion does.
  /// - 4-component files (CMYK, or YCCK which libjpeg turns into CMYK) are read as Adobe-inverted
  ///   CMYK, as Pillow always assumes ("CMYK;I"), and converted with Pillow's CMYK to RGB formula.
  /// - Truncated or corrupt data is an error, even where libjpeg would only warn and pad the image
  ///   with grey; only "extraneous bytes before marker" (no pixel affected) is tolerated.
  static func decodeJPEG(_ data: [UInt8], name: String, pixelLimit: Int) throws -> RGBImage {
    guard let decoder = octet_jpeg_create() else { throw ImageError.outOfMemory(name: name) }
    defer { octet_jpeg_destroy(decoder) }
    func failure() -> ImageError {
      .corrupt(name: name, format: "JPEG", reason: String(cString: octet_jpeg_message(decoder)))
    }

    return try data.withUnsafeBufferPointer { file in
      var header = octet_jpeg_header()
      guard octet_jpeg_read_header(decoder, file.baseAddress, file.count, &header) == 0 else {
        throw failure()
      }
      let width = Int(header.width)
      let height = Int(header.height)
      try checkSize(name: name, width: width, height: height, pixelLimit: pixelLimit)
      let components = Int(header.components)
      guard components == 1 || components == 3 || components == 4 else {
        throw ImageError.unsupported(
          name: name, reason: "JPEG with \(components) color components (expected 1, 3 or 4)")
      }

      let channels = components == 4 ? 4 : 3
      let byteCount = width * height * channels
      var decoded = [UInt8](unsafeUninitializedCapacity: byteCount) { buffer, count in
        count = 0
        var produced: Int32 = 0
        if octet_jpeg_decode(decoder, buffer.baseAddress, byteCount, &produced) == 0,
          Int(produced) == channels
        {
          count = byteCount
        }
      }
      guard decoded.count == byteCount else { throw failure() }
      if channels == 4 { decoded = Self.rgbFromAdobeCMYK(decoded) }
      return RGBImage(width: width, height: height, pixels: decoded)
    }
  }

  /// Pillow's Adobe-CMYK to RGB: the file stores inverted inks (Photoshop convention), and
  /// R = (255 - K) - C * (255 - K) / 255 with Pillow's rounded integer division by 255.
  static func rgbFromAdobeCMYK(_ stored: [UInt8]) -> [UInt8] {
    let pixelCount = stored.count / 4
    return [UInt8](unsafeUninitializedCapacity: pixelCount * 3) { out, count in
      stored.withUnsafeBufferPointer { cmyk in
        for p in 0..<pixelCount {
          // Inverted storage: 255 - stored is the ink, and 255 - ink K is the stored K itself.
          let notK = Int(cmyk[p * 4 + 3])
          for c in 0..<3 {
            let ink = 255 - Int(cmyk[p * 4 + c])
            let t = ink * notK + 128
            out[p * 3 + c] = UInt8(notK - (((t >> 8) + t) >> 8))
          }
        }
      }
      count = pixelCount * 3
    }
  }
}
