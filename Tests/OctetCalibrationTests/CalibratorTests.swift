import Foundation
import OctetCore
import OctetModels
import Testing

@testable import OctetCalibration

@Suite struct CalibratorTests {
  /// input [1, 4, 4, 3] → conv 1x1 (zero weights, biases 0 and −1) + relu → pool → flatten → fc:
  /// every tensor after the input is constant 0.
  static func constantModel() throws -> Model {
    let nodes = [
      Node.conv2d("conv", input: Graph.inputName, weight: "conv.weight", bias: "conv.bias", kernel: [1, 1], stride: 1),
      Node(name: "relu", op: .relu, inputs: ["conv"]),
      Node(name: "pool", op: .globalAveragePool, inputs: ["relu"]),
      Node(name: "flatten", op: .flatten, inputs: ["pool"]),
      Node.linear("fc", input: "flatten", weight: "fc.weight", bias: "fc.bias"),
    ]
    let weights = TensorDictionary([
      ("conv.weight", HostTensor(shape: [2, 3, 1, 1], float32: [Float](repeating: 0, count: 6))),
      ("conv.bias", HostTensor(shape: [2], float32: [0, -1])),
      ("fc.weight", HostTensor(shape: [3, 2], float32: [Float](repeating: 0, count: 6))),
      ("fc.bias", HostTensor(shape: [3], float32: [0, 0, 0])),
    ])
    let info = ModelInfo(
      architecture: "tiny", inputSize: 4, classes: 3,
      preprocessing: Preprocessing(resizeShorter: 4, cropSize: 4, mean: [0, 0, 0], std: [1, 1, 1]))
    return Model(info: info, graph: Graph(nodes: nodes, output: "fc"), weights: weights)
  }

  @Test(arguments: [CalibrationMethod.minmax, .percentile(99.99), .entropy, .mse])
  func constantTensorsGetDefinedRanges(method: CalibrationMethod) throws {
    let calibrator = try Calibrator(model: Self.constantModel(), method: method)
    #expect(calibrator.tensorNames == ["input", "relu", "pool", "flatten", "fc"])
    var g = SeededGenerator(seed: 51)
    let inputs = (0..<3).map { _ in Tensor(shape: [1, 4, 4, 3], scalars: g.floats(48, in: -1...2)) }
    let table = try calibrator.calibrate(inputs: inputs)
    #expect(table.images == 3)
    #expect(table.method == method.description)
    for entry in table.tensors.dropFirst() {
      #expect(entry.min == 0 && entry.max == 0 && entry.observedMin == 0 && entry.observedMax == 0, "\(entry)")
    }
    let input = try #require(table["input"])
    #expect(input.min < 0 && input.max > 0 && input.min.isFinite && input.max.isFinite)
    #expect(table["fc"]?.note != nil)
  }

  @Test func unreadableImagesAreSkippedThenStop() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("octet-cal-bad-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let bad = folder.appendingPathComponent("broken.jpg")
    try Data([0xFF, 0xD8, 0xFF, 0x00, 1, 2, 3]).write(to: bad)
    let calibrator = try Calibrator(model: Self.constantModel(), method: .minmax)
    #expect {
      try calibrator.calibrate(images: [bad], threads: 2)
    } throws: { error in
      guard case .tooManyUnreadableImages(let failed, let total, let first) = error as? CalibrationError else {
        return false
      }
      return failed == 1 && total == 1 && first.contains("broken.jpg")
    }
  }
}
