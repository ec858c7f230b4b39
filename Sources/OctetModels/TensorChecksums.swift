import Foundation
import OctetCore

/// The per-tensor checksums of an Octet model file (float and int8, format version 2 on): metadata key
/// `octet.tensor_crc32` holds the JSON object `{"<tensor name>": "<8 hex digits>", ...}` (keys sorted),
/// one CRC-32 (zip's polynomial) per tensor over its name, dtype, shape and bytes:
///
///     name UTF-8 · 0x00 · dtype ("F32", "I8", ...) · 0x00 · shape as decimal "d0,d1,..." · 0x00 · bytes
///
/// One checksum per tensor rather than one per file, so that a damaged file is reported with the tensor
/// that changed. It guards against damage after writing (a bad copy, a flipped bit, an edited header),
/// not against a deliberate forgery.
enum TensorChecksums {
  static let metadataKey = "octet.tensor_crc32"

  static func checksum(name: String, tensor: HostTensor) -> UInt32 {
    var crc = CRC32Checksum()
    func add(_ text: String) {
      Array(text.utf8 + [0]).withUnsafeBytes { crc.update($0) }
    }
    add(name)
    add(tensor.type.rawValue)
    add(tensor.shape.map(String.init).joined(separator: ","))
    tensor.bytes.withUnsafeBytes { crc.update($0) }
    return crc.value
  }

  static func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
  }

  /// The metadata value for `tensors`.
  static func metadataValue(for tensors: TensorDictionary) throws -> String {
    var table: [String: String] = [:]
    for name in tensors.names { table[name] = hex(checksum(name: name, tensor: tensors[name]!)) }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(table), as: UTF8.self)
  }

  /// Checks every tensor against the stored checksums. `remedy` says how to make the file again.
  static func verify(_ tensors: TensorDictionary, metadata: [String: String], path: String, remedy: String)
    throws(ModelError)
  {
    func damaged(_ reason: String) -> ModelError { .damaged(path: path, reason: reason, remedy: remedy) }
    guard let text = metadata[metadataKey] else {
      throw damaged("its metadata has no '\(metadataKey)' (tensor checksums)")
    }
    guard let stored = try? JSONDecoder().decode([String: String].self, from: Data(text.utf8)) else {
      throw damaged("its '\(metadataKey)' metadata is not a JSON object of tensor names to checksums")
    }
    for name in tensors.names {
      guard let expected = stored[name] else { throw damaged("tensor '\(name)' has no checksum") }
      let actual = hex(checksum(name: name, tensor: tensors[name]!))
      guard actual == expected.lowercased() else {
        throw damaged(
          "tensor '\(name)' does not match the checksum written with it (CRC-32 \(actual), stored \(expected))")
      }
    }
    if let lost = stored.keys.sorted().first(where: { !tensors.contains($0) }) {
      throw damaged("tensor '\(lost)' has a checksum but is not in the file")
    }
  }
}
