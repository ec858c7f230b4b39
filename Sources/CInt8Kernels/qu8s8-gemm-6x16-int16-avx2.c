// The "int16" AVX2 GEMM (octet_i8_gemm__avx2): A and B widened to int16 ("i16 rows", K padded to
// 2), one vpmaddwd per pair of k, each pair summed exactly into int32, so any int8 weights, at half
// the multiply-adds per instruction of the pairs kernel. The executor's cost model
// (docs/quantization.md §2) picks it for a layer only when pairs does not apply and quads would need
// many fixups.
#if defined(__x86_64__)
#include "qu8s8-gemm-6x16-avx2.h"

/// 6 rows x 16 columns over the whole K: acc[r][j] = bias[j] + sum_k a[r][k] * b[k][j].
AVX2 static inline void qu8s8_gemm_6x16__avx2_int16(const int16_t* a, size_t lda, size_t rows,
                                                    const int16_t* b, size_t kq, const int32_t* bias, const tile_out* o, int32_t acc[6][16]) {
  OCTET_6X16_BEGIN(int16_t)
  for (size_t q = 0; q < kq; q++) {
    const __m256i b0 = _mm256_load_si256((const __m256i*)(b + q * 32));
    const __m256i b1 = _mm256_load_si256((const __m256i*)(b + q * 32 + 16));
    __m256i x;
#define OCTET_ROW(ROW, C0, C1)                                   \
  x = _mm256_set1_epi32(octet_load_i32(ROW + 2 * q));            \
  C0 = _mm256_add_epi32(C0, _mm256_madd_epi16(x, b0));           \
  C1 = _mm256_add_epi32(C1, _mm256_madd_epi16(x, b1));
    OCTET_ROW(a0, c00, c01)
    OCTET_ROW(a1, c10, c11)
    OCTET_ROW(a2, c20, c21)
    OCTET_ROW(a3, c30, c31)
    OCTET_ROW(a4, c40, c41)
    OCTET_ROW(a5, c50, c51)
#undef OCTET_ROW
  }
  OCTET_6X16_FINISH(o, 1, -1)
}

AVX2 static void tile_int16(const uint8_t* a, size_t lda, size_t rows, const uint8_t* panel, size_t kp,
                            const octet_i8_fixups* fix, size_t p, const int32_t* bias, const tile_out* o,
                            int32_t acc[6][16]) {
  (void)fix, (void)p;
  qu8s8_gemm_6x16__avx2_int16((const int16_t*)a, lda / 2, rows, (const int16_t*)panel, kp / 2, bias, o, acc);
}

AVX2 void octet_i8_gemm__avx2(const int16_t* a, const int16_t* b, size_t kp, size_t n, size_t m0,
                              size_t m1, size_t n0, size_t n1, const octet_i8_epilogue* ep, void* out,
                              size_t ldc) {
  gemm_driver_6x16(tile_int16, (const uint8_t*)a, kp * 2, (const uint8_t*)b, 2, NULL, kp, n, m0, m1, n0, n1, ep, out, ldc);
}
#endif
