import Foundation
import OctetCalibration
import OctetCore
import OctetFloat
import OctetInt8
import OctetModels
import Testing

@testable import OctetQuantizer

/// Empirical bias correction (docs/quantization.md §19) and the one-step pipeline's metadata.
@Suite struct BiasCorrectionTests {
  /// SmallNet's images: `count` random inputs `[1, 12, 12, 3]` in its input range.
  static func images(_ count: Int, seed: UInt64) -> [Tensor] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Tensor(shape: [1, 12, 12, 3], scalars: g.floats(12 * 12 * 3, in: -2...2.5)) }
  }

  static func inputs(_ images: [Tensor], threads: Int = 1) -> CalibrationInputs {
    CalibrationInputs(count: images.count, threads: threads) { images[$0] }
  }

  /// SmallNet with min/max ranges of `images`, quantized plainly with `weightBits`.
  static func plain(_ images: [Tensor], weightBits: WeightBits) throws -> (Model, RangeTable, QuantizedModel) {
    let model = try SmallNetGolden.load().model
    let table = try Calibrator(model: model, method: .minmax).calibrate(inputs: images)
    let result = try Quantizer.quantize(
      model: model, ranges: table, options: QuantizationOptions(weightBits: weightBits), inputs: nil, mode: "ranges")
    return (model, table, result.model)
  }

  /// Per channel of `layer`'s output, |mean(int8 − float)| over `images` (all positions), averaged over channels.
  static func meanChannelError(_ float: Model, _ int8: QuantizedModel, layer: String, images: [Tensor]) throws
    -> Double
  {
    let floatExecutor = try FloatExecutor(model: float, fuseResidualAdd: false)
    let intExecutor = try Int8ReferenceExecutor(model: int8)
    var diff: [Double] = []
    var count = 0
    for image in images {
      var f: Tensor?
      var q: QuantizedTensor?
      _ = floatExecutor.run(image) { name, t in if name == layer { f = t } }
      _ = intExecutor.run(image) { name, t in if name == layer { q = t } }
      let real = try #require(q).dequantized().scalars
      let reference = try #require(f).scalars
      let channels = try #require(f).shape.last!
      if diff.isEmpty { diff = [Double](repeating: 0, count: channels) }
      for i in real.indices { diff[i % channels] += Double(real[i]) - Double(reference[i]) }
      count += real.count / channels
    }
    return diff.map { abs($0) / Double(count) }.reduce(0, +) / Double(diff.count)
  }

  /// 7-bit weights leave a mean error per channel (the rounding of each weight times its input's
  /// mean); bias correction removes it on the layers without a clamp (pw.bn and short.bn feed the
  /// residual add), measured on the int8 layer outputs themselves, and on the logits.
  @Test func biasCorrectionReducesTheMeanErrorOfCoarseLayers() throws {
    let images = Self.images(24, seed: testSeed(1301))
    let (model, _, plain) = try Self.plain(images, weightBits: .seven)
    let (corrected, layers) = try BiasCorrection.correct(float: model, quantized: plain, inputs: Self.inputs(images))
    #expect(layers.map(\.layer) == ["stem.relu6", "dw.relu6", "pw.bn", "short.bn", "fc"])
    #expect(layers.contains { $0.changed > 0 }, "7-bit weights leave some channel off on average")
    for layer in ["pw.bn", "short.bn"] {
      let before = try Self.meanChannelError(model, plain, layer: layer, images: images)
      let after = try Self.meanChannelError(model, corrected, layer: layer, images: images)
      #expect(after < 0.6 * before, "\(layer): mean channel error \(before) before, \(after) after")
    }
    // Only biases change.
    for (a, b) in zip(plain.nodes, corrected.nodes) {
      #expect(a.weights == b.weights && a.multipliers == b.multipliers && a.output == b.output)
    }
    // The same bits with two threads (the float sums are added in image order).
    let (twoThreads, _) = try BiasCorrection.correct(
      float: model, quantized: plain, inputs: Self.inputs(images, threads: 2))
    #expect(twoThreads == corrected)
  }

  /// A convolution whose weights and inputs are exactly representable computes in int8 exactly what
  /// float computes: bias correction leaves its bias as it is.
  @Test func exactlyRepresentableLayerIsLeftAlone() throws {
    // input [1, 4, 4, 3] → conv 3x3 (padding 1, stride 1) + bias → pool → flatten → fc.
    let nodes = [
      Node.conv2d(
        "conv", input: Graph.inputName, weight: "conv.weight", bias: "conv.bias", kernel: [3, 3], stride: 1,
        padding: [1, 1, 1, 1]),
      Node(name: "pool", op: .globalAveragePool, inputs: ["conv"]),
      Node(name: "flatten", op: .flatten, inputs: ["pool"]),
      Node.linear("fc", input: "flatten", weight: "fc.weight", bias: "fc.bias"),
    ]
    var g = SeededGenerator(seed: testSeed(1302))
    // Weights k/127 with one ±1 per channel: s_w = 1/127 and every weight is a whole step.
    let weights: [Float] = (0..<(2 * 3 * 9)).map { i in
      i % 27 == 0 ? 1 : Float(Int.random(in: -127...127, using: &g)) / 127
    }
    let model = Model(
      info: ModelInfo(
        architecture: "exact", inputSize: 4, classes: 3,
        preprocessing: Preprocessing(resizeShorter: 4, cropSize: 4, mean: [0, 0, 0], std: [1, 1, 1])),
      graph: Graph(nodes: nodes, output: "fc"),
      weights: TensorDictionary([
        ("conv.weight", HostTensor(shape: [2, 3, 3, 3], float32: weights)),
        ("conv.bias", HostTensor(shape: [2], float32: [0, 0])),
        ("fc.weight", HostTensor(shape: [3, 2], float32: [1, -1, 0.5, 0.25, -0.5, 1])),
        ("fc.bias", HostTensor(shape: [3], float32: [0.1, -0.2, 0])),
      ]))
    // Input range [-1.28, 1.27]: steps of 0.01, zero point 128 (padded taps read 128 in int8, 0 in
    // float); every input value a whole number of steps.
    let inputQ = ActivationQuantization(range: -1.28, hi: 1.27)
    let images = (0..<6).map { _ in
      Tensor(
        shape: [1, 4, 4, 3], scalars: (0..<48).map { _ in inputQ.dequantize(UInt8.random(in: 0...255, using: &g)) })
    }
    let table = try Calibrator(model: model, method: .minmax).calibrate(inputs: images)
    let fixed = RangeTable(
      model: table.model, method: table.method, images: table.images,
      tensors: table.tensors.map { e in
        e.name == "input"
          ? RangeTable.Entry(name: "input", min: -1.28, max: 1.27, observedMin: -1.28, observedMax: 1.27) : e
      })
    let plain = try Quantizer.quantize(
      model: model, ranges: fixed, options: QuantizationOptions(), inputs: nil, mode: "ranges"
    ).model
    #expect(plain.node(named: "input")?.output == inputQ)
    #expect(inputQ.zeroPoint == 128)
    let (corrected, layers) = try BiasCorrection.correct(float: model, quantized: plain, inputs: Self.inputs(images))
    #expect(corrected.node(named: "conv")?.bias == plain.node(named: "conv")?.bias)
    #expect(layers.first { $0.layer == "conv" }?.changed == 0)
  }

  /// The per-tap input sums equal a direct walk over every output position and kernel tap, padding
  /// (asymmetric, stride 2) counted apart.
  @Test func tapSumsMatchADirectWalkOverTheWindow() {
    var node = QuantizedNode(
      name: "c", op: .conv2d, inputs: ["input"], fused: [], output: .init(scale: 1, zeroPoint: 0))
    node.kernel = [3, 3]
    node.stride = [2, 2]
    node.padding = [0, 1, 1, 1]
    let (h, w, c) = (7, 6, 2)
    var g = SeededGenerator(seed: testSeed(1303))
    let x: [UInt8] = (0..<(h * w * c)).map { _ in UInt8.random(in: 0...255, using: &g) }
    let window = BiasCorrection.Window(node: node, inputShape: [h, w, c])
    var sums = [Int64](repeating: 0, count: window.taps)
    x.withUnsafeBufferPointer { window.addTapSums($0, into: &sums, Int64.init) }
    let (oh, ow) = WindowShape.outputSize(height: h, width: w, kernel: [3, 3], stride: [2, 2], padding: [0, 1, 1, 1])
    #expect(window.positions == oh * ow)
    var expected = [Int64](repeating: 0, count: window.taps)
    var padded = [Int](repeating: 0, count: 9)
    for oy in 0..<oh {
      for ox in 0..<ow {
        for ky in 0..<3 {
          for kx in 0..<3 {
            let (iy, ix) = (oy * 2 - 0 + ky, ox * 2 - 1 + kx)
            guard iy >= 0, iy < h, ix >= 0, ix < w else {
              padded[ky * 3 + kx] += 1
              continue
            }
            for ch in 0..<c { expected[(ky * 3 + kx) * c + ch] += Int64(x[(iy * w + ix) * c + ch]) }
          }
        }
      }
    }
    #expect(sums == expected)
    #expect((0..<9).map { window.padded($0 / 3, $0 % 3) } == padded)
  }

  /// The reference executor's batched run on quantized inputs, on two threads, gives `run`'s logits.
  @Test func batchedQuantizedRunEqualsRun() throws {
    let images = Self.images(5, seed: testSeed(1304))
    let (_, _, plain) = try Self.plain(images, weightBits: .eight)
    let executor = try Int8ReferenceExecutor(model: plain)
    let batch = Tensor(shape: [5, 12, 12, 3], scalars: images.flatMap(\.scalars))
    let logits = executor.run(batch)
    let quantized = executor.quantizeInput(batch)
    let batched = executor.run(quantized: quantized, batch: 5, threads: 2) { _, _ in nil }
    #expect(batched == logits)
  }

  /// The ranges and the recipe travel in the model file and read back as they were written.
  @Test func rangesAndRecipeRoundTripThroughTheModelFile() throws {
    let images = Self.images(4, seed: testSeed(1305))
    let model = try SmallNetGolden.load().model
    let table = try Calibrator(model: model, method: .minmax).calibrate(inputs: images)
    var options = QuantizationOptions.recommended
    options.weightBits = .seven
    let result = try Quantizer.quantize(
      model: model, ranges: table, options: options, inputs: Self.inputs(images), mode: "one-step")
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "octet-recipe-\(UUID().uuidString).safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try QuantizedModelFile.write(result.model, to: url)
    let read = try QuantizedModelFile.read(contentsOf: url)
    #expect(read == result.model)
    let recipe = try #require(QuantizationRecipe.of(read))
    #expect(recipe.method == "minmax" && recipe.images == 4 && recipe.mode == "one-step")
    #expect(recipe.options == options)
    #expect(recipe.passes == (try options.dataDrivenPasses().map(\.name)))
    #expect(recipe.passes == ["adaround", "bias_correction"], "the recommended recipe")
    let ranges = try RangeTable.decode(Data(try #require(read.ranges).utf8))
    #expect(ranges == table)
    // A model written without them (before they existed) reads with both nil.
    var bare = result.model
    bare.recipe = nil
    bare.ranges = nil
    try QuantizedModelFile.write(bare, to: url)
    let old = try QuantizedModelFile.read(contentsOf: url)
    #expect(old.recipe == nil && old.ranges == nil && QuantizationRecipe.of(old) == nil)
    // A recipe written before the 16-bit layers existed (no a16Layers, a16WeightBits, w16Layers)
    // still reads, with their defaults.
    var older = result.model
    older.recipe =
      #"{"method":"mse","images":500,"mode":"one-step","passes":["adaround"],"#
      + #""options":{"weightBits":8,"exactInput":false,"equalization":false,"biasCorrection":false,"adaRound":true}}"#
    let decoded = try #require(QuantizationRecipe.of(older))
    #expect(decoded.options.adaRound && decoded.options.a16Layers.isEmpty && decoded.options.w16Layers.isEmpty)
  }
}
