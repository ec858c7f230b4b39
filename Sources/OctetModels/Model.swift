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

/// The architectures Octet can build from a checkpoint's tensors.
public enum Architecture: String, CaseIterable, Sendable {
  case resnet50
  case efficientnetLite = "efficientnet-lite"

  /// Guesses the architecture from tensor names.
  public static func detect(_ weights: TensorDictionary) -> Architecture? {
    if ResNet50.matches(weights) { return .resnet50 }
    if EfficientNetLite.matches(weights) { return .efficientnetLite }
    return nil
  }

  public func build(from weights: TensorDictionary, resolution: Int? = nil) throws(ModelError) -> Model {
    switch self {
    case .resnet50:
      guard ResNet50.matches(weights) || !EfficientNetLite.matches(weights) else {
        throw .architectureMismatch(
          "these tensors are an EfficientNet-Lite (_conv_stem, _blocks.*), not a ResNet50; use --arch efficientnet-lite"
        )
      }
      return try ResNet50.build(from: weights)
    case .efficientnetLite:
      guard EfficientNetLite.matches(weights) || !ResNet50.matches(weights) else {
        throw .architectureMismatch(
          "these tensors are a torchvision ResNet (conv1, layer1…), not an EfficientNet-Lite; use --arch resnet50")
      }
      return try EfficientNetLite.build(from: weights, resolution: resolution)
    }
  }
}
