import Foundation
import Octet
import Synchronization

/// Float against int8 on the same images: accuracy of each against the labels, how often they agree,
/// and for every quantized tensor how far the dequantized int8 activation is from the float one.
public struct DriftReport: Codable, Sendable {
  public struct Accuracy: Codable, Sendable {
    public var top1: Double
    public var top5: Double
  }

  /// One quantized tensor, over all images: SQNR = 10·log10(Σ f² / Σ (f − dq)²) in dB, and the cosine
  /// between the float and dequantized int8 activations (both summed over every element of every image).
  public struct Layer: Codable, Sendable {
    public var name: String
    public var sqnr_db: Double
    public var cosine: Double
    /// "a8w8", "a16w8" or "a16w16" for convolutions and the classifier (docs/quantization.md §17);
    /// nil for other layers and in reports written before it existed.
    public var precision: String? = nil
  }

  /// Images compared (images skipped as unreadable are not counted).
  public var count: Int
  public var float: Accuracy
  public var int8: Accuracy
  public var top1_agreement: Double
  /// Worst SQNR first.
  public var layers: [Layer]
  /// Int8 tensors with no float counterpart to compare with (named, never silently dropped).
  public var unmatched: [String]
  /// Operators the quantized model runs in float (none when the whole network is integer).
  public var not_quantized: [String]
}

/// Accumulates the drift statistics of one tensor; sums in Double so 1300 images of 802,816 values
/// lose nothing.
struct LayerAccumulator {
  var signal = 0.0
  var noise = 0.0
  var dot = 0.0
  var quantizedPower = 0.0

  mutating func add(float f: [Float], dequantized q: [Float]) {
    precondition(f.count == q.count)
    var s = 0.0
    var n = 0.0
    var d = 0.0
    var p = 0.0
    for i in 0..<f.count {
      let a = Double(f[i])
      let b = Double(q[i])
      s += a * a
      n += (a - b) * (a - b)
      d += a * b
      p += b * b
    }
    signal += s
    noise += n
    dot += d
    quantizedPower += p
  }

  mutating func merge(_ other: LayerAccumulator) {
    signal += other.signal
    noise += other.noise
    dot += other.dot
    quantizedPower += other.quantizedPower
  }

  /// An exact match is reported as 200 dB (JSON has no infinity).
  var sqnrDB: Double {
    noise == 0 ? 200 : signal == 0 ? -200 : min(200, 10 * log10(signal / noise))
  }

  var cosine: Double {
    let denominator = (signal * quantizedPower).squareRoot()
    return denominator == 0 ? (signal == quantizedPower ? 1 : 0) : dot / denominator
  }
}

/// Runs a float model and its int8 counterpart side by side.
public final class DriftComparison: @unchecked Sendable {
  public let float: FloatExecutor
  public let int8: any Int8Runner
  public let info: ModelInfo
  /// Float graph nodes that no int8 node implements.
  public let notQuantized: [String]

  public init(float model: Model, int8 quantized: QuantizedModel, backend: Int8Backend = .auto) throws {
    guard model.info.inputSize == quantized.info.inputSize, model.info.classes == quantized.info.classes,
      model.info.preprocessing == quantized.info.preprocessing
    else {
      throw FileError(
        path: quantized.info.source ?? "int8 model",
        reason:
          "does not match the float model (\(model.info.architecture), input \(model.info.inputSize), \(model.info.classes) classes): it was quantized from another model"
      )
    }
    // Residual adds stay unfused so the float side has every tensor the int8 graph quantizes.
    float = try FloatExecutor(model: model, fuseResidualAdd: false)
    int8 = try Int8Runtime.make(model: quantized, backend: backend, observable: true)
    info = model.info
    let covered = Set(quantized.nodes.flatMap { [$0.name] + $0.fused })
    notQuantized = model.graph.nodes.map(\.name).filter { !covered.contains($0) }
  }

  /// One image's comparison.
  struct ImageResult {
    var floatLogits: [Float]
    var int8Logits: [Float]
    var layers: [String: LayerAccumulator]
    var unmatched: Set<String>
  }

