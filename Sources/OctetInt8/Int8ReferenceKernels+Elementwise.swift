import OctetCore
import OctetModels

// Reference kernels of the ONNX operators (docs/quantization.md §20-§23): plain scalar loops, the
// oracle of the C kernels in CInt8Kernels/elementwise.c.

/// §20: `out[i] = table[x[i]]`.
func int8Lookup(_ x: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>, table: [UInt8]) {
  precondition(x.count == out.count && table.count == 256)
  for i in 0..<x.count { out[i] = table[Int(x[i])] }
}

/// §21: `q = clamp(requant((q_a − z_a) · (q_b − z_b)) + z_out, 0, 255)` over `x` `[pixels, C]`,
/// where `y` is `[pixels, C]` too or `[C]` (broadcast over the pixels, squeeze-and-excitation).
/// `|(q_a − z_a) · (q_b − z_b)| <= 255 · 255 < 2^16`: the Int32 form of the requantization.
func int8Mul(
  _ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>,
  channels: Int, zeroPointX: Int32, zeroPointY: Int32, requant: RequantMultiplier, outputZeroPoint: Int32
) {
  precondition(x.count == out.count && (y.count == x.count || y.count == channels) && x.count % channels == 0)
  let broadcast = y.count != x.count
  for i in 0..<x.count {
    let b = broadcast ? y[i % channels] : y[i]
    let product = (Int32(x[i]) - zeroPointX) * (Int32(b) - zeroPointY)
    out[i] = clampToUInt8(requant.apply(product) + Int64(outputZeroPoint), lo: 0, hi: 255)
  }
}

/// §22: channels `[offset, offset + C)` of `out` `[pixels, total]` from `x` `[pixels, C]`:
/// `q = clamp(requant(q − z_in) + z_out, 0, 255)`.
func int8ConcatInto(
  _ x: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>, channels: Int, offset: Int, total: Int,
  inputZeroPoint: Int32, requant: RequantMultiplier, outputZeroPoint: Int32
) {
  let pixels = x.count / channels
  precondition(x.count == pixels * channels && out.count == pixels * total && offset + channels <= total)
  for p in 0..<pixels {
    for c in 0..<channels {
      let d = Int32(x[p * channels + c]) - inputZeroPoint
      out[p * total + offset + c] = clampToUInt8(requant.apply(d) + Int64(outputZeroPoint), lo: 0, hi: 255)
    }
  }
}

/// §23: `q = clamp(requant[t − 1](Σ (q − z_in)) + z_out, 0, 255)` over each window, the sum over
/// its t taps inside the input; t is kh · kw when padded taps count (they are real zeros:
/// q − z_in = 0). `|Σ| <= 255 · 2^16 < 2^24`.
func int8AveragePool(
  _ x: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>, height: Int, width: Int,
  channels: Int, attributes a: Int8WindowAveragePoolAttributes, outputZeroPoint: Int32, outHeight: Int,
  outWidth: Int
) {
  precondition(x.count == height * width * channels && out.count == outHeight * outWidth * channels)
  var sum = [Int32](repeating: 0, count: channels)
  for oy in 0..<outHeight {
    for ox in 0..<outWidth {
      for c in 0..<channels { sum[c] = 0 }
      var taps = 0
      for ky in 0..<a.kernel[0] {
        let iy = oy * a.stride[0] - a.padding[0] + ky
        guard iy >= 0, iy < height else { continue }
        for kx in 0..<a.kernel[1] {
          let ix = ox * a.stride[1] - a.padding[1] + kx
          guard ix >= 0, ix < width else { continue }
          taps += 1
          let base = (iy * width + ix) * channels
          for c in 0..<channels { sum[c] += Int32(x[base + c]) - a.input.zeroPoint }
        }
      }
      let m = a.requant[(a.countIncludePad ? a.kernel[0] * a.kernel[1] : taps) - 1]
      let o = (oy * outWidth + ox) * channels
      for c in 0..<channels {
        out[o + c] = clampToUInt8(m.apply(sum[c]) + Int64(outputZeroPoint), lo: 0, hi: 255)
      }
    }
  }
}
