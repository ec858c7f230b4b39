/// Owns `count` floats aligned to 64 bytes (a cache line; enough for any SIMD load).
final class AlignedFloatBuffer: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Float>
  let count: Int

  init(count: Int) {
    self.count = count
    let raw = UnsafeMutableRawPointer.allocate(
      byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
    pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
  }

  convenience init(copying source: [Float]) {
    self.init(count: source.count)
    source.withUnsafeBufferPointer { pointer.initialize(from: $0.baseAddress!, count: $0.count) }
  }

  deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}
