import Foundation
import OctetCore
import ZIPFoundation

extension PyTorchCheckpoint {
  static func zipDirectoryUnreadable(file: String, _ detail: String) -> CheckpointError {
    .truncated(
      file: file,
      reason: "its zip directory cannot be read (\(detail)); the end of the file is missing or damaged")
  }

  /// The zip format (torch >= 1.6). Every record lives under one top directory, the "archive
  /// name", which is whatever the file was called when it was saved; torch takes it from the
  /// first entry, and so does this.
  static func loadZip(url: URL, file: String, fileSize: Int) throws -> TensorDictionary {
    let archive: Archive
    do {
      archive = try Archive(url: url, accessMode: .read)
    } catch {
      throw zipDirectoryUnreadable(file: file, "\(error)")
    }
    var entries: [String: Entry] = [:]
    var firstPath: String?
    for entry in archive where entries[entry.path] == nil {
      entries[entry.path] = entry
      if firstPath == nil { firstPath = entry.path }
    }
    guard let firstPath, let slash = firstPath.firstIndex(of: "/") else {
      throw CheckpointError.notACheckpoint(
        file: file, reason: "a zip archive without a top directory")
    }
    let prefix = String(firstPath[...slash])
    let reader = ZipRecordReader(archive: archive, file: file, fileSize: fileSize)

    if let byteorder = entries[prefix + "byteorder"] {
      // Files from torch < 1.10 have no byteorder record and are little-endian.
      let text = String(
        decoding: try reader.read(byteorder, path: prefix + "byteorder"), as: UTF8.self)
      switch text.trimmingCharacters(in: .whitespacesAndNewlines) {
      case "little": break
      case "big": throw CheckpointError.bigEndian(file: file)
      case let other:
        throw CheckpointError.malformed(
          file: file, reason: "its byteorder record says '\(other.prefix(32))'")
      }
    }

    let picklePath = prefix + "data.pkl"
    guard let pickleEntry = entries[picklePath] else {
      throw CheckpointError.notACheckpoint(
        file: file, reason: "a zip archive without '\(picklePath)'")
    }
    let pickle = try reader.read(pickleEntry, path: picklePath)
    var storages = StorageTable()
    let machine = PickleMachine(file: file, part: "'\(picklePath)'") { id in
      try storages.reference(for: id, file: file)
    }
    let tensors = try pickle.withUnsafeBytes { bytes in
      try machine.run(bytes, from: 0) { try stateDictTensors(in: $0, file: file) }.result
    }

    // Read each storage record once; drop it after its last tensor, and move it into that tensor
    // when the tensor covers all of it.
    var usesLeft: [String: Int] = [:]
    for (_, tensor) in tensors { usesLeft[tensor.storage.key, default: 0] += 1 }
    var loaded: [String: [UInt8]] = [:]
    var result = TensorDictionary()
    for (name, tensor) in tensors {
      let key = tensor.storage.key
      var bytes: [UInt8]
      if let cached = loaded.removeValue(forKey: key) {
        bytes = cached
      } else {
        let path = prefix + "data/" + key
        guard let entry = entries[path] else {
          throw CheckpointError.missingStorage(file: file, storage: path)
        }
        bytes = try reader.read(entry, path: path)
        let declared = tensor.storage.rootElementCount.multipliedReportingOverflow(
          by: tensor.storage.type.byteSize)
        guard !declared.overflow, bytes.count >= declared.partialValue else {
          throw CheckpointError.malformed(
            file: file,
            reason: "storage '\(path)' holds \(bytes.count) bytes, but its tensors declare "
              + "\(tensor.storage.rootElementCount) \(tensor.storage.type.rawValue) elements")
        }
      }
      usesLeft[key]! -= 1
      if usesLeft[key]! > 0 {
        loaded[key] = bytes
        result[name] = try tensor.materialize(name: name, file: file, rootStorage: bytes)
      } else {
        result[name] = try tensor.materialize(name: name, file: file, rootStorage: consume bytes)
      }
    }
    return result
  }
}

/// Reads whole zip records in one piece, with their sizes and CRC-32 checked.
private struct ZipRecordReader {
  let archive: Archive
  let file: String
  let fileSize: Int

  func read(_ entry: Entry, path: String) throws -> [UInt8] {
    // Declared sizes come from the file: bound them before allocating. A stored record cannot
    // be larger than the file; deflate cannot expand more than about 1032:1.
    let size = entry.uncompressedSize
    let limit = entry.isCompressed ? UInt64(fileSize) * 1032 + 64 : UInt64(fileSize)
    guard size <= limit, entry.compressedSize <= UInt64(fileSize) else {
      throw CheckpointError.malformed(
        file: file, reason: "record '\(path)' declares \(size) bytes in a file of \(fileSize) bytes"
      )
    }
    let count = Int(size)
    var bytes: [UInt8] = []
    // A deflated record only earns its declared size by actually inflating to it.
    bytes.reserveCapacity(entry.isCompressed ? min(count, Int(entry.compressedSize) * 4) : count)
    do {
      // ZIPFoundation's own CRC runs a byte at a time on Linux; CRC32Checksum is ~10x faster.
      _ = try archive.extract(entry, bufferSize: max(1, min(count, 1 << 26)), skipCRC32: true) {
        chunk in
        guard chunk.count <= count - bytes.count else { throw RecordOverflow() }
        chunk.withUnsafeBytes { bytes.append(contentsOf: $0.bindMemory(to: UInt8.self)) }
      }
    } catch is RecordOverflow {
      throw CheckpointError.malformed(
        file: file, reason: "record '\(path)' is longer than its declared \(count) bytes")
    } catch {
      throw CheckpointError.truncated(
        file: file, reason: "record '\(path)' cannot be read (\(error))")
    }
    guard bytes.count == count else {
      throw CheckpointError.truncated(
        file: file, reason: "record '\(path)' has \(bytes.count) of its \(count) bytes")
    }
    guard bytes.withUnsafeBytes({ CRC32Checksum.checksum($0) }) == entry.checksum else {
      throw CheckpointError.malformed(
        file: file, reason: "record '\(path)' fails its CRC-32 check (the file is corrupt)")
    }
    return bytes
  }

  private struct RecordOverflow: Error {}
}
