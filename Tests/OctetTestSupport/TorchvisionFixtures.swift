import Foundation
import OctetCore
import OctetModels

/// The small torchvision-layout checkpoints in Tests/OctetModelsTests/Fixtures/torchvision, written
/// with torch's logits by Scripts/make_torchvision_fixtures.py (committed: no torch needed here).
public enum TorchvisionFixtures {
  public static let names = ["tiny_resnet_basic", "tiny_resnet_bottleneck", "tiny_resnext", "tiny_mobilenet_v2"]

  public static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("OctetModelsTests/Fixtures/torchvision")

  public struct Golden: Decodable, Sendable {
    public var inputSize: Int
    public var inputsNHWC: [[Float]]
    public var logits: [[Float]]
    enum CodingKeys: String, CodingKey {
      case inputSize = "input_size"
      case inputsNHWC = "inputs_nhwc"
      case logits
    }
    /// The inputs as one batch [N, S, S, 3].
    public var input: Tensor {
      Tensor(shape: [inputsNHWC.count, inputSize, inputSize, 3], scalars: inputsNHWC.flatMap { $0 })
    }
  }

  public static func checkpoint(_ name: String) -> URL { folder.appendingPathComponent(name + ".pth") }

  public static func golden(_ name: String) throws -> Golden {
    try JSONDecoder().decode(Golden.self, from: Data(contentsOf: folder.appendingPathComponent(name + ".json")))
  }

  /// The state_dict's tensors.
  public static func tensors(_ name: String) throws -> TensorDictionary {
    try PyTorchCheckpoint.load(contentsOf: checkpoint(name))
  }

  /// The model, architecture detected from the tensors, run at the fixture's input size.
  public static func model(_ name: String) throws -> Model {
    let tensors = try tensors(name)
    guard let arch = Architecture.detect(tensors) else {
      throw ModelError.unknownArchitecture("\(name): no architecture detected")
    }
    var model = try arch.build(from: tensors)
    model.info.inputSize = try golden(name).inputSize
    return model
  }
}
