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
  /// `sqnr_db` and `cosine` are the accumulated error (the int8 network run end to end); the local
  /// error is the layer alone, fed the float values of its inputs (docs/debugging.md).
  public struct Layer: Codable, Sendable {
    public var name: String
    public var sqnr_db: Double
    public var cosine: Double
    /// The layer's place in network order (0 first); nil in reports from before it was recorded.
    public var order: Int?
    /// The same measures with the int8 layer fed the float values of its own inputs (nil when not computed).
    public var local_sqnr_db: Double?
    public var local_cosine: Double?
    /// The checkpoint's tensor names of the layer's weights.
    public var source_tensors: [String]?
    /// "a8w8", "a16w8" or "a16w16" for convolutions and the classifier (docs/quantization.md §17);
    /// nil for other layers and in reports written before it existed.
    public var precision: String?
  }

  /// How much the logits change when only `layer` is quantized (`compare --sensitivity`).
  public typealias Sensitivity = LayerSensitivity

  /// An image whose top-1 class differs between float and int8 (DriftReport+Flips.swift).
  public struct Flip: Codable, Sendable {
    public struct Prediction: Codable, Sendable {
      public var `class`: Int
      public var name: String
      /// Softmax probability, 0...1.
      public var probability: Double
    }
    /// The image's path.
    public var image: String
    /// Its class index in labels.tsv.
    public var label: Int
    public var float_top3: [Prediction]
    public var int8_top3: [Prediction]
  }

  /// Images compared (images skipped as unreadable are not counted).
  public var count: Int
  public var float: Accuracy
  public var int8: Accuracy
  public var top1_agreement: Double
  /// Worst SQNR first.
  public var layers: [Layer]
  /// Images the local error was computed on (the first `--local-images` of those compared).
  public var local_images: Int? = nil
  /// Int8 tensors with no float counterpart to compare with (named, never silently dropped).
  public var unmatched: [String]
  /// Operators the quantized model runs in float (none when the whole network is integer).
  public var not_quantized: [String]
  /// Sensitivity ranking, most sensitive first (nil unless asked for).
  public var sensitivity: [LayerSensitivity]?
  /// Every image whose top-1 flipped, in labels.tsv order.
  public var flips: [Flip]?
  /// What was compared, and where: the models' architecture, the int8 kernels, the CPU, the files.
  public var architecture: String?
  public var backend: String?
  public var cpu: String?
  public var float_model: String?
  public var int8_model: String?
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
  /// Each int8 layer run alone on float inputs by the reference kernels, for the local error.
  public let simulation: LayerSimulation
  /// The float model's weight tensors of each int8 node.
  let sourceTensors: [String: [String]]

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
    simulation = try LayerSimulation(model: quantized)
    sourceTensors = Self.sourceTensors(float: model, int8: quantized)
  }

  /// For each int8 node, the weight-dictionary names (the checkpoint's names) of the float nodes it
  /// fuses: convolution weight and bias, BatchNorm weight, bias, running mean and variance, classifier
  /// weight and bias.
  public static func sourceTensors(float: Model, int8: QuantizedModel) -> [String: [String]] {
    let graphNodes = Dictionary(float.graph.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    var result: [String: [String]] = [:]
    for node in int8.nodes {
      result[node.name] = node.fused.flatMap { name -> [String] in
        guard let n = graphNodes[name] else { return [] }
        return [n.weight, n.bias, n.runningMean, n.runningVariance].compactMap { $0 }
      }
    }
    return result
  }

  /// One image's comparison.
  struct ImageResult {
    var floatLogits: [Float]
    var int8Logits: [Float]
    var layers: [String: LayerAccumulator]
    var local: [String: LayerAccumulator]
    var unmatched: Set<String>
  }

  /// `local`: also each layer's local error (a reference run of every node, several times the cost
  /// of the rest).
  func compare(image: RGBImage, local: Bool = true) -> ImageResult {
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
    floatTensors[int8.model.output] = floatLogits.scalars
    let local = local ? localErrors(floatTensors) : [:]
    return ImageResult(
      floatLogits: floatLogits.scalars, int8Logits: int8Logits, layers: layers, local: local, unmatched: unmatched)
  }

  /// Each int8 node's local error on one image: the node fed the float values of its inputs
  /// (`floatTensors`, by name, "input" the network input), its dequantized output against the float
  /// value of its own tensor. Nodes whose float tensors are missing are skipped (they are listed as
  /// unmatched by the accumulated comparison).
  func localErrors(_ floatTensors: [String: [Float]]) -> [String: LayerAccumulator] {
    var local: [String: LayerAccumulator] = [:]
    for node in int8.model.nodes {
      let inputNames = node.op == .quantizeInput ? [Graph.inputName] : node.inputs
      let inputs = inputNames.compactMap { floatTensors[$0] }
      guard let expected = floatTensors[node.name], inputs.count == inputNames.count else { continue }
      // One image; `simulate` reads each input by its element count, the network input by its shape.
      let floatInputs =
        node.op == .quantizeInput
        ? [Tensor(shape: [1] + float.inputShape, scalars: inputs[0])]
        : inputs.map { Tensor(shape: [1, $0.count], scalars: $0) }
      let simulated = simulation.simulate(node.name, floatInputs: floatInputs)
      guard simulated.count == expected.count else { continue }
      var accumulator = LayerAccumulator()
      accumulator.add(float: expected, dequantized: simulated.scalars)
      local[node.name] = accumulator
    }
    return local
  }

  /// Compares over labeled images on `threads` threads; `progress` is called after each image.
  /// The local error is computed on the first `localImages` entries only (all by default).
  /// `decode` reads the `index`th image; when it returns nil the image is skipped (left out of every
  /// statistic and of `count`).
  public func run(
    _ entries: [LabeledFolder.Entry], threads: Int, localImages: Int = .max,
    progress: @Sendable (Int, Double) -> Void = { _, _ in },
    decode: @Sendable (_ url: URL, _ index: Int) throws -> RGBImage? = { url, _ in
      try ImageDecoder.decode(contentsOf: url)
    }
  ) throws -> DriftReport {
    struct Totals {
      var done = 0
      var localDone = 0
      var floatTop1 = 0, floatTop5 = 0, int8Top1 = 0, int8Top5 = 0, agree = 0
      var layers: [String: LayerAccumulator] = [:]
      var local: [String: LayerAccumulator] = [:]
      var unmatched = Set<String>()
      var flips: [(index: Int, flip: DriftReport.Flip)] = []
    }
    let totals = Mutex(Totals())
    try forEachInParallel(entries.count, threads: threads) { index in
      let entry = entries[index]
      guard let image = try decode(entry.url, index) else { return }
      let result = compare(image: image, local: index < localImages)
      let f5 = Classifier.topIndices(5, of: result.floatLogits)
      let q5 = Classifier.topIndices(5, of: result.int8Logits)
      let flip =
        f5.first == q5.first
        ? nil
        : DriftReport.Flip(
          image: entry.url.path, label: entry.label, floatLogits: result.floatLogits, int8Logits: result.int8Logits,
          classes: info.classes)
      let (done, agreement) = totals.withLock { t in
        t.floatTop1 += f5.first == entry.label ? 1 : 0
        t.floatTop5 += f5.contains(entry.label) ? 1 : 0
        t.int8Top1 += q5.first == entry.label ? 1 : 0
        t.int8Top5 += q5.contains(entry.label) ? 1 : 0
        t.agree += f5.first == q5.first ? 1 : 0
        for (name, layer) in result.layers { t.layers[name, default: LayerAccumulator()].merge(layer) }
        for (name, layer) in result.local { t.local[name, default: LayerAccumulator()].merge(layer) }
        t.unmatched.formUnion(result.unmatched)
        if let flip { t.flips.append((index, flip)) }
        t.done += 1
        t.localDone += result.local.isEmpty ? 0 : 1
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
    let layers = order.enumerated().compactMap { index, name in
      t.layers[name].map {
        DriftReport.Layer(
          name: name, sqnr_db: $0.sqnrDB, cosine: $0.cosine, order: index, local_sqnr_db: t.local[name]?.sqnrDB,
          local_cosine: t.local[name]?.cosine, source_tensors: sourceTensors[name] ?? [],
          precision: precisions[name])
      }
    }.sorted { $0.sqnr_db < $1.sqnr_db }
    return DriftReport(
      count: t.done,
      float: .init(top1: Double(t.floatTop1) / n, top5: Double(t.floatTop5) / n),
      int8: .init(top1: Double(t.int8Top1) / n, top5: Double(t.int8Top5) / n),
      top1_agreement: Double(t.agree) / n, layers: layers, local_images: t.localDone,
      unmatched: t.unmatched.sorted(), not_quantized: notQuantized,
      flips: t.flips.sorted { $0.index < $1.index }.map(\.flip),
      architecture: info.architecture, backend: int8.backendName)
  }
}
