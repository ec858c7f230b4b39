// Depthwise convolutions with a 16-bit input or output on AVX2 (docs/quantization.md §17): four
// channels per vector in int64 lanes. Each tap's codes and weights are sign-extended (uint8 input
// zero-extended) to 64-bit lanes and multiplied by vpmuldq, which takes the low 32 bits of each
// lane as signed: |x| <= 32768 and |w| <= 32767, so every product is exact, and so is every int64
// sum. Integer addition is associative, so each channel's accumulator equals the scalar twin's
// (octet_a16_dw_acc, qs16-conv-scalar.c), which also runs the channels past a multiple of four;
// the epilogue is the same C function.
#if defined(__x86_64__)
#include <immintrin.h>
#include "common.h"

#define AVX2 __attribute__((target("avx2")))

/// Four input codes from element i on, each in a 64-bit lane.
AVX2 static inline __m256i load4(const octet_a16_conv* c, const void* in, size_t i) {
  if (c->in_bits == 16) return _mm256_cvtepi16_epi64(_mm_loadl_epi64((const __m128i*)((const int16_t*)in + i)));
  return _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(octet_load_i32((const uint8_t*)in + i)));
}

AVX2 void octet_a16_dwconv__avx2(const octet_a16_conv* c, const void* in, int32_t oy0, int32_t oy1, void* out) {
  const size_t ch = (size_t)c->out_c;
  const size_t vec = ch / 4 * 4;
  const __m256i zin = _mm256_set1_epi64x(c->z_in);
  for (int32_t oy = oy0; oy < oy1; oy++)
    for (int32_t ox = 0; ox < c->out_w; ox++) {
      const size_t o = ((size_t)oy * (size_t)c->out_w + (size_t)ox) * ch;
      for (size_t q = 0; q < vec; q += 4) {
        __m256i acc = _mm256_loadu_si256((const __m256i*)(c->bias + q));
        for (int32_t ky = 0; ky < c->kernel_h; ky++) {
          const int32_t iy = oy * c->stride_h - c->pad_top + ky;
          for (int32_t kx = 0; kx < c->kernel_w; kx++) {
            const int32_t ix = ox * c->stride_w - c->pad_left + kx;
            const int inside = iy >= 0 && iy < c->in_h && ix >= 0 && ix < c->in_w;
            const __m256i x = inside ? load4(c, in, ((size_t)iy * (size_t)c->in_w + (size_t)ix) * ch + q) : zin;
            const __m256i w = _mm256_cvtepi16_epi64(
                _mm_loadl_epi64((const __m128i*)(c->weights + (size_t)(ky * c->kernel_w + kx) * ch + q)));
            acc = _mm256_add_epi64(acc, _mm256_mul_epi32(x, w));
          }
        }
        int64_t a[4];
        _mm256_storeu_si256((__m256i*)a, acc);
        octet_a16_requant_store(c, a, q, 4, out, o + q);
      }
      for (size_t q = vec; q < ch; q++)
        octet_a16_store(c, out, o + q, octet_a16_requant(octet_a16_dw_acc(c, in, oy, ox, q), q, c));
    }
}
#else
#include "common.h"
void octet_a16_dwconv__avx2(const octet_a16_conv* c, const void* in, int32_t oy0, int32_t oy1, void* out) {
  octet_a16_dwconv__scalar(c, in, oy0, oy1, out);
}
#endif
