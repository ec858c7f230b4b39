import OctetCore
import OctetModels

// Scalar integer operators, one image at a time, NHWC. They read like the formulas of
// docs/quantization.md; shapes are checked once by the plan, so the
// kernels only precondition. Accumulators are Int32 with wrapping adds: the quantizer checks per
// layer that |bias| + 255 · Σ|w| < 2^31, so the final sum is exact.

/// A convolution's geometry and integer parameters, resolved for one input size.
struct Int8ConvPlan {
  var inHeight: Int, inWidth: Int, inChannels: Int
  var outHeight: Int, outWidth: Int, outChannels: Int
  var kernelH: Int, kernelW: Int, strideH: Int, strideW: Int
  var padTop: Int, padLeft: Int
  var groups: Int
  /// `[O, kh, kw, I/groups]`; for depthwise convolutions re-laid out as `[kh, kw, C]`.
  var weights: [Int8]
  var bias: [Int32]
  var requant: [RequantMultiplier]
  var inputZeroPoint: Int32
  var outputZeroPoint: Int32
  var clampLo: Int32, clampHi: Int32
  /// Exact input (docs/quantization.md §12): `[classes, O]` biases, and the class of each output
  /// row and column (class = rowClass[oy] · colClasses + colClass[ox]); empty otherwise.
  var borderBias: [Int32] = []
  var rowClass: [Int] = [], colClass: [Int] = []
  var colClasses = 0
  /// Per-channel clamp bounds (docs/quantization.md §7.1), `[O]` each, or empty: `clampLo/Hi` for all.
  var channelClampLo: [Int32] = [], channelClampHi: [Int32] = []

  /// The output clamp of channel `c`.
  @inline(__always) func bounds(_ c: Int) -> (lo: Int32, hi: Int32) {
    channelClampLo.isEmpty ? (clampLo, clampHi) : (channelClampLo[c], channelClampHi[c])
  }

  var isDepthwise: Bool { groups == inChannels && groups == outChannels }

  /// Tests' shortcut: `node` must be a valid conv2d node.
  init(node: QuantizedNode, inHeight: Int, inWidth: Int) {
    guard case .conv2d(let attributes) = try? node.operation() else {
      preconditionFailure("'\(node.name)' is not a valid conv2d node")
    }
    self.init(node: node, attributes: attributes, inHeight: inHeight, inWidth: inWidth)
  }

  init(node: QuantizedNode, attributes a: Int8ConvAttributes, inHeight: Int, inWidth: Int) {
    let (k, s, p) = (a.kernel, a.stride, a.padding)
    self.inHeight = inHeight
    self.inWidth = inWidth
    inChannels = a.inChannels
    outChannels = a.outChannels
    kernelH = k[0]
    kernelW = k[1]
    strideH = s[0]
    strideW = s[1]
    padTop = p[0]
    padLeft = p[1]
    groups = a.groups
    (outHeight, outWidth) = WindowShape.outputSize(height: inHeight, width: inWidth, kernel: k, stride: s, padding: p)
    bias = node.bias
    requant = zip(node.multipliers, node.shifts).map { RequantMultiplier(multiplier: $0, shift: $1) }
    inputZeroPoint = a.input.zeroPoint
    outputZeroPoint = node.output.zeroPoint
    clampLo = a.clampLo
    clampHi = a.clampHi
    channelClampLo = node.channelClampLo.map(Int32.init)
    channelClampHi = node.channelClampHi.map(Int32.init)
    weights = node.weights
    if let classes = node.borderClasses {
      borderBias = node.borderBias
      rowClass =
        BorderClasses.axis(size: inHeight, out: outHeight, kernel: kernelH, stride: strideH, pad: padTop).classOf
      colClass =
        BorderClasses.axis(size: inWidth, out: outWidth, kernel: kernelW, stride: strideW, pad: padLeft).classOf
      colClasses = classes.colTaps.count
    }
    if groups == inChannels && groups == outChannels {
      // [C, kh, kw, 1] → [kh, kw, C], so the inner loop runs over contiguous channels.
      let taps = kernelH * kernelW
      var t = [Int8](repeating: 0, count: weights.count)
      for c in 0..<outChannels { for i in 0..<taps { t[i * outChannels + c] = weights[c * taps + i] } }
      weights = t
    }
  }

