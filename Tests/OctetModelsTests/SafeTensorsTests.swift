import Foundation
import OctetCore
import Testing

@testable import OctetModels

@Suite struct SafeTensorsTests {
  typealias F = CheckpointFixtures

  static let sample = TensorDictionary([
    ("w", HostTensor(shape: [2, 3], float32: [1, -2, 3.5, 0, 1e-8, -7])),
    ("scalar", HostTensor(type: .int64, shape: [], bytes: [0x39, 0x30, 0, 0, 0, 0, 0, 0])),
    ("empty", HostTensor(type: .float16, shape: [0, 4], bytes: [])),
    ("mask", HostTensor(type: .bool, shape: [3], bytes: [1, 0, 1])),
    ("name \"quoted\"\n\u{1}é", HostTensor(type: .bfloat16, shape: [1], bytes: [0x80, 0x3F])),
    ("i8", HostTensor(type: .int8, shape: [2, 1], bytes: [0x80, 0x7F])),
  ])

  /// A safetensors file from a header text and a data buffer, the length field set to `length`.
  static func file(_ header: String, data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    return withUnsafeBytes(of: (length ?? UInt64(h.count)).littleEndian) { Array($0) } + h + data
  }

  @Test func roundTripKeepsOrderMetadataAndBytes() throws {
    let bytes = try SafeTensors.encode(Self.sample, metadata: ["format": "pt", "b": "x\"y"])
    let headerLength = Int(bytes[0..<8].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    #expect(headerLength % 8 == 0)
    #expect(
      bytes[8 + headerLength - 1] == UInt8(ascii: " ")
        || bytes[8 + headerLength - 1] == UInt8(ascii: "}"))
    let back = try SafeTensors.decode(bytes)
    #expect(back.tensors == Self.sample)
    #expect(back.tensors.names == Self.sample.names)
    #expect(back.metadata == ["format": "pt", "b": "x\"y"])
    #expect(try SafeTensors.encode(back.tensors, metadata: back.metadata) == bytes)
  }

  @Test func readsTheSpecWrittenFixtureAndWritesItIdentically() throws {
    let url = F.url("tiny.safetensors")
    let (tensors, metadata) = try SafeTensors.read(contentsOf: url)
    F.check(tensors, against: F.expected.tensors, file: "tiny.safetensors")
    #expect(metadata == F.expected.safetensorsMetadata)
    // Python's json.dumps with compact separators writes the same header as Octet.
    #expect(try SafeTensors.encode(tensors, metadata: metadata) == F.bytes("tiny.safetensors"))
  }

  @Test func writeIsAtomic() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "octet-st-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("model.safetensors")

    try SafeTensors.write(Self.sample, metadata: [:], to: url)
    #expect(try SafeTensors.read(contentsOf: url).tensors == Self.sample)
    let before = try Data(contentsOf: url)

    // A failing write leaves the old file as it was and no temporary file behind.
    var bad = Self.sample
    bad["__metadata__"] = HostTensor(shape: [1], float32: [0])
    #expect(throws: CheckpointError.self) { try SafeTensors.write(bad, to: url) }
    #expect(try Data(contentsOf: url) == before)
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model.safetensors"])

    // Replacing works; a missing directory is an error and creates nothing.
    let smaller = TensorDictionary([("only", HostTensor(shape: [1], float32: [2]))])
    try SafeTensors.write(smaller, to: url)
    #expect(try SafeTensors.read(contentsOf: url).tensors == smaller)
    let nowhere = dir.appendingPathComponent("missing/model.safetensors")
    let error = #expect(throws: CheckpointError.self) {
      try SafeTensors.write(smaller, to: nowhere)
    }
    guard case .writeFailed(file: nowhere.path, _) = error else {
      Issue.record("\(String(describing: error))")
      return
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model.safetensors"])
  }

  @Test func malformedFilesAreErrors() throws {
    let four: [UInt8] = Array(repeating: 0, count: 16)
    let t = #"{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#
    #expect(throws: Never.self) { try SafeTensors.decode(Self.file(t, data: four)) }

    let cases: [(String, [UInt8], String)] = [
      ("short file", [1, 2, 3], "fewer than the 8-byte"),
      ("length past end", Self.file(t, data: four, length: 10_000), "exceeds"),
      ("length huge", Self.file(t, data: four, length: .max), "exceeds"),
      ("length cuts JSON", Self.file(t, data: four, length: 20), "malformed"),
      ("not JSON", Self.file("{nope}"), "malformed"),
      ("not an object", Self.file("[1]"), "does not start with '{'"),
      ("trailing garbage", Self.file(#"{"__metadata__":{}} x"#), "malformed"),
      (
        "duplicate name",
        Self.file(
          #"{"a":{"dtype":"U8","shape":[],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}"#,
          data: [1]), "duplicate key"
      ),
      (
        "unknown dtype",
        Self.file(#"{"t":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}"#, data: [1]),
        "F8_E4M3"
      ),
      (
        "offsets past buffer",
        Self.file(#"{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#, data: [0, 0]),
        "outside"
      ),
      (
        "begin after end",
        Self.file(#"{"t":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}}"#, data: four), "outside"
      ),
      (
        "overlap",
        Self.file(
          #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
          data: four), "overlap"
      ),
      (
        "dtype/shape mismatch",
        Self.file(#"{"t":{"dtype":"F16","shape":[2,2],"data_offsets":[0,16]}}"#, data: four),
        "needs 8 bytes"
      ),
      (
        "huge dims",
        Self.file(
          #"{"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}"#,
          data: four), "overflows"
      ),
      (
        "huge bytes",
        Self.file(
          #"{"t":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,16]}}"#, data: four),
        "overflows"
      ),
      (
        "dim beyond Int",
        Self.file(
          #"{"t":{"dtype":"U8","shape":[99999999999999999999],"data_offsets":[0,1]}}"#, data: four),
        "non-negative integer"
      ),
      (
        "negative dim",
        Self.file(#"{"t":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}"#, data: four),
        "non-negative integer"
      ),
      (
        "fractional dim",
        Self.file(#"{"t":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}"#, data: four),
        "non-negative integer"
      ),
      (
        "missing offsets", Self.file(#"{"t":{"dtype":"U8","shape":[1]}}"#, data: four),
        "data_offsets"
      ),
      ("metadata not strings", Self.file(#"{"__metadata__":{"a":1}}"#), "not a string"),
      ("deep JSON", Self.file(#"{"a":"# + String(repeating: "[", count: 5000)), "nesting deeper"),
      ("bad escape", Self.file(#"{"a\q":1}"#), "malformed"),
    ]
    for (what, bytes, message) in cases {
      let error = #expect(throws: CheckpointError.self, "\(what)") { try SafeTensors.decode(bytes) }
      #expect(error?.description.contains(message) == true, "\(what): \(String(describing: error))")
    }
  }

  @Test func gapsAreTolerated() throws {
    let bytes = Self.file(
      #"{"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
      data: [9, 0, 0, 0, 7, 8, 0, 0])
    let (tensors, metadata) = try SafeTensors.decode(bytes)
    #expect(tensors.names == ["a", "b"])
    #expect(tensors["b"]?.bytes == [7, 8])
    #expect(metadata.isEmpty)
  }
}
