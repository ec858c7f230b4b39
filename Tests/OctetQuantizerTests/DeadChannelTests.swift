import OctetCore
import Testing

@testable import OctetQuantizer

/// docs/quantization.md §5: a channel with near-zero weights and a large bias gets a coarser weight
/// scale so that its bias fits in 2^30, instead of a saturated bias.
@Suite struct DeadChannelTests {
  @Test func weightScaleIsRaisedSoTheBiasFits() throws {
    let input = ActivationQuantization(scale: 0.02, zeroPoint: 0)
    // channel 0: ordinary; channel 1: weights ~1e-12 with bias 3.0 (b / (s_in · s_w) ≈ 2e13)
    let weights: [Double] = [0.5, -0.25, 0.125, 1e-12, -2e-12, 5e-13]
    let bias: [Double] = [0.1, 3.0]
    var warnings: [QuantizationWarning] = []
    let (q, scales, b) = try Quantizer.quantizeChannels(
      weights: weights, bias: bias, outChannels: 2, input: input, node: "dead", warnings: &warnings)
    #expect(scales[0] == symmetricWeightScale(maxAbs: 0.5))
    #expect(Double(scales[1]) >= 3.0 / (0.02 * 1_073_741_824.0))
    #expect(abs(Int64(b[1])) <= 1 << 30)
    // The bias is represented, not saturated: dequantized it is 3.0 within one step.
    let step = Double(input.scale) * Double(scales[1])
    #expect(abs(Double(b[1]) * step - 3.0) <= step)
    #expect(q[3...5].allSatisfy { $0 == 0 })
    #expect(warnings.contains { $0.node == "dead" && $0.message.contains("weight scale raised") })
    #expect(!warnings.contains { $0.message.contains("saturated") })
  }
}
