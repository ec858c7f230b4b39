import OctetCore

/// Exact input quantization (docs/quantization.md §12): the `quantize_input` node recovers the
/// decoded uint8 pixels from the normalized float input, `p = round((x · std_c + mean_c) · 255)`,
/// and the first convolution, whose weights carry the normalization, reads them with scale 1 and
/// zero point 0. Stored in the `quantize_input` node of the int8 model file (`pixelInput`).
public struct PixelNormalization: Codable, Sendable, Equatable {
  /// Per RGB channel, the `Preprocessing` the float input was made with.
  public var mean: [Float]
  public var std: [Float]

  public init(mean: [Float], std: [Float]) {
    self.mean = mean
    self.std = std
  }

  /// The pixel a normalized input value came from, `(x · std + mean) · 255` rounded:
  /// `floor(x · (255 · std) + (255 · mean + 1/2))`, each operation in Float, clamped to [0, 255]
  /// (NaN → 0). Exact for every x that `Preprocessing.normalize` makes from a uint8: its Float
  /// rounding errors and these move the value by less than 10^-3 of a pixel step, far from the
  /// half-way points. The C kernel `octet_i8_input_pixels` computes the same Float operations.
  @inline(__always)
  public func pixel(_ x: Float, channel c: Int) -> UInt8 {
    let v = x * (255 * std[c]) + (255 * mean[c] + 0.5)
    guard v > 0 else { return 0 }  // and NaN
    return v < 255 ? UInt8(v) : 255  // UInt8(v) truncates: floor for v > 0
  }

  /// What `QuantizedModel.validate` checks: three finite means and three positive finite stds.
  public var isValid: Bool {
    mean.count == 3 && std.count == 3 && mean.allSatisfy(\.isFinite) && std.allSatisfy { $0.isFinite && $0 > 0 }
  }
}

/// The border classes of a convolution that reads uint8 pixels (docs/quantization.md §12). Padding
/// is zero in the normalized domain, so the folded mean term `Σ w_q · 255 · mean_c` runs over the
/// taps inside the image only, and an output position's bias depends on which kernel rows and
/// columns fall inside the image. Rows with the same range of inside kernel rows form a row class
/// (likewise columns); class (r, c) has its own int32 bias vector, `<node>.border_bias[r · cols + c]`.
///
/// The classes follow from the geometry alone: `rowTaps` lists each row class's kernel rows
/// `[first, end)` in order of first appearance from the top, `rowClass[oy]` names the class of
/// output row `oy` (columns likewise). The model file stores `rowTaps` and `colTaps`, and loading
/// checks them against the geometry.
public struct BorderClasses: Codable, Sendable, Equatable {
  public var rowTaps: [[Int]]
  public var colTaps: [[Int]]

  public init(rowTaps: [[Int]], colTaps: [[Int]]) {
    self.rowTaps = rowTaps
    self.colTaps = colTaps
  }

  /// The classes of a convolution over an `inHeight` x `inWidth` input (kernel [kh, kw], stride
  /// [sh, sw], padding [top, left, bottom, right]).
  public init(inHeight: Int, inWidth: Int, kernel: [Int], stride: [Int], padding: [Int]) {
    let (oh, ow) = WindowShape.outputSize(
      height: inHeight, width: inWidth, kernel: kernel, stride: stride, padding: padding)
    rowTaps = Self.axis(size: inHeight, out: oh, kernel: kernel[0], stride: stride[0], pad: padding[0]).taps
    colTaps = Self.axis(size: inWidth, out: ow, kernel: kernel[1], stride: stride[1], pad: padding[1]).taps
  }

  /// Per output position along one axis: the class index, and the classes' tap ranges.
  public static func axis(size: Int, out: Int, kernel: Int, stride: Int, pad: Int) -> (taps: [[Int]], classOf: [Int]) {
    var taps: [[Int]] = []
    var classOf: [Int] = []
    for o in 0..<max(out, 0) {
      let start = o * stride - pad
      let first = max(0, -start)
      let range = [first, max(first, min(kernel, size - start))]
      if let i = taps.firstIndex(of: range) {
        classOf.append(i)
      } else {
        classOf.append(taps.count)
        taps.append(range)
      }
    }
    return (taps, classOf)
  }

  public var count: Int { rowTaps.count * colTaps.count }
}
