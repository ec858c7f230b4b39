#include "common.h"

void octet_f32_maxpool_nhwc(const octet_f32_window* w, const float* input, float* output) {
  const size_t c_count = (size_t)w->in_stride;
  const size_t image_in = (size_t)w->in_h * (size_t)w->in_w * c_count;
  for (int32_t n = 0; n < w->batch; n++) {
    const float* image = input + (size_t)n * image_in;
    for (int32_t oh = 0; oh < w->out_h; oh++) {
      const int32_t ih0 = oh * w->stride_h - w->pad_top;
      const int32_t kh_begin = octet_first_valid_tap(ih0, w->dilation_h);
      const int32_t kh_end = octet_end_valid_tap(ih0, w->dilation_h, w->kernel_h, w->in_h);
      for (int32_t ow = 0; ow < w->out_w; ow++, output += c_count) {
        const int32_t iw0 = ow * w->stride_w - w->pad_left;
        const int32_t kw_begin = octet_first_valid_tap(iw0, w->dilation_w);
        const int32_t kw_end = octet_end_valid_tap(iw0, w->dilation_w, w->kernel_w, w->in_w);
        float* restrict dst = output;
        for (size_t c = 0; c < c_count; c++) dst[c] = -INFINITY;
        for (int32_t kh = kh_begin; kh < kh_end; kh++) {
          const int32_t ih = ih0 + kh * w->dilation_h;
          for (int32_t kw = kw_begin; kw < kw_end; kw++) {
            const int32_t iw = iw0 + kw * w->dilation_w;
            const float* restrict src =
                image + ((size_t)ih * (size_t)w->in_w + (size_t)iw) * c_count;
            for (size_t c = 0; c < c_count; c++) dst[c] = src[c] > dst[c] ? src[c] : dst[c];
          }
        }
      }
    }
  }
}

void octet_f32_global_avgpool_nhwc(const float* input, size_t batch, size_t pixels,
                                   size_t channels, float* output) {
  const float inv = 1.0f / (float)pixels;
  for (size_t n = 0; n < batch; n++) {
    const float* image = input + n * pixels * channels;
    float* restrict dst = output + n * channels;
    for (size_t c = 0; c < channels; c++) dst[c] = 0.0f;
    for (size_t p = 0; p < pixels; p++) {
      const float* restrict src = image + p * channels;
      for (size_t c = 0; c < channels; c++) dst[c] += src[c];
    }
    for (size_t c = 0; c < channels; c++) dst[c] *= inv;
  }
}
