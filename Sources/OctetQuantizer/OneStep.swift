import Foundation
import OctetCalibration
import OctetCore
import OctetModels

/// The calibration images as the data-driven passes read them: `count` network inputs, image `i`
/// loaded (decoded and preprocessed, `[1, S, S, 3]`) by `load(i)`, on up to `threads` threads at once.
/// Passes stream them: no pass needs every float input in memory at once.
public struct CalibrationInputs: Sendable {
  public var count: Int
  public var threads: Int
  public var load: @Sendable (Int) throws -> Tensor

  public init(count: Int, threads: Int, load: @escaping @Sendable (Int) throws -> Tensor) {
    self.count = count
    self.threads = max(threads, 1)
    self.load = load
  }
}

/// Where a data-driven pass is: `stage` (e.g. "bias correction: float statistics"), `done` of `total`.
public struct PassProgress: Sendable {
  public var stage: String
  public var done: Int
  public var total: Int

  public init(stage: String, done: Int, total: Int) {
    self.stage = stage
    self.done = done
    self.total = total
  }
}

/// A pass that changes a quantized model with the help of the float model and calibration images,
/// after `Quantizer.quantize` made it. The one-step pipeline (`octet quantize --images`) runs the
/// passes of `QuantizationOptions.dataDrivenPasses` in order, each on the previous one's result.
public struct DataDrivenPass: Sendable {
  /// Recorded in the model's recipe, e.g. "bias_correction".
  public var name: String
  public var run:
    @Sendable (
      _ float: Model, _ quantized: QuantizedModel, _ inputs: CalibrationInputs,
      _ progress: @Sendable (PassProgress) -> Void
    ) throws -> QuantizedModel

  public init(
    name: String,
    run:
      @escaping @Sendable (Model, QuantizedModel, CalibrationInputs, @Sendable (PassProgress) -> Void) throws ->
      QuantizedModel
  ) {
    self.name = name
    self.run = run
  }
}

extension QuantizationOptions {
  /// What one-step quantization uses when no technique is chosen on the command line: the best
  /// combination measured so far among the techniques this build implements (Calibration/README.md
  /// and the measurements of issue 13: chosen on a split of the calibration images, never on the
  /// evaluation set). Weight bits stay 8. Today: AdaRound, then bias correction, which on
  /// EfficientNet-Lite0 (calibrated on the first 400 images of imagenet-train-calibration-500,
  /// compared on its last 100) raised the logits' SQNR from 19.6 dB (plain) to 24.4 dB with 8-bit
  /// weights (bias correction alone 23.2, AdaRound alone 24.3).
  public static var recommended: QuantizationOptions {
    var options = QuantizationOptions()
    options.adaRound = true
    options.biasCorrection = true
    return options
  }

  /// Whether a pass needs calibration images (bias correction, AdaRound).
  public var needsImages: Bool { biasCorrection || adaRound }

  /// The data-driven passes these options ask for, in the order they run. AdaRound (which chooses
  /// the weights) would come first; bias correction last, since it corrects the mean error that
  /// the final weights and every earlier layer leave.
  public func dataDrivenPasses() throws -> [DataDrivenPass] {
    var passes: [DataDrivenPass] = []
    if adaRound { passes.append(AdaRound.pass(weightBits: weightBits)) }
    if biasCorrection { passes.append(BiasCorrection.pass) }
    return passes
  }
}

/// How an int8 model was made, stored in its metadata (`QuantizedModel.recipe`, as JSON): the
/// calibration method and image count, the options, and the data-driven passes run in order.
public struct QuantizationRecipe: Codable, Sendable, Equatable {
  /// The calibration method (`CalibrationMethod.description`), as the range table records it.
  public var method: String
  /// Calibration images observed.
  public var images: Int
  public var options: QuantizationOptions
  /// Data-driven passes run after quantization, in order (e.g. ["bias_correction"]).
  public var passes: [String]
  /// "one-step" (`quantize --images`) or "ranges" (`quantize --ranges`).
  public var mode: String

  public init(method: String, images: Int, options: QuantizationOptions, passes: [String], mode: String) {
    self.method = method
    self.images = images
    self.options = options
    self.passes = passes
    self.mode = mode
  }

