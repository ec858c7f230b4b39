// Input quantization on AVX2 (octet_i8_quantize_input__avx2), 8 floats at a time.
#if defined(__x86_64__)
#include <immintrin.h>
#include "common.h"

#define AVX2 __attribute__((target("avx2")))

// §12 as octet_i8_quantize_input: v = x / s (IEEE division, as in the scalar code), rounded half
// away from zero as roundf does: t = trunc(v), and t + copysign(1, v) when |v - t| >= 1/2 (v - t is
// exact; for |v| >= 2^23, v is already an integer and v - t = 0; for infinities v - t is NaN and
// the comparison false). Then + z, and NaN or negatives -> 0 (maxps returns its second operand
// when the first is NaN), >= 255 -> 255, truncated to uint8.
AVX2 void octet_i8_quantize_input__avx2(const float* x, size_t count, float scale, int32_t zero_point, uint8_t* out) {
  const __m256 s = _mm256_set1_ps(scale), z = _mm256_set1_ps((float)zero_point);
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.0f);
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), s);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 far = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), half, _CMP_GE_OQ);
    const __m256 step = _mm256_and_ps(far, _mm256_or_ps(_mm256_and_ps(v, sign), one));
    const __m256 w = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(_mm256_add_ps(t, step), z), zero), top);
    const __m256i q = _mm256_cvttps_epi32(w);
    const __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64((__m128i*)(out + i), _mm_packus_epi16(h, h));
  }
  if (i < count) octet_i8_quantize_input(x + i, count - i, scale, zero_point, out + i);
}
#endif
