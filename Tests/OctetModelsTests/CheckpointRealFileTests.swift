import Foundation
import OctetCore
import OctetTestSupport
import Testing

@testable import OctetModels

/// Real weight files, checked against values torch printed for them (Scripts/make_checkpoint_fixtures.py
/// -> Fixtures/expected.json): EfficientNet-Lite0 (legacy format) from ../shared/models or
/// .cache/models, and a torchvision ResNet50 (zip format): ../shared's resnet50-random-bnstats.pth,
/// else the seeded one Scripts/setup.sh writes (Scripts/make_resnet50_seeded.py).
@Suite struct CheckpointRealFileTests {
  static var efficientNet: URL? { TestData.lite0 }
  static var resNet: URL? { TestData.resNet50 }

  static func checkSpots(_ tensors: TensorDictionary, file: String) throws {
    let expected = try #require(
      CheckpointFixtures.expected.realFiles[file], "expected.json has no spots for \(file)")
    #expect(tensors.count == expected.count)
    #expect(tensors.names.first == expected.first)
    #expect(tensors.names.last == expected.last)
    for spot in expected.tensors {
      let t = try #require(tensors[spot.name], "\(file): \(spot.name)")
      #expect(t.type.rawValue == spot.dtype, "\(spot.name)")
      #expect(t.shape == spot.shape, "\(spot.name)")
      let values = CheckpointFixtures.doubles(t)
      #expect(spot.indices.map { values[$0] } == spot.values, "\(spot.name)")
      let sum = values.reduce(0, +)
      let abssum = values.reduce(0) { $0 + abs($1) }
      #expect(
        abs(sum - spot.sum) <= 1e-9 * max(1, spot.abssum), "\(spot.name) sum \(sum) vs \(spot.sum)")
      #expect(abs(abssum - spot.abssum) <= 1e-9 * max(1, spot.abssum), "\(spot.name) abs sum")
    }
  }

  @Test(.enabled(if: efficientNet != nil, Comment(rawValue: TestData.needsLite0)))
  func efficientNetLite0Legacy() throws {
    let start = Date()
    let tensors = try PyTorchCheckpoint.load(contentsOf: try #require(Self.efficientNet))
    print(
      "efficientnet-lite0 (legacy format): \(tensors.count) tensors in \(Date().timeIntervalSince(start)) s"
    )
    #expect(tensors.count == 296)
    // Saved with strides (1, 32, 288, 96): the gather path on real data.
    #expect(tensors["_conv_stem.weight"]?.shape == [32, 3, 3, 3])
    #expect(tensors["_fc.weight"]?.shape == [1000, 1280])
    try Self.checkSpots(tensors, file: "efficientnet-lite0-57934424.pth")
  }

  @Test(.enabled(if: resNet != nil, Comment(rawValue: TestData.needsResNet50)))
  func resNet50Zip() throws {
    let start = Date()
    let resNet = try #require(Self.resNet)
    let tensors = try PyTorchCheckpoint.load(contentsOf: resNet)
    print("resnet50 (zip format): \(tensors.count) tensors in \(Date().timeIntervalSince(start)) s")
    #expect(tensors["conv1.weight"]?.shape == [64, 3, 7, 7])
    #expect(tensors["fc.weight"]?.shape == [1000, 2048])
    #expect(tensors["fc.bias"]?.shape == [1000])
    #expect(tensors["layer4.2.bn3.running_var"]?.shape == [2048])
    #expect(tensors["layer4.2.bn3.num_batches_tracked"]?.type == .int64)
    #expect(tensors["layer4.2.bn3.num_batches_tracked"]?.shape == [])
    try Self.checkSpots(tensors, file: resNet.lastPathComponent)
  }

  @Test(.enabled(if: resNet != nil, Comment(rawValue: TestData.needsResNet50)))
  func resNet50SafeTensorsRoundTrip() throws {
    let tensors = try PyTorchCheckpoint.load(contentsOf: try #require(Self.resNet))
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "octet-st-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("resnet50.safetensors")
    try SafeTensors.write(tensors, metadata: ["source": "resnet50-random-bnstats.pth"], to: url)
    let back = try SafeTensors.read(contentsOf: url)
    #expect(back.tensors == tensors)
    #expect(back.metadata == ["source": "resnet50-random-bnstats.pth"])
  }
}
