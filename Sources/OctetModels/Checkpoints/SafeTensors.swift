import Foundation
import OctetCore

/// The safetensors format (github.com/huggingface/safetensors): an 8-byte little-endian header
/// length N, N bytes of JSON
/// `{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
///   "__metadata__": {"key": "value"}}`,
/// then the data buffer; offsets count bytes from the start of the buffer. Tensors are little-endian
/// and row-major, as `HostTensor` holds them.
public enum SafeTensors {
  /// The reference implementation refuses larger headers; so does this.
  static let maxHeaderLength = 100_000_000

  /// Reads a safetensors file. Tensors come back ordered by their position in the data buffer,
  /// which is the order they were written in.
  public static func read(contentsOf url: URL) throws -> (
    tensors: TensorDictionary, metadata: [String: String]
  ) {
    let data: Data
    do {
      data = try Data(contentsOf: url, options: .alwaysMapped)
    } catch {
      throw CheckpointError.unreadable(file: url.path, reason: error.localizedDescription)
    }
    return try data.withUnsafeBytes { try decode($0, file: url.path) }
  }

  /// Decodes the bytes of a safetensors file.
  public static func decode(_ bytes: [UInt8]) throws -> (
    tensors: TensorDictionary, metadata: [String: String]
  ) {
    try bytes.withUnsafeBytes { try decode($0, file: "<safetensors bytes>") }
  }

  /// The bytes of a safetensors file holding `tensors` in order, with `metadata` under
  /// "__metadata__" (left out when empty). The header is padded with spaces to a multiple of 8.
  public static func encode(_ tensors: TensorDictionary, metadata: [String: String] = [:]) throws
    -> [UInt8]
  {
    try encode(tensors, metadata: metadata, file: "<safetensors bytes>")
  }

  /// Writes `tensors` to `url` atomically (`AtomicFile`): a failure or a kill leaves the old file or
  /// none, never a truncated one.
  public static func write(
    _ tensors: TensorDictionary, metadata: [String: String] = [:], to url: URL
  ) throws {
    let header = try header(tensors, metadata: metadata, file: url.path)
    do {
      try AtomicFile.write(to: url) { sink in
        // Tensor by tensor: no second copy of the whole model in memory.
        try sink.write(header)
        for name in tensors.names { try sink.write(tensors[name]!.bytes) }
      }
    } catch let error as FileError {
      throw CheckpointError.writeFailed(file: url.path, reason: error.reason)
    }
  }

  // MARK: - Encoding

  static func encode(_ tensors: TensorDictionary, metadata: [String: String], file: String) throws
    -> [UInt8]
  {
    var out = try header(tensors, metadata: metadata, file: file)
    out.reserveCapacity(out.count + tensors.names.reduce(0) { $0 + tensors[$1]!.bytes.count })
    for name in tensors.names { out.append(contentsOf: tensors[name]!.bytes) }
    return out
  }

