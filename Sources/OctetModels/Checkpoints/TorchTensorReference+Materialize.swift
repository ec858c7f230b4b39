import OctetCore

extension TorchTensorReference {
  /// Where the tensor's elements are, once its offset, shape and strides are checked against its
  /// storage.
  struct Layout {
    var count: Int
    var contiguous: Bool
    /// Byte offset of element [0, 0, ...] in the root storage.
    var firstByte: Int
  }

  /// Checks the tensor against a root storage of `storageByteCount` bytes. All arithmetic is
  /// overflow-checked; strides may be 0 (expanded views) but not negative, as in torch.
  func layout(name: String, file: String, storageByteCount: Int) throws -> Layout {
    func invalid(_ reason: String) -> CheckpointError {
      .invalidTensor(file: file, tensor: name, reason: reason)
    }
    let elementSize = storage.type.byteSize
    guard shape.count == strides.count else {
      throw invalid("has \(shape.count) sizes but \(strides.count) strides")
    }
    guard shape.allSatisfy({ $0 >= 0 }) else {
      throw invalid("has a negative size in its shape \(shape)")
    }
    guard strides.allSatisfy({ $0 >= 0 }) else {
      throw invalid("has a negative stride in \(strides)")
    }
    guard storageOffset >= 0 else {
      throw invalid("has a negative storage offset \(storageOffset)")
    }
    var count = 1
    for dim in shape {
      let (product, overflow) = count.multipliedReportingOverflow(by: dim)
      guard !overflow else { throw invalid("has shape \(shape), whose element count overflows") }
      count = product
    }
    guard !count.multipliedReportingOverflow(by: elementSize).overflow else {
      throw invalid("has shape \(shape), whose byte count overflows")
    }
    if count == 0 {
      return Layout(count: 0, contiguous: true, firstByte: 0)
    }
    // The last element the tensor reads must lie inside its storage (or storage view).
    var last = storageOffset
    for (size, stride) in zip(shape, strides) {
      let (step, overflow1) = (size - 1).multipliedReportingOverflow(by: stride)
      let (sum, overflow2) = last.addingReportingOverflow(step)
      guard !overflow1 && !overflow2 else { throw invalid("has strides \(strides) that overflow") }
      last = sum
    }
    guard last < storage.elementCount else {
      throw invalid(
        "reads element \(last) of storage '\(storage.key)', which has \(storage.elementCount) "
          + "elements (offset \(storageOffset), shape \(shape), strides \(strides))")
    }
    let (viewEnd, overflow) = storage.elementOffset.addingReportingOverflow(storage.elementCount)
    guard !overflow, viewEnd <= storageByteCount / elementSize else {
      throw invalid(
        "uses storage '\(storage.key)' as \(storage.elementCount) \(storage.type.rawValue) elements, "
          + "but the storage holds only \(storageByteCount) bytes")
    }
    // Both terms are now known to lie inside the storage, so this cannot overflow.
    let firstElement = storage.elementOffset + storageOffset
    var contiguous = true
    var expected = 1
    for (size, stride) in zip(shape, strides).reversed() where size != 1 {
      if stride != expected { contiguous = false }
      expected *= size
    }
    return Layout(count: count, contiguous: contiguous, firstByte: firstElement * elementSize)
  }

  /// The tensor as contiguous row-major bytes, gathered from `rootStorage` through its strides.
  func materialize(name: String, file: String, rootStorage: UnsafeRawBufferPointer) throws
    -> HostTensor
  {
    let layout = try layout(name: name, file: file, storageByteCount: rootStorage.count)
    let elementSize = storage.type.byteSize
    let byteCount = layout.count * elementSize
    let bytes = [UInt8](unsafeUninitializedCapacity: byteCount) { buffer, initialized in
      guard byteCount > 0, let dst = buffer.baseAddress, let base = rootStorage.baseAddress else {
        initialized = 0
        return
      }
      let src = base + layout.firstByte
      if layout.contiguous {
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: byteCount)
      } else {
        switch elementSize {
        case 1:
          Self.gather(
            UInt8.self, from: src, to: dst, shape: shape, strides: strides, count: layout.count)
        case 2:
          Self.gather(
            UInt16.self, from: src, to: dst, shape: shape, strides: strides, count: layout.count)
        case 4:
          Self.gather(
            UInt32.self, from: src, to: dst, shape: shape, strides: strides, count: layout.count)
        default:
          Self.gather(
            UInt64.self, from: src, to: dst, shape: shape, strides: strides, count: layout.count)
        }
      }
      initialized = byteCount
    }
    return HostTensor(type: storage.type, shape: shape, bytes: bytes)
  }

  /// Like the buffer version, but hands `rootStorage` over without a copy when the tensor is
  /// exactly the whole storage (the common case for a state_dict).
  func materialize(name: String, file: String, rootStorage: [UInt8]) throws -> HostTensor {
    let layout = try layout(name: name, file: file, storageByteCount: rootStorage.count)
    if layout.contiguous && layout.firstByte == 0
      && layout.count * storage.type.byteSize == rootStorage.count
    {
      return HostTensor(type: storage.type, shape: shape, bytes: rootStorage)
    }
    return try rootStorage.withUnsafeBytes {
      try materialize(name: name, file: file, rootStorage: $0)
    }
  }

  /// Row-major walk over `shape`, reading through `strides` (in elements). Storage bytes may be
  /// unaligned (legacy files are read in place), hence `loadUnaligned`.
  private static func gather<T: FixedWidthInteger>(
    _: T.Type, from src: UnsafeRawPointer, to dst: UnsafeMutablePointer<UInt8>, shape: [Int],
    strides: [Int],
    count: Int
  ) {
    let size = MemoryLayout<T>.size
    let out = UnsafeMutableRawPointer(dst)
    let rank = shape.count
    let inner = shape[rank - 1]
    let innerStride = strides[rank - 1]
    var index = [Int](repeating: 0, count: rank)
    var base = 0
    var o = 0
    for _ in 0..<(count / inner) {
      var s = base
      for _ in 0..<inner {
        out.storeBytes(
          of: src.loadUnaligned(fromByteOffset: s * size, as: T.self), toByteOffset: o * size,
          as: T.self)
        s += innerStride
        o += 1
      }
      var d = rank - 2
      while d >= 0 {
        index[d] += 1
        base += strides[d]
        if index[d] < shape[d] { break }
        base -= strides[d] * shape[d]
        index[d] = 0
        d -= 1
      }
    }
  }
}
