import Foundation
import OctetCore
import Testing

@testable import OctetModels

/// The fixtures written by Scripts/make_checkpoint_fixtures.py and the values torch reports for them.
enum CheckpointFixtures {
  struct ExpectedTensor: Decodable {
    var name: String
    var dtype: String
    var shape: [Int]
    var values: [Double]
  }

  struct Spot: Decodable {
    var name: String
    var dtype: String
    var shape: [Int]
    var indices: [Int]
    var values: [Double]
    var sum: Double
    var abssum: Double
  }

  struct RealFile: Decodable {
    var count: Int
    var first: String
    var last: String
    var tensors: [Spot]
  }

  struct Expected: Decodable {
    var pwnedMarker: String
    var tensors: [ExpectedTensor]
    var moduleTensors: [ExpectedTensor]
    var safetensorsMetadata: [String: String]
    var realFiles: [String: RealFile]

    enum CodingKeys: String, CodingKey {
      case pwnedMarker = "pwned_marker"
      case tensors
      case moduleTensors = "module_tensors"
      case safetensorsMetadata = "safetensors_metadata"
      case realFiles = "real_files"
    }
  }

  static func url(_ name: String) -> URL {
    let dot = name.lastIndex(of: ".")!
    return Bundle.module.url(
      forResource: String(name[..<dot]), withExtension: String(name[name.index(after: dot)...]),
      subdirectory: "Fixtures")!
  }

  static func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: url(name))) }

  static let expected: Expected = {
    let data = try! Data(contentsOf: url("expected.json"))
    return try! JSONDecoder().decode(Expected.self, from: data)
  }()

  /// Exact values of any dtype, widened to Double.
  static func doubles(_ t: HostTensor) -> [Double] {
    switch t.type {
    case .float64:
      t.bytes.withUnsafeBytes { raw in
        (0..<t.elementCount).map {
          Double(
            bitPattern: UInt64(
              littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))
        }
      }
    case .int64:
      t.bytes.withUnsafeBytes { raw in
        (0..<t.elementCount).map {
          Double(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)))
        }
      }
    default: t.floats().map(Double.init)
    }
  }

  static func check(_ tensors: TensorDictionary, against expected: [ExpectedTensor], file: String) {
    #expect(tensors.names == expected.map(\.name), "\(file): names and order")
    for e in expected {
      guard let t = tensors[e.name] else {
        Issue.record("\(file): missing \(e.name)")
        continue
      }
      #expect(t.type.rawValue == e.dtype, "\(file): \(e.name) dtype")
      #expect(t.shape == e.shape, "\(file): \(e.name) shape")
      #expect(doubles(t) == e.values, "\(file): \(e.name) values")
    }
  }

  /// A file in a fresh temporary directory.
  static func temporaryFile(_ name: String, contents: [UInt8]) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "octet-ckpt-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let url = dir.appendingPathComponent(name)
    try Data(contents).write(to: url)
    return url
  }
}

@Suite struct CheckpointTests {
  typealias F = CheckpointFixtures

  @Test(arguments: ["tiny_zip.pth", "tiny_zip_p5.pth", "tiny_zip_deflated.pth", "tiny_legacy.pth"])
  func loadsEveryDtypeAndLayout(fixture: String) throws {
    let tensors = try PyTorchCheckpoint.load(contentsOf: F.url(fixture))
    F.check(tensors, against: F.expected.tensors, file: fixture)
  }

