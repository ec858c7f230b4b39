import Foundation
import OctetCore
import OctetModels
import OctetTestSupport
import Testing

@testable import OctetCalibration

/// EfficientNet-Lite0 on 8 calibration images (../shared's ImageNet ones, else setup.sh's photos).
@Suite(
  .enabled(if: TestData.lite0 != nil && TestData.hasCalibrationImages, Comment(rawValue: TestData.needsLite0AndImages)))
struct EndToEndTests {
  @Test(arguments: [CalibrationMethod.percentile(99.99), .entropy, .mse, .minmax])
  func efficientNetLite0(method: CalibrationMethod) throws {
    let model = try Architecture.efficientnetLite.build(
      from: try PyTorchCheckpoint.load(contentsOf: try #require(TestData.lite0)))
    let calibrator = try Calibrator(model: model, method: method)
    let images = CalibrationImages.spread(try CalibrationImages.list(folder: TestData.calibrationImages.path), count: 8)
    let result = try calibrator.calibrate(images: images, threads: 2)
    #expect(result.imagesUsed == 8 && result.skipped.isEmpty)
    let table = result.table
    #expect(table.tensors.map(\.name) == calibrator.tensorNames)
    #expect(table.tensors.first?.name == "input")
    try table.checkCovers(calibrator.executor.observableNames + ["input"])
    let relu6 = Set(model.graph.nodes.filter { $0.op == .relu6 }.map(\.name))
    #expect(!relu6.isEmpty)
    for t in table.tensors {
      #expect(t.min.isFinite && t.max.isFinite && t.min <= 0 && 0 <= t.max && t.min < t.max, "\(method) \(t)")
      #expect(t.min >= min(t.observedMin, 0) && t.max <= max(t.observedMax, 0), "\(method) \(t)")
      if relu6.contains(t.name) {
        #expect(t.observedMin >= 0 && t.observedMax <= 6 && t.min == 0 && t.max <= 6, "\(method) \(t)")
      }
    }
    // The table survives the file.
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("octet-cal-e2e-\(UUID().uuidString).json")
    defer { try? FileManager.default.removeItem(at: url) }
    try table.write(to: url)
    #expect(try RangeTable.read(contentsOf: url) == table)
  }

  /// The table does not depend on the number of threads (exact merging).
  @Test func threadsDoNotChangeTheTable() throws {
    let model = try Architecture.efficientnetLite.build(
      from: try PyTorchCheckpoint.load(contentsOf: try #require(TestData.lite0)))
    let calibrator = try Calibrator(model: model, method: .entropy)
    let images = CalibrationImages.spread(try CalibrationImages.list(folder: TestData.calibrationImages.path), count: 4)
    let one = try calibrator.calibrate(images: images, threads: 1).table
    let two = try calibrator.calibrate(images: images, threads: 2).table
    #expect(one == two)
  }
}
