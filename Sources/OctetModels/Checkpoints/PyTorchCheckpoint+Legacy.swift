import OctetCore

extension PyTorchCheckpoint {
  /// 0x1950a86a20f9469cfc6c as LONG1 stores it (torch/serialization.py MAGIC_NUMBER).
  static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
  static let legacyProtocolVersion = 1001

  /// The legacy format (`_use_new_zipfile_serialization=False`, and every file before torch 1.6),
  /// read in place from `bytes`: five pickles, then the storages in the order of the key list,
  /// each an 8-byte little-endian element count followed by its raw bytes.
  static func loadLegacy(_ bytes: UnsafeRawBufferPointer, file: String) throws -> TensorDictionary {
    guard bytes.first == 0x80 else {
      throw CheckpointError.notACheckpoint(
        file: file,
        reason: bytes.isEmpty ? "the file is empty" : "it is neither a zip archive nor a pickle")
    }
    // 1. The magic number. Anything but truncation here means this is some other pickle.
    let isMagic: Bool
    var pos: Int
    do {
      (isMagic, pos) = try PickleMachine(file: file, part: "the file").run(bytes, from: 0) {
        value in
        if case .bigInt(let b) = value { return b == legacyMagic }
        return false
      }
    } catch let error as CheckpointError {
      switch error {
      case .truncated, .forbiddenGlobal: throw error
      default: isMagic = false
      }
      pos = 0
    }
    guard isMagic else {
      throw CheckpointError.notACheckpoint(
        file: file, reason: "it does not start with torch's magic number")
    }

    // 2. The protocol version, 3. sys_info.
    let version: Int?
    (version, pos) = try PickleMachine(file: file, part: "the file").run(bytes, from: pos) {
      value in
      if case .int(let v) = value { return v }
      return nil
    }
    guard version == legacyProtocolVersion else {
      throw CheckpointError.malformed(
        file: file,
        reason:
          "its legacy protocol version is \(version.map(String.init) ?? "not a number"), not 1001")
    }
    let littleEndian: Bool
    (littleEndian, pos) = try PickleMachine(file: file, part: "the file").run(bytes, from: pos) {
      value in
      guard case .dict(let info) = value, case .bool(let little) = info[string: "little_endian"]
      else { return true }
      return little
    }
    guard littleEndian else { throw CheckpointError.bigEndian(file: file) }

    // 4. The saved object; its persistent ids declare the storages.
    var storages = StorageTable()
    let tensors: [(name: String, tensor: TorchTensorReference)]
    (tensors, pos) = try PickleMachine(file: file, part: "the file") { id in
      try storages.reference(for: id, file: file)
    }.run(bytes, from: pos) { try stateDictTensors(in: $0, file: file) }

    // 5. The storage keys, in the order their bytes follow.
    let keys: [String]?
    (keys, pos) = try PickleMachine(file: file, part: "the file").run(bytes, from: pos) { value in
      guard case .list(let list) = value else { return nil }
      var keys: [String] = []
      for item in list.items {
        guard case .string(let key) = item else { return nil }
        keys.append(key)
      }
      return keys
    }
    guard let keys else {
      throw CheckpointError.malformed(
        file: file, reason: "the storage key list is not a list of strings")
    }

    // The storages themselves: find each one's bytes, without copying.
    var ranges: [String: Range<Int>] = [:]
    for key in keys {
      guard let root = storages.roots[key] else {
        throw CheckpointError.malformed(
          file: file, reason: "storage '\(key)' is listed but never used")
      }
      guard bytes.count - pos >= 8 else {
        throw CheckpointError.truncated(
          file: file, reason: "it ends before storage '\(key)' at offset \(pos)")
      }
      let count = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
      pos += 8
      guard count == UInt64(root.rootElementCount) else {
        throw CheckpointError.malformed(
          file: file,
          reason:
            "storage '\(key)' holds \(count) elements, but the pickle declares \(root.rootElementCount)"
        )
      }
      let byteCount = root.rootElementCount.multipliedReportingOverflow(by: root.type.byteSize)
      guard !byteCount.overflow, byteCount.partialValue <= bytes.count - pos else {
        throw CheckpointError.truncated(
          file: file,
          reason:
            "storage '\(key)' needs \(root.rootElementCount) \(root.type.rawValue) elements at offset "
            + "\(pos), but the file ends after \(bytes.count - pos) bytes")
      }
      ranges[key] = pos..<pos + byteCount.partialValue
      pos += byteCount.partialValue
    }

    var result = TensorDictionary()
    for (name, tensor) in tensors {
      guard let range = ranges[tensor.storage.key] else {
        throw CheckpointError.missingStorage(file: file, storage: tensor.storage.key)
      }
      result[name] = try tensor.materialize(
        name: name, file: file, rootStorage: UnsafeRawBufferPointer(rebasing: bytes[range]))
    }
    return result
  }
}
