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

    try checkChunkLengths(data, name: name)
    return try data.withUnsafeBufferPointer { file in
      var header = octet_png_header()
      guard octet_png_read_header(decoder, file.baseAddress, file.count, &header) == 0 else {
        throw failure()
      }
      let width = Int(header.width)
      let height = Int(header.height)
      try checkSize(name: name, width: width, height: height, pixelLimit: pixelLimit)
      try checkCompressedSize(
        name: name, width: width, height: height, bitDepth: Int(header.bit_depth),
        colorType: Int(header.color_type), fileSize: file.count)

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

extension ImageDecoder {
  /// libpng allocates each chunk before the image data at the length its header declares, and
  /// this build of it sets no limit: a 99-byte file declaring a 2 GB zTXt chunk made it allocate
  /// 2 GB (fuzz-image). Every chunk up to the first IDAT must fit in the file.
  static func checkChunkLengths(_ data: [UInt8], name: String) throws {
    var at = 8
    while at + 8 <= data.count {
      let length = Int(data[at]) << 24 | Int(data[at + 1]) << 16 | Int(data[at + 2]) << 8 | Int(data[at + 3])
      if data[at + 4..<at + 8].elementsEqual("IDAT".utf8) { return }
      let remaining = data.count - at - 12
      guard length <= remaining else {
        let type = String(decoding: data[at + 4..<at + 8], as: UTF8.self)
        throw ImageError.corrupt(
          name: name, format: "PNG",
          reason: "its '\(type)' chunk at offset \(at) declares \(length) bytes, but only \(max(0, remaining)) follow")
      }
      at += 12 + length
    }
  }

  /// Deflate expands at most 1032:1 (258-byte matches coded in 2 bits), so the file must be at
  /// least 1/1032 of the filtered image data libpng would inflate: a few bytes that announce
  /// 10000x10000 pixels are refused here, before the decoder allocates 300 MB for them.
  static let maxDeflateRatio = 1032

  static func checkCompressedSize(
    name: String, width: Int, height: Int, bitDepth: Int, colorType: Int, fileSize: Int
  ) throws {
    let samples: Int
    switch colorType {
    case 0, 3: samples = 1  // gray, palette
    case 4: samples = 2  // gray + alpha
    case 2: samples = 3  // RGB
    default: samples = 4  // RGBA
    }
    // Width and height are below 2^31 (libpng's limit) and bitDepth * samples <= 64, so the
    // products below fit in Int64. Interlacing only adds filter bytes, so this is a lower bound.
    let rowBytes = (width * samples * bitDepth + 7) / 8
    let filtered = height * (1 + rowBytes)
    if filtered > fileSize * maxDeflateRatio {
      throw ImageError.corrupt(
        name: name, format: "PNG",
        reason: "its header announces \(width)x\(height) pixels (\(filtered) bytes of image data), "
          + "more than its \(fileSize) bytes can hold compressed")
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
