import Dispatch
import Synchronization

/// Runs `body(index)` for every index in `0..<count` on up to `threads` threads, indices handed out in
/// order. The first error stops the hand-out (items already running finish) and is rethrown.
public func forEachInParallel(
  _ count: Int, threads: Int, _ body: @Sendable (Int) throws -> Void
) throws {
  struct State {
    var next = 0
    var failure: Error?
  }
  let state = Mutex(State())
  DispatchQueue.concurrentPerform(iterations: max(1, min(threads, count))) { _ in
    while true {
      let index: Int? = state.withLock { s in
        guard s.failure == nil, s.next < count else { return nil }
        defer { s.next += 1 }
        return s.next
      }
      guard let index else { return }
      do {
        try body(index)
      } catch {
        state.withLock { s in s.failure = s.failure ?? error }
      }
    }
  }
  if let failure = state.withLock({ $0.failure }) { throw failure }
}