  public func encoded() -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
  }

  /// The recipe of a model's metadata, nil when it has none (models made before it was recorded)
  /// or it does not read as one.
  public static func of(_ model: QuantizedModel) -> QuantizationRecipe? {
    guard let text = model.recipe else { return nil }
    return try? JSONDecoder().decode(QuantizationRecipe.self, from: Data(text.utf8))
  }
}

/// Builds, for a list of 16-bit layers, the model one-step quantization would write with them.
public typealias A16Trial = (SixteenBitLayers) throws -> QuantizedModel

extension Quantizer {
  /// Quantizes `model` with the ranges of `ranges` and the model-only techniques of `options`, then
  /// runs the data-driven passes `options` asks for on `inputs` (required when there are any), and
  /// records the ranges and the recipe in the model's metadata.
  ///
  /// With 16-bit layers (`options.a16Layers`, or those `chooseA16` picks from the 8-bit model the
  /// passes made; its `trial` builds the model this call would return for a list of 16-bit layers,
  /// so that a chooser can measure them) and passes, the passes run on the all-8-bit model and `MixedPrecision.graft` carries
  /// their weights and bias corrections into the model quantized with the 16-bit layers (§17.1).
  public static func quantize(
    model: Model, ranges: RangeTable, options: QuantizationOptions, inputs: CalibrationInputs?, mode: String,
    chooseA16: ((_ eightBit: QuantizedModel, _ trial: A16Trial) throws -> SixteenBitLayers)? = nil,
    progress: @escaping @Sendable (PassProgress) -> Void = { _ in }
  ) throws -> QuantizationResult {
    let passes = try options.dataDrivenPasses()
    if !passes.isEmpty && inputs == nil {
      throw QuantizerError.unsupported(
        node: "(model)", reason: "\(passes.map(\.name).joined(separator: ", ")) needs calibration images")
    }
    var ranges = ranges
    // One step calibrates the equalized model itself; a table from `calibrate --equalize` says so.
    if options.equalization && inputs != nil { ranges.equalized = true }
    guard options.equalization == ranges.equalized else {
      throw QuantizerError.unsupported(
        node: Graph.inputName,
        reason: ranges.equalized
          ? "the range table was calibrated on the equalized model (\"equalized\": true); quantize with equalization"
          : "equalization needs the ranges of the equalized model: calibrate with `octet calibrate --equalize`")
    }
    // The passes compare with the float model the integer one was made from: the equalized one.
    let floatModel = options.equalization ? try CrossLayerEqualization.apply(to: model).model : model
    let byName = Dictionary(ranges.tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    let range: (String) -> (lo: Float, hi: Float)? = { name in byName[name].map { (lo: $0.min, hi: $0.max) } }
    var options = options
    // The passes see 8-bit layers only; 16-bit layers come after them.
    var eightBit = options
    eightBit.a16Layers = []
    eightBit.w16Layers = []
    let direct = passes.isEmpty && chooseA16 == nil
    progress(PassProgress(stage: "quantizing", done: 0, total: 1))
    var result = try quantize(model: model, options: direct ? options : eightBit, range: range)
    progress(PassProgress(stage: "quantizing", done: 1, total: 1))
    if !direct {
      let plain = result.model
      for pass in passes { result.model = try pass.run(floatModel, result.model, inputs!, progress) }
      let corrected = result.model
      let floatBias = try Quantizer.floatLayers(model: floatModel).mapValues(\.bias)
      let withA16 = { (layers: SixteenBitLayers) throws -> QuantizationResult in
        var o = options
        o.a16Layers = layers.a16
        o.w16Layers = layers.w16
        let wide = try quantize(model: model, options: o, range: range)
        return QuantizationResult(
          model: try MixedPrecision.graft(corrected: corrected, plain: plain, wide: wide.model, floatBias: floatBias),
          report: wide.report)
      }
      if let chooseA16 {
        let chosen = try chooseA16(corrected) { try withA16($0).model }
        options.a16Layers = chosen.a16
        options.w16Layers = chosen.w16
      }
      let layers = SixteenBitLayers(a16: options.a16Layers, w16: options.w16Layers)
      if !layers.isEmpty { result = try withA16(layers) }
    }
    result.model.calibrationImages = ranges.calibrationImages?.map(\.sha256)
    result.model.ranges = ranges.encoded()
    result.model.recipe =
      QuantizationRecipe(
        method: ranges.method, images: ranges.images, options: options, passes: passes.map(\.name), mode: mode
      ).encoded()
    return result
  }
}
