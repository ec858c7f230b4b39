import CFloatKernels
import COpenBLAS
import Synchronization

/// The right-hand matrix B (K x N) of `C = act(A * B + bias + residual)`, held in the layout each
/// kernel path wants: row-major for OpenBLAS (portable), 16-column panels for the AVX2 GEMM.
///
/// The layout of the path selected at build time is made eagerly; another path's layout is made on
/// first use (tests and benchmarks switch paths; a deployed plan uses one).
final class GEMMWeights: @unchecked Sendable {
  let k: Int
  let n: Int
  private let layouts: Mutex<[FloatKernels.Path: AlignedFloatBuffer]>

  /// `rowMajor` is B as K rows of N floats.
  init(k: Int, n: Int, rowMajor: [Float], eagerPath: FloatKernels.Path) {
    precondition(rowMajor.count == k * n)
    self.k = k
    self.n = n
    let source = AlignedFloatBuffer(copying: rowMajor)
    let eager = eagerPath == .portable ? source : Self.pack(source, k: k, n: n)
    layouts = Mutex([eagerPath: eager])
  }

  /// B laid out for `path`.
  func layout(for path: FloatKernels.Path) -> AlignedFloatBuffer {
    layouts.withLock { layouts in
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
    let nr = Int(OCTET_F32_GEMM_NR)
    let rowMajor = AlignedFloatBuffer(count: k * n)
    for row in 0..<k {
      for column in 0..<n {
        rowMajor.pointer[row * n + column] = packed.pointer[(column / nr * k + row) * nr + column % nr]
      }
    }
    return rowMajor
  }
}

/// `C[m][n] (ldc) = act(A[m][k] (lda) * B + bias[n] + residual[m][n] (ldr))` on `path`.
/// `bias` and `residual` are already offset to the first output column.
@inline(__always)
func gemm(
  path: FloatKernels.Path, m: Int, a: UnsafePointer<Float>, lda: Int, b: GEMMWeights,
  c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?,
  residual: UnsafePointer<Float>?, ldr: Int, activation: Activation
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
      octet_f32_gemm_6x16__avx2fma(
        m, b.n, b.k, a, lda, weights.pointer, c, ldc, bias, residual, ldr, activation.kernelCode)
    #else
      preconditionFailure("the avx2fma path exists only on x86")
    #endif
  }
  withExtendedLifetime(weights) {}
}
