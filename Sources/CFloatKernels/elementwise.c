#include "common.h"

void octet_f32_bias_residual_act(float* y, size_t rows, size_t cols, size_t ldy, const float* bias,
                                 const float* residual, size_t ldr, int32_t act) {
  float lo, hi;
  octet_f32_act_bounds(act, &lo, &hi);
  for (size_t r = 0; r < rows; r++) {
    float* restrict row = y + r * ldy;
    if (bias != NULL)
      for (size_t c = 0; c < cols; c++) row[c] += bias[c];
    if (residual != NULL) {
      const float* restrict res = residual + r * ldr;
      for (size_t c = 0; c < cols; c++) row[c] += res[c];
    }
    if (act != OCTET_F32_ACT_NONE)
      for (size_t c = 0; c < cols; c++) row[c] = octet_f32_clamp(row[c], lo, hi);
  }
}

void octet_f32_add_act(const float* a, const float* b, float* y, size_t count, int32_t act) {
  float lo, hi;
  octet_f32_act_bounds(act, &lo, &hi);
  if (act == OCTET_F32_ACT_NONE) {
    for (size_t i = 0; i < count; i++) y[i] = a[i] + b[i];
  } else {
    for (size_t i = 0; i < count; i++) y[i] = octet_f32_clamp(a[i] + b[i], lo, hi);
  }
}

void octet_f32_act_inplace(float* y, size_t count, int32_t act) {
  if (act == OCTET_F32_ACT_NONE) return;
  float lo, hi;
  octet_f32_act_bounds(act, &lo, &hi);
  for (size_t i = 0; i < count; i++) y[i] = octet_f32_clamp(y[i], lo, hi);
}

void octet_f32_scale_shift(const float* x, const float* scale, const float* shift, float* y,
                           size_t rows, size_t channels) {
  for (size_t r = 0; r < rows; r++) {
    const float* restrict src = x + r * channels;
    float* restrict dst = y + r * channels;
    for (size_t c = 0; c < channels; c++) dst[c] = src[c] * scale[c] + shift[c];
  }
}
