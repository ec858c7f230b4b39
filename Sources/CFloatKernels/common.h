// Shared inline helpers for the CFloatKernels translation units (not part of the public header).
#pragma once
#include <math.h>
#include "CFloatKernels.h"

/// Bounds of the clamp that implements an activation; `none` is (-inf, +inf).
static inline void octet_f32_act_bounds(int32_t act, float* lo, float* hi) {
  *lo = act == OCTET_F32_ACT_NONE ? -INFINITY : 0.0f;
  *hi = act == OCTET_F32_ACT_RELU6 ? 6.0f : INFINITY;
}

static inline float octet_f32_clamp(float v, float lo, float hi) {
  // Written as compares (not fmaxf/fminf) so NaN passes through unchanged and the loops vectorize.
  // The AVX2 kernels match this with _mm256_min_ps(hi, _mm256_max_ps(lo, v)): maxps/minps return
  // their second operand when either is NaN.
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

static inline int32_t octet_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t octet_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }

/// First tap t >= 0 with 0 <= origin + t * dilation (i.e. inside the input from the start).
static inline int32_t octet_first_valid_tap(int32_t origin, int32_t dilation) {
  return origin >= 0 ? 0 : (-origin + dilation - 1) / dilation;
}

/// One past the last tap t < taps with origin + t * dilation < extent.
static inline int32_t octet_end_valid_tap(int32_t origin, int32_t dilation, int32_t taps,
                                          int32_t extent) {
  if (origin >= extent) return 0;
  int32_t end = (extent - 1 - origin) / dilation + 1;
  return end < taps ? end : taps;
}
