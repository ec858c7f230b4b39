import OctetCalibration
import OctetModels

extension Quantizer {
  /// Quantizes `model` with the calibrated ranges of `ranges` (its `min`/`max` per tensor name).
  /// A tensor the integer graph needs and the table lacks is an error naming it. The table's
  /// calibration images (their SHA-256) are recorded in the model. A table calibrated on the
  /// equalized model (`RangeTable.equalized`, `octet calibrate --equalize`) quantizes with
  /// cross-layer equalization.
  public static func quantize(model: Model, ranges: RangeTable, weightBits: WeightBits = .eight) throws
    -> QuantizationResult
  {
    var options = QuantizationOptions(weightBits: weightBits)
    options.equalization = ranges.equalized
    return try quantize(model: model, ranges: ranges, options: options)
  }

  /// The same with `options`; `options.equalization` must match `ranges.equalized` (the ranges of
  /// an equalized model differ from the original's).
  public static func quantize(model: Model, ranges: RangeTable, options: QuantizationOptions) throws
    -> QuantizationResult
  {
    guard options.equalization == ranges.equalized else {
      throw QuantizerError.unsupported(
        node: Graph.inputName,
        reason: ranges.equalized
          ? "the range table was calibrated on the equalized model (\"equalized\": true); quantize with equalization"
          : "equalization needs the ranges of the equalized model: calibrate with `octet calibrate --equalize`")
    }
    let byName = Dictionary(ranges.tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    var result = try quantize(model: model, options: options) { name in
      byName[name].map { (lo: $0.min, hi: $0.max) }
    }
    // Which images the ranges came from travels with the model, for `octet compare` to check.
    result.model.calibrationImages = ranges.calibrationImages?.map(\.sha256)
    return result
  }
}
