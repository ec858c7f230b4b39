import CWorkerPool

/// A pool of `threads - 1` persistent worker threads (CWorkerPool's pool.c) for the tasks of one
/// network run: the int8 runtime's layers and the float GEMMs. Between jobs the workers spin
/// briefly, then sleep, so a network's 50+ layers do not each pay a thread wake-up.
public final class WorkerPool: @unchecked Sendable {
  /// The C pool; nil with one thread (or when it could not be made: `run` then runs on the caller).
  private let raw: OpaquePointer?

  public init(threads: Int) { raw = threads > 1 ? octet_pool_create(threads) : nil }
  deinit { octet_pool_destroy(raw) }

  /// Runs `body(t)` for every t in 0 ..< tasks on the workers and the calling thread, and returns
  /// when all are done. Without workers, or while another run holds the pool, the caller runs the
  /// tasks itself, in order. The tasks must write disjoint memory.
  public func run(_ tasks: Int, _ body: (Int) -> Void) {
    if tasks <= 1 {
      if tasks == 1 { body(0) }
      return
    }
    // octet_pool_run returns only when every task is done, so `body` does not escape.
    withoutActuallyEscaping(body) { body in
      var body = body
      withUnsafeMutablePointer(to: &body) { context in
        octet_pool_run(
          raw, tasks, { context, task in context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(task) },
          context)
      }
    }
  }
}
