import OctetModels

/// Something a quantized model's user should know about one node: a degenerate range, an all-zero
/// channel, a multiplier clamped at the smallest representable value, an accumulator bound.
public struct QuantizationWarning: Codable, Sendable, Equatable, CustomStringConvertible {
  /// What happened, one case per rule of docs/quantization.md §13 that the quantizer reports. Each
  /// kind says what it means, where it is explained and whether it matters (`summary`, `section`,
  /// `effect`), so a front end can print one line per kind instead of one per layer.
  public enum Kind: String, Codable, Sendable, CaseIterable {
    /// A calibrated activation range of [0, 0]: scale 1, zero point 0.
    case zeroRange = "zero_range"
    /// An output channel whose weights are all 0 after BatchNorm folding: weight scale 1.
    case allZeroWeights = "all_zero_weights"
    /// A channel's weight scale raised so that its bias fits in 2^30 (a dead channel).
    case weightScaleRaised = "weight_scale_raised"
    /// A bias that did not fit int32 even so, saturated.
    case biasSaturated = "bias_saturated"
    /// A bias clamped so that |bias| + 255·Σ|w| cannot overflow the int32 accumulator.
    case biasClamped = "bias_clamped"
    /// A requantization multiplier below 2^-32, kept with fewer significant bits at shift 62.
    case tinyMultiplier = "tiny_multiplier"
    /// Anything else (warnings made with `init(node:message:)`).
    case other

    /// What is counted: output channels, or tensors/multipliers.
    public var unit: String {
      switch self {
      case .zeroRange: "tensor(s)"
      case .tinyMultiplier: "multiplier(s)"
      case .other: "warning(s)"
      default: "output channel(s)"
      }
    }

    /// What the quantizer did, in a few words.
    public var summary: String {
      switch self {
      case .zeroRange: "calibrated range [0, 0] (the tensor was 0 on every calibration image): scale 1, zero point 0"
      case .allZeroWeights: "all weights 0 after BatchNorm folding: weight scale 1, int8 weights 0"
      case .weightScaleRaised: "weight scale raised so that |bias| fits in 2^30 (near-zero weights, large bias)"
      case .biasSaturated: "bias saturated to int32"
      case .biasClamped: "bias clamped to ±(2^31 − 1 − 255·Σ|w|) so that the int32 accumulator cannot overflow"
      case .tinyMultiplier: "requantization multiplier below 2^-32, kept at shift 62 with fewer significant bits"
      case .other: "other warnings"
      }
    }

    /// The docs/quantization.md sections that explain it.
    public var section: String {
      switch self {
      case .zeroRange: "docs/quantization.md §1, §13"
      case .allZeroWeights: "docs/quantization.md §2, §13"
      case .weightScaleRaised, .biasSaturated: "docs/quantization.md §5, §13"
      case .biasClamped: "docs/quantization.md §13, §14"
      case .tinyMultiplier: "docs/quantization.md §3, §13"
      case .other: "docs/quantization.md §13"
      }
    }

    /// Whether it matters for accuracy, and why (docs/quantization.md §13 derives each claim).
    public var effect: String {
      switch self {
      case .zeroRange:
        "none if the tensor is 0 on real inputs too; if not, its values are rounded to whole numbers "
          + "in [0, 255]: calibrate on images that exercise the layer"
      case .allZeroWeights:
        "none: the channel outputs its bias, a constant, in float as well, and int8 gives that constant "
          + "to within half an input step"
      case .weightScaleRaised:
        "negligible: the channel's weights are near 0 and its bias, which carries the output, is kept; "
          + "the error added is at most K·255/2^31 of |bias| for K weights (< 0.02 % for K ≤ 1152)"
      case .biasSaturated, .biasClamped:
        "matters: the channel's output is off by the part of the bias cut away; a bias this large for "
          + "its weights is unusual, check the model's weights"
      case .tinyMultiplier:
        "none: with |accumulator| < 2^31 the scaled value is below half an output step, so int8 "
          + "outputs the zero point, the code the float value rounds to as well"
      case .other: "see each message"
      }
    }
  }

  public var node: String
  public var message: String
  public var kind: Kind
  /// The output channels (or classes) concerned; empty for a warning about a whole tensor.
  public var channels: [Int]

  public init(node: String, message: String, kind: Kind = .other, channels: [Int] = []) {
    self.node = node
    self.message = message
    self.kind = kind
    self.channels = channels
  }

  public var description: String { "\(node): \(message)" }

  /// How many things it counts: its channels, or 1 for a whole-tensor warning.
  public var count: Int { max(channels.count, 1) }
}

/// What `Quantizer.quantize` did: how many integer nodes it made, which float nodes it could not
/// express in integers (none for ResNet50 and EfficientNet-Lite; the integer runtime has no float
/// fallback, so the quantizer throws for them), and its warnings.
public struct QuantizationReport: Codable, Sendable, Equatable {
  /// Integer nodes by operator, e.g. ["conv2d": 53, "add": 16, …].
  public var nodesByOperator: [String: Int]
  /// Float graph nodes the integer graph implements (fused members included).
  public var floatNodesCovered: Int
  /// Float graph nodes or tensors left in float, by name. Empty for every supported model.
  public var leftInFloat: [String]
  public var warnings: [QuantizationWarning]
  /// The layers whose input runs at 16 bits, with their precision ("a16w8" or "a16w16"), in network
  /// order (docs/quantization.md §17); nil when there are none.
  public var a16Layers: [A16Layer]? = nil

  public struct A16Layer: Codable, Sendable, Equatable {
    public var name: String
    public var precision: String
  }

  public var quantizedNodes: Int { nodesByOperator.values.reduce(0, +) }

  /// One line per kind of warning, in `Kind` order: the count, what it is, where it is explained and
  /// whether it matters, e.g. "31 output channel(s) in 6 layer(s): weight scale raised … (docs/…); accuracy effect: …".
  public var warningSummary: [String] {
    Dictionary(grouping: warnings, by: \.kind).sorted {
      QuantizationWarning.Kind.allCases.firstIndex(of: $0.key)! < QuantizationWarning.Kind.allCases.firstIndex(
        of: $1.key)!
    }.map { kind, list in
      let count = list.reduce(0) { $0 + $1.count }
      let layers = Set(list.map(\.node)).count
      return
        "\(count) \(kind.unit) in \(layers) layer(s): \(kind.summary) (\(kind.section)); accuracy effect: \(kind.effect)"
    }
  }
}

/// A quantized model and the report of how it was made.
public struct QuantizationResult: Sendable {
  public var model: QuantizedModel
  public var report: QuantizationReport
}

/// Errors of the quantizer; each names the node or tensor and says what to do.
public enum QuantizerError: Error, CustomStringConvertible, Equatable {
  /// The range table has no entry for a tensor the integer graph needs.
  case missingRange(tensor: String)
  case invalidRange(tensor: String, lo: Float, hi: Float)
  case unsupported(node: String, reason: String)
  case layer(String, String)

  public var description: String {
    switch self {
    case .missingRange(let tensor):
      "the range table has no range for tensor '\(tensor)'; calibrate this model with `octet calibrate` (the table must come from the same model)"
    case .invalidRange(let tensor, let lo, let hi):
      "the range of tensor '\(tensor)' is [\(lo), \(hi)]; a range must be finite with lo <= hi"
    case .unsupported(let node, let reason):
      "node '\(node)' cannot be quantized: \(reason)"
    case .layer(let name, let message): "layer '\(name)': \(message)"
    }
  }
}
