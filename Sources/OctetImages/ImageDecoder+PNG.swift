import CImageGlue

extension ImageDecoder {
  /// PNG through libpng, converted to RGB8 the way Pillow opens the file and then calls
  /// `convert("RGB")`:
  ///
  /// - palette: looked up in PLTE; tRNS transparency is dropped;
  /// - 1/2/4-bit gray: scaled to 0...255 (x * 255 / (2^bits - 1)), replicated to R = G = B;
  /// - 16-bit gray: Pillow's "I;16" mode, whose conversion to RGB *clamps* the value to 255
  ///   (so 256...65535 all become 255), not the high byte;
  /// - 16-bit RGB, RGBA and gray+alpha: the high byte of each sample;
  /// - alpha channels are dropped, never composited; gamma, sRGB and ICC chunks are ignored.
  static func decodePNG(_ data: [UInt8], name: String, pixelLimit: Int) throws -> RGBImage {
    guard let decoder = octet_png_create() else { throw ImageError.outOfMemory(name: name) }
    defer { octet_png_destroy(decoder) }
    func failure() -> ImageError {
      .corrupt(name: name, format: "PNG", reason: String(cString: octet_png_message(decoder)))
    }

    return try data.withUnsafeBufferPointer { file in
      var header = octet_png_header()
      guard octet_png_read_header(decoder, file.baseAddress, file.count, &header) == 0 else {
        throw failure()
      }
      let width = Int(header.width)
      let height = Int(header.height)
      try checkSize(name: name, width: width, height: height, pixelLimit: pixelLimit)

      var rows: UnsafePointer<UInt8>? = nil
      var rowBytes = 0
      var channels: Int32 = 0
      var bitDepth: Int32 = 0
      guard octet_png_decode(decoder, &rows, &rowBytes, &channels, &bitDepth) == 0,
        let rows
      else { throw failure() }

      let layout = PNGRowLayout(
        channels: Int(channels), bitDepth: Int(bitDepth),
        clampsGray16: header.color_type == 0 && header.bit_depth == 16)
      guard layout.isSupported, rowBytes >= width * layout.bytesPerPixel else {
        throw ImageError.unsupported(
          name: name, reason: "libpng produced \(channels) channels of \(bitDepth) bits")
      }
      let pixels = [UInt8](unsafeUninitializedCapacity: width * height * 3) { out, count in
        for y in 0..<height {
          layout.convertRow(
            rows + y * rowBytes, to: out.baseAddress! + y * width * 3, width: width)
        }
        count = width * height * 3
      }
      return RGBImage(width: width, height: height, pixels: pixels)
    }
  }
}

/// One row of libpng output (after palette and low-bit-gray expansion) and how it becomes RGB8.
struct PNGRowLayout {
  var channels: Int  // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  var bitDepth: Int  // 8 or 16 (big-endian)
  var clampsGray16: Bool

  var isSupported: Bool { (1...4).contains(channels) && (bitDepth == 8 || bitDepth == 16) }
  var bytesPerPixel: Int { channels * bitDepth / 8 }

  func convertRow(_ src: UnsafePointer<UInt8>, to dst: UnsafeMutablePointer<UInt8>, width: Int) {
    let step = bytesPerPixel
    let sampleBytes = bitDepth / 8  // the high byte of a 16-bit sample comes first
    let isGray = channels <= 2
    for x in 0..<width {
      let p = src + x * step
      if isGray {
        let v: UInt8
        if clampsGray16 {
          v = p[0] != 0 ? 255 : p[1]  // min(value, 255)
        } else {
          v = p[0]
        }
        dst[x * 3] = v
        dst[x * 3 + 1] = v
        dst[x * 3 + 2] = v
      } else {
        dst[x * 3] = p[0]
        dst[x * 3 + 1] = p[sampleBytes]
        dst[x * 3 + 2] = p[2 * sampleBytes]
      }
    }
  }
}
