import Foundation
import OctetCore

/// Reads the tensors of a PyTorch checkpoint written by `torch.save`, without Python and without
/// executing anything: the pickle is read by `PickleMachine`, an allow-list.
///
/// Both formats torch writes are read:
/// - zip (torch >= 1.6): `<archive>/data.pkl` plus one record `<archive>/data/<key>` per storage;
/// - legacy: a sequence of pickles (magic number, protocol version, sys_info, the object, the
///   storage keys) followed by each storage as an 8-byte element count and its raw bytes.
public enum PyTorchCheckpoint {
  /// The tensors of the state_dict in `url`, in the file's order.
  ///
  /// The saved object must be a dict of name -> tensor, or a dict holding one under "state_dict"
  /// or "model" (the nested one wins). Entries that are not tensors (`_metadata`, an epoch number,
  /// optimizer state made of plain values) are skipped. Every tensor comes back contiguous and
  /// row-major in its saved dtype, whatever its strides were; shape [] is a scalar.
  public static func load(contentsOf url: URL) throws -> TensorDictionary {
    let file = url.path
    let data: Data
    do {
      data = try Data(contentsOf: url, options: .alwaysMapped)
    } catch {
      throw CheckpointError.unreadable(file: file, reason: error.localizedDescription)
    }
    if data.starts(with: [0x50, 0x4B, 0x03, 0x04]) {  // "PK\3\4": a zip archive
      try data.withUnsafeBytes { try checkZipStructure($0, file: file) }
      return try loadZip(url: url, file: file, fileSize: data.count)
    }
    return try data.withUnsafeBytes { try loadLegacy($0, file: file) }
  }

  /// The tensors of a checkpoint held in memory (the bytes of a `torch.save` file); `name` is used
  /// only in error messages. Reads exactly what `load(contentsOf:)` reads.
  ///
  /// A zip checkpoint goes through a temporary file (in `$TMPDIR`, removed before returning):
  /// ZIPFoundation's own in-memory archive traps when a damaged directory points past the end of
  /// the data and leaks its buffer when the directory is missing, while its file-backed archive,
  /// the one `load(contentsOf:)` uses, handles both.
  public static func load(bytes data: Data, name: String = "<checkpoint bytes>") throws
    -> TensorDictionary
  {
    guard data.starts(with: [0x50, 0x4B, 0x03, 0x04]) else {
      return try data.withUnsafeBytes { try loadLegacy($0, file: name) }
    }
    try data.withUnsafeBytes { try checkZipStructure($0, file: name) }
    let temporary = FileManager.default.temporaryDirectory.appendingPathComponent(
      "octet-checkpoint-\(UUID().uuidString).zip")
    do {
      try data.write(to: temporary)
    } catch {
      throw CheckpointError.unreadable(
        file: name, reason: "cannot write a temporary copy: \(error.localizedDescription)")
    }
    defer { try? FileManager.default.removeItem(at: temporary) }
    return try loadZip(url: temporary, file: name, fileSize: data.count)
  }

  // MARK: - Shared by both formats

  /// Storages named so far by persistent ids, by key, so conflicting declarations are caught.
  struct StorageTable {
    var roots: [String: TorchStorageReference] = [:]
    /// Keys in the order they were first named.
    var order: [String] = []

    /// Parses `('storage', storage_type, key, location, numel[, view_metadata])`; the view
    /// metadata `(view_key, offset, view_size)` only appears in legacy files.
    mutating func reference(for id: PickleValue, file: String) throws -> PickleValue {
      func malformed(_ reason: String) -> CheckpointError {
        .malformed(file: file, reason: "persistent id \(reason)")
      }
      guard case .tuple(let tuple) = id, tuple.items.count == 5 || tuple.items.count == 6 else {
        throw malformed("is a \(id.kind), not a ('storage', type, key, location, size) tuple")
      }
      let items = tuple.items
      guard case .string("storage") = items[0] else {
        throw malformed("does not start with 'storage'")
      }
      guard case .global(.storageType(let type, _)) = items[1] else {
        throw malformed("names a \(items[1].kind) where a storage type belongs")
      }
      guard case .string(let key) = items[2] else { throw malformed("has a \(items[2].kind) key") }
      guard case .int(let count) = items[4], count >= 0 else {
        throw malformed("of storage '\(key)' has an invalid size")
      }
      let root = TorchStorageReference(
        key: key, type: type, rootElementCount: count, elementOffset: 0, elementCount: count)
      if let known = roots[key] {
        guard known.type == type, known.rootElementCount == count else {
          throw CheckpointError.malformed(
            file: file,
            reason:
              "storage '\(key)' is declared as \(known.rootElementCount) \(known.type.rawValue) "
              + "elements and as \(count) \(type.rawValue) elements")
        }
      } else {
        roots[key] = root
        order.append(key)
      }
      guard items.count == 6, !PyTorchCheckpoint.isNone(items[5]) else { return .storage(root) }
      guard case .tuple(let view) = items[5], view.items.count == 3,
        case .int(let offset) = view.items[1], case .int(let size) = view.items[2],
        offset >= 0, size >= 0, offset <= count, size <= count - offset
      else {
        throw malformed("of storage '\(key)' has a view outside its \(count) elements")
      }
      return .storage(
        TorchStorageReference(
          key: key, type: type, rootElementCount: count, elementOffset: offset, elementCount: size))
    }
  }

  private static func isNone(_ value: PickleValue) -> Bool {
    if case .none = value { return true }
    return false
  }

  /// The (name, tensor) pairs of the state_dict inside the unpickled object, in order.
  static func stateDictTensors(in object: PickleValue, file: String) throws -> [(
    name: String, tensor: TorchTensorReference
  )] {
    guard case .dict(let top) = object else {
      throw CheckpointError.malformed(
        file: file,
        reason: "the saved object is a \(object.kind), not a dict of tensors (a state_dict)")
    }
    var dict = top
    for key in ["state_dict", "model"] {
      if case .dict(let nested) = top[string: key] {
        dict = nested
        break
      }
    }
    var result: [(name: String, tensor: TorchTensorReference)] = []
    for (key, value) in dict.entries {
      guard case .string(let name) = key, case .tensor(let tensor) = value else { continue }
      result.append((name, tensor))
    }
    guard !result.isEmpty else { throw CheckpointError.noTensors(file: file) }
    return result
  }
}
