/// How a tensor's clipping range [lo, hi] is chosen from what its observer saw.
///
/// - `minmax`: the observed minimum and maximum.
/// - `percentile(P)`: the (100 − P)th and the Pth percentiles, two-sided, from the histogram.
/// - `entropy`: TensorRT's KL-divergence threshold (see `HistogramObserver.entropyRange()`).
/// - `mse`: the range that minimizes the expected squared error of the 8-bit quantizer, clipping
///   included (see `HistogramObserver.mseRange()`).
///
/// Every range is widened to include 0 before it is written (docs/quantization.md §1).
public enum CalibrationMethod: Sendable, Equatable, Hashable, CustomStringConvertible {
  case minmax
  case percentile(Double)
  case entropy
  case mse

  /// The method that measured best on real weights: on EfficientNet-Lite0 (500 calibration images,
  /// 1300 validation images) MSE-optimal clipping gave the highest float/int8 top-1 agreement
  /// (Calibration/README.md has the table).
  public static let `default` = CalibrationMethod.mse
  public static let defaultPercentile = 99.99

  /// Parses "minmax", "percentile" (99.99), "percentile:P" with 50 < P <= 100, "entropy", "mse".
  public init(parsing text: String) throws(CalibrationError) {
    let lowered = text.lowercased()
    switch lowered {
    case "minmax", "min-max", "max": self = .minmax
    case "entropy", "kl": self = .entropy
    case "mse": self = .mse
    case "percentile": self = .percentile(Self.defaultPercentile)
    default:
      guard lowered.hasPrefix("percentile:"), let p = Double(lowered.dropFirst("percentile:".count)),
        p.isFinite, p > 50, p <= 100
      else { throw .badMethod(text) }
      self = .percentile(p)
    }
  }

  /// "minmax", "percentile:99.99", "entropy", "mse": what `init(parsing:)` reads back.
  public var description: String {
    switch self {
    case .minmax: "minmax"
    case .percentile(let p): "percentile:\(Self.format(p))"
    case .entropy: "entropy"
    case .mse: "mse"
    }
  }

  /// Whether the method needs a histogram (everything but minmax).
  public var needsHistogram: Bool { self != .minmax }

  static func format(_ p: Double) -> String {
    p == p.rounded() ? String(Int(p)) : "\(p)"
  }
}
