import Foundation
import OctetCore
import OctetModels
import OctetQuantizer
import OctetTestSupport
import Testing

@testable import OctetInt8

/// 16-bit layers (docs/quantization.md §17) on the small network of Scripts/int8_reference.py.
@Suite struct MixedPrecisionTests {
  /// `dw.relu6` (depthwise; its input `stem.relu6` is also read by the 8-bit `short.conv`) and
  /// `pw.bn` (1x1) at a16: a 16-bit twin of `stem.relu6` and of `dw.relu6`.
  static let layers = ["dw.relu6", "pw.bn"]

  func quantize(_ golden: SmallNetGolden, layers: [String], weights: A16WeightBits = .eight, w16: [String] = [])
    throws -> QuantizationResult
  {
    var options = QuantizationOptions()
    options.a16Layers = layers
    options.a16WeightBits = weights
    options.w16Layers = w16
    return try Quantizer.quantize(model: golden.model, options: options, range: golden.range)
  }

  func sqnr(_ reference: [Double], _ values: [Float]) -> Double {
    var signal = 0.0
    var noise = 0.0
    for (r, v) in zip(reference, values) {
      signal += r * r
      noise += (r - Double(v)) * (r - Double(v))
    }
    return 10 * log10(signal / max(noise, 1e-30))
  }

  /// Runs the reference and returns every 8-bit tensor and every 16-bit twin dequantized.
  func run(_ model: QuantizedModel, _ input: Tensor) throws -> [String: [Float]] {
    var out: [String: [Float]] = [:]
    let reference = try Int8ReferenceExecutor(model: model)
    _ = reference.run(
      input, observe: { name, t in out[name] = t.values.map { t.quantization.dequantize($0) } },
      observe16: { name, codes in
        let q = model.node(named: name)!.output
        out[name] = codes.map { q.dequantize16($0) }
      })
    return out
  }

