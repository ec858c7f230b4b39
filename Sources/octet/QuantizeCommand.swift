import ArgumentParser
import Foundation
import Octet
import OctetCalibration
import OctetInt8
import OctetQuantizer

struct QuantizeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "quantize",
    abstract: "Quantize a float model to int8 with a range table from `octet calibrate`.",
    discussion: """
      BatchNorm is folded, weights become per-channel int8, biases int32, activations per-tensor \
      uint8 with the calibrated ranges (docs/quantization.md). Prints the nodes quantized, anything \
      left in float, and warnings; the int8 model file is written atomically.
      """)

  @Argument(help: "The float model: an Octet model file, or a checkpoint imported on the fly.")
  var model: String

  @Option(help: "The range table (JSON) written by `octet calibrate` for this model.")
  var ranges: String

  @Option(name: .shortAndLong, help: "The int8 model file to write (safetensors).")
  var output: String

  @Option(
    help: """
      Weight bits: 8 ([-127, 127], the default) or 7 ([-63, 63]). 7-bit weights run on AVX2's faster \
      vpmaddubsw kernel (about twice the multiply-adds per cycle on CPUs without VNNI), at some accuracy cost.
      """)
  var weightBits: Int = 8

  @Flag(
    help: """
      Exact input quantization: the int8 network reads the image's uint8 pixels, with the mean/std \
      normalization folded into the first convolution (docs/quantization.md §12).
      """)
  var exactInput = false

  // Minimal flags for the 16-bit layers (docs/quantization.md §17); the one-step quantize work
  // owns this command's flags and may fold these into its own.
  @Option(
    help: """
      Comma-separated integer layer names whose input runs at 16 bits (a16), e.g. \
      _blocks.9._bn2,_bn1.relu6: convolutions whose input is a convolution's output.
      """)
  var a16Layers: String?

  @Option(help: "Weight bits of the --a16-layers: 8 (a16w8, the default) or 16 (a16w16).")
  var a16WeightBits: Int = 8

  @Flag(help: "Print every warning, layer by layer (by default one line per kind of warning, with its count).")
  var verbose = false

  @Option(help: "Also write the report, with every warning (kind, layer, channel), as JSON to this file.")
  var json: String?

  // Temporary, hidden (issue 13, AdaRound): refine the weights' rounding on these images before
  // writing. The one-step `quantize --images` with `--adaround` replaces it.
  @Option(help: .hidden) var adaroundImages: String?
  @Option(help: .hidden) var adaroundInputs: String = "float"
  @Option(help: .hidden) var adaroundIterations: Int = 500
  @Option(help: .hidden) var adaroundLearningRate: Float = 0.01

  func validate() throws {
    guard WeightBits(rawValue: weightBits) != nil else { throw ValidationError("--weight-bits must be 7 or 8") }
    guard A16WeightBits(rawValue: a16WeightBits) != nil else {
      throw ValidationError("--a16-weight-bits must be 8 or 16")
    }
    try validateOutputPath(output, option: "-o")
    try validateOutputPath(json, option: "--json")
    try ModelArgument.expectFloat(
      model, argument: "<model>", command: "quantize", why: "quantizes a float model (this one is quantized already)")
    guard FileManager.default.fileExists(atPath: ranges) else {
      throw ValidationError(
        "--ranges '\(ranges)' does not exist; make one with `octet calibrate MODEL --images DIR -o RANGES`")
    }
    // A calibration recipe (or any other file) given as the range table is told here, in one line.
    do { _ = try RangeTable.decode(try readSmallFile(ranges), path: ranges) } catch {
      throw ValidationError("--ranges: \(error)")
    }
  }

  /// One warning of the JSON report: `channel` is null for a warning about a whole tensor.
  struct WarningRecord: Encodable {
    var kind: String
    var layer: String
    var channel: Int?
    var message: String
  }

  struct KindRecord: Encodable {
    var kind: String
    var count: Int
    var unit: String
    var layers: Int
    var summary: String
    var section: String
    var effect: String
  }

  struct Report: Encodable {
    var model: String
    var architecture: String
    var ranges: String
    var output: String
    var weight_bits: Int
    var int8_nodes: [String: Int]
    var float_nodes_covered: Int
    var left_in_float: [String]
    /// One record per kind of warning, with its count, explanation and accuracy effect.
    var warning_kinds: [KindRecord]
    /// Every warning, one record per layer and channel.
    var warnings: [WarningRecord]
    /// The 16-bit layers and their precision (docs/quantization.md §17); absent when there are none.
    var a16_layers: [A16Record]? = nil
  }

  struct A16Record: Encodable {
    var layer: String
    var precision: String
  }

  func run() throws {
    let start = Date()
    let floatModel = try ModelLoader.load(contentsOf: URL(fileURLWithPath: model))
    let table = try RangeTable.read(contentsOf: URL(fileURLWithPath: ranges))
    // A table from another model is caught here, by name, before a tensor of it is found missing.
    guard table.model.architecture == floatModel.info.architecture else {
      throw FileError(
        path: ranges,
        reason: "holds the ranges of \(table.model.architecture), but '\(model)' is \(floatModel.info.architecture); "
          + "calibrate this model with `octet calibrate`")
    }
    var result: QuantizationResult
    do {
      var options = QuantizationOptions(weightBits: WeightBits(rawValue: weightBits)!)
      options.exactInput = exactInput
      options.a16Layers = (a16Layers ?? "").split(separator: ",").map {
        String($0).trimmingCharacters(in: .whitespaces)
      }.filter { !$0.isEmpty }
      options.a16WeightBits = A16WeightBits(rawValue: a16WeightBits)!
      result = try Quantizer.quantize(model: floatModel, ranges: table, options: options)
    } catch let error as QuantizerError {
      guard case .missingRange = error else { throw error }
      throw FileError(path: ranges, reason: error.description)
    }
    if let adaroundImages {
      result.model = try Self.adaRound(
        floatModel, result.model, weightBits: WeightBits(rawValue: weightBits)!, folder: adaroundImages,
        inputs: adaroundInputs, iterations: adaroundIterations, learningRate: adaroundLearningRate)
    }
    // Planning checks every shape before anything is written.
    _ = try Int8ReferenceExecutor(model: result.model)
    try QuantizedModelFile.write(result.model, to: URL(fileURLWithPath: output))

    let report = result.report
    let byOp = report.nodesByOperator.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(
      separator: ", ")
    print(
      "\(floatModel.info.architecture): \(report.quantizedNodes) int8 nodes (\(byOp)) for \(report.floatNodesCovered) float nodes"
    )
    if let a16 = report.a16Layers {
      print("16-bit layers: \(a16.map { "\($0.name) (\($0.precision))" }.joined(separator: ", "))")
    }
    print(
      report.leftInFloat.isEmpty
        ? "left in float: none" : "left in float: \(report.leftInFloat.joined(separator: ", "))")
    if report.warnings.isEmpty {
      print("warnings: none")
    } else {
      print("warnings (one line per kind\(verbose ? "" : "; --verbose lists each"), --json every channel):")
      for line in report.warningSummary { print("  \(line)") }
      if verbose {
        print("all warnings (\(report.warnings.count)):")
        for w in report.warnings { print("  \(w)") }
      }
    }
    if let json {
      try writeJSON(
        Self.report(
          result, model: model, architecture: floatModel.info.architecture,
          ranges: ranges, output: output, weightBits: weightBits), to: json)
    }
    print("wrote \(output) in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
  }

  static func adaRound(
    _ model: Model, _ quantized: QuantizedModel, weightBits: WeightBits, folder: String, inputs: String,
    iterations: Int, learningRate: Float
  ) throws -> QuantizedModel {
    let urls = try CalibrationImages.list(folder: folder)
    var parameters = AdaRoundParameters()
    guard let i = AdaRoundParameters.Inputs(rawValue: inputs) else {
      throw ValidationError("--adaround-inputs must be quantized or float")
    }
    parameters.inputs = i
    parameters.iterations = iterations
    parameters.learningRate = learningRate
    let start = Date()
    var bar: ProgressBar? = nil
    let (refined, layers) = try AdaRound.refine(
      float: model, quantized: quantized, weightBits: weightBits, imageCount: urls.count,
      image: { try model.info.preprocessing.apply(to: ImageDecoder.decode(contentsOf: urls[$0])) },
      parameters: parameters,
      progress: { event in
        switch event {
        case .collecting(let pass, let passes, let image, let images):
          if image == 0 { bar = ProgressBar(total: images, label: "AdaRound pass \(pass + 1)/\(passes)") }
          bar?.update(image + 1)
          if image + 1 == images { bar?.finish() }
        case .layer(let index, let count, let r):
          let what =
            r.skipped.map { "skipped: \($0)" }
            ?? String(
              format: "loss %.5g -> %.5g, %d/%d weights changed%@", r.lossNearest, r.lossAdaRound, r.changedWeights,
              r.weights, r.revertedChannels > 0 ? ", \(r.revertedChannels) channel(s) kept nearest" : "")
          FileHandle.standardError.write(
            Data("AdaRound layer \(index + 1)/\(count) \(r.name) (\(r.positions) positions): \(what)\n".utf8))
        }
      })
    print(
      "AdaRound: \(layers.filter(\.refined).count)/\(layers.count) layers refined in "
        + String(format: "%.1f s", Date().timeIntervalSince(start)))
    return refined
  }

  static func report(
    _ result: QuantizationResult, model: String, architecture: String, ranges: String, output: String, weightBits: Int
  ) -> Report {
    let warnings = result.report.warnings
    let kinds = QuantizationWarning.Kind.allCases.compactMap { kind -> KindRecord? in
      let list = warnings.filter { $0.kind == kind }
      guard !list.isEmpty else { return nil }
      return KindRecord(
        kind: kind.rawValue, count: list.reduce(0) { $0 + $1.count }, unit: kind.unit,
        layers: Set(list.map(\.node)).count, summary: kind.summary, section: kind.section, effect: kind.effect)
    }
    let records = warnings.flatMap { w in
      w.channels.isEmpty
        ? [WarningRecord(kind: w.kind.rawValue, layer: w.node, channel: nil, message: w.message)]
        : w.channels.map { WarningRecord(kind: w.kind.rawValue, layer: w.node, channel: $0, message: w.message) }
    }
    return Report(
      model: model, architecture: architecture, ranges: ranges, output: output, weight_bits: weightBits,
      int8_nodes: result.report.nodesByOperator, float_nodes_covered: result.report.floatNodesCovered,
      left_in_float: result.report.leftInFloat, warning_kinds: kinds, warnings: records,
      a16_layers: result.report.a16Layers?.map { A16Record(layer: $0.name, precision: $0.precision) })
  }
}
