import Foundation
import OctetCore
import Testing

@testable import OctetModels

/// Inputs found by the fuzz targets (Fuzz/README.md) or built to hit a size bound: each must be a
/// clean, quick error, never a trap, a hang or a huge allocation.
@Suite struct HostileInputTests {
  typealias F = CheckpointFixtures

  @Test(arguments: ["tiny_zip.pth", "tiny_zip_deflated.pth", "tiny_legacy.pth", "tiny_model_key.pth"])
  func bytesLoadLikeFiles(name: String) throws {
    let fromFile = try PyTorchCheckpoint.load(contentsOf: F.url(name))
    let fromBytes = try PyTorchCheckpoint.load(bytes: Data(F.bytes(name)), name: name)
    #expect(fromBytes == fromFile)
  }

  /// ZIPFoundation scans back from the end for the end record one fseek + fread per byte, through
  /// the whole file: minutes for a large file without one. Found by fuzz-checkpoint-zip as a leak
  /// (ZIPFoundation's in-memory archive keeps its buffer when the scan fails).
  @Test func zipWithoutEndRecordIsRefusedQuickly() throws {
    var bytes: [UInt8] = [0x50, 0x4B, 0x03, 0x04]
    bytes += [UInt8](repeating: 0x41, count: 8 << 20)
    let url = try F.temporaryFile("no-end.pth", contents: bytes)
    defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
    let start = Date()
    for load in [
      { try PyTorchCheckpoint.load(contentsOf: url) }, { try PyTorchCheckpoint.load(bytes: Data(bytes)) },
    ] {
      let error = #expect(throws: CheckpointError.self) { try load() }
      #expect("\(error.map { "\($0)" } ?? "")".contains("no zip end record"))
    }
    #expect(Date().timeIntervalSince(start) < 5)
  }

  @Test func zipEndRecordWhoseCommentPassesTheEndIsAnError() throws {
    var bytes = try F.bytes("tiny_zip.pth")
    let end = bytes.count - 22
    #expect(bytes[end..<end + 4] == [0x50, 0x4B, 0x05, 0x06])
    bytes[end + 20] = 0xFF  // comment length 255, with 0 bytes after the record
    let error = #expect(throws: CheckpointError.self) { try PyTorchCheckpoint.load(bytes: Data(bytes)) }
    #expect("\(error.map { "\($0)" } ?? "")".contains("comment past the end"))
  }