  @Test func a16LayersAreMuchCloserToFloat() throws {
    let golden = try SmallNetGolden.load()
    let plain = try run(try quantize(golden, layers: []).model, golden.inputTensor)
    let a16w8 = try run(try quantize(golden, layers: Self.layers).model, golden.inputTensor)
    let a16w16 = try run(try quantize(golden, layers: Self.layers, weights: .sixteen).model, golden.inputTensor)
    let dw = try #require(golden.floatTensors["dw.relu6"])
    let twin = MixedPrecision.twinName("dw.relu6")
    let s8 = sqnr(dw, try #require(plain["dw.relu6"]))
    let s16w8 = sqnr(dw, try #require(a16w8[twin]))
    let s16w16 = sqnr(dw, try #require(a16w16[twin]))
    // 16-bit input and output remove the activation rounding; 16-bit weights the weights' too.
    // What is left is the network input's own 8-bit rounding (the stem reads `input`), so the gain
    // is a few dB here (measured 39.6 → 43.8 → 45.0 dB).
    #expect(s16w8 > s8 + 3, "dw.relu6 SQNR: a8w8 \(s8) dB, a16w8 (16-bit twin) \(s16w8) dB")
    #expect(s16w16 > s16w8 + 0.5, "dw.relu6 SQNR: a16w8 \(s16w8) dB, a16w16 \(s16w16) dB")
    // pw.bn keeps an 8-bit output, so its own rounding stays; its input's error is gone.
    let pw = try #require(golden.floatTensors["pw.bn"])
    let p8 = sqnr(pw, try #require(plain["pw.bn"]))
    let p16 = sqnr(pw, try #require(a16w16["pw.bn"]))
    #expect(p16 > p8 + 1, "pw.bn SQNR: a8w8 \(p8) dB, a16w16 \(p16) dB")
    // Layers not chosen compute what the plain model computes.
    #expect(plain["short.bn"] == a16w8["short.bn"] && plain["stem.relu6"] == a16w8["stem.relu6"])
  }

  @Test func theGraphRecordsPrecisionsAndTheFileRoundTrips() throws {
    let golden = try SmallNetGolden.load()
    let result = try quantize(golden, layers: Self.layers, weights: .sixteen)
    let model = result.model
    #expect(model.node(named: "dw.relu6")?.precision == "a16w16")
    #expect(model.node(named: "pw.bn")?.precision == "a16w16")
    #expect(model.node(named: "short.bn")?.precision == "a8w8")
    #expect(model.node(named: "pw.bn")?.inputs == [MixedPrecision.twinName("dw.relu6")])
    #expect(model.node(named: "short.bn")?.inputs == ["stem.relu6"])
    #expect(result.report.a16Layers?.map(\.name) == Self.layers)
    #expect(result.report.nodesByOperator["conv2d"] == 4)
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("a16-\(UUID()).safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try QuantizedModelFile.write(model, to: url)
    let (_, metadata) = try SafeTensors.read(contentsOf: url)
    #expect(metadata["octet.format_version"] == "3")
    #expect(try QuantizedModelFile.read(contentsOf: url) == model)
    // Without 16-bit layers the file stays version 2.
    try QuantizedModelFile.write(try quantize(golden, layers: []).model, to: url)
    #expect(try SafeTensors.read(contentsOf: url).1["octet.format_version"] == "2")
  }

  /// a8w16 (§17.2): `stem.relu6` (reading the network input) and `short.bn` with 16-bit weights on
  /// their 8-bit inputs; `dw.relu6` at a16 reads the twin of `stem.relu6`, which has the stem's
  /// 16-bit weights. The outputs get closer to float, the file round-trips, and `fc` (a linear
  /// layer) cannot be chosen.
  @Test func a8w16LayersKeepTheirInputsAndGetCloser() throws {
    let golden = try SmallNetGolden.load()
    let plain = try quantize(golden, layers: []).model
    let result = try quantize(golden, layers: ["dw.relu6"], w16: ["stem.relu6", "short.bn"])
    let model = result.model
    #expect(model.node(named: "stem.relu6")?.precision == "a8w16")
    #expect(model.node(named: "short.bn")?.precision == "a8w16")
    #expect(model.node(named: "dw.relu6")?.precision == "a16w8")
    #expect(model.node(named: "short.bn")?.inputs == plain.node(named: "short.bn")?.inputs)
    let twin = try #require(model.node(named: MixedPrecision.twinName("stem.relu6")))
    #expect(twin.weightBits == 16 && twin.weights16 == model.node(named: "stem.relu6")?.weights16)
    #expect(Set(result.report.a16Layers?.map(\.name) ?? []) == ["stem.relu6", "dw.relu6", "short.bn"])
    let values = try run(model, golden.inputTensor)
    let base = try run(plain, golden.inputTensor)
    let float = try #require(golden.floatTensors["short.bn"])
    let s8 = sqnr(float, try #require(base["short.bn"]))
    let s16 = sqnr(float, try #require(values["short.bn"]))
    #expect(s16 > s8 + 0.1, "short.bn SQNR: a8w8 \(s8) dB, a8w16 \(s16) dB")
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("w16-\(UUID()).safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try QuantizedModelFile.write(model, to: url)
    #expect(try QuantizedModelFile.read(contentsOf: url) == model)
    for (name, fragment) in [("no.such.layer", "is not a layer of this model"), ("fc", "only convolutions")] {
      #expect {
        _ = try quantize(golden, layers: [], w16: [name])
      } throws: { error in "\(error)".contains("'\(name)'") && "\(error)".contains(fragment) }
    }
  }

  /// The budget over measured gains of both kinds: a layer's own multiply-adds count once (taken for
  /// its weights, then its input, it is a16w16 and pays only the twin more), an input pays its
  /// producer's twin once, a gain ≤ 0 is never taken.
  @Test func choiceOverBothKindsCountsEachLayerOnce() throws {
    let macs = ["a": 50, "b": 30, "c": 15, "d": 5]
    let producers = ["c": "d", "b": "a"]
    func g(_ layer: String, _ kind: A16Gain.Kind, _ gain: Double) -> A16Gain {
      A16Gain(layer: layer, kind: kind, kl: 1 - gain, gain: gain, cost: 0)
    }
    let gains = [g("c", .weights, 3), g("c", .input, 2), g("b", .input, 1), g("d", .weights, 0.5), g("a", .weights, 0)]
    // c (15) + its input's twin d (5) = 20; b's input would add 30 + 50; d's weights 5 (d is paid as a twin only).
    #expect(
      try MixedPrecision.choose(budget: 0.2, gains: gains, macs: macs, producers: producers)
        == SixteenBitLayers(a16: ["c"], w16: ["c"]))
    #expect(
      try MixedPrecision.choose(budget: 0.25, gains: gains, macs: macs, producers: producers)
        == SixteenBitLayers(a16: ["c"], w16: ["c", "d"]))
    #expect(
      try MixedPrecision.choose(budget: 0.15, gains: gains, macs: macs, producers: producers)
        == SixteenBitLayers(a16: [], w16: ["c"]))
    // c's weights 15, its input 5 more, b's input 80 more: 100; d's weights would exceed it.
    #expect(
      try MixedPrecision.choose(budget: 1, gains: gains, macs: macs, producers: producers)
        == SixteenBitLayers(a16: ["c", "b"], w16: ["c"]))
    #expect(throws: MixedPrecision.BudgetError.budgetOutOfRange(2)) {
      try MixedPrecision.choose(budget: 2, gains: gains, macs: macs, producers: producers)
    }
  }

  @Test func badLayerNamesAreErrorsThatNameThem() throws {
    let golden = try SmallNetGolden.load()
    for (name, fragment) in [
      ("no.such.layer", "is not a layer of this model"), ("block.relu", "only convolutions"),
      ("stem.relu6", "is not a convolution's output"),
    ] {
      #expect {
        _ = try quantize(golden, layers: [name])
      } throws: { error in
        "\(error)".contains("'\(name)'") && "\(error)".contains(fragment)
      }
    }
  }

  @Test func choiceStaysWithinTheBudget() throws {
    let macs = ["a": 50, "b": 30, "c": 15, "d": 5]  // 100 in all
    #expect(try MixedPrecision.choose(budget: 0.5, ranking: ["b", "a", "c", "d"], macs: macs) == ["b", "c", "d"])
    #expect(try MixedPrecision.choose(budget: 0.5, ranking: ["a", "b", "c"], macs: macs) == ["a"])
    #expect(try MixedPrecision.choose(budget: 0.04, ranking: ["a", "b", "c", "d"], macs: macs) == [])
    #expect(try MixedPrecision.choose(budget: 0.05, ranking: ["a", "b", "c", "d"], macs: macs) == ["d"])
    #expect(try MixedPrecision.choose(budget: 1, ranking: ["d", "c", "b", "a"], macs: macs) == ["d", "c", "b", "a"])
    // A layer reading a twin pays for the twin (its producer's multiply-adds) once: "d" reads the
    // twin of "a", and so does "c" after it.
    let twins = ["d": "a", "c": "a"]
    #expect(try MixedPrecision.choose(budget: 0.5, ranking: ["d", "b"], macs: macs, producers: twins) == ["b"])
    #expect(try MixedPrecision.choose(budget: 0.6, ranking: ["d", "c"], macs: macs, producers: twins) == ["d"])
    #expect(try MixedPrecision.choose(budget: 0.7, ranking: ["d", "c"], macs: macs, producers: twins) == ["d", "c"])
    #expect(try MixedPrecision.choose(budget: 0.54, ranking: ["d"], macs: macs, producers: twins) == [])
    #expect(throws: MixedPrecision.BudgetError.budgetOutOfRange(1.5)) {
      try MixedPrecision.choose(budget: 1.5, ranking: [], macs: macs)
    }
    #expect(throws: MixedPrecision.BudgetError.budgetOutOfRange(-0.1)) {
      try MixedPrecision.choose(budget: -0.1, ranking: [], macs: macs)
    }
    #expect(throws: MixedPrecision.BudgetError.unknownLayer("e")) {
      try MixedPrecision.choose(budget: 0.5, ranking: ["e"], macs: macs)
    }
    // On the small net: the MACs of each layer, and a budget's choice quantizes.
    let golden = try SmallNetGolden.load()
    let candidates = try MixedPrecision.candidates(in: golden.model)
    let all = try LayerCost.macs(of: try quantize(golden, layers: []).model)
    let counts = all.filter { $0.value > 0 }
    #expect(counts["dw.relu6"] == 6 * 6 * 8 * 9 && counts["fc"] != nil, "\(counts)")
    #expect(Set(candidates) == ["dw.relu6", "pw.bn", "short.bn"])
    #expect(
      try MixedPrecision.producers(in: golden.model) == [
        "dw.relu6": "stem.relu6", "pw.bn": "dw.relu6", "short.bn": "stem.relu6",
      ])
    let chosen = try MixedPrecision.choose(budget: 0.3, ranking: candidates, macs: counts)
    let total = counts.values.reduce(0, +)
    #expect(chosen.reduce(0) { $0 + counts[$1]! } <= total * 3 / 10)
    _ = try quantize(golden, layers: chosen)
  }

  /// The small net with 16-bit layers: every backend gives the reference's bits on every 8-bit
  /// node and the logits (the 16-bit twins feed the a16 layers, so a wrong twin shows there).
  /// With `w16`, `stem.relu6` and `short.bn` are a8w16 as well (the twin of the stem too).
  @Test(arguments: [(A16WeightBits.eight, false), (.sixteen, false), (.eight, true)])
  func everyBackendGivesTheReferenceBits(_ weights: A16WeightBits, _ w16: Bool) throws {
    let golden = try SmallNetGolden.load()
    let model = try quantize(
      golden, layers: Self.layers, weights: weights, w16: w16 ? ["stem.relu6", "short.bn"] : []
    ).model
    let input = golden.inputTensor
    var expected: [String: QuantizedTensor] = [:]
    let logits = try Int8ReferenceExecutor(model: model).run(input) { expected[$0] = $1 }
    var paths: [(Int8Backend, Bool)] = [(.scalar, false), (.avx512vnni, true), (.amx, true)]
    if Int8Backend.avx2.isSupported { paths.append((.avx2, false)) }
    if Int8Backend.avx512vnni.isSupported { paths.append((.avx512vnni, false)) }
    if Int8Backend.amx.isSupported { paths.append((.amx, false)) }
    for (backend, emulated) in paths {
      for fuse in [false, true] {
        let fast = try Int8FastExecutor(
          model: model, backend: backend, threads: 2, fuseResidualAdds: fuse, emulatedISA: emulated)
        var differing: [String] = []
        let got = fast.run(input, observe: { if expected[$0] != $1 { differing.append($0) } }, timings: nil)
        let context = "\(backend)\(emulated ? " (emulated)" : "") fuse \(fuse), \(weights) weights, w16 \(w16)"
        #expect(differing.isEmpty, "\(context): \(differing)")
        #expect(got == logits, "\(context): logits")
      }
    }
  }
}
