// The GEMM of 16-bit layers on AVX2 (docs/quantization.md §17): 4 rows x 8 columns per tile. Each
// vpmaddwd multiplies a row's int16 pair (a[k], a[k+1]), broadcast, by 8 columns' weight pairs and
// adds each pair into int32. |x| <= 32768 and |w| <= w_max, so a pair sum is at most
// 2 · 32768 · w_max: with 8-bit weights 256 pairs stay below 2^31 (256 · 2 · 32768 · 127 < 2^31),
// with 16-bit weights only one does (128 on an 8-bit input, a8w16). Partial sums over such blocks
// of K are exact int32 and are added into int64 accumulators; integer addition is associative, so
// the result is the scalar twin's (qs16-conv-scalar.c) bit for bit, and the epilogue is the same C
// function.
#if defined(__x86_64__)
#include <immintrin.h>
#include "common.h"

#define AVX2 __attribute__((target("avx2")))

AVX2 static inline void tile(const octet_a16_conv* c, const int16_t* a, int32_t rows, size_t col0, void* out) {
  const size_t kp = (size_t)c->kp, n = (size_t)c->out_c;
  // K values per exact int32 block: a pair sum is at most 2 · |x|max · w_max, so 512 with 8-bit
  // weights (|x| <= 32768), 2 with 16-bit weights on a 16-bit input, and 256 with 16-bit weights on
  // an 8-bit input (a8w16, 0 <= x <= 255: 128 · 2 · 255 · 32767 = 2,139,029,760 < 2^31).
  const size_t block = c->weight_bits != 16 ? 512 : c->in_bits == 8 ? 256 : 2;
  const int16_t* panel = c->weights + (col0 / 8) * (kp / 2) * 16;
  __m256i lo[4], hi[4];
  for (int32_t r = 0; r < 4; r++) lo[r] = hi[r] = _mm256_setzero_si256();
  for (size_t k0 = 0; k0 < kp; k0 += block) {
    const size_t k1 = k0 + block < kp ? k0 + block : kp;
    __m256i s[4];
    for (int32_t r = 0; r < 4; r++) s[r] = _mm256_setzero_si256();
    for (size_t k = k0; k < k1; k += 2) {
      const __m256i w = _mm256_loadu_si256((const __m256i*)(panel + k / 2 * 16));
      for (int32_t r = 0; r < rows; r++) {
        const __m256i x = _mm256_set1_epi32(octet_load_i32(a + (size_t)r * kp + k));
        s[r] = _mm256_add_epi32(s[r], _mm256_madd_epi16(x, w));
      }
    }
    for (int32_t r = 0; r < rows; r++) {
      lo[r] = _mm256_add_epi64(lo[r], _mm256_cvtepi32_epi64(_mm256_castsi256_si128(s[r])));
      hi[r] = _mm256_add_epi64(hi[r], _mm256_cvtepi32_epi64(_mm256_extracti128_si256(s[r], 1)));
    }
  }
  for (int32_t r = 0; r < rows; r++) {
    int64_t acc[8];
    _mm256_storeu_si256((__m256i*)acc, lo[r]);
    _mm256_storeu_si256((__m256i*)(acc + 4), hi[r]);
    const size_t count = n - col0 < 8 ? n - col0 : 8;
    for (size_t j = 0; j < count; j++) acc[j] += c->bias[col0 + j];
    octet_a16_requant_store(c, acc, col0, count, out, (size_t)r * n + col0);
  }
}

AVX2 void octet_a16_gemm__avx2(const octet_a16_conv* c, const int16_t* a, int32_t rows, void* out) {
  const size_t kp = (size_t)c->kp, n = (size_t)c->out_c;
  const size_t esize = c->out_bits == 16 ? 2 : 1;
  for (int32_t r0 = 0; r0 < rows; r0 += 4) {
    const int32_t tile_rows = rows - r0 < 4 ? rows - r0 : 4;
    // A full tile with the row count a constant, so its four sums stay in registers.
    for (size_t col0 = 0; col0 < n; col0 += 8) {
      if (tile_rows == 4)
        tile(c, a + (size_t)r0 * kp, 4, col0, (uint8_t*)out + (size_t)r0 * n * esize);
      else
        tile(c, a + (size_t)r0 * kp, tile_rows, col0, (uint8_t*)out + (size_t)r0 * n * esize);
    }
  }
}
#else
#include "common.h"
void octet_a16_gemm__avx2(const octet_a16_conv* c, const int16_t* a, int32_t rows, void* out) {
  octet_a16_gemm__scalar(c, a, rows, out);
}
#endif
