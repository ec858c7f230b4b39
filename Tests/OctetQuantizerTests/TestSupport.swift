import Foundation
import OctetCore
import OctetModels
import Testing

/// The small network of Scripts/int8_reference.py: float weights, ranges, input, and the uint8
/// tensors and int32 logits the NumPy re-implementation of the contract computed.
struct SmallNetGolden: Decodable {
  struct Values: Decodable {
    var shape: [Int]
    var data: [Float]
  }
  var seed: UInt64
  var inputSize: Int
  var graph: Graph
  var weights: [String: Values]
  var ranges: [String: [Float]]
  var input: Values
  var expected: [String: [Int]]
  var logits: [Int32]
  var logitScale: Float
  /// The float network's logits and tensors (float64 NumPy, BatchNorm folded by the script).
  var floatLogits: [Double]
  var floatTensors: [String: [Double]]

  enum CodingKeys: String, CodingKey {
    case seed, graph, weights, ranges, input, expected, logits, pixels
    case inputSize = "input_size"
    case logitScale = "logit_scale"
    case floatLogits = "float_logits"
    case floatTensors = "float_tensors"
  }

  /// The uint8 image of the exact-input golden (small_net_exact.json), nil in small_net.json.
  var pixels: [Int]?

  static func load(_ name: String = "small_net") throws -> SmallNetGolden {
    let url = try #require(
      Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Goldens"))
    return try JSONDecoder().decode(SmallNetGolden.self, from: Data(contentsOf: url))
  }

  var model: Model {
    let info = ModelInfo(
      architecture: "small-net", inputSize: inputSize, classes: 10, preprocessing: .imagenet,
      source: "small_net.json")
    var dict = TensorDictionary()
    for name in weights.keys.sorted() {
      dict[name] = HostTensor(shape: weights[name]!.shape, float32: weights[name]!.data)
    }
    return Model(info: info, graph: graph, weights: dict)
  }

  func range(_ name: String) -> (lo: Float, hi: Float)? {
    ranges[name].map { (lo: $0[0], hi: $0[1]) }
  }

  var inputTensor: Tensor { Tensor(shape: input.shape, scalars: input.data) }
}

/// A seed per test run, printed with every failure so the case can be replayed.
func testSeed(_ fallback: UInt64) -> UInt64 {
  if let text = ProcessInfo.processInfo.environment["OCTET_TEST_SEED"], let seed = UInt64(text) {
    return seed
  }
  return fallback
}
