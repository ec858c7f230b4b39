import OctetCore

extension PyTorchCheckpoint {
  /// Checks the zip structure ZIPFoundation is about to walk, so that no value from the file can
  /// make it trap or crawl:
  ///
  /// - The end record must lie in the last 22 + 65535 bytes, where the format puts it, with its
  ///   comment inside the file. ZIPFoundation otherwise scans back through the whole file, one
  ///   fseek + fread per byte (minutes for a large file without one); this finds the record it
  ///   will find, the last signature in the file.
  /// - Every 64-bit offset and size it reads (the zip64 end record's directory offset and size,
  ///   each directory entry's zip64 extra field) must be at most `1032 * fileSize + 64`, the most
  ///   a record of this file could inflate to. ZIPFoundation converts these to `off_t` and adds
  ///   them with trapping arithmetic: a value above 2^63 crashed the process (fuzz-checkpoint-zip).
  ///
  /// The walk visits every directory entry ZIPFoundation can reach, and more: all consecutive
  /// well-formed entries from the directory offset of both end records.
  static func checkZipStructure(_ bytes: UnsafeRawBufferPointer, file: String) throws {
    let endSize = 22
    guard bytes.count >= endSize else {
      throw zipDirectoryUnreadable(file: file, "the file is shorter than a zip end record")
    }
    func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
    func u32(_ at: Int) -> UInt64 { UInt64(u16(at)) | UInt64(u16(at + 2)) << 16 }
    func u64(_ at: Int) -> UInt64 { u32(at) | u32(at + 4) << 32 }
    /// "PK", then `a`, `b`.
    func signature(_ at: Int, _ a: UInt8, _ b: UInt8) -> Bool {
      at >= 0 && at + 4 <= bytes.count && bytes[at] == 0x50 && bytes[at + 1] == 0x4B
        && bytes[at + 2] == a && bytes[at + 3] == b
    }

    // The end record.
    var end = bytes.count - endSize
    let lowest = max(0, bytes.count - endSize - 0xFFFF)
    while end >= lowest && !signature(end, 5, 6) { end -= 1 }
    guard end >= lowest else {
      throw zipDirectoryUnreadable(file: file, "no zip end record in its last 65557 bytes")
    }
    guard u16(end + 20) <= bytes.count - end - endSize else {
      throw zipDirectoryUnreadable(
        file: file, "its zip end record at offset \(end) has a comment past the end of the file")
    }

    let limit = UInt64(bytes.count) * 1032 + 64
    func tooLarge(_ what: String, _ value: UInt64) -> CheckpointError {
      .malformed(
        file: file,
        reason: "its zip \(what) is \(value), impossible in a file of \(bytes.count) bytes")
    }

    // Where the central directory starts, by the end record and by the zip64 end record that
    // ZIPFoundation looks for right before it (locator 20 bytes, record 56 bytes).
    var directoryStarts = [Int(u32(end + 16))]
    let locator = end - 20
    let record = locator - 56
    if signature(locator, 6, 7), signature(record, 6, 6) {
      for (what, at) in [("zip64 directory size", record + 40), ("zip64 directory offset", record + 48)]
      where u64(at) > UInt64(bytes.count) {
        throw tooLarge(what, u64(at))
      }
      directoryStarts.append(Int(u64(record + 48)))
    }

    // The directory entries: 46 bytes, then name, extra field and comment.
    let entrySize = 46
    for start in directoryStarts {
      var at = start
      while at <= bytes.count - entrySize, signature(at, 1, 2) {
        let nameLength = u16(at + 28)
        let extraLength = u16(at + 30)
        let next = at + entrySize + nameLength + extraLength + u16(at + 32)
        guard next <= bytes.count else { break }
        // Extra field blocks: 2-byte id, 2-byte size. In a zip64 block (id 1) every complete
        // 8-byte word is a size or an offset.
        var block = at + entrySize + nameLength
        let extraEnd = block + extraLength
        while block + 4 <= extraEnd {
          let id = u16(block)
          let size = u16(block + 2)
          guard block + 4 + size <= extraEnd else { break }
          if id == 1 {
            var word = block + 4
            while word + 8 <= block + 4 + size {
              guard u64(word) <= limit else { throw tooLarge("entry size or offset", u64(word)) }
              word += 8
            }
          }
          block += 4 + size
        }
        at = next
      }
    }
  }
}
