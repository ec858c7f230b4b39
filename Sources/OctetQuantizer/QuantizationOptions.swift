import OctetModels

/// What `octet quantize` does beyond plain post-training quantization (round-to-nearest weights,
/// calibrated activation ranges). One field per technique; each is documented where it is
/// implemented and in docs/quantization.md when it changes the integer arithmetic.
///
/// Model-only techniques (weight bits, exact input, equalization, 16-bit layers) act inside
/// `Quantizer.quantize(model:options:range:)`. Data-driven techniques (bias correction, AdaRound)
/// need calibration images and run in the one-step pipeline (`octet quantize --images`), which
/// records the options it used in the int8 model's metadata.
public struct QuantizationOptions: Sendable, Equatable, Codable {
  /// 8-bit weights [-127, 127] (default) or 7-bit [-63, 63].
  public var weightBits: WeightBits = .eight
  /// Quantize the network input straight from the decoded uint8 pixels, with the normalization
  /// folded into the first convolution (docs/quantization.md §12), instead of quantizing the
  /// normalized float input.
  public var exactInput = false
  /// Cross-layer equalization of depthwise-separable blocks (Nagel et al. 2019), with ReLU6 kept
  /// exact through per-channel clamp bounds (docs/quantization.md §7.1). The quantizer equalizes
  /// the model it is given; the activation ranges must be those of the equalized model, i.e.
  /// calibrate `CrossLayerEqualization.apply(to: model).model` (deterministic) and pass the
  /// original model here.
  public var equalization = false
  /// Empirical bias correction: per output channel, the mean float − int8 difference over the
  /// calibration images, folded into the int32 bias.
  public var biasCorrection = false
  /// AdaRound: learned up/down rounding of each weight, layer by layer, on calibration activations.
  public var adaRound = false
  /// Layers (integer node names) whose input activations run at 16 bits (docs/quantization.md §17).
  /// Each must be a convolution whose input is a convolution's output; an unknown name is an error.
  public var a16Layers: [String] = []
  /// The weights of the `a16Layers`: 8-bit [-127, 127] (a16w8, the default) or 16-bit
  /// [-32767, 32767] (a16w16).
  public var a16WeightBits: A16WeightBits = .eight
  /// Layers (integer node names) that keep their 8-bit input and get 16-bit weights, a8w16
  /// (docs/quantization.md §17.2). Any convolution but one with an exact input (§12); a layer in
  /// both this and `a16Layers` is a16w16, whatever `a16WeightBits` says.
  public var w16Layers: [String] = []

  public init(weightBits: WeightBits = .eight) { self.weightBits = weightBits }

  enum CodingKeys: String, CodingKey {
    case weightBits, exactInput, equalization, biasCorrection, adaRound, a16Layers, a16WeightBits, w16Layers
  }

  /// Reads a recipe written by any version: a field added later (16-bit layers, a8w16) that an
  /// older model's recipe lacks takes its default.
  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    weightBits = try c.decode(WeightBits.self, forKey: .weightBits)
    exactInput = try c.decodeIfPresent(Bool.self, forKey: .exactInput) ?? false
    equalization = try c.decodeIfPresent(Bool.self, forKey: .equalization) ?? false
    biasCorrection = try c.decodeIfPresent(Bool.self, forKey: .biasCorrection) ?? false
    adaRound = try c.decodeIfPresent(Bool.self, forKey: .adaRound) ?? false
    a16Layers = try c.decodeIfPresent([String].self, forKey: .a16Layers) ?? []
    a16WeightBits = try c.decodeIfPresent(A16WeightBits.self, forKey: .a16WeightBits) ?? .eight
    w16Layers = try c.decodeIfPresent([String].self, forKey: .w16Layers) ?? []
  }
}

extension WeightBits: Codable {}

/// The weight width of the 16-bit-input layers (docs/quantization.md §17).
public enum A16WeightBits: Int, Sendable, Codable, CaseIterable {
  case eight = 8
  case sixteen = 16

  public var maxMagnitude: Int64 { self == .eight ? 127 : 32767 }
}
