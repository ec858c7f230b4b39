// Per-channel output clamp (docs/quantization.md §7.1): a post-pass over a layer's uint8 output
// [rows][channels], out = min(max(q, lo[c]), hi[c]). The GEMM and depthwise epilogues clamp to the
// node's clamp, the hull of every channel's [lo[c], hi[c]]; a clamp inside a wider clamp is the
// inner one, so this pass gives the reference's per-channel clamp exactly.
#include "common.h"

void octet_i8_channel_clamp(uint8_t* data, size_t rows, size_t channels, const uint8_t* lo, const uint8_t* hi) {
  for (size_t r = 0; r < rows; r++) {
    uint8_t* row = data + r * channels;
    for (size_t c = 0; c < channels; c++) {
      uint8_t v = row[c];
      if (v < lo[c]) v = lo[c];
      if (v > hi[c]) v = hi[c];
      row[c] = v;
    }
  }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2")))

AVX2 void octet_i8_channel_clamp__avx2(uint8_t* data, size_t rows, size_t channels, const uint8_t* lo,
                                       const uint8_t* hi) {
  for (size_t r = 0; r < rows; r++) {
    uint8_t* row = data + r * channels;
    size_t c = 0;
    for (; c + 32 <= channels; c += 32) {
      __m256i v = _mm256_loadu_si256((const __m256i*)(row + c));
      v = _mm256_max_epu8(v, _mm256_loadu_si256((const __m256i*)(lo + c)));
      v = _mm256_min_epu8(v, _mm256_loadu_si256((const __m256i*)(hi + c)));
      _mm256_storeu_si256((__m256i*)(row + c), v);
    }
    for (; c + 16 <= channels; c += 16) {
      __m128i v = _mm_loadu_si128((const __m128i*)(row + c));
      v = _mm_max_epu8(v, _mm_loadu_si128((const __m128i*)(lo + c)));
      v = _mm_min_epu8(v, _mm_loadu_si128((const __m128i*)(hi + c)));
      _mm_storeu_si128((__m128i*)(row + c), v);
    }
    for (; c < channels; c++) {
      uint8_t v = row[c];
      if (v < lo[c]) v = lo[c];
      if (v > hi[c]) v = hi[c];
      row[c] = v;
    }
  }
}
#endif