  /// `out[oy, ox, c] = clamp(requant[c](bias[c] + Σ x·w) + z_out, lo, hi)`; taps outside the input
  /// read `z_in` (the quantized real 0), which the folded bias term −z_in·Σw cancels.
  func run(_ x: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>) {
    precondition(
      x.count == inHeight * inWidth * inChannels && out.count == outHeight * outWidth * outChannels)
    if isDepthwise { runDepthwise(x, out) } else { runGrouped(x, out) }
  }

  private func runGrouped(_ x: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>) {
    let icg = inChannels / groups
    let ocg = outChannels / groups
    let taps = kernelH * kernelW * icg
    let zIn = UInt8(inputZeroPoint)
    // A 1x1, stride-1, unpadded, ungrouped convolution reads its patch straight from the input.
    let direct =
      kernelH == 1 && kernelW == 1 && strideH == 1 && strideW == 1 && groups == 1 && outHeight == inHeight
      && outWidth == inWidth
    var patch = [UInt8](repeating: 0, count: taps)
    weights.withUnsafeBufferPointer { w in
      patch.withUnsafeMutableBufferPointer { patch in
        for oy in 0..<outHeight {
          for ox in 0..<outWidth {
            let o = (oy * outWidth + ox) * outChannels
            // Exact input (§12): the bias of this position's border class; padded taps read z_in = 0.
            let bias =
              borderBias.isEmpty
              ? self.bias
              : Array(borderBias[((rowClass[oy] * colClasses + colClass[ox]) * outChannels)...].prefix(outChannels))
            if direct {
              let p = x.baseAddress! + (oy * inWidth + ox) * inChannels
              for oc in 0..<outChannels {
                let acc = bias[oc] &+ dotUInt8Int8(p, w.baseAddress! + oc * taps, taps)
                let (lo, hi) = bounds(oc)
                out[o + oc] = clampToUInt8(requant[oc].apply(acc) + Int64(outputZeroPoint), lo: lo, hi: hi)
              }
              continue
            }
            for g in 0..<groups {
              // Gather the receptive field in [kh, kw, I/g] order, the weights' order.
              var k = 0
              for ky in 0..<kernelH {
                let iy = oy * strideH - padTop + ky
                for kx in 0..<kernelW {
                  let ix = ox * strideW - padLeft + kx
                  if iy >= 0, iy < inHeight, ix >= 0, ix < inWidth {
                    let base = (iy * inWidth + ix) * inChannels + g * icg
                    for i in 0..<icg { patch[k + i] = x[base + i] }
                  } else {
                    for i in 0..<icg { patch[k + i] = zIn }
                  }
                  k += icg
                }
              }
              for oc in (g * ocg)..<((g + 1) * ocg) {
                let acc = bias[oc] &+ dotUInt8Int8(patch.baseAddress!, w.baseAddress! + oc * taps, taps)
                let (lo, hi) = bounds(oc)
                out[o + oc] = clampToUInt8(requant[oc].apply(acc) + Int64(outputZeroPoint), lo: lo, hi: hi)
              }
            }
          }
        }
      }
    }
  }

  private func runDepthwise(_ x: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>) {
    let c = outChannels
    var acc = [Int32](repeating: 0, count: c)
    weights.withUnsafeBufferPointer { w in
      acc.withUnsafeMutableBufferPointer { acc in
        for oy in 0..<outHeight {
          for ox in 0..<outWidth {
            for ch in 0..<c { acc[ch] = bias[ch] }
            for ky in 0..<kernelH {
              let iy = oy * strideH - padTop + ky
              for kx in 0..<kernelW {
                let ix = ox * strideW - padLeft + kx
                let wBase = (ky * kernelW + kx) * c
                if iy >= 0, iy < inHeight, ix >= 0, ix < inWidth {
                  let base = (iy * inWidth + ix) * c
                  for ch in 0..<c { acc[ch] &+= Int32(x[base + ch]) &* Int32(w[wBase + ch]) }
                } else {
                  for ch in 0..<c { acc[ch] &+= inputZeroPoint &* Int32(w[wBase + ch]) }
                }
              }
            }
            let o = (oy * outWidth + ox) * c
            for ch in 0..<c {
              let (lo, hi) = bounds(ch)
              out[o + ch] = clampToUInt8(requant[ch].apply(acc[ch]) + Int64(outputZeroPoint), lo: lo, hi: hi)
            }
          }
        }
      }
    }
  }
}