  /// The 8-byte length and the padded JSON header; the data buffer follows in `tensors.names` order.
  static func header(_ tensors: TensorDictionary, metadata: [String: String], file: String) throws
    -> [UInt8]
  {
    var members: [(key: String, value: SafeTensorsJSON)] = []
    if !metadata.isEmpty {
      let sorted = metadata.sorted { $0.key < $1.key }
      members.append(("__metadata__", .object(sorted.map { ($0.key, .string($0.value)) })))
    }
    var offset = 0
    for name in tensors.names {
      guard name != "__metadata__" else {
        throw CheckpointError.writeFailed(
          file: file, reason: "a tensor cannot be named '__metadata__'")
      }
      let tensor = tensors[name]!
      let entry: SafeTensorsJSON = .object([
        ("dtype", .string(tensor.type.rawValue)),
        ("shape", .array(tensor.shape.map { .number(String($0)) })),
        (
          "data_offsets",
          .array([.number(String(offset)), .number(String(offset + tensor.bytes.count))])
        ),
      ])
      members.append((name, entry))
      offset += tensor.bytes.count
    }
    var text = ""
    SafeTensorsJSON.object(members).write(into: &text)
    var header = Array(text.utf8)
    header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8))

    return withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) } + header
  }

  // MARK: - Decoding

  static func decode(
    _ bytes: UnsafeRawBufferPointer, file: String
  ) throws -> (tensors: TensorDictionary, metadata: [String: String]) {
    func invalid(_ reason: String) -> CheckpointError {
      .invalidSafeTensors(file: file, reason: reason)
    }

    guard bytes.count >= 8 else {
      throw invalid("it has \(bytes.count) bytes, fewer than the 8-byte header length")
    }
    let declared = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
    guard declared <= UInt64(bytes.count - 8) else {
      throw invalid(
        "its header length \(declared) exceeds the \(bytes.count - 8) bytes after it (truncated file?)"
      )
    }
    guard declared <= UInt64(maxHeaderLength) else {
      throw invalid("its header length \(declared) exceeds the limit of \(maxHeaderLength) bytes")
    }
    let headerLength = Int(declared)
    let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<8 + headerLength])
    guard headerBytes.first == UInt8(ascii: "{") else {
      throw invalid("its header does not start with '{'")
    }
    let header: SafeTensorsJSON
    do {
      header = try SafeTensorsJSON.parse(headerBytes)
    } catch {
      throw invalid("its JSON header is malformed: \(error.reason) at header byte \(error.offset)")
    }
    guard case .object(let members) = header else {
      throw invalid("its header is not a JSON object")
    }

    let dataStart = 8 + headerLength
    let dataSize = bytes.count - dataStart
    var metadata: [String: String] = [:]
    struct Entry {
      var name: String
      var type: ElementType
      var shape: [Int]
      var range: Range<Int>
    }
    var entries: [Entry] = []
    entries.reserveCapacity(members.count)

    for (name, value) in members {
      if name == "__metadata__" {
        guard case .object(let pairs) = value else {
          throw invalid("__metadata__ is not an object")
        }
        for (key, item) in pairs {
          guard case .string(let text) = item else {
            throw invalid("__metadata__ value for '\(key)' is not a string")
          }
          metadata[key] = text
        }
        continue
      }
      func bad(_ reason: String) -> CheckpointError { invalid("tensor '\(name)' \(reason)") }
      guard case .object(let fields) = value else { throw bad("is not described by an object") }
      func field(_ key: String) -> SafeTensorsJSON? { fields.first { $0.key == key }?.value }

      guard case .string(let dtype) = field("dtype") else { throw bad("has no dtype string") }
      guard let type = ElementType(rawValue: dtype) else {
        throw CheckpointError.unsupportedDType(file: file, tensor: name, dtype: dtype)
      }
      guard case .array(let dims) = field("shape") else { throw bad("has no shape array") }
      var shape: [Int] = []
      var count = 1
      for dim in dims {
        guard let d = dim.nonNegativeInt else {
          throw bad("has a shape entry that is not a non-negative integer")
        }
        let (product, overflow) = count.multipliedReportingOverflow(by: d)
        guard !overflow else {
          throw bad("has shape \(dims.map(\.numberText)), whose element count overflows")
        }
        shape.append(d)
        count = product
      }
      let (byteCount, overflow) = count.multipliedReportingOverflow(by: type.byteSize)
      guard !overflow else { throw bad("has shape \(shape), whose byte count overflows") }
      guard case .array(let offsets) = field("data_offsets"), offsets.count == 2,
        let begin = offsets[0].nonNegativeInt, let end = offsets[1].nonNegativeInt
      else {
        throw bad("has no data_offsets [begin, end] of non-negative integers")
      }
      guard begin <= end, end <= dataSize else {
        throw bad("has data_offsets [\(begin), \(end)] outside the \(dataSize)-byte data buffer")
      }
      guard end - begin == byteCount else {
        throw bad(
          "has data_offsets [\(begin), \(end)] (\(end - begin) bytes), but \(dtype) \(shape) needs \(byteCount) bytes"
        )
      }
      entries.append(Entry(name: name, type: type, shape: shape, range: begin..<end))
    }

    // Buffer order; gaps are tolerated, overlaps are not.
    entries.sort {
      ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound)
    }
    var previous: Entry?
    for entry in entries where !entry.range.isEmpty {
      if let previous, previous.range.upperBound > entry.range.lowerBound {
        throw invalid(
          "tensors '\(previous.name)' \(previous.range) and '\(entry.name)' \(entry.range) overlap in the data buffer"
        )
      }
      previous = entry
    }

    var tensors = TensorDictionary()
    for entry in entries {
      let slice = UnsafeRawBufferPointer(
        rebasing: bytes[(dataStart + entry.range.lowerBound)..<(dataStart + entry.range.upperBound)]
      )
      tensors[entry.name] = HostTensor(type: entry.type, shape: entry.shape, bytes: Array(slice))
    }
    return (tensors, metadata)
  }
}

extension SafeTensorsJSON {
  fileprivate var numberText: String {
    if case .number(let text) = self { return text }
    return "?"
  }
}
