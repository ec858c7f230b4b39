import ArgumentParser
import Foundation
import Octet
import OctetCalibration
import OctetInt8
import OctetQuantizer
import Synchronization

struct QuantizeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "quantize",
    abstract: "Quantize a float model to int8: in one step from calibration images, or with a range table.",
    discussion: """
      One step (--images DIR): calibrates on the images (as `octet calibrate`), quantizes, and runs the \
      data-driven passes (bias correction, AdaRound) on the same images, with one progress line. Without \
      a technique flag it uses the recommended recipe (`QuantizationOptions.recommended`: today \
      AdaRound, then bias correction); with any technique flag, exactly the techniques given; \
      --a16-layers and --a16-budget add 16-bit layers to either. Two steps (--ranges RANGES): \
      quantizes with the range table of `octet calibrate`, with only the techniques given (model-only ones: \
      data-driven passes need --images). BatchNorm is folded, weights become per-channel int8, biases \
      int32, activations per-tensor uint8 (docs/quantization.md). The ranges and the recipe (method, \
      options, passes) are stored in the int8 model's metadata (`octet classify --verbose` prints them). \
      Prints the nodes quantized, anything left in float, and warnings; the file is written atomically.
      """)

  @Argument(help: "The float model: an Octet model file, or a checkpoint imported on the fly.")
  var model: String

  @Option(help: "Two-step: the range table (JSON) written by `octet calibrate` for this model.")
  var ranges: String?

  @Option(
    help:
      "One-step: calibrate on this folder (the files of its labels.tsv when it has one, else every .jpg/.jpeg/.png, sorted)."
  )
  var images: String?

  @Option(help: "One-step: use N images spread evenly over the folder's list (default: all).")
  var limit: Int?

  @Option(
    help:
      "One-step: calibration method, minmax, percentile[:P], entropy or mse (default \(CalibrationMethod.default.description))."
  )
  var method: String?

  @Option(help: "One-step: images run at once (default: all cores).")
  var threads: Int = ProcessInfo.processInfo.activeProcessorCount

  @Option(name: .shortAndLong, help: "The int8 model file to write (safetensors).")
  var output: String

  @Option(
    help: """
      Weight bits: 8 ([-127, 127], the default) or 7 ([-63, 63]). 7-bit weights run on AVX2's faster \
      vpmaddubsw kernel (about twice the multiply-adds per cycle on CPUs without VNNI), at some accuracy cost.
      """)
  var weightBits: Int = 8

  @Flag(
    inversion: .prefixedNo,
    help: "Quantize the input straight from the uint8 pixels, normalization folded (docs/quantization.md §12).")
  var exactInput: Bool?

  @Flag(inversion: .prefixedNo, help: "Cross-layer equalization of depthwise-separable blocks.")
  var equalize: Bool?

  @Flag(
    inversion: .prefixedNo,
    help: "Bias correction: fold each channel's mean float − int8 error into its int32 bias (needs --images).")
  var biasCorrection: Bool?

  @Flag(
    inversion: .prefixedNo, help: "AdaRound: learn each weight's rounding on the calibration images (needs --images).")
  var adaround: Bool?

  @Option(help: "Layers (int8 node names, comma-separated) whose input activations run at 16 bits.")
  var a16Layers: String?

  @Option(help: "Layers (int8 node names, comma-separated) that keep 8-bit inputs and get 16-bit weights (a8w16).")
  var w16Layers: String?

  @Option(
    help: """
      Weight bits of the 16-bit-input layers (--a16-layers, --a16-budget): 16 (a16w16, the default: \
      on the calibration split it gained 2.5 dB of logits SQNR where a16w8 gained 0.2) or 8 (a16w8, \
      cheaper to run).
      """)
  var a16WeightBits: Int = 16

  @Option(
    help: """
      One-step: run at 16 bits the layers that bring the int8 network closest to float per \
      multiply-add (--a16-ranking), at most this fraction (0 to 1) of the network's multiply-adds.
      """)
  var a16Budget: Double?

  @Option(
    help: """
      One-step with --a16-budget: how layers are ranked. gain: each candidate layer at 16 bits in the \
      whole int8 network, the KL to float it removes per multiply-add (measured on \
      --sensitivity-images calibration images); sensitivity: the `compare --sensitivity` ranking \
      (each layer alone in int8 inside the float network; faster, less direct).
      """)
  var a16Ranking: A16Ranking = .gain

  @Option(
    help: """
      One-step with --a16-budget and the gain ranking: what may go to 16 bits. inputs: a layer's input \
      (a16, with its producer's 16-bit twin); weights: its weights on the 8-bit input (a8w16); both.
      """)
  var a16Kinds: A16Kinds = .inputs

  @Option(help: "One-step with --a16-budget: calibration images the ranking runs on.")
  var sensitivityImages: Int = 100

  @Flag(help: "Print every warning, layer by layer (by default one line per kind of warning, with its count).")
  var verbose = false

  @Option(help: "Also write the report, with every warning (kind, layer, channel), as JSON to this file.")
  var json: String?

  /// Whether any technique flag was given: then exactly those techniques, else the recommended recipe
  /// (one step). The 16-bit layers (--a16-layers, --a16-budget) come on top of either.
  var techniqueGiven: Bool {
    exactInput != nil || equalize != nil || biasCorrection != nil || adaround != nil
  }

  /// The options: one-step without a technique flag, `QuantizationOptions.recommended`; otherwise the
  /// plain options with the flags given. Weight bits always come from --weight-bits.
  var options: QuantizationOptions {
    let bits = WeightBits(rawValue: weightBits) ?? .eight
    var options = images != nil && !techniqueGiven ? QuantizationOptions.recommended : QuantizationOptions()
    options.weightBits = bits
    if let exactInput { options.exactInput = exactInput }
    if let equalize { options.equalization = equalize }
    if let biasCorrection { options.biasCorrection = biasCorrection }
    if let adaround { options.adaRound = adaround }
    if let a16Layers {
      options.a16Layers = a16Layers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }
    if let w16Layers {
      options.w16Layers = w16Layers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }
    options.a16WeightBits = A16WeightBits(rawValue: a16WeightBits) ?? .sixteen
    return options
  }

  func validate() throws {
    guard WeightBits(rawValue: weightBits) != nil else { throw ValidationError("--weight-bits must be 7 or 8") }
    guard A16WeightBits(rawValue: a16WeightBits) != nil else {
      throw ValidationError("--a16-weight-bits must be 8 or 16")
    }
    switch (ranges, images) {
    case (nil, nil):
      throw ValidationError(
        "give the calibration images with --images DIR (one step), or a range table with --ranges RANGES (from `octet calibrate`)"
      )
    case (.some, .some):
      throw ValidationError(
        "--ranges and --images together: give either --images DIR (calibrate and quantize in one step) or --ranges RANGES (a table from `octet calibrate`)"
      )
    default: break
    }
    if images == nil {
      for (given, flag) in [(limit != nil, "--limit"), (method != nil, "--method")] where given {
        throw ValidationError("\(flag) calibrates, so it goes with --images DIR (one step), not with --ranges")
      }
      for (on, flag) in [(biasCorrection == true, "--bias-correction"), (adaround == true, "--adaround")] where on {
        throw ValidationError(
          "\(flag) runs on calibration images: quantize in one step with --images DIR instead of --ranges")
      }
    }
    if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    if let a16Budget {
      guard a16Budget >= 0, a16Budget <= 1 else {
        throw ValidationError(
          "--a16-budget \(a16Budget) is outside [0, 1]: it is the fraction of the multiply-adds that may run at 16 bits"
        )
      }
      guard images != nil else {
        throw ValidationError("--a16-budget ranks layers on calibration images: quantize in one step with --images DIR")
      }
      guard a16Layers == nil else { throw ValidationError("--a16-budget chooses the 16-bit layers: drop --a16-layers") }
    }
    guard sensitivityImages >= 1 else { throw ValidationError("--sensitivity-images must be at least 1") }
    guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    if let method {
      do { _ = try CalibrationMethod(parsing: method) } catch { throw ValidationError("--method: \(error)") }
    }
    if let a16Layers,
      a16Layers.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces).isEmpty })
        || a16Layers.isEmpty
    {
      throw ValidationError("--a16-layers '\(a16Layers)': expected layer names separated by commas")
    }
    try validateOutputPath(output, option: "-o")
    try validateOutputPath(json, option: "--json")
    try ModelArgument.expectFloat(
      model, argument: "<model>", command: "quantize", why: "quantizes a float model (this one is quantized already)")
    if let ranges {
      guard FileManager.default.fileExists(atPath: ranges) else {
        throw ValidationError(
          "--ranges '\(ranges)' does not exist; make one with `octet calibrate MODEL --images DIR -o RANGES`, "
            + "or quantize in one step with --images DIR")
      }
      // A calibration recipe (or any other file) given as the range table is told here, in one line.
      do { _ = try RangeTable.decode(try readSmallFile(ranges), path: ranges) } catch {
        throw ValidationError("--ranges: \(error)")
      }
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
    /// The range table (two-step), or nil.
    var ranges: String?
    /// The calibration folder (one step), or nil.
    var images: String?
    var output: String
    var weight_bits: Int
    /// How the model was made: method, images, options, passes (as stored in its metadata).
    var recipe: QuantizationRecipe?
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
    let options = self.options
    let result: QuantizationResult
    let architecture: String
    if let images {
      (result, architecture) = try oneStep(images: images, options: options)
    } else {
      (result, architecture) = try twoStep(ranges: ranges!, options: options)
    }
    // Planning checks every shape before anything is written.
    _ = try Int8ReferenceExecutor(model: result.model)
    try QuantizedModelFile.write(result.model, to: URL(fileURLWithPath: output))

    let report = result.report
    let byOp = report.nodesByOperator.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(
      separator: ", ")
    print(
      "\(architecture): \(report.quantizedNodes) int8 nodes (\(byOp)) for \(report.floatNodesCovered) float nodes"
    )
    if let a16 = report.a16Layers {
      print("16-bit layers: \(a16.map { "\($0.name) (\($0.precision))" }.joined(separator: ", "))")
    }
    if let recipe = QuantizationRecipe.of(result.model) { print("recipe: \(Self.describe(recipe))") }
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
          result, model: model, architecture: architecture, ranges: ranges, images: images, output: output,
          weightBits: weightBits), to: json)
    }
    print(
      String(
        format: "wrote %@ in %.2f s, peak memory %@", output, Date().timeIntervalSince(start), peakMemoryText()))
  }

  /// One line: "mse on 500 images, 8-bit weights, bias correction (one-step)".
  static func describe(_ recipe: QuantizationRecipe) -> String {
    let o = recipe.options
    var parts = ["\(recipe.method) ranges on \(recipe.images) images", "\(o.weightBits.rawValue)-bit weights"]
    if o.exactInput { parts.append("exact input") }
    if o.equalization { parts.append("equalization") }
    if !o.a16Layers.isEmpty { parts.append("16-bit inputs of \(o.a16Layers.count) layer(s)") }
    if !o.w16Layers.isEmpty { parts.append("16-bit weights of \(o.w16Layers.count) layer(s)") }
    parts += recipe.passes.map { $0.replacingOccurrences(of: "_", with: " ") }
    return parts.joined(separator: ", ") + " (\(recipe.mode))"
  }

  private func twoStep(ranges: String, options: QuantizationOptions) throws -> (QuantizationResult, String) {
    let floatModel = try ModelLoader.load(contentsOf: URL(fileURLWithPath: model))
    let table = try RangeTable.read(contentsOf: URL(fileURLWithPath: ranges))
    // A table from another model is caught here, by name, before a tensor of it is found missing.
    guard table.model.architecture == floatModel.info.architecture else {
      throw FileError(
        path: ranges,
        reason: "holds the ranges of \(table.model.architecture), but '\(model)' is \(floatModel.info.architecture); "
          + "calibrate this model with `octet calibrate`")
    }
    // A table calibrated on the equalized model (`calibrate --equalize`) implies equalization.
    var options = options
    if equalize == nil { options.equalization = table.equalized }
    do {
      let result = try Quantizer.quantize(
        model: floatModel, ranges: table, options: options, inputs: nil, mode: "ranges")
      return (result, floatModel.info.architecture)
    } catch let error as QuantizerError {
      guard case .missingRange = error else { throw error }
      throw FileError(path: ranges, reason: error.description)
    }
  }

  private func oneStep(images: String, options: QuantizationOptions) throws -> (QuantizationResult, String) {
    let method = try method.map { try CalibrationMethod(parsing: $0) } ?? .default
    // The folder is listed before the model is loaded: a typo fails at once.
    let urls = CalibrationImages.spread(try CalibrationImages.list(folder: images), count: limit)
    let floatModel = try ModelLoader.load(contentsOf: URL(fileURLWithPath: model))
    let passes = try options.dataDrivenPasses()
    // Equalization changes the float model's tensors: calibrate the equalized model (§7.1).
    let calibrated = options.equalization ? try CrossLayerEqualization.apply(to: floatModel).model : floatModel
    let calibrator = try Calibrator(model: calibrated, method: method)
    let display = StageProgress()
    display.stage("calibrating", total: urls.count)
    let calibration = try calibrator.calibrate(
      images: urls, threads: threads,
      progress: { p in display.update(p.done + p.skipped, detail: p.skipped > 0 ? "\(p.skipped) skipped" : "") },
      skipped: { skip in display.warn("skipped \(skip.url.path): \(skip.reason)") })
    for name in calibration.constantTensors {
      let entry = calibration.table[name]!
      display.warn(
        "tensor '\(name)' is constant (\(entry.observedMin)) over all images; its range is [\(entry.min), \(entry.max)]"
      )
    }
    // The passes read the images calibration read (an unreadable one was skipped there).
    let skipped = Set(calibration.skipped.map(\.url))
    let used = urls.filter { !skipped.contains($0) }
    let preprocessing = floatModel.info.preprocessing
    let inputs = CalibrationInputs(count: used.count, threads: threads) { i in
      preprocessing.apply(to: try ImageDecoder.decode(contentsOf: used[i]))
    }
    let chooser: ((QuantizedModel, A16Trial) throws -> SixteenBitLayers)? = a16Budget.map { budget in
      { model, trial in
        try chooseA16Layers(
          budget: budget, floatModel: floatModel, int8: model, trial: trial, options: options, inputs: inputs,
          display: display)
      }
    }
    let result = try Quantizer.quantize(
      model: floatModel, ranges: calibration.table, options: options, inputs: passes.isEmpty ? nil : inputs,
      mode: "one-step", chooseA16: chooser
    ) { p in
      display.stage(p.stage, total: p.total)
      display.update(p.done)
    }
    display.finish()
    return (result, floatModel.info.architecture)
  }

  /// `--a16-budget`: ranks the layers that can run at 16 bits on the first --sensitivity-images
  /// calibration images (by measured gain, or by the sensitivity of `int8`, the model with every layer
  /// at 8 bits after the data-driven passes), and takes them in that order while their multiply-adds
  /// stay within the budget (`MixedPrecision.choose`).
  private func chooseA16Layers(
    budget: Double, floatModel: Model, int8: QuantizedModel, trial: A16Trial, options: QuantizationOptions,
    inputs: CalibrationInputs, display: StageProgress
  ) throws -> SixteenBitLayers {
    let count = min(sensitivityImages, inputs.count)
    display.stage("sensitivity: loading images", total: count)
    var images: [Tensor] = []
    for i in 0..<count {
      images.append(try inputs.load(i))
      display.update(i + 1)
    }
    let float = options.equalization ? try CrossLayerEqualization.apply(to: floatModel).model : floatModel
    let candidates = try MixedPrecision.candidates(in: floatModel)
    let producers = try MixedPrecision.producers(in: floatModel)
    let macs = try LayerCost.macs(of: int8)
    let chosen: SixteenBitLayers
    var lines: [String] = []
    switch a16Ranking {
    case .gain:
      let weightCandidates =
        a16Kinds == .inputs ? [] : try MixedPrecision.weightCandidates(in: floatModel, exactInput: options.exactInput)
      let candidates = a16Kinds == .weights ? [] : candidates
      display.stage("16-bit gain: layers", total: candidates.count + weightCandidates.count + 1)
      let measured = try MixedPrecision.gains(
        float: float, eightBit: int8, candidates: candidates, weightCandidates: weightCandidates, inputs: images,
        trial: trial, producers: producers, threads: threads, progress: { done, _ in display.update(done) })
      chosen = try MixedPrecision.choose(budget: budget, gains: measured.gains, macs: macs, producers: producers)
      for g in measured.gains
      where (g.kind == .input ? chosen.a16 : chosen.w16).contains(g.layer) {
        lines.append(
          "\(g.layer) \(g.kind == .input ? "16-bit input" : "16-bit weights") (KL to float "
            + "\(String(format: "%.5f", measured.eightBit)) -> \(String(format: "%.5f", g.kl)))")
      }
    case .sensitivity:
      display.stage("sensitivity: images", total: count)
      let ranking = try SensitivityAnalysis.rank(
        float: float, int8: int8, inputs: images, threads: threads, progress: { done, _ in display.update(done) })
      let allowed = Set(candidates)
      chosen = SixteenBitLayers(
        a16: try MixedPrecision.choose(
          budget: budget, ranking: ranking.map(\.layer).filter(allowed.contains), macs: macs, producers: producers))
      lines = chosen.a16.map { "\($0) 16-bit input" }
    }
    display.note(
      "--a16-budget \(budget): \(lines.count) choice(s) at 16 bits"
        + (lines.isEmpty ? "" : ": " + lines.joined(separator: ", ")))
    return chosen
  }

  static func report(
    _ result: QuantizationResult, model: String, architecture: String, ranges: String?, images: String?,
    output: String, weightBits: Int
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
      model: model, architecture: architecture, ranges: ranges, images: images, output: output,
      weight_bits: weightBits, recipe: QuantizationRecipe.of(result.model),
      int8_nodes: result.report.nodesByOperator, float_nodes_covered: result.report.floatNodesCovered,
      left_in_float: result.report.leftInFloat, warning_kinds: kinds, warnings: records,
      a16_layers: result.report.a16Layers?.map { A16Record(layer: $0.name, precision: $0.precision) })
  }
}

