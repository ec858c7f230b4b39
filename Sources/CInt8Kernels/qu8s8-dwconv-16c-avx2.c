// Depthwise convolution (channel multiplier 1) on AVX2 (octet_i8_dwconv__avx2): 16 channels at a
// time, each tap's u8 x s16 product exact in int16 (vpmullw), summed in int32; the epilogue per
// 8 channels. Any kernel size and stride; channels past the last multiple of 16 one at a time.
#if defined(__x86_64__)
#include "qu8-epilogue-avx2.h"

AVX2 void octet_i8_dwconv__avx2(const octet_i8_window* w, const uint8_t* padded, int32_t padded_w,
                                const int16_t* weights, const octet_i8_epilogue* ep, int32_t oy0,
                                int32_t oy1, uint8_t* out) {
  const size_t c = (size_t)w->channels, pw = (size_t)padded_w;
  const size_t taps = (size_t)(w->kernel_h * w->kernel_w);
  const ep_consts k = load_consts(ep);
  const size_t vec = c / 16 * 16;
  for (int32_t oy = oy0; oy < oy1; oy++) {
    for (size_t c0 = 0; c0 < vec; c0 += 16) {
      const cols8 p0 = load_cols8(ep, c0, k.fast), p1 = load_cols8(ep, c0 + 8, k.fast);
      const __m256i bias0 = _mm256_loadu_si256((const __m256i*)(ep->bias + c0));
      const __m256i bias1 = _mm256_loadu_si256((const __m256i*)(ep->bias + c0 + 8));
      for (int32_t ox = 0; ox < w->out_w; ox++) {
        __m256i acc0 = bias0, acc1 = bias1;
        const uint8_t* base = padded + ((size_t)(oy * w->stride_h) * pw + (size_t)(ox * w->stride_w)) * c + c0;
        for (int32_t ky = 0; ky < w->kernel_h; ky++)
          for (int32_t kx = 0; kx < w->kernel_w; kx++) {
            const size_t tap = (size_t)(ky * w->kernel_w + kx);
            const __m256i x = _mm256_cvtepu8_epi16(
                _mm_loadu_si128((const __m128i*)(base + ((size_t)ky * pw + (size_t)kx) * c)));
            const __m256i wv = _mm256_loadu_si256((const __m256i*)(weights + tap * c + c0));
            // |x * w| <= 255 * 127 < 2^15: the int16 product is exact.
            const __m256i prod = _mm256_mullo_epi16(x, wv);
            acc0 = _mm256_add_epi32(acc0, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(prod)));
            acc1 = _mm256_add_epi32(acc1, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(prod, 1)));
          }
        (void)taps;
        const size_t pixel = (size_t)oy * (size_t)w->out_w + (size_t)ox;
        const uint8_t* res = k.residual ? ep->residual + pixel * ep->ld_residual + c0 : NULL;
        uint8_t* dst = out + pixel * c + c0;
        finish8(acc0, &p0, &k, 0, res, dst);
        finish8(acc1, &p1, &k, 0, res ? res + 8 : NULL, dst + 8);
      }
    }
    // Channels past the last multiple of 16, one at a time.
    for (size_t ch = vec; ch < c; ch++)
      for (int32_t ox = 0; ox < w->out_w; ox++) {
        uint32_t acc = (uint32_t)ep->bias[ch];
        for (int32_t ky = 0; ky < w->kernel_h; ky++)
          for (int32_t kx = 0; kx < w->kernel_w; kx++) {
            const size_t iy = (size_t)(oy * w->stride_h + ky), ix = (size_t)(ox * w->stride_w + kx);
            acc += (uint32_t)((int32_t)padded[(iy * pw + ix) * c + ch] *
                              (int32_t)weights[(size_t)(ky * w->kernel_w + kx) * c + ch]);
          }
        const size_t pixel = (size_t)oy * (size_t)w->out_w + (size_t)ox;
        const uint8_t r = ep->residual ? ep->residual[pixel * ep->ld_residual + ch] : 0;
        out[pixel * c + ch] = (uint8_t)octet_epilogue_value((int32_t)acc, ch, ep, r);
      }
  }
}
#endif
