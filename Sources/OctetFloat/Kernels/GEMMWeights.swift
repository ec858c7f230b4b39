import CFloatKernels
import COpenBLAS
import Dispatch
import Synchronization

/// The right-hand matrix B (K x N) of `C = act(A * B + bias + residual)`, held in the layout each
/// kernel path wants: row-major for OpenBLAS (portable), `octet_f32_gemm_pack_b` panels for the
/// AVX2 GEMM.
///
/// The layout of the path selected at build time is made eagerly; another path's layout is made on
/// first use (tests and benchmarks switch paths; a deployed plan uses one).
final class GEMMWeights: @unchecked Sendable {
  let k: Int
  let n: Int
  /// The build-time path's layout, read without a lock (every GEMM call asks for it).
  private let eagerPath: FloatKernels.Path
  private let eager: AlignedFloatBuffer
  private let layouts: Mutex<[FloatKernels.Path: AlignedFloatBuffer]>

  /// `rowMajor` is B as K rows of N floats.
  init(k: Int, n: Int, rowMajor: [Float], eagerPath: FloatKernels.Path) {
    precondition(rowMajor.count == k * n)
    self.k = k
    self.n = n
    let source = AlignedFloatBuffer(copying: rowMajor)
    let eager = eagerPath == .portable ? source : Self.pack(source, k: k, n: n)
    self.eagerPath = eagerPath
    self.eager = eager
    layouts = Mutex([eagerPath: eager])
  }

  /// B laid out for `path`.
  func layout(for path: FloatKernels.Path) -> AlignedFloatBuffer {
    if path == eagerPath { return eager }
    return layouts.withLock { layouts in
      if let existing = layouts[path] { return existing }
      let made: AlignedFloatBuffer
      if path == .portable {
        made = Self.unpack(layouts[.avx2fma]!, k: k, n: n)
      } else {
        made = Self.pack(layouts[.portable]!, k: k, n: n)
      }
      layouts[path] = made
      return made
    }
  }

  private static func pack(_ rowMajor: AlignedFloatBuffer, k: Int, n: Int) -> AlignedFloatBuffer {
    let packed = AlignedFloatBuffer(count: octet_f32_gemm_packed_count(k, n))
    octet_f32_gemm_pack_b(k, n, rowMajor.pointer, n, packed.pointer)
    return packed
  }

  private static func unpack(_ packed: AlignedFloatBuffer, k: Int, n: Int) -> AlignedFloatBuffer {
    let rowMajor = AlignedFloatBuffer(count: k * n)
    octet_f32_gemm_unpack_b(k, n, packed.pointer, rowMajor.pointer, n)
    return rowMajor
  }
}

/// `C[m][n] (ldc) = act(A[m][k] (lda) * B + bias[n] + residual[m][n] (ldr))` on `path`.
/// `bias` and `residual` are already offset to the first output column. `singleThread`: on the
/// calling thread only, whatever `FloatKernels.threads` says (the caller parallelizes).
@inline(__always)
func gemm(
  path: FloatKernels.Path, m: Int, a: UnsafePointer<Float>, lda: Int, b: GEMMWeights,
  c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?,
  residual: UnsafePointer<Float>?, ldr: Int, activation: Activation, singleThread: Bool = false
) {
  let weights = b.layout(for: path)
  switch path {
  case .portable:
    FloatKernels.configureOnce()
    cblas_sgemm(
      CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(b.n), Int32(b.k),
      1, a, Int32(lda), weights.pointer, Int32(b.n), 0, c, Int32(ldc))
    octet_f32_bias_residual_act(c, m, b.n, ldc, bias, residual, ldr, activation.kernelCode)
  case .avx2fma:
    #if arch(x86_64) || arch(i386)
      let threads = singleThread ? 1 : FloatKernels.threads
      let nr = Int(OCTET_F32_GEMM_NR)
      let panels = (b.n + nr - 1) / nr
      if threads == 1 || m * panels < 64 {
        octet_f32_gemm_packed(
          m, b.n, b.k, a, lda, weights.pointer, 0, b.n, c, ldc, bias, residual, ldr,
          activation.kernelCode)
      } else {
        // The slices write disjoint parts of C; the pointers outlive the (synchronous) fork-join.
        struct Operands: @unchecked Sendable {
          let a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>
          let bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?
        }
        let o = Operands(a: a, b: weights.pointer, c: c, bias: bias, residual: residual)
        let (k, n, act) = (b.k, b.n, activation.kernelCode)
        // The kernel's tile: 6 rows x 16 columns (AVX2) or 8 x 32 (AVX-512F).
        let wide = octet_f32_gemm_default_isa() == OCTET_F32_GEMM_AVX512
        let mr = wide ? 8 : 6
        if m >= mr * 8 * threads {
          // Many rows: contiguous row slices (multiples of the tile's rows) share all of B.
          let rowsPerSlice = (m + threads * mr - 1) / (threads * mr) * mr
          FloatKernels.parallel((m + rowsPerSlice - 1) / rowsPerSlice) { slice in
            let m0 = slice * rowsPerSlice
            octet_f32_gemm_packed(
              min(rowsPerSlice, m - m0), n, k, o.a + m0 * lda, lda, o.b, 0, n, o.c + m0 * ldc, ldc,
              o.bias, o.residual.map { $0 + m0 * ldr }, ldr, act)
          }
        } else {
          // Few rows: slices of whole 16-column panels, each with its own part of B.
          let panelGrain = wide ? 2 : 1
          let panelsPerSlice = (panels + threads * panelGrain - 1) / (threads * panelGrain) * panelGrain
          FloatKernels.parallel((panels + panelsPerSlice - 1) / panelsPerSlice) { slice in
            let j0 = slice * panelsPerSlice * nr
            octet_f32_gemm_packed(
              m, n, k, o.a, lda, o.b, j0, min(j0 + panelsPerSlice * nr, n), o.c, ldc, o.bias,
              o.residual, ldr, act)
          }
        }
      }
    #else
      preconditionFailure("the avx2fma path exists only on x86")
    #endif
  }
  withExtendedLifetime(weights) {}
}
