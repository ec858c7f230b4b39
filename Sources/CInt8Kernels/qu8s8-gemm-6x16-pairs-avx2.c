// The "pairs" AVX2 GEMM (octet_i8_gemm__avx2_pairs), 6x16 tiles on the u8-row / VNNI layouts.
#if defined(__x86_64__)
#include "qu8s8-gemm-6x16-avx2.h"

// The "pairs" kernel: vpmaddubsw (u8 x s8, adjacent pairs summed into int16, saturating), then
// vpmaddwd by 1 to sum the two pairs of each 4-byte group into int32. It does twice the
// multiply-adds per multiplier-port instruction of the vpmaddwd kernel, and is exact only when
// no pair sum can leave int16: 255 * (|w0| + |w1|) <= 32767, guaranteed by |w0| + |w1| <= 128
// for every adjacent pair of a weight row (`octet_i8_weights_fit_pairs`; weights quantized to
// [-64, 64] always qualify). A and B use the u8-row / VNNI layouts with K padded to 4.
AVX2 static inline void qu8s8_gemm_6x16__avx2_pairs(const uint8_t* a, size_t lda, size_t rows,
                                                    const int8_t* b, size_t kg, const int32_t* bias, const tile_out* o, int32_t acc[6][16]) {
  OCTET_6X16_BEGIN(uint8_t)
  const __m256i ones = _mm256_set1_epi16(1);
  for (size_t g = 0; g < kg; g++) { OCTET_PAIRS_STEP(g, 6) }
  OCTET_6X16_FINISH(o, 1, -1)
}

AVX2 static void tile_pairs(const uint8_t* a, size_t lda, size_t rows, const uint8_t* panel, size_t kp,
                            const octet_i8_fixups* fix, size_t p, const int32_t* bias, const tile_out* o,
                            int32_t acc[6][16]) {
  (void)fix, (void)p;
  qu8s8_gemm_6x16__avx2_pairs(a, lda, rows, (const int8_t*)panel, kp / 4, bias, o, acc);
}

AVX2 void octet_i8_gemm__avx2_pairs(const uint8_t* a, size_t lda, const int8_t* b, size_t kp, size_t n,
                                    size_t m0, size_t m1, size_t n0, size_t n1,
                                    const octet_i8_epilogue* ep, void* out, size_t ldc) {
  gemm_driver_6x16(tile_pairs, a, lda, (const uint8_t*)b, 1, NULL, kp, n, m0, m1, n0, n1, ep, out, ldc);
}
#endif
