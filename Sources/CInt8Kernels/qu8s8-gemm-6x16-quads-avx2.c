// The "quads" AVX2 GEMM (octet_i8_gemm__avx2_quads), 6x16 tiles on the u8-row / VNNI layouts, any weights.
#if defined(__x86_64__)
#include "qu8s8-gemm-6x16-avx2.h"

// The "quads" kernel: two vpmaddubsw (4-groups g and g+1) summed in int16 by vpaddw before one
// vpmaddwd by 1, so three multiplier-port instructions per 64 products instead of four. Each int16
// lane then holds four products, which octet_i8_quads_split guarantees cannot leave int16 by moving
// any excess weight into sparse fixups; those are added here after the main loop, two entries at
// a time, as a vpmaddwd of the broadcast activations (a[k1], a[k2]) in the int16 halves of each
// lane by the pair's values (d1, d2) (|d| <= 128, within int16; octet_i8_quads_pair).
// R (1 to 6, a constant at each call) is the number of rows computed: a partial last tile does not
// pay for six (the classifier has one row, layer4 of ResNet50 49 = 8 x 6 + 1).
AVX2 __attribute__((always_inline)) static inline void qu8s8_gemm_6x16__avx2_quads(
    const int R, const int RES, const uint8_t* a, size_t lda, const int8_t* b, size_t kg, const uint32_t* fk,
    const int32_t* fd, size_t nfix, const int32_t* bias, const tile_out* o, int32_t acc[6][16]) {
  const size_t rows = (size_t)R;
  OCTET_6X16_BEGIN(uint8_t)
  const __m256i ones = _mm256_set1_epi16(1);
  size_t g = 0;
  for (; g + 2 <= kg; g += 2) {
    const __m256i* bp = (const __m256i*)(b + g * 64);
    __m256i x, y, t0, t1;
#define OCTET_ROW(ROW, C0, C1)                                                                       \
  x = _mm256_set1_epi32(octet_load_i32(ROW + 4 * g));                                                \
  y = _mm256_set1_epi32(octet_load_i32(ROW + 4 * g + 4));                                            \
  t0 = _mm256_add_epi16(_mm256_maddubs_epi16(x, _mm256_load_si256(bp)),                              \
                        _mm256_maddubs_epi16(y, _mm256_load_si256(bp + 2)));                         \
  t1 = _mm256_add_epi16(_mm256_maddubs_epi16(x, _mm256_load_si256(bp + 1)),                          \
                        _mm256_maddubs_epi16(y, _mm256_load_si256(bp + 3)));                         \
  C0 = _mm256_add_epi32(C0, _mm256_madd_epi16(t0, ones));                                            \
  C1 = _mm256_add_epi32(C1, _mm256_madd_epi16(t1, ones));
    OCTET_FOR_ROWS(R, OCTET_ROW)
#undef OCTET_ROW
  }
  if (g < kg) OCTET_PAIRS_STEP(g, R)
  for (size_t e = 0; e < nfix; e++) {
    const size_t k1 = fk[e] & 0xffff, k2 = fk[e] >> 16;
    const __m256i d0 = _mm256_loadu_si256((const __m256i*)(fd + 16 * e));
    const __m256i d1 = _mm256_loadu_si256((const __m256i*)(fd + 16 * e + 8));
    __m256i x;
#define OCTET_ROW(ROW, C0, C1)                           \
  x = _mm256_set1_epi32((int32_t)(ROW[k1] | (uint32_t)ROW[k2] << 16)); \
  C0 = _mm256_add_epi32(C0, _mm256_madd_epi16(x, d0));   \
  C1 = _mm256_add_epi32(C1, _mm256_madd_epi16(x, d1));
    OCTET_FOR_ROWS(R, OCTET_ROW)
#undef OCTET_ROW
  }
  // Only whole tiles (R = 6) finish in registers; RES (0 or 1) is whether there is a residual.
  OCTET_6X16_FINISH(o, R == 6, RES)
}

// The quads tile without (RES 0) and with (RES 1) a fused residual add.
#define OCTET_TILE_QUADS(NAME, RES)                                                                        \
  AVX2 static void NAME(const uint8_t* a, size_t lda, size_t rows, const uint8_t* panel, size_t kp,       \
                        const octet_i8_fixups* fix, size_t p, const int32_t* bias, const tile_out* o,     \
                        int32_t acc[6][16]) {                                                            \
    const size_t e0 = fix->panel_start[p], e1 = fix->panel_start[p + 1];                                \
    const int8_t* b = (const int8_t*)panel;                                                              \
    const uint32_t* fk = fix->k + e0;                                                                    \
    const int32_t* fd = fix->d + 16 * e0;                                                                \
    switch (rows) {                                                                                      \
      case 6: qu8s8_gemm_6x16__avx2_quads(6, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;             \
      case 5: qu8s8_gemm_6x16__avx2_quads(5, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;             \
      case 4: qu8s8_gemm_6x16__avx2_quads(4, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;             \
      case 3: qu8s8_gemm_6x16__avx2_quads(3, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;             \
      case 2: qu8s8_gemm_6x16__avx2_quads(2, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;             \
      default: qu8s8_gemm_6x16__avx2_quads(1, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;            \
    }                                                                                                    \
  }
OCTET_TILE_QUADS(tile_quads, 0)
OCTET_TILE_QUADS(tile_quads_residual, 1)

AVX2 void octet_i8_gemm__avx2_quads(const uint8_t* a, size_t lda, const int8_t* b, const octet_i8_fixups* fixups,
                                    size_t kp, size_t n, size_t m0, size_t m1, size_t n0, size_t n1,
                                    const octet_i8_epilogue* ep, void* out, size_t ldc) {
  if (ep->residual)
    gemm_driver_6x16(tile_quads_residual, a, lda, (const uint8_t*)b, 1, fixups, kp, n, m0, m1, n0, n1, ep, out, ldc);
  else
    gemm_driver_6x16(tile_quads, a, lda, (const uint8_t*)b, 1, fixups, kp, n, m0, m1, n0, n1, ep, out, ldc);
}
#endif
