import Foundation

final class Workspace: @unchecked Sendable {
  let batch: Int
  var buffers: [UnsafeMutablePointer<UInt8>]
  let scratch: UnsafeMutablePointer<UInt8>
  private let storage: [AlignedBytes]

  init(batch: Int, bufferSizes: [Int], scratchSize: Int) {
    self.batch = batch
    var storage = bufferSizes.map { AlignedBytes(count: $0 * batch + 64) }
    storage.append(AlignedBytes(count: scratchSize * batch + 64))
    self.storage = storage
    buffers = storage.dropLast().map { $0.pointer.assumingMemoryBound(to: UInt8.self) }
    scratch = storage.last!.pointer.assumingMemoryBound(to: UInt8.self)
  }
}

/// Reuses workspaces between runs (allocation and page faults cost milliseconds per run otherwise);
/// concurrent runs each get their own.
final class WorkspacePool: @unchecked Sendable {
  private let lock = NSLock()
  private var free: [Workspace] = []

  func take(batch: Int, bufferSizes: [Int], scratchSize: Int, threads: Int) -> Workspace {
    lock.lock()
    if let i = free.firstIndex(where: { $0.batch == batch }) {
      let w = free.remove(at: i)
      lock.unlock()
      return w
    }
    lock.unlock()
    return Workspace(batch: batch, bufferSizes: bufferSizes, scratchSize: scratchSize)
  }

  func give(_ workspace: Workspace) {
    lock.lock()
    if free.count < 8 { free.append(workspace) }
    lock.unlock()
  }
}
