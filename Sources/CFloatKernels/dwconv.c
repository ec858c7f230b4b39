// Depthwise convolution (channel multiplier 1), NHWC. Channels are contiguous, so every kernel
// vectorizes across channels: for each output pixel and channel block, accumulate the valid taps
// (the window is clipped against the input, so padding costs nothing), then add the residual and
// clamp in registers before the single store.
#include "common.h"

#define OCTET_DW_BLOCK 32

static inline __attribute__((always_inline)) void octet_dw_block_portable(
    size_t nc, const float* image, size_t row_stride, size_t c_count, int32_t ih0, int32_t iw0,
    int32_t kh_begin, int32_t kh_end, int32_t kw_begin, int32_t kw_end, const octet_f32_window* w,
    const float* weight, const float* bias, const float* residual, float* dst, float lo, float hi) {
  float acc[OCTET_DW_BLOCK];
  for (size_t c = 0; c < nc; c++) acc[c] = bias != NULL ? bias[c] : 0.0f;
  for (int32_t kh = kh_begin; kh < kh_end; kh++) {
    const float* src_row = image + (size_t)(ih0 + kh * w->dilation_h) * row_stride;
    const float* w_row = weight + (size_t)kh * (size_t)w->kernel_w * c_count;
    for (int32_t kw = kw_begin; kw < kw_end; kw++) {
      const float* restrict src = src_row + (size_t)(iw0 + kw * w->dilation_w) * c_count;
      const float* restrict wt = w_row + (size_t)kw * c_count;
      for (size_t c = 0; c < nc; c++) acc[c] += src[c] * wt[c];
    }
  }
  if (residual != NULL)
    for (size_t c = 0; c < nc; c++) acc[c] += residual[c];
  for (size_t c = 0; c < nc; c++) dst[c] = octet_f32_clamp(acc[c], lo, hi);
}

void octet_f32_dwconv_nhwc__portable(const octet_f32_window* w, const float* input,
                                     const float* weight, const float* bias, const float* residual,
                                     float* output, int32_t act) {
  float lo, hi;
  octet_f32_act_bounds(act, &lo, &hi);
  const size_t c_count = (size_t)w->in_stride;
  const size_t row_stride = (size_t)w->in_w * c_count;
  const size_t image_in = (size_t)w->in_h * row_stride;
  size_t out_offset = 0;
  for (int32_t n = 0; n < w->batch; n++) {
    const float* image = input + (size_t)n * image_in;
    for (int32_t oh = 0; oh < w->out_h; oh++) {
      const int32_t ih0 = oh * w->stride_h - w->pad_top;
      const int32_t kh_begin = octet_first_valid_tap(ih0, w->dilation_h);
      const int32_t kh_end = octet_end_valid_tap(ih0, w->dilation_h, w->kernel_h, w->in_h);
      for (int32_t ow = 0; ow < w->out_w; ow++, out_offset += c_count) {
        const int32_t iw0 = ow * w->stride_w - w->pad_left;
        const int32_t kw_begin = octet_first_valid_tap(iw0, w->dilation_w);
        const int32_t kw_end = octet_end_valid_tap(iw0, w->dilation_w, w->kernel_w, w->in_w);
        for (size_t c0 = 0; c0 < c_count; c0 += OCTET_DW_BLOCK) {
          const float* res = residual != NULL ? residual + out_offset + c0 : NULL;
          const float* b = bias != NULL ? bias + c0 : NULL;
          if (c0 + OCTET_DW_BLOCK <= c_count) {
            // Constant trip count: the accumulators stay in registers.
            octet_dw_block_portable(OCTET_DW_BLOCK, image + c0, row_stride, c_count, ih0, iw0,
                                    kh_begin, kh_end, kw_begin, kw_end, w, weight + c0, b, res,
                                    output + out_offset + c0, lo, hi);
          } else {
            octet_dw_block_portable(c_count - c0, image + c0, row_stride, c_count, ih0, iw0,
                                    kh_begin, kh_end, kw_begin, kw_end, w, weight + c0, b, res,
                                    output + out_offset + c0, lo, hi);
          }
        }
      }
    }
  }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define OCTET_AVX2 __attribute__((target("avx2,fma")))

static const int32_t octet_dw_mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};