  /// fuzz-checkpoint-zip: a central directory offset past the end of the data trapped inside
  /// ZIPFoundation's in-memory archive (MemoryFile.readData: "Range requires lowerBound <=
  /// upperBound"). In-memory checkpoints now go through the file-backed archive.
  @Test func zipDirectoryPastTheEndIsAnError() throws {
    var bytes = try F.bytes("tiny_zip.pth")
    // torch writes a zip64 end record too (ZIPFoundation prefers it): move the directory in both.
    let end = bytes.count - 22
    let zip64 = try #require(
      (0..<end).last { bytes[$0..<$0 + 4] == [0x50, 0x4B, 0x06, 0x06] })
    for (i, b) in [UInt8](arrayLiteral: 0x00, 0x00, 0x00, 0x7F).enumerated() {
      bytes[end + 16 + i] = b
      bytes[zip64 + 48 + i] = b
    }
    #expect(throws: CheckpointError.self) { try PyTorchCheckpoint.load(bytes: Data(bytes)) }
  }

  @Test func memoIsBounded() throws {
    // NONE, then MEMOIZE one more time than allowed: 1 MB of pickle must not become gigabytes.
    let body = [0x80, 0x02, 0x4E] + [UInt8](repeating: 0x94, count: PickleMachine.maxMemoCount + 1) + [0x2E]
    let error = #expect(throws: CheckpointError.self) {
      try body.withUnsafeBytes { raw in
        try PickleMachine(file: "memo.pkl", part: "the file").run(raw, from: 0) { _ in () }
      }
    }
    #expect("\(error.map { "\($0)" } ?? "")".contains("memo exceeds"))
  }

  @Test func stackIsBounded() throws {
    let body = [0x80, 0x02] + [UInt8](repeating: 0x4E, count: PickleMachine.maxStackCount + 1) + [0x2E]
    let error = #expect(throws: CheckpointError.self) {
      try body.withUnsafeBytes { raw in
        try PickleMachine(file: "stack.pkl", part: "the file").run(raw, from: 0) { _ in () }
      }
    }
    #expect("\(error.map { "\($0)" } ?? "")".contains("stack exceeds"))
  }

  /// JSONDecoder refuses nesting beyond 512 levels with an error instead of recursing: the int8
  /// graph description needs no depth scan of its own.
  @Test func deeplyNestedInt8GraphIsAnError() throws {
    let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
    let metadata = [
      "octet.format": QuantizedModelFile.format, "octet.format_version": QuantizedModelFile.formatVersion,
      "octet.model": deep, "octet.int8_graph": deep,
      // No tensors, so the (empty) checksum table is valid and the JSON is what gets parsed.
      TensorChecksums.metadataKey: "{}",
    ]
    #expect(throws: QuantizedModelError.self) {
      try QuantizedModelFile.decode(tensors: TensorDictionary(), metadata: metadata, path: "deep.octet")
    }
  }

  /// fuzz-checkpoint-zip, 192k executions in: a zip64 end record whose directory offset is
  /// 2^64 - 129. ZIPFoundation converted it to off_t and trapped ("Not enough bits to represent
  /// the passed value") on the file path too, so `octet import` of such a file crashed.
  @Test func zip64DirectoryOffsetBeyondTheFileIsAnError() throws {
    let name = "fuzz_zip64_directory_offset.pth"
    for load in [
      { try PyTorchCheckpoint.load(contentsOf: F.url(name)) },
      { try PyTorchCheckpoint.load(bytes: Data(F.bytes(name)), name: name) },
    ] {
      let error = #expect(throws: CheckpointError.self) { try load() }
      #expect("\(error.map { "\($0)" } ?? "")".contains("zip64 directory offset is 18446744073709551487"))
    }
  }

  /// The same trap through a directory entry: local header offset 0xFFFFFFFF, so ZIPFoundation
  /// takes the 64-bit one from the entry's zip64 extra field, here 2^64 - 256.
  @Test func zip64LocalHeaderOffsetBeyondTheFileIsAnError() throws {
    var bytes = try F.bytes("tiny_zip.pth")
    let end = bytes.count - 22
    let directory = Int(bytes[end + 16]) | Int(bytes[end + 17]) << 8 | Int(bytes[end + 18]) << 16
    #expect(bytes[directory..<directory + 4] == [0x50, 0x4B, 0x01, 0x02])
    let nameLength = Int(bytes[directory + 28]) | Int(bytes[directory + 29]) << 8
    #expect(bytes[directory + 30] == 0 && bytes[directory + 31] == 0)  // no extra field yet
    let extra: [UInt8] = [1, 0, 8, 0] + [0x00] + [UInt8](repeating: 0xFF, count: 7)
    bytes.insert(contentsOf: extra, at: directory + 46 + nameLength)
    bytes[directory + 30] = UInt8(extra.count)
    for i in 0..<4 { bytes[directory + 42 + i] = 0xFF }
    // The directory grew: fix its size in both end records (zip64 record, then the end record).
    let newEnd = bytes.count - 22
    let zip64 = try #require((0..<newEnd).last { bytes[$0..<$0 + 4] == [0x50, 0x4B, 0x06, 0x06] })
    bytes[zip64 + 40] &+= UInt8(extra.count)
    bytes[newEnd + 12] &+= UInt8(extra.count)
    let error = #expect(throws: CheckpointError.self) { try PyTorchCheckpoint.load(bytes: Data(bytes)) }
    #expect("\(error.map { "\($0)" } ?? "")".contains("entry size or offset is 18446744073709551360"))
  }

  /// A conv2d whose kernel is 2^40 x 2^40 trapped in `weightsPerChannel` (Int overflow) inside
  /// `validate()`, before the weight count could be compared with the file's tensor.
  @Test func int8NodeSizesThatOverflowAreAnError() throws {
    let q = ActivationQuantization(scale: 0.1, zeroPoint: 0)
    var conv = QuantizedNode(name: "c", op: .conv2d, inputs: ["input"], fused: [], output: q)
    conv.inChannels = 3
    conv.outChannels = 2
    conv.kernel = [1 << 40, 1 << 40]
    conv.stride = [1, 1]
    conv.padding = [0, 0, 0, 0]
    conv.inputQuantization = [q]
    conv.clamp = [0, 255]
    let info = ModelInfo(
      architecture: "x", inputSize: 1, classes: 2,
      preprocessing: Preprocessing(resizeShorter: 1, cropSize: 1, mean: [0, 0, 0], std: [1, 1, 1]))
    let input = QuantizedNode(name: "input", op: .quantizeInput, inputs: [], fused: [], output: q)
    let model = QuantizedModel(info: info, nodes: [input, conv], output: "c")
    #expect(
      throws: QuantizedModelError.invalidNode(
        "c", "kernel [1099511627776, 1099511627776] x 3 x 2 channels: the weight count overflows")
    ) {
      try model.validate()
    }
  }
}
