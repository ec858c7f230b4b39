import OctetCalibration
import OctetModels

extension Quantizer {
  /// Quantizes `model` with the calibrated ranges of `ranges` (its `min`/`max` per tensor name).
  /// A tensor the integer graph needs and the table lacks is an error naming it. The table's
  /// calibration images (their SHA-256) are recorded in the model.
  public static func quantize(model: Model, ranges: RangeTable, weightBits: WeightBits = .eight) throws
    -> QuantizationResult
  {
    try quantize(model: model, ranges: ranges, options: QuantizationOptions(weightBits: weightBits))
  }

  /// The same with every model-only technique of `options`.
  public static func quantize(model: Model, ranges: RangeTable, options: QuantizationOptions) throws
    -> QuantizationResult
  {
    let byName = Dictionary(ranges.tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    var result = try quantize(model: model, options: options) { name in
      byName[name].map { (lo: $0.min, hi: $0.max) }
    }
    // Which images the ranges came from travels with the model, for `octet compare` to check.
    result.model.calibrationImages = ranges.calibrationImages?.map(\.sha256)
    return result
  }
}
