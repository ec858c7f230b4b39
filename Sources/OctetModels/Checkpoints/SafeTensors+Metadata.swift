import Foundation

extension SafeTensors {
  /// The `__metadata__` of a safetensors file, read from its header alone (the tensors are not
  /// read), or nil when the file is not a readable safetensors file. For telling the kind of a model
  /// file cheaply before loading it.
  public static func peekMetadata(contentsOf url: URL) -> [String: String]? {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue,
      let handle = FileHandle(forReadingAtPath: url.path)
    else { return nil }
    defer { try? handle.close() }
    // The throwing reads: the old readData(ofLength:) traps on a read error.
    guard let lengthBytes = try? handle.read(upToCount: 8), lengthBytes.count == 8 else { return nil }
    let length = lengthBytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    guard length >= 2, length <= UInt64(maxHeaderLength) else { return nil }
    guard let header = try? handle.read(upToCount: Int(length)), header.count == Int(length),
      header.first == UInt8(ascii: "{"),
      let object = try? JSONSerialization.jsonObject(with: header) as? [String: Any]
    else { return nil }
    return object["__metadata__"] as? [String: String] ?? [:]
  }
}
