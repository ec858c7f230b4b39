import Foundation
import OctetCore
import OctetModels
import OctetQuantizer
import Testing

/// Model files (float and int8) carry a CRC-32 per tensor and a format version; a damaged file fails
/// on load naming the file and the tensor, a newer version says to upgrade.
@Suite struct ModelFileChecksumTests {
  func temporaryURL(_ name: String) -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("octet-crc-\(UUID().uuidString)-\(name)")
  }

  /// The byte range of every tensor's data in a safetensors file.
  func dataRanges(_ bytes: Data) throws -> [String: Range<Int>] {
    let headerLength = Int(bytes.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
    let header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<8 + headerLength)) as! [String: Any]
    var ranges: [String: Range<Int>] = [:]
    for (name, value) in header where name != "__metadata__" {
      let offsets = (value as! [String: Any])["data_offsets"] as! [Int]
      ranges[name] = (8 + headerLength + offsets[0])..<(8 + headerLength + offsets[1])
    }
    return ranges
  }

  /// Flips one bit in the middle of every tensor in turn; each load must fail naming file and tensor.
  func expectEveryFlipIsCaught(in url: URL, load: (URL) throws -> Void) throws {
    let original = try Data(contentsOf: url)
    let damaged = temporaryURL("damaged.safetensors")
    defer { try? FileManager.default.removeItem(at: damaged) }
    let ranges = try dataRanges(original)
    #expect(!ranges.isEmpty)
    for (name, range) in ranges where !range.isEmpty {
      var bytes = original
      bytes[range.lowerBound + range.count / 2] ^= 0x10
      try bytes.write(to: damaged)
      #expect("tensor \(name)") {
        try load(damaged)
      } throws: { error in
        let text = "\(error)"
        return text.contains(damaged.path) && text.contains("'\(name)'") && text.contains("damaged")
      }
    }
  }

  @Test func floatModelFileRoundTripsAndEveryFlippedByteIsNamed() throws {
    let model = try SmallNetGolden.load().model
    let url = temporaryURL("float.safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try ModelFile.write(model, to: url)
    let (_, metadata) = try SafeTensors.read(contentsOf: url)
    #expect(metadata["octet.format_version"] == "2")
    #expect(metadata["octet.tensor_crc32"]?.isEmpty == false)
    let back = try ModelFile.read(contentsOf: url)
    #expect(back.weights == model.weights)
    try expectEveryFlipIsCaught(in: url) { _ = try ModelFile.read(contentsOf: $0) }
  }

  @Test func int8ModelFileEveryFlippedByteIsNamed() throws {
    let golden = try SmallNetGolden.load()
    let model = try Quantizer.quantize(model: golden.model, range: golden.range).model
    let url = temporaryURL("int8.safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try QuantizedModelFile.write(model, to: url)
    #expect(try QuantizedModelFile.read(contentsOf: url) == model)
    try expectEveryFlipIsCaught(in: url) { _ = try QuantizedModelFile.read(contentsOf: $0) }
  }

  @Test func versionOneIsReadWithoutChecksumsAndNewerVersionsAreRefused() throws {
    let golden = try SmallNetGolden.load()
    let float = golden.model
    var metadata = try ModelFile.metadata(for: float)
    metadata["octet.format_version"] = "1"
    metadata["octet.tensor_crc32"] = nil
    #expect(
      try ModelFile.decode(tensors: float.weights, metadata: metadata, path: "v1.safetensors").weights == float.weights)
    metadata["octet.format_version"] = "99"
    #expect { try ModelFile.decode(tensors: float.weights, metadata: metadata, path: "v99.safetensors") } throws: {
      "\($0)".contains("'v99.safetensors' has model format version 99") && "\($0)".contains("Upgrade Octet")
    }
    // Version 2 without its checksums is damaged, not silently trusted.
    metadata["octet.format_version"] = "2"
    #expect { try ModelFile.decode(tensors: float.weights, metadata: metadata, path: "v2.safetensors") } throws: {
      "\($0)".contains("'v2.safetensors' is damaged") && "\($0)".contains("octet.tensor_crc32")
    }

    let int8 = try Quantizer.quantize(model: float, range: golden.range).model
    let tensors = QuantizedModelFile.tensors(for: int8)
    var qmetadata = try QuantizedModelFile.metadata(for: int8)
    qmetadata["octet.format_version"] = "1"
    qmetadata["octet.tensor_crc32"] = nil
    #expect(try QuantizedModelFile.decode(tensors: tensors, metadata: qmetadata, path: "q1") == int8)
    qmetadata["octet.format_version"] = "99"
    #expect { try QuantizedModelFile.decode(tensors: tensors, metadata: qmetadata, path: "q99.safetensors") } throws: {
      "\($0)".contains("'q99.safetensors' has int8 format version 99") && "\($0)".contains("Upgrade Octet")
    }
  }

  @Test func nonFiniteWeightInAFloatModelFileIsNamed() throws {
    let float = try SmallNetGolden.load().model
    var weights = float.weights
    let name = weights.names[weights.names.count / 2]
    var values = weights[name]!.floats()
    values[0] = .nan
    weights[name] = HostTensor(shape: weights[name]!.shape, float32: values)
    var metadata = try ModelFile.metadata(for: float)
    metadata["octet.format_version"] = "1"  // no checksum to trip over first
    #expect { try ModelFile.decode(tensors: weights, metadata: metadata, path: "nan.safetensors") } throws: {
      "\($0)".contains("'nan.safetensors'") && "\($0)".contains("'\(name)' holds NaN")
    }
  }
}
