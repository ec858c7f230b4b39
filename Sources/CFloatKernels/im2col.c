#include <string.h>
#include "common.h"

void octet_f32_im2col_nhwc(const octet_f32_window* w, const float* input, int32_t channel_offset,
                           int32_t channels, size_t first_row, size_t row_count, float* cols) {
  const size_t pixels_per_image = (size_t)w->out_h * (size_t)w->out_w;
  const size_t image_stride = (size_t)w->in_h * (size_t)w->in_w * (size_t)w->in_stride;
  const size_t tap_run = (size_t)w->kernel_w * (size_t)channels;
  const size_t k = (size_t)w->kernel_h * tap_run;
  // When the taps of one kernel row are adjacent pixels holding every channel, a whole kernel row
  // is one contiguous run of input (the common case: dense conv, dilation 1).
  const int contiguous_row = w->dilation_w == 1 && channels == w->in_stride;

  for (size_t r = 0; r < row_count; r++) {
    const size_t row = first_row + r;
    const size_t n = row / pixels_per_image;
    const size_t pixel = row % pixels_per_image;
    const int32_t oh = (int32_t)(pixel / (size_t)w->out_w);
    const int32_t ow = (int32_t)(pixel % (size_t)w->out_w);
    const int32_t ih0 = oh * w->stride_h - w->pad_top;
    const int32_t iw0 = ow * w->stride_w - w->pad_left;
    const float* image = input + n * image_stride + channel_offset;
    float* dst = cols + r * k;

    const int32_t kw_begin = octet_first_valid_tap(iw0, w->dilation_w);
    const int32_t kw_end = octet_end_valid_tap(iw0, w->dilation_w, w->kernel_w, w->in_w);
    for (int32_t kh = 0; kh < w->kernel_h; kh++, dst += tap_run) {
      const int32_t ih = ih0 + kh * w->dilation_h;
      if (ih < 0 || ih >= w->in_h || kw_begin >= kw_end) {
        memset(dst, 0, tap_run * sizeof(float));
        continue;
      }
      const float* src_row = image + (size_t)ih * (size_t)w->in_w * (size_t)w->in_stride;
      if (kw_begin > 0) memset(dst, 0, (size_t)kw_begin * (size_t)channels * sizeof(float));
      if (contiguous_row) {
        const int32_t iw = iw0 + kw_begin;
        memcpy(dst + (size_t)kw_begin * (size_t)channels, src_row + (size_t)iw * (size_t)channels,
               (size_t)(kw_end - kw_begin) * (size_t)channels * sizeof(float));
      } else {
        for (int32_t kw = kw_begin; kw < kw_end; kw++) {
          const int32_t iw = iw0 + kw * w->dilation_w;
          memcpy(dst + (size_t)kw * (size_t)channels, src_row + (size_t)iw * (size_t)w->in_stride,
                 (size_t)channels * sizeof(float));
        }
      }
      if (kw_end < w->kernel_w)
        memset(dst + (size_t)kw_end * (size_t)channels, 0,
               (size_t)(w->kernel_w - kw_end) * (size_t)channels * sizeof(float));
    }
  }
}
