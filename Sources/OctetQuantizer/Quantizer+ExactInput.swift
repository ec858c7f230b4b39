import OctetCore
import OctetModels

extension Quantizer {
  /// A convolution that reads the uint8 pixels p of the image instead of the normalized input
  /// x = (p / 255 − mean_c) / std_c (docs/quantization.md §12), with BatchNorm already folded
  /// (`weights` OIHW, `bias` b'):
  ///
  /// - the normalization goes into the weights, w''[o, c, ·] = w'[o, c, ·] / (255 · std_c), in
  ///   Double, before the per-output-channel quantization (§2, §5 with s_in = 1, z_in = 0);
  /// - the mean goes into the bias. Padding is zero in the normalized domain, so the mean term runs
  ///   over the taps inside the image only: for each border class (rows × columns of kernel taps
  ///   inside the image; `BorderClasses`)
  ///   `border_bias[class][o] = round(b'[o] / s_w[o] − Σ_{taps of the class} w_q · 255 · mean_c)`,
  ///   one rounding in Double, so that the accumulator is `Σ w_q · (p − 255 · mean_c) + b' / s_w` to
  ///   within half a unit;
  /// - `bias` is the class with every tap inside (used where the whole window is in the image).
  ///
  /// The weight scale is chosen (and, for a dead channel, raised; §5) against the full-window bias.
  static func exactInputConv(
    weights w: [Double], bias b: [Double], outChannels o: Int, kernel: [Int], stride: [Int], padding: [Int],
    inHeight: Int, inWidth: Int, preprocessing: Preprocessing, node: String, weightMax: Int64,
    warnings: inout [QuantizationWarning]
  ) throws -> (weights: [Int8], scales: [Float], bias: [Int32], classes: BorderClasses, borderBias: [Int32]) {
    let (kh, kw) = (kernel[0], kernel[1])
    let cin = w.count / (o * kh * kw)
    guard cin == 3, preprocessing.mean.count == 3, preprocessing.std.count == 3 else {
      throw QuantizerError.layer(node, "exact input quantization needs a 3-channel (RGB) input convolution")
    }
    let mean = preprocessing.mean.map { 255 * Double($0) }
    let scale = preprocessing.std.map { 255 * Double($0) }
    // OIHW: index ((oc · cin + c) · kh + y) · kw + x.
    var folded = w
    var fullMean = [Double](repeating: 0, count: o)
    for oc in 0..<o {
      for c in 0..<cin {
        for t in 0..<(kh * kw) {
          let i = (oc * cin + c) * kh * kw + t
          folded[i] = w[i] / scale[c]
          fullMean[oc] += folded[i] * mean[c]
        }
      }
    }
    let interior = (0..<o).map { b[$0] - fullMean[$0] }
    let pixelInput = ActivationQuantization(scale: 1, zeroPoint: 0)
    let (wq, scales, _) = try quantizeChannels(
      weights: folded, bias: interior, outChannels: o, input: pixelInput, node: node, weightMax: weightMax,
      warnings: &warnings)
    let classes = BorderClasses(inHeight: inHeight, inWidth: inWidth, kernel: kernel, stride: stride, padding: padding)

    // The bias of a window whose rows `rows` and columns `cols` are inside the image.
    func classBias(rows: [Int], cols: [Int]) throws -> [Int32] {
      try (0..<o).map { oc in
        var meanTerm = 0.0
        var sumAbs: Int64 = 0
        for c in 0..<cin {
          for y in 0..<kh {
            for x in 0..<kw {
              let q = Int64(wq[((oc * cin + c) * kh + y) * kw + x])
              sumAbs += abs(q)
              if y >= rows[0], y < rows[1], x >= cols[0], x < cols[1] { meanTerm += Double(q) * mean[c] }
            }
          }
        }
        let value = roundToInt64(b[oc] / Double(scales[oc]) - meanTerm)
        // |acc| <= |bias| + 255 · Σ|w_q| must stay below 2^31 (docs/quantization.md §14).
        guard value.magnitude <= UInt64(Int64(Int32.max) - 255 * sumAbs) else {
          throw QuantizerError.layer(
            node,
            "output channel \(oc): the exact-input bias \(value) leaves no room for the products in int32 (docs/quantization.md §14)"
          )
        }
        return Int32(value)
      }
    }
    var borderBias: [Int32] = []
    borderBias.reserveCapacity(classes.count * o)
    for rows in classes.rowTaps {
      for cols in classes.colTaps { borderBias += try classBias(rows: rows, cols: cols) }
    }
    let bias = try classBias(rows: [0, kh], cols: [0, kw])
    return (wq, scales, bias, classes, borderBias)
  }
}