  func compare(image: RGBImage) -> ImageResult {
    let input = info.preprocessing.apply(to: image)
    var floatTensors: [String: [Float]] = [:]
    let floatLogits = float.run(input) { name, tensor in floatTensors[name] = tensor.scalars }
    floatTensors["input"] = input.scalars
    var layers: [String: LayerAccumulator] = [:]
    var unmatched = Set<String>()
    let logits = int8.run(input) { name, tensor in
      guard let f = floatTensors[name], f.count == tensor.values.count else {
        unmatched.insert(name)
        return
      }
      var accumulator = LayerAccumulator()
      accumulator.add(float: f, dequantized: tensor.dequantized().scalars)
      layers[name] = accumulator
    }
    // The int32 logits, dequantized, against the float logits.
    let int8Logits = logits.dequantized().scalars
    var logitAccumulator = LayerAccumulator()
    logitAccumulator.add(float: floatLogits.scalars, dequantized: int8Logits)
    layers[int8.model.output] = logitAccumulator
    unmatched.remove(int8.model.output)
    return ImageResult(floatLogits: floatLogits.scalars, int8Logits: int8Logits, layers: layers, unmatched: unmatched)
  }

  /// Compares over labeled images on `threads` threads; `progress` is called after each image.
  /// `decode` reads the `index`th image; when it returns nil the image is skipped (left out of every
  /// statistic and of `count`).
  public func run(
    _ entries: [LabeledFolder.Entry], threads: Int, progress: @Sendable (Int, Double) -> Void = { _, _ in },
    decode: @Sendable (_ url: URL, _ index: Int) throws -> RGBImage? = { url, _ in
      try ImageDecoder.decode(contentsOf: url)
    }
  ) throws -> DriftReport {
    struct Totals {
      var done = 0
      var floatTop1 = 0, floatTop5 = 0, int8Top1 = 0, int8Top5 = 0, agree = 0
      var layers: [String: LayerAccumulator] = [:]
      var unmatched = Set<String>()
    }
    let totals = Mutex(Totals())
    try forEachInParallel(entries.count, threads: threads) { index in
      let entry = entries[index]
      guard let image = try decode(entry.url, index) else { return }
      let result = compare(image: image)
      let f5 = Classifier.topIndices(5, of: result.floatLogits)
      let q5 = Classifier.topIndices(5, of: result.int8Logits)
      let (done, agreement) = totals.withLock { t in
        t.floatTop1 += f5.first == entry.label ? 1 : 0
        t.floatTop5 += f5.contains(entry.label) ? 1 : 0
        t.int8Top1 += q5.first == entry.label ? 1 : 0
        t.int8Top5 += q5.contains(entry.label) ? 1 : 0
        t.agree += f5.first == q5.first ? 1 : 0
        for (name, layer) in result.layers { t.layers[name, default: LayerAccumulator()].merge(layer) }
        t.unmatched.formUnion(result.unmatched)
        t.done += 1
        return (t.done, Double(t.agree) / Double(t.done))
      }
      progress(done, agreement)
    }
    let t = totals.withLock { $0 }
    let n = Double(max(t.done, 1))
    let order = int8.model.nodes.map(\.name)
    var precisions: [String: String] = [:]
    for node in int8.model.nodes where node.op == .conv2d || node.op == .linear {
      precisions[node.name] = node.precision
    }
    let layers = order.compactMap { name in
      t.layers[name].map {
        DriftReport.Layer(name: name, sqnr_db: $0.sqnrDB, cosine: $0.cosine, precision: precisions[name])
      }
    }.sorted { $0.sqnr_db < $1.sqnr_db }
    return DriftReport(
      count: t.done,
      float: .init(top1: Double(t.floatTop1) / n, top5: Double(t.floatTop5) / n),
      int8: .init(top1: Double(t.int8Top1) / n, top5: Double(t.int8Top5) / n),
      top1_agreement: Double(t.agree) / n, layers: layers, unmatched: t.unmatched.sorted(),
      not_quantized: notQuantized)
  }
}