/// Σ x[i] · w[i] over `count` taps, wrapping int32 (the quantizer bounds the true sum).
@inline(__always)
func dotUInt8Int8(_ x: UnsafePointer<UInt8>, _ w: UnsafePointer<Int8>, _ count: Int) -> Int32 {
  var acc: Int32 = 0
  for i in 0..<count { acc &+= Int32(x[i]) &* Int32(w[i]) }
  return acc
}

/// The classifier: `logit[c] = saturate_int32(requant[c](bias[c] + Σ x·w[c]))`, weights `[O, I]`.
struct Int8LinearPlan {
  var inFeatures: Int, outFeatures: Int
  var weights: [Int8]
  var bias: [Int32]
  var requant: [RequantMultiplier]

  /// Tests' shortcut: `node` must be a valid linear node.
  init(node: QuantizedNode) {
    guard case .linear(let attributes) = try? node.operation() else {
      preconditionFailure("'\(node.name)' is not a valid linear node")
    }
    self.init(node: node, attributes: attributes)
  }

  init(node: QuantizedNode, attributes: Int8LinearAttributes) {
    inFeatures = attributes.inFeatures
    outFeatures = attributes.outFeatures
    weights = node.weights
    bias = node.bias
    requant = zip(node.multipliers, node.shifts).map { RequantMultiplier(multiplier: $0, shift: $1) }
  }

  func run(_ x: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<Int32>) {
    precondition(x.count == inFeatures && out.count == outFeatures)
    weights.withUnsafeBufferPointer { w in
      for o in 0..<outFeatures {
        let acc = bias[o] &+ dotUInt8Int8(x.baseAddress!, w.baseAddress! + o * inFeatures, inFeatures)
        out[o] = saturatingInt32(requant[o].apply(acc))
      }
    }
  }
}

/// `q = clamp(add.apply(q_a − z_a, q_b − z_b) + z_out, lo, hi)` elementwise.
func int8Add(
  _ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>,
  zeroPointA: Int32, zeroPointB: Int32, multipliers: AddMultipliers, outputZeroPoint: Int32, lo: Int32,
  hi: Int32
) {
  precondition(a.count == b.count && a.count == out.count)
  for i in 0..<out.count {
    let y = multipliers.apply(Int32(a[i]) - zeroPointA, Int32(b[i]) - zeroPointB)
    out[i] = clampToUInt8(y + Int64(outputZeroPoint), lo: lo, hi: hi)
  }
}

/// Max over each window of uint8 values (same quantization in and out); taps in the padding are
/// skipped, so padding never wins.
func int8MaxPool(
  _ x: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>, height: Int, width: Int,
  channels: Int,
  kernel: [Int], stride: [Int], padding: [Int], outHeight: Int, outWidth: Int
) {
  precondition(x.count == height * width * channels && out.count == outHeight * outWidth * channels)
  for oy in 0..<outHeight {
    for ox in 0..<outWidth {
      let o = (oy * outWidth + ox) * channels
      for c in 0..<channels { out[o + c] = 0 }
      for ky in 0..<kernel[0] {
        let iy = oy * stride[0] - padding[0] + ky
        guard iy >= 0, iy < height else { continue }
        for kx in 0..<kernel[1] {
          let ix = ox * stride[1] - padding[1] + kx
          guard ix >= 0, ix < width else { continue }
          let base = (iy * width + ix) * channels
          for c in 0..<channels { out[o + c] = max(out[o + c], x[base + c]) }
        }
      }
    }
  }
}

