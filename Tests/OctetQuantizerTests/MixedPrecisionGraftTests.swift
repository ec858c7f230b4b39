import Foundation
import OctetCalibration
import OctetCore
import OctetFloat
import OctetInt8
import OctetModels
import Synchronization
import Testing

@testable import OctetQuantizer

/// 16-bit layers on top of the data-driven passes (docs/quantization.md §17.1): the passes run on
/// the all-8-bit model and `MixedPrecision.graft` carries their weights and biases into the model
/// with 16-bit layers.
@Suite struct MixedPrecisionGraftTests {
  /// `dw.relu6` (depthwise; its input `stem.relu6` is also read by the 8-bit `short.conv`) and
  /// `pw.bn` (1x1, reading `dw.relu6`'s twin, itself 16-bit in): both kinds of twin.
  static let layers = ["dw.relu6", "pw.bn"]

  static func options(_ bits: WeightBits, _ weights: A16WeightBits, layers: [String] = layers) -> QuantizationOptions {
    var o = QuantizationOptions(weightBits: bits)
    o.a16Layers = layers
    o.a16WeightBits = weights
    return o
  }

  /// With nothing changed by a pass, the graft is the model quantized with the 16-bit layers
  /// directly, bit for bit: the bias conversion, the zero points and the multipliers agree.
  /// With `w16`, `stem.relu6` (whose twin `dw.relu6` reads) and `short.bn` are a8w16 too (§17.2).
  @Test(arguments: [(A16WeightBits.eight, false), (.sixteen, false), (.eight, true)])
  func graftingThePlainModelGivesTheDirectModel(weights: A16WeightBits, w16: Bool) throws {
    let images = BiasCorrectionTests.images(8, seed: testSeed(1701))
    let (model, table, plain) = try BiasCorrectionTests.plain(images, weightBits: .eight)
    var options = Self.options(.eight, weights)
    if w16 { options.w16Layers = ["stem.relu6", "short.bn"] }
    let wide = try Quantizer.quantize(model: model, ranges: table, options: options, inputs: nil, mode: "ranges")
      .model
    #expect(wide.nodes.filter { $0.weightBits == 16 }.count == (weights == .sixteen || w16 ? 3 : 0))
    let floatBias = try Quantizer.floatLayers(model: model).mapValues(\.bias)
    let grafted = try MixedPrecision.graft(corrected: plain, plain: plain, wide: wide, floatBias: floatBias)
    #expect(grafted.nodes.count == plain.nodes.count + 2, "two twins")
    for (g, w) in zip(grafted.nodes, wide.nodes) { #expect(g == w, "node \(w.name)") }
  }

  /// Bias correction with 16-bit layers (7-bit weights, so that there is a mean error to correct):
  /// the 8-bit layers are those of the bias-corrected 8-bit model, the twins carry the corrected
  /// producers' biases, and the a16w8 layer loses its mean error as the 8-bit one does.
  @Test func biasCorrectionCarriesIntoTheSixteenBitLayers() throws {
    let images = BiasCorrectionTests.images(24, seed: testSeed(1301))
    let (model, table, _) = try BiasCorrectionTests.plain(images, weightBits: .seven)
    var withBC = Self.options(.seven, .eight)
    withBC.biasCorrection = true
    var bcOnly = withBC
    bcOnly.a16Layers = []
    let inputs = BiasCorrectionTests.inputs(images)
    let result = try Quantizer.quantize(model: model, ranges: table, options: withBC, inputs: inputs, mode: "one-step")
    let corrected = try Quantizer.quantize(
      model: model, ranges: table, options: bcOnly, inputs: inputs, mode: "one-step")
    let direct = try Quantizer.quantize(
      model: model, ranges: table, options: Self.options(.seven, .eight), inputs: nil, mode: "one-step"
    ).model
    let m = result.model
    for n in m.nodes where !n.isWide { #expect(n == corrected.model.node(named: n.name), "8-bit node \(n.name)") }
    let stemTwin = try #require(m.node(named: MixedPrecision.twinName("stem.relu6")))
    #expect(stemTwin.bias64 == corrected.model.node(named: "stem.relu6")!.bias.map(Int64.init))
    #expect(m.node(named: "dw.relu6")?.precision == "a16w8" && m.node(named: "pw.bn")?.precision == "a16w8")
    #expect(m.node(named: "pw.bn")?.inputs == [MixedPrecision.twinName("dw.relu6")])
    let recipe = try #require(QuantizationRecipe.of(m))
    #expect(recipe.passes == ["bias_correction"] && recipe.options.a16Layers == Self.layers)
    // pw.bn (no clamp after it) with 7-bit weights has a mean error per channel; the correction
    // made for the 8-bit layer removes it from the 16-bit-input one too. Without correction: the same
    // 7-bit weights grafted from the plain model.
    let plain = try BiasCorrectionTests.plain(images, weightBits: .seven).2
    let floatBias = try Quantizer.floatLayers(model: model).mapValues(\.bias)
    let uncorrected = try MixedPrecision.graft(corrected: plain, plain: plain, wide: direct, floatBias: floatBias)
    let before = try BiasCorrectionTests.meanChannelError(model, uncorrected, layer: "pw.bn", images: images)
    let after = try BiasCorrectionTests.meanChannelError(model, m, layer: "pw.bn", images: images)
    #expect(after < 0.6 * before, "pw.bn: mean channel error \(before) without correction, \(after) with")
  }

  /// A chooser sees the 8-bit model the passes made and its layers become 16-bit; one choosing none
  /// leaves that model as it is.
  @Test func theChooserSeesThePassesModel() throws {
    let images = BiasCorrectionTests.images(8, seed: testSeed(1702))
    let (model, table, _) = try BiasCorrectionTests.plain(images, weightBits: .seven)
    var o = QuantizationOptions(weightBits: .seven)
    o.biasCorrection = true
    let inputs = BiasCorrectionTests.inputs(images)
    let corrected = try Quantizer.quantize(model: model, ranges: table, options: o, inputs: inputs, mode: "one-step")
    let seen = Mutex<QuantizedModel?>(nil)
    let chosen = try Quantizer.quantize(
      model: model, ranges: table, options: o, inputs: inputs, mode: "one-step",
      chooseA16: { m, _ in
        seen.withLock { $0 = m }
        return SixteenBitLayers(a16: ["pw.bn"])
      })
    #expect(seen.withLock { $0?.nodes } == corrected.model.nodes)
    #expect(chosen.model.node(named: "pw.bn")?.precision == "a16w8")
    #expect(QuantizationRecipe.of(chosen.model)?.options.a16Layers == ["pw.bn"])
    let none = try Quantizer.quantize(
      model: model, ranges: table, options: o, inputs: inputs, mode: "one-step",
      chooseA16: { _, _ in SixteenBitLayers() })
    #expect(none.model == corrected.model)
  }

  /// The measured gains (`MixedPrecision.gains`, `--a16-ranking gain`): each candidate's KL is the
  /// one of the model the trial builds, run here on the reference kernels with a KL computed
  /// independently; the ranking is by gain per multiply-add; the choice keeps only layers that help,
  /// and the model one-step writes with it is the trial's.
  @Test func measuredGainsAreTheTrialModelsKL() throws {
    let images = BiasCorrectionTests.images(6, seed: testSeed(1703))
    // 7-bit weights and no pass: an 8-bit model coarse enough that 16 bits help (bias correction
    // fitted on these few images leaves a KL that 16 bits do not lower).
    let (model, table, _) = try BiasCorrectionTests.plain(images, weightBits: .seven)
    var o = QuantizationOptions(weightBits: .seven)
    o.a16WeightBits = .sixteen
    let inputs = BiasCorrectionTests.inputs(images)
    let producers = try MixedPrecision.producers(in: model)
    let candidates = try MixedPrecision.candidates(in: model)
    let weightCandidates = try MixedPrecision.weightCandidates(in: model, exactInput: false)
    #expect(weightCandidates == ["stem.relu6", "dw.relu6", "pw.bn", "short.bn"])
    let seen = Mutex<
      (
        base: Double, gains: [A16Gain], trials: [String: QuantizedModel], eightBit: QuantizedModel?,
        chosen: SixteenBitLayers
      )
    >((0, [], [:], nil, SixteenBitLayers()))
    let result = try Quantizer.quantize(
      model: model, ranges: table, options: o, inputs: inputs, mode: "one-step",
      chooseA16: { eightBit, trial in
        let measured = try MixedPrecision.gains(
          float: model, eightBit: eightBit, candidates: candidates, weightCandidates: weightCandidates,
          inputs: images, trial: trial, producers: producers, threads: 2)
        var trials: [String: QuantizedModel] = [:]
        for layer in candidates { trials[layer + "/a16"] = try trial(SixteenBitLayers(a16: [layer])) }
        for layer in weightCandidates { trials[layer + "/w16"] = try trial(SixteenBitLayers(w16: [layer])) }
        let chosen = try MixedPrecision.choose(
          budget: 1, gains: measured.gains, macs: try LayerCost.macs(of: eightBit), producers: producers)
        seen.withLock { $0 = (measured.eightBit, measured.gains, trials, eightBit, chosen) }
        return chosen
      })
    let s = seen.withLock { $0 }
    let float = try FloatExecutor(model: model)
    func kl(_ q: QuantizedModel) throws -> Double {
      let runner = try Int8ReferenceExecutor(model: q)
      var total = 0.0
      for image in images {
        let p = softmax(float.run(image).scalars.map(Double.init))
        let r = softmax(runner.run(image).dequantized().scalars.map(Double.init))
        for c in p.indices where p[c] > 0 { total += p[c] * (log(p[c]) - log(r[c])) }
      }
      return total / Double(images.count)
    }
    #expect(abs(try kl(s.eightBit!) - s.base) <= 1e-9 * max(1, s.base))
    #expect(
      Set(s.gains.filter { $0.kind == .input }.map(\.layer)) == Set(candidates)
        && Set(s.gains.filter { $0.kind == .weights }.map(\.layer)) == Set(weightCandidates)
        && s.gains.count == candidates.count + weightCandidates.count)
    let macs = try LayerCost.macs(of: s.eightBit!)
    for g in s.gains {
      let input = g.kind == .input
      let trial = try #require(s.trials[g.layer + (input ? "/a16" : "/w16")])
      #expect(abs(try kl(trial) - g.kl) <= 1e-9 * max(1, g.kl), "\(g.layer) \(g.kind)")
      #expect(g.gain == s.base - g.kl)
      let twin = input ? (producers[g.layer].map { macs[$0]! } ?? 0) : 0
      #expect(g.cost == macs[g.layer]! + twin, "\(g.layer) \(g.kind)")
      #expect(trial.node(named: g.layer)?.precision == (input ? "a16w16" : "a8w16"), "\(g.layer) \(g.kind)")
    }
    let ratios = s.gains.map { $0.gain / Double($0.cost) }
    #expect(ratios == ratios.sorted(by: >), "\(s.gains)")
    let helping = s.gains.filter { $0.gain > 0 }
    #expect(!helping.isEmpty, "no layer helps on the small net: \(s.gains)")
    #expect(!s.chosen.isEmpty && (s.chosen.a16 + s.chosen.w16).allSatisfy { l in helping.contains { $0.layer == l } })
    let recipe = try #require(QuantizationRecipe.of(result.model))
    #expect(recipe.options.a16Layers == s.chosen.a16 && recipe.options.w16Layers == s.chosen.w16)
    let a16 = result.model.nodes.filter { $0.inputBits == 16 && !MixedPrecision.isTwin($0.name) }.map(\.name)
    let w16 = result.model.nodes.filter { $0.weightBits == 16 && !MixedPrecision.isTwin($0.name) }.map(\.name)
    // a16 layers have 16-bit weights here (`a16WeightBits` 16).
    #expect(Set(a16) == Set(s.chosen.a16) && Set(w16) == Set(s.chosen.w16 + s.chosen.a16))
  }

  private func softmax(_ x: [Double]) -> [Double] {
    let m = x.max() ?? 0
    let e = x.map { exp($0 - m) }
    let sum = e.reduce(0, +)
    return e.map { $0 / sum }
  }
}