void OCTET_AVX2 octet_f32_dwconv_nhwc__avx2fma(const octet_f32_window* w, const float* input,
                                               const float* weight, const float* bias,
                                               const float* residual, float* output, int32_t act) {
  float lo_s, hi_s;
  octet_f32_act_bounds(act, &lo_s, &hi_s);
  const __m256 lo = _mm256_set1_ps(lo_s), hi = _mm256_set1_ps(hi_s);
  const int clamp = act != OCTET_F32_ACT_NONE;
  const size_t c_count = (size_t)w->in_stride;
  const size_t row_stride = (size_t)w->in_w * c_count;
  const size_t image_in = (size_t)w->in_h * row_stride;
  const size_t tap_row = (size_t)w->kernel_w * c_count;
  const size_t tail = c_count % 8;
  const __m256i tail_mask = _mm256_loadu_si256((const __m256i*)(octet_dw_mask_table + 8 - tail));
  size_t out_offset = 0;
  for (int32_t n = 0; n < w->batch; n++) {
    const float* image = input + (size_t)n * image_in;
    for (int32_t oh = 0; oh < w->out_h; oh++) {
      const int32_t ih0 = oh * w->stride_h - w->pad_top;
      const int32_t kh_begin = octet_first_valid_tap(ih0, w->dilation_h);
      const int32_t kh_end = octet_end_valid_tap(ih0, w->dilation_h, w->kernel_h, w->in_h);
      for (int32_t ow = 0; ow < w->out_w; ow++, out_offset += c_count) {
        const int32_t iw0 = ow * w->stride_w - w->pad_left;
        const int32_t kw_begin = octet_first_valid_tap(iw0, w->dilation_w);
        const int32_t kw_end = octet_end_valid_tap(iw0, w->dilation_w, w->kernel_w, w->in_w);
        float* dst = output + out_offset;
        const float* res = residual != NULL ? residual + out_offset : NULL;
        size_t c = 0;
        for (; c + 32 <= c_count; c += 32) {
          __m256 a0, a1, a2, a3;
          if (bias != NULL) {
            a0 = _mm256_loadu_ps(bias + c);
            a1 = _mm256_loadu_ps(bias + c + 8);
            a2 = _mm256_loadu_ps(bias + c + 16);
            a3 = _mm256_loadu_ps(bias + c + 24);
          } else {
            a0 = a1 = a2 = a3 = _mm256_setzero_ps();
          }
          for (int32_t kh = kh_begin; kh < kh_end; kh++) {
            const float* src_row = image + (size_t)(ih0 + kh * w->dilation_h) * row_stride + c;
            const float* w_row = weight + (size_t)kh * tap_row + c;
            for (int32_t kw = kw_begin; kw < kw_end; kw++) {
              const float* src = src_row + (size_t)(iw0 + kw * w->dilation_w) * c_count;
              const float* wt = w_row + (size_t)kw * c_count;
              a0 = _mm256_fmadd_ps(_mm256_loadu_ps(src), _mm256_loadu_ps(wt), a0);
              a1 = _mm256_fmadd_ps(_mm256_loadu_ps(src + 8), _mm256_loadu_ps(wt + 8), a1);
              a2 = _mm256_fmadd_ps(_mm256_loadu_ps(src + 16), _mm256_loadu_ps(wt + 16), a2);
              a3 = _mm256_fmadd_ps(_mm256_loadu_ps(src + 24), _mm256_loadu_ps(wt + 24), a3);
            }
          }
          if (res != NULL) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(res + c));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(res + c + 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(res + c + 16));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(res + c + 24));
          }
          if (clamp) {
            a0 = _mm256_min_ps(hi, _mm256_max_ps(lo, a0));
            a1 = _mm256_min_ps(hi, _mm256_max_ps(lo, a1));
            a2 = _mm256_min_ps(hi, _mm256_max_ps(lo, a2));
            a3 = _mm256_min_ps(hi, _mm256_max_ps(lo, a3));
          }
          _mm256_storeu_ps(dst + c, a0);
          _mm256_storeu_ps(dst + c + 8, a1);
          _mm256_storeu_ps(dst + c + 16, a2);
          _mm256_storeu_ps(dst + c + 24, a3);
        }
        // 8-channel blocks, then one masked block for the last C % 8 channels.
        for (; c < c_count; c += 8) {
          const int partial = c + 8 > c_count;
          const __m256i mask = partial ? tail_mask : _mm256_set1_epi32(-1);
          __m256 a0 = bias != NULL ? _mm256_maskload_ps(bias + c, mask) : _mm256_setzero_ps();
          for (int32_t kh = kh_begin; kh < kh_end; kh++) {
            const float* src_row = image + (size_t)(ih0 + kh * w->dilation_h) * row_stride + c;
            const float* w_row = weight + (size_t)kh * tap_row + c;
            for (int32_t kw = kw_begin; kw < kw_end; kw++) {
              const float* src = src_row + (size_t)(iw0 + kw * w->dilation_w) * c_count;
              const float* wt = w_row + (size_t)kw * c_count;
              a0 = _mm256_fmadd_ps(_mm256_maskload_ps(src, mask), _mm256_maskload_ps(wt, mask), a0);
            }
          }
          if (res != NULL) a0 = _mm256_add_ps(a0, _mm256_maskload_ps(res + c, mask));
          if (clamp) a0 = _mm256_min_ps(hi, _mm256_max_ps(lo, a0));
          _mm256_maskstore_ps(dst + c, mask, a0);
        }
      }
    }
  }
}
#endif
