/// Pillow's `Image.resize(size, Image.BILINEAR)` on 8-bit RGB, reproduced bit for bit
/// (Pillow's src/libImaging/Resample.c, `reducing_gap=None`, no box).
///
/// The arithmetic, which any change here must keep:
/// - Separable: one pass per axis, the first rounded and clipped to uint8 before the second.
///   Horizontal first, unless the height shrinks by more than twice as many pixels as the width
///   (Pillow 13). A pass whose axis keeps its size is skipped (it would be the identity).
/// - Per axis, `scale = inSize / outSize`; the triangle filter's support is `max(scale, 1)`, so
///   downscaling averages over the whole footprint (antialiasing). Output index `i` is centred
///   at `(i + 0.5) * scale`; its taps are input indices `[trunc(center - support + 0.5),
///   trunc(center + support + 0.5))` clipped to the image, weighted by
///   `tri((j - center + 0.5) / max(scale, 1))` and divided by their sum, all in Double.
/// - The weights become Q22 fixed point (`trunc(w * 2^22 + 0.5)`), a pixel is
///   `clip((2^21 + sum(p_j * w_j)) >> 22)` in Int32.
enum PillowBilinear {
  static let precisionBits: Int32 = 22  // 32 - 8 - 2, as in Pillow

  /// The taps of one axis, precomputed once per resize: output `i` reads `count[i]` inputs from
  /// `first[i]` with the Q22 weights `weights[i * stride ..< i * stride + count[i]]`.
  struct Axis {
    let outSize: Int
    let stride: Int
    let first: [Int]
    let count: [Int]
    let weights: [Int32]

    init(inSize: Int, outSize: Int) {
      precondition(inSize > 0 && outSize > 0, "cannot resample \(inSize) to \(outSize)")
      let scale = Double(inSize) / Double(outSize)
      let filterScale = max(scale, 1.0)
      let support = filterScale  // the triangle filter's support is 1
      let stride = Int(support.rounded(.up)) * 2 + 1
      let inverseScale = 1.0 / filterScale
      var first = [Int](repeating: 0, count: outSize)
      var count = [Int](repeating: 0, count: outSize)
      var weights = [Int32](repeating: 0, count: outSize * stride)
      var taps = [Double](repeating: 0, count: stride)
      for i in 0..<outSize {
        let center = (Double(i) + 0.5) * scale
        // Int(Double) truncates toward zero, like C's (int) cast.
        let lo = max(Int(center - support + 0.5), 0)
        let hi = min(Int(center + support + 0.5), inSize)
        let n = hi - lo
        var total = 0.0
        for j in 0..<n {
          let w = Self.triangle((Double(j + lo) - center + 0.5) * inverseScale)
          taps[j] = w
          total += w
        }
        for j in 0..<n {
          let w = total != 0 ? taps[j] / total : taps[j]
          let scaled = w * Double(1 << precisionBits)
          weights[i * stride + j] = Int32(w < 0 ? -0.5 + scaled : 0.5 + scaled)
        }
        first[i] = lo
        count[i] = n
      }
      self.outSize = outSize
      self.stride = stride
      self.first = first
      self.count = count
      self.weights = weights
    }

    private static func triangle(_ x: Double) -> Double {
      let a = abs(x)
      return a < 1.0 ? 1.0 - a : 0.0
    }
  }

