import CFloatKernels
import COpenBLAS
import OctetCore
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Process-wide settings of the float kernels.
public enum FloatKernels {
  /// A family of kernels. Every path computes the same function (up to float rounding).
  public enum Path: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Plain C kernels the compiler vectorizes for the baseline ISA; GEMMs go to OpenBLAS.
    case portable
    /// AVX2+FMA kernels: depthwise convolution and a GEMM with pre-packed weights.
    case avx2fma

    public var description: String { rawValue }
  }

  /// Whether this CPU can run `path` (detected at run time).
  public static func isAvailable(_ path: Path) -> Bool {
    switch path {
    case .portable: true
    case .avx2fma: octet_f32_cpu_has_avx2fma() != 0
    }
  }

  /// The GEMM kernel of the avx2fma path: "avx512f" (8x32 tiles in zmm registers) where the CPU has
  /// AVX-512F, unless `OCTET_FLOAT_GEMM=avx2` asks for the 6x16 AVX2 one; both give the same floats.
  public static var gemmKernel: String {
    octet_f32_gemm_default_isa() == OCTET_F32_GEMM_AVX512 ? "avx512f" : "avx2"
  }

  /// The paths this CPU can run, portable first.
  public static var availablePaths: [Path] { Path.allCases.filter(isAvailable) }

  /// The path operators use when the caller does not pick one. Starts as
  /// `OCTET_FLOAT_KERNEL=portable|avx2fma` from the environment, else the best path the CPU
  /// supports. Setting an unavailable path is a precondition failure.
  public static var path: Path {
    get { selectedPath.load(ordering: .relaxed) == 0 ? .portable : .avx2fma }
    set {
      precondition(isAvailable(newValue), "kernel path \(newValue) is not supported by this CPU")
      selectedPath.store(newValue == .portable ? 0 : 1, ordering: .relaxed)
    }
  }

  private static let selectedPath = Atomic<UInt8>(
    octet_f32_default_path() == OCTET_F32_PATH_AVX2FMA ? 1 : 0)

  /// Sets the number of threads each GEMM may use: OpenBLAS's thread count on the portable path,
  /// and the number of slices the avx2fma GEMM is split into. The default is 1: the runtime
  /// targets batch 1 on one thread, and callers parallelize across requests instead. Depthwise,
  /// pooling and element-wise kernels always run on the calling thread.
  public static func setThreads(_ n: Int) {
    precondition(n >= 1, "thread count must be at least 1, got \(n)")
    configureOnce()
    openblas_set_num_threads(Int32(n))
    threadCount.store(n, ordering: .relaxed)
  }

  /// Threads a GEMM may use (see `setThreads`).
  public static var threads: Int { threadCount.load(ordering: .relaxed) }
  private static let threadCount = Atomic<Int>(1)

  /// Runs body(0 ..< tasks) on a persistent worker pool of `threads` threads (OctetCore's
  /// `WorkerPool`, as the int8 runtime: workers spin briefly between layers instead of being woken
  /// through GCD for every layer) and the calling thread; returns when all are done. While another
  /// run holds the pool, or with one thread, the caller runs the tasks itself, in order.
  static func parallel(_ tasks: Int, _ body: (Int) -> Void) {
    guard tasks > 1, threads > 1 else {
      for t in 0..<tasks { body(t) }
      return
    }
    pool(threads: threads).run(tasks, body)
  }

  /// One pool per thread count asked for, made on first use and kept for the process (a handful at
  /// most: `setThreads` is called with the count of a run).
  private static func pool(threads n: Int) -> WorkerPool {
    pools.withLock { pools in
      if let pool = pools[n] { return pool }
      let pool = WorkerPool(threads: n)
      pools[n] = pool
      return pool
    }
  }
  private static let pools = Mutex<[Int: WorkerPool]>([:])

  /// False when the environment says `OCTET_FLOAT_WINOGRAD=0` (read once): executors asked for
  /// Winograd convolutions then run the direct ones.
  public static let winogradAllowed: Bool = {
    guard let value = getenv("OCTET_FLOAT_WINOGRAD") else { return true }
    return String(cString: value) != "0"
  }()

  /// Applies the defaults (one OpenBLAS thread) exactly once, before the first kernel runs.
  static func configureOnce() { _ = configured }
  private static let configured: Void = { openblas_set_num_threads(1) }()
}