/// `q[c] = clamp(requant(Σ_hw (q − z_in)) + z_out, 0, 255)` with M = s_in / (s_out · H · W).
func int8GlobalAveragePool(
  _ x: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>, pixels: Int, channels: Int,
  inputZeroPoint: Int32, requant: RequantMultiplier, outputZeroPoint: Int32
) {
  precondition(x.count == pixels * channels && out.count == channels)
  for c in 0..<channels {
    var sum: Int64 = 0
    for p in 0..<pixels { sum += Int64(Int32(x[p * channels + c]) - inputZeroPoint) }
    out[c] = clampToUInt8(requant.apply(sum) + Int64(outputZeroPoint), lo: 0, hi: 255)
  }
}

/// A convolution with a 16-bit input or output (docs/quantization.md §17), one plain loop for
/// every geometry (dense, grouped, depthwise): `acc = bias64[c] + Σ x·w` in Int64, taps outside
/// the input read `z_in`, then `clamp(applyWide(acc) + z_out, lo, hi)` in the output's domain
/// (uint8 or int16). Inputs and outputs are passed as Int32 codes.
struct Int8WideConvPlan {
  var inHeight: Int, inWidth: Int, inChannels: Int
  var outHeight: Int, outWidth: Int, outChannels: Int
  var kernelH: Int, kernelW: Int, strideH: Int, strideW: Int
  var padTop: Int, padLeft: Int, padBottom: Int, padRight: Int
  var groups: Int
  /// `[O, kh, kw, I/groups]`, int8 or int16 weights widened.
  var weights: [Int32]
  var bias: [Int64]
  var requant: [RequantMultiplier]
  var inputZeroPoint: Int32, outputZeroPoint: Int32
  var clampLo: Int32, clampHi: Int32
  var inputBits: Int, outputBits: Int, weightBits: Int

  var isDepthwise: Bool { groups == inChannels && groups == outChannels }

  init(node: QuantizedNode, attributes a: Int8ConvAttributes, inHeight: Int, inWidth: Int) {
    let (k, s, p) = (a.kernel, a.stride, a.padding)
    self.inHeight = inHeight
    self.inWidth = inWidth
    inChannels = a.inChannels
    outChannels = a.outChannels
    kernelH = k[0]
    kernelW = k[1]
    strideH = s[0]
    strideW = s[1]
    padTop = p[0]
    padLeft = p[1]
    padBottom = p[2]
    padRight = p[3]
    groups = a.groups
    (outHeight, outWidth) = WindowShape.outputSize(height: inHeight, width: inWidth, kernel: k, stride: s, padding: p)
    weights = node.weightBits == 16 ? node.weights16.map(Int32.init) : node.weights.map(Int32.init)
    bias = node.bias64
    requant = zip(node.multipliers, node.shifts).map { RequantMultiplier(multiplier: $0, shift: $1) }
    inputZeroPoint = a.input.zeroPoint
    outputZeroPoint = node.output.zeroPoint
    clampLo = a.clampLo
    clampHi = a.clampHi
    inputBits = node.inputBits ?? 8
    outputBits = node.outputBits ?? 8
    weightBits = node.weightBits ?? 8
  }

  func run(_ x: UnsafeBufferPointer<Int32>, _ out: UnsafeMutableBufferPointer<Int32>) {
    precondition(
      x.count == inHeight * inWidth * inChannels && out.count == outHeight * outWidth * outChannels)
    let icg = inChannels / groups
    let ocg = outChannels / groups
    let taps = kernelH * kernelW * icg
    for oy in 0..<outHeight {
      for ox in 0..<outWidth {
        for oc in 0..<outChannels {
          let g = oc / ocg
          var acc = bias[oc]
          var k = oc * taps
          for ky in 0..<kernelH {
            let iy = oy * strideH - padTop + ky
            for kx in 0..<kernelW {
              let ix = ox * strideW - padLeft + kx
              let inside = iy >= 0 && iy < inHeight && ix >= 0 && ix < inWidth
              let base = (iy * inWidth + ix) * inChannels + g * icg
              for i in 0..<icg {
                let v = inside ? x[base + i] : inputZeroPoint
                acc += Int64(v) * Int64(weights[k])
                k += 1
              }
            }
          }
          let y = requant[oc].applyWide(acc) + Int64(outputZeroPoint)
          out[(oy * outWidth + ox) * outChannels + oc] = Int32(min(max(y, Int64(clampLo)), Int64(clampHi)))
        }
      }
    }
  }
}