  /// Resizes `image` to `width` x `height` and returns only the window `x0 ..< x0 + windowWidth`,
  /// `y0 ..< y0 + windowHeight` of the result, computing nothing outside it. The window's pixels
  /// equal those of the full resize: each output pixel depends only on its own taps, and the
  /// passes run in Pillow's order, which matters because the intermediate is rounded to uint8.
  static func resize(
    _ image: RGBImage, width: Int, height: Int,
    window x0: Int, _ y0: Int, _ windowWidth: Int, _ windowHeight: Int
  ) -> RGBImage {
    precondition(image.width > 0 && image.height > 0, "cannot resize an empty image")
    precondition(width > 0 && height > 0, "cannot resize to \(width)x\(height)")
    precondition(
      x0 >= 0 && y0 >= 0 && windowWidth >= 0 && windowHeight >= 0
        && x0 + windowWidth <= width && y0 + windowHeight <= height,
      "window \(x0),\(y0) \(windowWidth)x\(windowHeight) is outside \(width)x\(height)")
    if windowWidth == 0 || windowHeight == 0 {
      return RGBImage(width: windowWidth, height: windowHeight, pixels: [])
    }
    let columns = x0..<(x0 + windowWidth)
    let rows = y0..<(y0 + windowHeight)
    let horizontal = width != image.width ? Axis(inSize: image.width, outSize: width) : nil
    let vertical = height != image.height ? Axis(inSize: image.height, outSize: height) : nil
    let source = Plane(image)

    // Pillow 13 (Resample.c, ImagingResampleInner) runs the vertical pass first when the height
    // shrinks by more than twice as many pixels as the width does, else the horizontal pass.
    let rowsLost = image.height - height
    let verticalFirst = rowsLost > 0 && rowsLost > (image.width - width) * 2

    let result: Plane
    if verticalFirst {
      // Vertical pass over only the input columns the window's horizontal taps read.
      let needed = horizontal?.span(of: columns) ?? columns
      let tall =
        vertical.map { source.resampledVertically($0, rows: rows, columns: needed) }
        ?? source.cropped(rows: rows, columns: needed)
      result = horizontal.map { tall.resampledHorizontally($0, columns: columns) } ?? tall
    } else {
      // Horizontal pass over only the input rows the window's vertical taps read.
      let needed = vertical?.span(of: rows) ?? rows
      let wide =
        horizontal.map { source.resampledHorizontally($0, rows: needed, columns: columns) }
        ?? source.cropped(rows: needed, columns: columns)
      result = vertical.map { wide.resampledVertically($0, rows: rows, columns: columns) } ?? wide
    }
    return RGBImage(width: windowWidth, height: windowHeight, pixels: result.pixels)
  }
}

extension PillowBilinear.Axis {
  /// The input indices that outputs `outputs` read (taps are monotonic in the output index).
  func span(of outputs: Range<Int>) -> Range<Int> {
    var lo = Int.max
    var hi = Int.min
    for i in outputs {
      lo = min(lo, first[i])
      hi = max(hi, first[i] + count[i])
    }
    return lo..<hi
  }
}

/// A rectangle of RGB8 pixels that sits at `rows` x `columns` of a larger image, so that tap
/// indices (in whole-image coordinates) can be used on it directly.
struct Plane {
  var rows: Range<Int>
  var columns: Range<Int>
  var pixels: [UInt8]

  init(rows: Range<Int>, columns: Range<Int>, pixels: [UInt8]) {
    precondition(pixels.count == rows.count * columns.count * 3)
    self.rows = rows
    self.columns = columns
    self.pixels = pixels
  }

  init(_ image: RGBImage) {
    self.init(rows: 0..<image.height, columns: 0..<image.width, pixels: image.pixels)
  }

  func cropped(rows newRows: Range<Int>, columns newColumns: Range<Int>) -> Plane {
    precondition(rows.contains(newRows.lowerBound) && newRows.upperBound <= rows.upperBound)
    precondition(
      columns.contains(newColumns.lowerBound) && newColumns.upperBound <= columns.upperBound)
    if newRows == rows && newColumns == columns { return self }
    let rowBytes = newColumns.count * 3
    let pixels = [UInt8](unsafeUninitializedCapacity: newRows.count * rowBytes) { out, n in
      self.pixels.withUnsafeBufferPointer { src in
        for (r, y) in newRows.enumerated() {
          let from = src.baseAddress! + self.offset(row: y, column: newColumns.lowerBound)
          (out.baseAddress! + r * rowBytes).initialize(from: from, count: rowBytes)
        }
      }
      n = newRows.count * rowBytes
    }
    return Plane(rows: newRows, columns: newColumns, pixels: pixels)
  }

  @inline(__always)
  func offset(row: Int, column: Int) -> Int {
    ((row - rows.lowerBound) * columns.count + (column - columns.lowerBound)) * 3
  }

