import Foundation
import OctetCore
import Testing

@testable import OctetCalibration

@Suite struct RangeTableTests {
  static let table = RangeTable(
    model: .init(architecture: "efficientnet-lite0", source: "lite0 \"quoted\".pth"), method: "percentile:99.99",
    images: 500,
    tensors: [
      .init(name: "input", min: -2.1179039, max: 2.64, observedMin: -2.1179039, observedMax: 2.64),
      .init(name: "layer1.0.relu1", min: 0, max: 5.9999, observedMin: 0, observedMax: 6),
      .init(name: "_fc", min: -12.5, max: 31.25, observedMin: -12.5, observedMax: 31.25, note: "logits"),
    ])

  func temporaryURL(_ name: String) -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("octet-cal-\(UUID().uuidString)-\(name)")
  }

  @Test func roundTrip() throws {
    let url = temporaryURL("ranges.json")
    defer { try? FileManager.default.removeItem(at: url) }
    try Self.table.write(to: url)
    let back = try RangeTable.read(contentsOf: url)
    #expect(back == Self.table)
    let text = try String(contentsOf: url, encoding: .utf8)
    // One tensor a line, keys in a fixed order: diffable.
    #expect(
      text.contains(
        "\n    {\"name\": \"layer1.0.relu1\", \"min\": 0.0, \"max\": 5.9999, \"observed_min\": 0.0, \"observed_max\": 6.0},\n"
      ))
    #expect(text.hasPrefix("{\n  \"format\": \"octet-ranges\",\n  \"version\": 1,\n"))
    let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    #expect(json?["images"] as? Int == 500)
  }

  func expectBad(_ text: String, mentions: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
      _ = try RangeTable.decode(Data(text.utf8), path: "t.json")
      Issue.record("accepted: \(text)", sourceLocation: sourceLocation)
    } catch {
      let message = "\(error)"
      #expect(
        message.contains("t.json") && message.contains(mentions), "\(message) lacks \(mentions)",
        sourceLocation: sourceLocation)
    }
  }

  @Test func malformedTablesAreErrorsNamingTheProblem() {
    let good = Self.table.encoded()
    expectBad(good.replacingOccurrences(of: "\"version\": 1", with: "\"version\": 2"), mentions: "unknown version 2")
    expectBad(good.replacingOccurrences(of: "octet-ranges", with: "other"), mentions: "format is \"other\"")
    expectBad(
      good.replacingOccurrences(of: "\"max\": 5.9999", with: "\"max\": -1"),
      mentions: "'layer1.0.relu1': min 0.0 is greater than max -1.0")
    expectBad(good.replacingOccurrences(of: "\"max\": 5.9999", with: "\"max\": \"big\""), mentions: "tensors[1].max")
    expectBad(good.replacingOccurrences(of: "\"max\": 5.9999, ", with: ""), mentions: "tensors[1].max is missing")
    expectBad(good.replacingOccurrences(of: "\"max\": 5.9999", with: "\"max\": 1e999"), mentions: "JSON")
    expectBad(
      good.replacingOccurrences(of: "\"name\": \"_fc\"", with: "\"name\": \"input\""),
      mentions: "'input' is listed twice")
    expectBad(good.replacingOccurrences(of: "\"name\": \"_fc\"", with: "\"name\": \"\""), mentions: "empty name")
    expectBad(String(good.dropLast(5)), mentions: "not valid JSON")
    expectBad("{\"format\": \"octet-ranges\"}", mentions: "no \"version\"")
  }

  @Test func unwritableTablesAreRefused() {
    var bad = Self.table
    bad.tensors[1].max = .nan
    #expect(throws: CalibrationError.self) { try bad.write(to: temporaryURL("nan.json")) }
    #expect(
      throws: CalibrationError.tableMismatch(
        path: "<memory>",
        reason: "has no range for 1 tensor(s) of the model, first 'x'; was it calibrated for another model?")
    ) {
      try Self.table.checkCovers(["input", "x"])
    }
  }

  @Test func readingAMissingFileNamesIt() {
    let url = temporaryURL("missing.json")
    #expect { try RangeTable.read(contentsOf: url) } throws: { "\($0)".contains(url.path) }
  }

  @Test func imageListingWithoutLabels() throws {
    let folder = temporaryURL("images")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    #expect(throws: CalibrationError.noImages(folder: folder.path)) { try CalibrationImages.list(folder: folder.path) }
    for name in ["b.PNG", "a.jpg", "c.jpeg", "notes.txt"] {
      try Data().write(to: folder.appendingPathComponent(name))
    }
    let names = try CalibrationImages.list(folder: folder.path).map(\.lastPathComponent)
    #expect(names == ["a.jpg", "b.PNG", "c.jpeg"])
    let urls = (0..<10).map { URL(fileURLWithPath: "/\($0)") }
    #expect(CalibrationImages.spread(urls, count: 3).map(\.path) == ["/0", "/3", "/6"])
    #expect(CalibrationImages.spread(urls, count: 20).count == 10)
  }
}

@Suite struct HostileRangeTableTests {
  @Test func tableOverTheSizeLimitIsRefusedBeforeParsing() {
    let data = Data(count: RangeTable.maxFileSize + 1)
    let error = #expect(throws: CalibrationError.self) { try RangeTable.decode(data, path: "big.json") }
    #expect("\(error.map { "\($0)" } ?? "")".contains("more than the \(RangeTable.maxFileSize) bytes"))
  }

  /// JSONDecoder limits nesting itself (512 levels): 100 000 '[' is an error, not a stack overflow.
  @Test func deeplyNestedJSONIsAnError() {
    for open in ["[", "{\"format\":"] {
      let text = String(repeating: open, count: 100_000)
      let error = #expect(throws: CalibrationError.self) { try RangeTable.decode(Data(text.utf8), path: "deep.json") }
      #expect("\(error.map { "\($0)" } ?? "")".contains("deep.json"))
    }
  }
}