/// One progress line for a run of several stages ("calibrating 120/500", "bias correction: layers
/// 12/65" …): a new stage redraws the same line; warnings clear it first.
final class StageProgress: Sendable {
  private let bar = Mutex<ProgressBar?>(nil)

  func stage(_ label: String, total: Int) {
    bar.withLock { bar in
      guard bar?.label != label || bar?.total != total else { return }
      if bar?.enabled == true { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
      bar = ProgressBar(total: total, label: label)
    }
  }

  func update(_ done: Int, detail: String = "") { bar.withLock { $0?.update(done, detail: detail) } }

  func warn(_ message: String) {
    bar.withLock { bar in
      if bar?.enabled == true { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
      FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
    }
  }

  /// A line of information (not a warning), printed above the progress line.
  func note(_ message: String) {
    bar.withLock { bar in
      if bar?.enabled == true { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
      FileHandle.standardError.write(Data("\(message)\n".utf8))
    }
  }

  func finish() { bar.withLock { $0?.finish() } }
}

/// VmHWM of /proc/self/status: the resident set's high-water mark.
func peakMemoryText() -> String {
  guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
    let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
    let kb = Double(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "")
  else { return "unknown" }
  return String(format: "%.0f MB", kb / 1024)
}

/// How `--a16-budget` ranks the layers that may run at 16 bits.
enum A16Ranking: String, ExpressibleByArgument, CaseIterable {
  case gain, sensitivity
}

/// What `--a16-budget` (gain ranking) may make 16-bit: layers' inputs, their weights (a8w16), or both.
enum A16Kinds: String, ExpressibleByArgument, CaseIterable {
  case inputs, weights, both
}
