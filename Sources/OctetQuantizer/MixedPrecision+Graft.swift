import Foundation
import OctetCore
import OctetModels

extension MixedPrecision {
  /// 16-bit layers on top of the data-driven passes (docs/quantization.md §17.1): the passes
  /// (AdaRound, bias correction) run on the all-8-bit model; this carries what they chose into the
  /// model `wide`, quantized from the same float model and ranges with the 16-bit layers.
  ///
  /// - A node that is the same in both (every 8-bit node) is taken from `corrected` as it is.
  /// - A 16-bit twin `P@int16` gets the weights and bias of its producer as the passes left them
  ///   (its int32 bias widened, or the 16-bit producer's converted int64 bias).
  /// - A layer with a 16-bit input keeps `wide`'s structure and input quantization.
  ///   - a16w8: its weights and scales are the corrected 8-bit layer's (AdaRound's rounding, and
  ///     `--weight-bits 7` if asked, survive), its multipliers are recomputed for the 16-bit input
  ///     scale, and its bias is the float bias plus the bias correction the passes added, in the
  ///     16-bit input's units: with `D = (b₃₂ + z₈ Σw) − (b₃₂ᵖ + z₈ Σwᵖ)` the corrected minus the
  ///     plain layer's bias in units `s₈ s_w[c]`,
  ///     `b₆₄[c] = clamp(round((b_float[c] + s₈ s_w[c] D) / (s₁₆ s_w[c])), ±2^40) − z₁₆ Σ w[c]`.
  ///     With `corrected == plain` and 8-bit weights this is `wide`'s node, bit for bit.
  ///   - a16w16: `wide`'s node as it is (weights and bias from the float layer). The 8-bit layer's
  ///     correction was for its 8-bit weights' rounding, which the 16-bit weights do not have.
  /// - An a8w16 layer (§17.2), and the twin of any layer with 16-bit weights: `wide`'s node as it is.
  ///
  /// `plain` is the 8-bit model before the passes, `floatBias` the BatchNorm-folded float bias of each
  /// layer (`Quantizer.floatLayers`).
  public static func graft(
    corrected: QuantizedModel, plain: QuantizedModel, wide: QuantizedModel, floatBias: [String: [Double]]
  ) throws -> QuantizedModel {
    let fixed = Dictionary(corrected.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    let before = Dictionary(plain.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    let wideNodes = Dictionary(wide.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    var converted: [String: QuantizedNode] = [:]
    var model = wide
    for i in model.nodes.indices {
      let n = model.nodes[i]
      if isTwin(n.name) {
        let base = String(n.name.dropLast(twinSuffix.count))
        if wideNodes[base]?.weightBits == 16 {
          // The twin of a layer with 16-bit weights: `wide`'s, as that layer is.
          continue
        }
        guard let p = converted[base] ?? fixed[base] else {
          throw QuantizerError.layer(n.name, "the 8-bit model has no layer '\(base)' to take the weights from")
        }
        var twin = n
        twin.weights = p.weights
        twin.weights16 = p.weights16
        twin.weightScales = p.weightScales
        twin.bias64 = p.isWide ? p.bias64 : p.bias.map(Int64.init)
        try setMultipliers(&twin)
        model.nodes[i] = twin
      } else if n.weightBits == 16 && n.inputBits != 16 {
        // a8w16 (§17.2): `wide`'s node as it is, like a16w16.
        continue
      } else if n.inputBits == 16 {
        guard let c8 = fixed[n.name], let p8 = before[n.name], let b = floatBias[n.name] else {
          throw QuantizerError.layer(n.name, "the 8-bit models or the float model have no layer of this name")
        }
        let node = try convert(wide: n, corrected: c8, plain: p8, floatBias: b)
        converted[n.name] = node
        model.nodes[i] = node
      } else {
        guard let c8 = fixed[n.name], c8.op == n.op, c8.inputs == n.inputs else {
          throw QuantizerError.layer(n.name, "the 8-bit model and the 16-bit one differ at this node")
        }
        model.nodes[i] = c8
      }
    }
    try model.validate()
    return model
  }

  /// A 16-bit-input layer of `wide` with the weights and bias correction of `corrected` (see `graft`).
  static func convert(
    wide n: QuantizedNode, corrected c8: QuantizedNode, plain p8: QuantizedNode, floatBias: [Double]
  ) throws -> QuantizedNode {
    guard n.weightBits != 16 else { return n }
    var out = n
    let o = n.outChannels ?? n.weightScales.count
    guard c8.weights.count == n.weights.count, p8.weights.count == n.weights.count, c8.bias.count == o,
      p8.bias.count == o, floatBias.count == o, c8.weightScales.count == o,
      let q8 = c8.inputQuantization?.first, let q16 = n.inputQuantization?.first
    else { throw QuantizerError.layer(n.name, "the 8-bit and 16-bit layers have different shapes") }
    out.weights = c8.weights
    out.weightScales = c8.weightScales
    let per = c8.weights.count / o
    let bound: Int64 = 1 << 40
    for c in 0..<o {
      var sumCorrected: Int64 = 0
      var sumPlain: Int64 = 0
      for k in 0..<per {
        sumCorrected += Int64(c8.weights[c * per + k])
        sumPlain += Int64(p8.weights[c * per + k])
      }
      let z8 = Int64(q8.zeroPoint)
      let delta = (Int64(c8.bias[c]) + z8 * sumCorrected) - (Int64(p8.bias[c]) + z8 * sumPlain)
      let sw = Double(c8.weightScales[c])
      let real = floatBias[c] + Double(q8.scale) * sw * Double(delta)
      let bq = min(max(Quantizer.roundToInt64(real / (Double(q16.scale) * sw)), -bound), bound)
      out.bias64[c] = bq - Int64(q16.zeroPoint) * sumCorrected
    }
    try setMultipliers(&out)
    return out
  }

  /// The node's requantization multipliers for its input, weight and output scales (§6).
  static func setMultipliers(_ n: inout QuantizedNode) throws {
    guard let input = n.inputQuantization?.first else { return }
    for c in n.weightScales.indices {
      do {
        let m = try RequantMultiplier(
          inputScale: Double(input.scale), weightScale: Double(n.weightScales[c]), outputScale: Double(n.output.scale))
        n.multipliers[c] = m.multiplier
        n.shifts[c] = m.shift
      } catch { throw QuantizerError.layer(n.name, "output channel \(c): \(error)") }
    }
  }
}
