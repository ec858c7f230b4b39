import Foundation
import Octet
import OctetCalibration
import OctetInt8
import OctetModels
import OctetQuantizer
import OctetTestSupport
import Testing

/// Cross-layer equalization of EfficientNet-Lite0: the equalized float model computes the same
/// function (ReLU6 kept exact by per-channel bounds), its weight ranges are balanced, and the int8
/// model carries the bounds as per-channel clamps.
@Suite struct CrossLayerEqualizationTests {
  static let lite0 = Result { try ModelLoader.load(contentsOf: try #require(TestData.lite0)) }
  static let equalized = Result { try CrossLayerEqualization.apply(to: try lite0.get()) }

  /// Largest |a − b| over the logits, relative to the largest |a|.
  static func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    let scale = a.reduce(0) { max($0, Double(abs($1))) }
    return zip(a, b).reduce(0) { max($0, Double(abs($1.0 - $1.1))) } / scale
  }

  @Test(.enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)))
  func equalizedModelComputesTheSameLogits() throws {
    let model = try Self.lite0.get()
    let (equalized, report) = try Self.equalized.get()
    // Across a ReLU6: the stem → block 0's depthwise, and per block (expand →) depthwise → project.
    // Besides, a project convolution → the next block's expand where no residual add reads it.
    let acrossReLU6 = report.pairs.filter { $0.first.hasSuffix(".relu6") }
    #expect(acrossReLU6.count == 1 + 15 + 16, "\(report.pairs.map { "\($0.first)→\($0.second)" })")
    #expect(Set(report.boundedActivations) == Set(acrossReLU6.map(\.first)))
    let inputs = try validationInputs(for: model, count: 2)
    let original = try FloatExecutor(model: model)
    let transformed = try FloatExecutor(model: equalized)
    // Without the per-channel bounds (plain ReLU6 at 6 on the rescaled channels) the function
    // changes: that is what the bounds keep exact.
    var unbounded = equalized
    for i in unbounded.graph.nodes.indices { unbounded.graph.nodes[i].clampMax = nil }
    let wrong = try FloatExecutor(model: unbounded)
    for x in inputs {
      let a = original.run(x).scalars
      let b = transformed.run(x).scalars
      let d = Self.relativeDifference(a, b)
      print("equalized Lite0: max |Δlogit| / max |logit| = \(d)")
      #expect(d < 2e-5, "equalized logits differ by \(d) (relative)")
      #expect(Classifier.topIndices(5, of: a) == Classifier.topIndices(5, of: b))
      let dw = Self.relativeDifference(a, wrong.run(x).scalars)
      #expect(dw > 1e-2, "dropping the bounds changed the logits by only \(dw)")
    }
  }

  /// The project convolutions' input channels (B of each depthwise → project pair, the last pair
  /// equalized in a block) have more even ranges afterwards: the geometric mean over the blocks of
  /// max/min of their per-channel ranges shrinks, and it shrinks in most blocks. (Dead channels,
  /// whose range is near 0, keep max/min from reaching 1.)
  @Test(.enabled(if: TestData.lite0 != nil, Comment(rawValue: TestData.needsLite0)))
  func weightRangesAreBalanced() throws {
    // The paper's rule, unbounded: the default bound (2) limits how far ranges can move.
    let report = try CrossLayerEqualization.apply(to: try Self.lite0.get(), maxScale: .infinity).report
    let projects = report.pairs.filter { $0.second.hasSuffix("._bn2") }
    #expect(projects.count == 16)
    var logBefore = 0.0
    var logAfter = 0.0
    var shrunk = 0
    for p in projects {
      logBefore += log(p.secondSpreadBefore)
      logAfter += log(p.secondSpreadAfter)
      if p.secondSpreadAfter < p.secondSpreadBefore { shrunk += 1 }
      print("\(p.first) → \(p.second): input-channel range max/min \(p.secondSpreadBefore) → \(p.secondSpreadAfter)")
    }
    let meanBefore = exp(logBefore / Double(projects.count))
    let meanAfter = exp(logAfter / Double(projects.count))
    print("Lite0 project inputs, geometric mean of max/min: \(meanBefore) → \(meanAfter); \(shrunk) of 16 shrink")
    #expect(meanAfter < meanBefore / 2, "spread \(meanBefore) → \(meanAfter)")
    #expect(shrunk >= 12)
  }

  @Test(.enabled(if: TestData.lite0 != nil, Comment(rawValue: TestData.needsLite0)))
  func equalizingTwiceIsRefusedAndTheResultIsDeterministic() throws {
    let (equalized, _) = try Self.equalized.get()
    #expect(throws: CrossLayerEqualization.EqualizationError.self) {
      _ = try CrossLayerEqualization.apply(to: equalized)
    }
    let again = try CrossLayerEqualization.apply(to: try Self.lite0.get()).model
    #expect(again.weights == equalized.weights && again.graph == equalized.graph)
  }

  /// A bound tensor that is missing, of the wrong size or not positive is an error naming the
  /// layer; so are per-channel bounds on a relu6 that no convolution takes.
  @Test(.enabled(if: TestData.lite0 != nil, Comment(rawValue: TestData.needsLite0)))
  func badBoundsAreRefused() throws {
    let (equalized, report) = try Self.equalized.get()
    let relu6 = try #require(report.boundedActivations.first)
    let tensor = relu6 + ".clamp_max"
    var short = equalized
    short.weights[tensor] = HostTensor(shape: [1], float32: [6])
    var negative = equalized
    let values = equalized.weights[tensor]!.floats()
    negative.weights[tensor] = HostTensor(shape: [values.count], float32: [-1] + values.dropFirst())
    var missing = equalized
    missing.weights[tensor] = nil
    for bad in [short, negative, missing] {
      #expect(throws: GraphPlanError.self) { _ = try LayerPlan(model: bad) }
    }
    var onAdd = equalized
    let add = try #require(onAdd.graph.nodes.firstIndex { $0.op == .add })
    var node = Node(name: "extra.relu6", op: .relu6, inputs: [onAdd.graph.nodes[add].name])
    node.clampMax = tensor
    onAdd.graph.nodes.insert(node, at: add + 1)
    #expect(throws: GraphPlanError.self) { _ = try LayerPlan(model: onAdd) }
  }

  /// The quantizer, given the original model and `equalization`, equalizes it itself; with ranges
  /// calibrated on the equalized model, every ReLU6 layer of a pair gets per-channel clamps that
  /// nest in its clamp, and the file keeps them.
  @Test(.enabled(if: TestData.lite0 != nil && TestData.hasImages, Comment(rawValue: TestData.needsLite0AndImages)))
  func quantizedModelCarriesPerChannelClamps() throws {
    let model = try Self.lite0.get()
    let (equalized, report) = try Self.equalized.get()
    let inputs = try validationInputs(for: model, count: 3)
    let ranges = try minMaxRanges(of: equalized, over: Array(inputs.prefix(2)))
    var options = QuantizationOptions()
    options.equalization = true
    let q = try Quantizer.quantize(model: model, options: options) { ranges[$0] }.model
    let clamped = q.nodes.filter { !$0.channelClampHi.isEmpty }
    #expect(Set(clamped.map(\.name)) == Set(report.boundedActivations))
    #expect(clamped.contains { Set($0.channelClampHi).count > 1 })
    // A range table says it holds the equalized model's ranges, and the quantizer follows it.
    var table = RangeTable(
      model: .init(architecture: model.info.architecture), method: "minmax", images: 2,
      tensors: ranges.keys.sorted().map {
        RangeTable.Entry(
          name: $0, min: ranges[$0]!.lo, max: ranges[$0]!.hi, observedMin: ranges[$0]!.lo, observedMax: ranges[$0]!.hi)
      })
    table.equalized = true
    let decoded = try RangeTable.decode(Data(table.encoded().utf8))
    #expect(decoded.equalized)
    #expect(try Quantizer.quantize(model: model, ranges: decoded).model.nodes == q.nodes)
    table.equalized = false
    #expect(throws: QuantizerError.self) { _ = try Quantizer.quantize(model: model, ranges: table, options: options) }
    #expect(!(try RangeTable.decode(Data(table.encoded().utf8))).equalized)
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("octet-cle-\(getpid()).safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try QuantizedModelFile.write(q, to: url)
    #expect(try QuantizedModelFile.read(contentsOf: url) == q)
    // int8 still agrees with float on the third image, about as well as the model quantized without
    // equalization from the same two images (a broken clamp or scale costs far more than 0.02).
    let x = inputs[2]
    let f = try FloatExecutor(model: model).run(x).scalars
    let i8 = try Int8ReferenceExecutor(model: q).run(x).dequantized().scalars
    let plainRanges = try minMaxRanges(of: model, over: Array(inputs.prefix(2)))
    let plain = try Quantizer.quantize(model: model, options: QuantizationOptions()) { plainRanges[$0] }.model
    let p8 = try Int8ReferenceExecutor(model: plain).run(x).dequantized().scalars
    #expect(cosine(f, i8) > min(cosine(f, p8) - 0.02, 0.98), "equalized \(cosine(f, i8)), plain \(cosine(f, p8))")
    #expect(Classifier.topIndices(3, of: i8).contains(Classifier.topIndices(1, of: f)[0]))
  }
}