  @Test func nonContiguousViewsAreGathered() throws {
    let tensors = try PyTorchCheckpoint.load(contentsOf: F.url("tiny_zip.pth"))
    // base.t() of arange(12).reshape(3, 4) / 8, saved with strides (1, 4).
    #expect(tensors["linear.weight_t"]?.shape == [4, 3])
    #expect(
      tensors["linear.weight_t"]?.floats()
        == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11].map { Float($0) / 8 })
    // grid[1:4, ::2] of arange(30).reshape(5, 6): offset 6, strides (6, 2).
    #expect(tensors["slice"]?.floats() == [6, 8, 10, 12, 14, 16, 18, 20, 22])
    #expect(tensors["expanded"]?.floats() == [1.5, 1.5, 1.5, -1, -1, -1])
    #expect(tensors["bn.num_batches_tracked"]?.shape == [])
    #expect(tensors["empty"]?.shape == [0, 3])
  }

  @Test func nestedStateDictWins() throws {
    let tensors = try PyTorchCheckpoint.load(contentsOf: F.url("tiny_nested.pth"))
    F.check(tensors, against: F.expected.tensors, file: "tiny_nested.pth")
  }

  @Test func modelKeyAndModuleMetadata() throws {
    // {'model': Sequential(Conv2d, BatchNorm2d).state_dict(), 'step': 3}: `_metadata` arrives
    // through BUILD and is skipped, like 'step'.
    let tensors = try PyTorchCheckpoint.load(contentsOf: F.url("tiny_model_key.pth"))
    F.check(tensors, against: F.expected.moduleTensors, file: "tiny_model_key.pth")
    #expect(tensors["1.num_batches_tracked"]?.type == .int64)
    #expect(tensors["1.num_batches_tracked"]?.shape == [])
  }

  @Test(arguments: ["evil_zip.pth", "evil_legacy.pth"])
  func forbiddenGlobalIsRefusedAndNothingRuns(fixture: String) throws {
    let marker = F.expected.pwnedMarker
    try? FileManager.default.removeItem(atPath: marker)
    let url = F.url(fixture)
    let error = #expect(throws: CheckpointError.self) {
      try PyTorchCheckpoint.load(contentsOf: url)
    }
    #expect(error == .forbiddenGlobal(file: url.path, global: "os.system"))
    #expect(
      error?.description
        == "checkpoint '\(url.path)' names a forbidden global 'os.system'; "
        + "Octet loads plain state_dicts only and never executes code")
    #expect(!FileManager.default.fileExists(atPath: marker), "the payload ran")
  }

  @Test func missingStorageIsNamed() throws {
    let url = F.url("broken_missing_storage.pth")
    let error = #expect(throws: CheckpointError.self) {
      try PyTorchCheckpoint.load(contentsOf: url)
    }
    #expect(error == .missingStorage(file: url.path, storage: "tiny_zip/data/3"))
    #expect(error?.description.contains("missing storage 'tiny_zip/data/3'") == true)
  }

  @Test(arguments: ["broken_big_endian.pth", "broken_big_endian_legacy.pth"])
  func bigEndianIsRefused(fixture: String) throws {
    let url = F.url(fixture)
    #expect(throws: CheckpointError.bigEndian(file: url.path)) {
      try PyTorchCheckpoint.load(contentsOf: url)
    }
  }

  @Test func everyTruncationOfALegacyFileIsAnError() throws {
    let bytes = try F.bytes("tiny_legacy.pth")
    for length in 0..<bytes.count {
      let cut = Array(bytes[..<length])
      #expect(throws: CheckpointError.self, "cut at \(length)") {
        try cut.withUnsafeBytes { try PyTorchCheckpoint.loadLegacy($0, file: "cut") }
      }
    }
  }

  @Test func truncatedZipFilesAreErrors() throws {
    let bytes = try F.bytes("tiny_zip.pth")
    let lengths = Array(0..<70) + stride(from: 70, to: bytes.count, by: 97) + [bytes.count - 1]
    for length in lengths {
      let url = try F.temporaryFile("cut.pth", contents: Array(bytes[..<length]))
      defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
      #expect(throws: CheckpointError.self, "cut at \(length)") {
        try PyTorchCheckpoint.load(contentsOf: url)
      }
    }
  }

  @Test func corruptStorageFailsItsChecksum() throws {
    var bytes = try F.bytes("tiny_zip.pth")
    // conv.bias is [0.5, -1.5, 2.25, 1e-3]; flip a bit inside its stored 0.5.
    let pattern: [UInt8] = [0x00, 0x00, 0x00, 0x3F, 0x00, 0x00, 0xC0, 0xBF]
    let at = (0...(bytes.count - pattern.count)).first {
      Array(bytes[$0..<$0 + pattern.count]) == pattern
    }!
    bytes[at] ^= 1
    let url = try F.temporaryFile("corrupt.pth", contents: bytes)
    defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
    let error = #expect(throws: CheckpointError.self) {
      try PyTorchCheckpoint.load(contentsOf: url)
    }
    #expect(error?.description.contains("CRC-32") == true)
  }

  @Test func crc32MatchesTheBytewiseDefinition() {
    #expect(Array("123456789".utf8).withUnsafeBytes { CRC32Checksum.checksum($0) } == 0xCBF4_3926)
    var rng = SplitMix64(seed: 32)
    for length in [0, 1, 7, 8, 9, 63, 64, 1000] {
      let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
      var reference: UInt32 = ~0
      for b in bytes {
        reference ^= UInt32(b)
        for _ in 0..<8 {
          reference = reference & 1 != 0 ? (reference >> 1) ^ 0xEDB8_8320 : reference >> 1
        }
      }
      // Split in two updates to check that chunks chain.
      var crc = CRC32Checksum()
      bytes.withUnsafeBytes {
        crc.update(UnsafeRawBufferPointer(rebasing: $0[..<(length / 3)]))
        crc.update(UnsafeRawBufferPointer(rebasing: $0[(length / 3)...]))
      }
      #expect(crc.value == ~reference, "length \(length)")
    }
  }

  @Test func otherFilesAreNotCheckpoints() throws {
    for contents in [[], Array("hello, world\n".utf8), [0x80, 0x02, 0x4B, 0x05, 0x2E]] as [[UInt8]] {
      let url = try F.temporaryFile("other.pth", contents: contents)
      defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
      let error = #expect(throws: CheckpointError.self) {
        try PyTorchCheckpoint.load(contentsOf: url)
      }
      guard case .notACheckpoint = error else {
        Issue.record("\(contents): \(String(describing: error))")
        continue
      }
    }
    let missing = URL(fileURLWithPath: "/nonexistent/octet/model.pth")
    let error = #expect(throws: CheckpointError.self) {
      try PyTorchCheckpoint.load(contentsOf: missing)
    }
    guard case .unreadable(file: missing.path, _) = error else {
      Issue.record("\(String(describing: error))")
      return
    }
  }
}