  @inline(__always)
  private static func clip8(_ accumulator: Int32) -> UInt8 {
    let v = accumulator >> PillowBilinear.precisionBits
    return v < 0 ? 0 : (v > 255 ? 255 : UInt8(truncatingIfNeeded: v))
  }

  /// Pillow's horizontal 8-bit pass: output columns `outColumns` of `rows`.
  func resampledHorizontally(
    _ axis: PillowBilinear.Axis, rows outRows: Range<Int>? = nil, columns outColumns: Range<Int>
  ) -> Plane {
    let outRows = outRows ?? rows
    precondition(rows.contains(outRows.lowerBound) && outRows.upperBound <= rows.upperBound)
    let span = axis.span(of: outColumns)
    precondition(columns.contains(span.lowerBound) && span.upperBound <= columns.upperBound)
    let half: Int32 = 1 << (PillowBilinear.precisionBits - 1)
    let rowBytes = outColumns.count * 3
    let pixels = [UInt8](unsafeUninitializedCapacity: outRows.count * rowBytes) { out, n in
      self.pixels.withUnsafeBufferPointer { srcBuffer in
        axis.weights.withUnsafeBufferPointer { weightBuffer in
          axis.first.withUnsafeBufferPointer { first in
            axis.count.withUnsafeBufferPointer { count in
              let weights = weightBuffer.baseAddress!
              var dst = out.baseAddress!
              for y in outRows {
                let src = srcBuffer.baseAddress! + offset(row: y, column: columns.lowerBound)
                let base = columns.lowerBound
                for x in outColumns {
                  let k = weights + x * axis.stride
                  var p = src + (first[x] - base) * 3
                  var s0 = half
                  var s1 = half
                  var s2 = half
                  for j in 0..<count[x] {
                    let w = k[j]
                    s0 &+= Int32(p[0]) &* w
                    s1 &+= Int32(p[1]) &* w
                    s2 &+= Int32(p[2]) &* w
                    p += 3
                  }
                  dst[0] = Self.clip8(s0)
                  dst[1] = Self.clip8(s1)
                  dst[2] = Self.clip8(s2)
                  dst += 3
                }
              }
            }
          }
        }
      }
      n = outRows.count * rowBytes
    }
    return Plane(rows: outRows, columns: outColumns, pixels: pixels)
  }

  /// Pillow's vertical 8-bit pass: output rows `outRows` of `outColumns`.
  func resampledVertically(
    _ axis: PillowBilinear.Axis, rows outRows: Range<Int>, columns outColumns: Range<Int>? = nil
  ) -> Plane {
    let outColumns = outColumns ?? columns
    precondition(
      columns.contains(outColumns.lowerBound) && outColumns.upperBound <= columns.upperBound)
    let span = axis.span(of: outRows)
    precondition(rows.contains(span.lowerBound) && span.upperBound <= rows.upperBound)
    let half: Int32 = 1 << (PillowBilinear.precisionBits - 1)
    let rowBytes = outColumns.count * 3
    var accumulator = [Int32](repeating: 0, count: rowBytes)
    let pixels = [UInt8](unsafeUninitializedCapacity: outRows.count * rowBytes) { out, n in
      self.pixels.withUnsafeBufferPointer { srcBuffer in
        accumulator.withUnsafeMutableBufferPointer { accBuffer in
          let acc = accBuffer.baseAddress!
          for (r, y) in outRows.enumerated() {
            for i in 0..<rowBytes { acc[i] = half }
            // Integer sums are exact, so accumulating tap by tap over whole rows gives the same
            // result as Pillow's per-pixel loop, and vectorizes.
            for j in 0..<axis.count[y] {
              let w = axis.weights[y * axis.stride + j]
              let src =
                srcBuffer.baseAddress!
                + offset(row: axis.first[y] + j, column: outColumns.lowerBound)
              for i in 0..<rowBytes { acc[i] &+= Int32(src[i]) &* w }
            }
            let dst = out.baseAddress! + r * rowBytes
            for i in 0..<rowBytes { dst[i] = Self.clip8(acc[i]) }
          }
        }
      }
      n = outRows.count * rowBytes
    }
    return Plane(rows: outRows, columns: outColumns, pixels: pixels)
  }
}
