import OctetCore

/// What a model file says about its model besides the graph and weights.
public struct ModelInfo: Codable, Sendable, Equatable {
  /// "resnet50", "efficientnet-lite0", …
  public var architecture: String
  /// Height and width of the network input.
  public var inputSize: Int
  public var classes: Int
  public var preprocessing: Preprocessing
  /// Where the weights came from (file name), when imported from a checkpoint.
  public var source: String?

  public init(architecture: String, inputSize: Int, classes: Int, preprocessing: Preprocessing, source: String? = nil) {
    self.architecture = architecture
    self.inputSize = inputSize
    self.classes = classes
    self.preprocessing = preprocessing
    self.source = source
  }
}

/// A float model: graph, float32 weights in checkpoint names and layouts, and its description.
public struct Model: Sendable {
  public var info: ModelInfo
  public var graph: Graph
  public var weights: TensorDictionary

  public init(info: ModelInfo, graph: Graph, weights: TensorDictionary) {
    self.info = info
    self.graph = graph
    self.weights = weights
  }
}

/// The architectures Octet can build from a checkpoint's tensors: torchvision's ResNet family by
/// member (`resnet` is any other depth or width in torchvision's ResNet layout), its MobileNetV2, and
/// EfficientNet-Lite0…4.
public enum Architecture: String, CaseIterable, Sendable {
  case resnet18, resnet34, resnet50, resnet101, resnet152
  case resnext50_32x4d, resnext101_32x8d, resnext101_64x4d
  case wideResnet50_2 = "wide_resnet50_2"
  case wideResnet101_2 = "wide_resnet101_2"
  case resnet
  case mobilenetV2 = "mobilenet_v2"
  case efficientnetLite = "efficientnet-lite"

  /// Guesses the architecture from tensor names (and, within the ResNet family, shapes). A ResNet
  /// whose structure cannot be read is `resnet`, so that building it says what is wrong.
  public static func detect(_ weights: TensorDictionary) -> Architecture? {
    if ResNet.matches(weights) {
      guard let s = try? ResNet.structure(weights) else { return .resnet }
      return Architecture(rawValue: ResNet.name(of: s)) ?? .resnet
    }
    if MobileNetV2.matches(weights) { return .mobilenetV2 }
    if EfficientNetLite.matches(weights) { return .efficientnetLite }
    return nil
  }

  /// What the tensor names look like, for an error that refuses another `--arch`.
  static func describe(_ weights: TensorDictionary) -> (what: String, arch: String)? {
    if ResNet.matches(weights) {
      let arch = (try? ResNet.structure(weights)).map(ResNet.name(of:)) ?? "resnet"
      return ("a torchvision ResNet (conv1, layer1…)", arch)
    }
    if MobileNetV2.matches(weights) { return ("a torchvision MobileNetV2 (features.N.conv…)", "mobilenet_v2") }
    if EfficientNetLite.matches(weights) {
      return ("an EfficientNet-Lite (_conv_stem, _blocks.*)", "efficientnet-lite")
    }
    return nil
  }

  /// How messages name this architecture ("a ResNet50", "a MobileNetV2").
  var displayName: String {
    switch self {
    case .mobilenetV2: "a MobileNetV2"
    case .efficientnetLite: "an EfficientNet-Lite"
    case .resnet: "a torchvision ResNet"
    default:
      "a "
        + rawValue.replacingOccurrences(of: "resnet", with: "ResNet").replacingOccurrences(
          of: "resnext", with: "ResNeXt")
    }
  }

  public func build(from weights: TensorDictionary, resolution: Int? = nil) throws(ModelError) -> Model {
    let matchesSelf: Bool
    switch self {
    case .mobilenetV2: matchesSelf = MobileNetV2.matches(weights)
    case .efficientnetLite: matchesSelf = EfficientNetLite.matches(weights)
    default: matchesSelf = ResNet.matches(weights)
    }
    if !matchesSelf, let other = Architecture.describe(weights) {
      throw .architectureMismatch("these tensors are \(other.what), not \(displayName); use --arch \(other.arch)")
    }
    switch self {
    case .mobilenetV2: return try MobileNetV2.build(from: weights)
    case .efficientnetLite: return try EfficientNetLite.build(from: weights, resolution: resolution)
    case .resnet: return try ResNet.build(from: weights)
    default: return try ResNet.build(from: weights, expected: rawValue)
    }
  }
}
