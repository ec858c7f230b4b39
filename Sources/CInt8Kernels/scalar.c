// Portable scalar kernels: the fast runtime's fallback, and (through the packed layouts they share
// with AVX-512 VNNI and AMX) the proof on any machine that those layouts are right.
#include <math.h>
#include <stdlib.h>
#include "common.h"

void octet_i8_epilogue__scalar(const int32_t* acc, size_t ld_acc, size_t row0, size_t rows, size_t n0,
                               size_t cols, const octet_i8_epilogue* ep, void* out, size_t ldc) {
  for (size_t r = 0; r < rows; r++) {
    const size_t row = row0 + r;
    const uint8_t* res = ep->residual ? ep->residual + row * ep->ld_residual : NULL;
    for (size_t j = 0; j < cols; j++) {
      const size_t c = n0 + j;
      const int32_t y = octet_epilogue_value(acc[r * ld_acc + j], c, ep, res ? res[c] : 0);
      if (ep->int32_output)
        ((int32_t*)out)[row * ldc + c] = y;
      else
        ((uint8_t*)out)[row * ldc + c] = (uint8_t)y;
    }
  }
}

void octet_i8_gemm__scalar(const uint8_t* a, size_t lda, const int8_t* b, size_t kp, size_t n,
                           size_t m0, size_t m1, size_t n0, size_t n1, const octet_i8_epilogue* ep,
                           void* out, size_t ldc) {
  (void)n;
  int32_t acc[OCTET_I8_NR];
  for (size_t p0 = n0; p0 < n1; p0 += OCTET_I8_NR) {
    const int8_t* panel = b + (p0 / OCTET_I8_NR) * kp * OCTET_I8_NR;
    const size_t cols = n1 - p0 < OCTET_I8_NR ? n1 - p0 : OCTET_I8_NR;
    for (size_t m = m0; m < m1; m++) {
      const uint8_t* row = a + m * lda;
      for (size_t j = 0; j < cols; j++) acc[j] = ep->bias[p0 + j];
      for (size_t kg = 0; kg < kp / 4; kg++) {
        const uint8_t* x = row + kg * 4;
        const int8_t* w = panel + kg * 4 * OCTET_I8_NR;
        for (size_t j = 0; j < cols; j++) {
          // Wrapping int32 sums, like the reference: the quantizer bounds the true sum (§14).
          int32_t s = 0;
          for (size_t t = 0; t < 4; t++) s += (int32_t)x[t] * (int32_t)w[j * 4 + t];
          acc[j] = (int32_t)((uint32_t)acc[j] + (uint32_t)s);
        }
      }
      octet_i8_epilogue__scalar(acc, 0, m, 1, p0, cols, ep, out, ldc);
    }
  }
}

void octet_i8_dwconv__scalar(const octet_i8_window* w, const uint8_t* padded, int32_t padded_w,
                             const int8_t* weights, const octet_i8_epilogue* ep, int32_t oy0,
                             int32_t oy1, uint8_t* out) {
  const size_t c = (size_t)w->channels, pw = (size_t)padded_w;
  for (int32_t oy = oy0; oy < oy1; oy++)
    for (int32_t ox = 0; ox < w->out_w; ox++) {
      const size_t pixel = (size_t)oy * (size_t)w->out_w + (size_t)ox;
      for (size_t ch = 0; ch < c; ch++) {
        uint32_t acc = (uint32_t)ep->bias[ch];
        for (int32_t ky = 0; ky < w->kernel_h; ky++)
          for (int32_t kx = 0; kx < w->kernel_w; kx++) {
            const size_t iy = (size_t)(oy * w->stride_h + ky), ix = (size_t)(ox * w->stride_w + kx);
            const size_t tap = (size_t)(ky * w->kernel_w + kx);
            acc += (uint32_t)((int32_t)padded[(iy * pw + ix) * c + ch] * (int32_t)weights[tap * c + ch]);
          }
        const uint8_t r = ep->residual ? ep->residual[pixel * ep->ld_residual + ch] : 0;
        out[pixel * c + ch] = (uint8_t)octet_epilogue_value((int32_t)acc, ch, ep, r);
      }
    }
}

void octet_i8_maxpool(const octet_i8_window* w, const uint8_t* input, uint8_t* out) {
  octet_i8_maxpool_rows(w, input, 0, w->out_h, out);
}

void octet_i8_maxpool_rows(const octet_i8_window* w, const uint8_t* input, int32_t oy0, int32_t oy1, uint8_t* out) {
  const size_t c = (size_t)w->channels;
  for (int32_t oy = oy0; oy < oy1; oy++)
    for (int32_t ox = 0; ox < w->out_w; ox++) {
      uint8_t* o = out + ((size_t)oy * (size_t)w->out_w + (size_t)ox) * c;
      // 64 channels at a time in a local block (no aliasing with the input), so the compiler
      // keeps the running maxima in vector registers across the window.
      for (size_t c0 = 0; c0 < c; c0 += 64) {
        const size_t n = c - c0 < 64 ? c - c0 : 64;
        uint8_t m[64] = {0};
        for (int32_t ky = 0; ky < w->kernel_h; ky++) {
          const int32_t iy = oy * w->stride_h - w->pad_top + ky;
          if (iy < 0 || iy >= w->in_h) continue;
          for (int32_t kx = 0; kx < w->kernel_w; kx++) {
            const int32_t ix = ox * w->stride_w - w->pad_left + kx;
            if (ix < 0 || ix >= w->in_w) continue;
            const uint8_t* x = input + ((size_t)iy * (size_t)w->in_w + (size_t)ix) * c + c0;
            if (n == 64)
              for (size_t ch = 0; ch < 64; ch++) m[ch] = x[ch] > m[ch] ? x[ch] : m[ch];
            else
              for (size_t ch = 0; ch < n; ch++) m[ch] = x[ch] > m[ch] ? x[ch] : m[ch];
          }
        }
        memcpy(o + c0, m, n);
      }
    }
}

void octet_i8_global_avgpool(const uint8_t* input, size_t pixels, size_t channels,
                             int32_t in_zero_point, int32_t multiplier, int32_t shift,
                             int32_t out_zero_point, uint8_t* out) {
  // Sums pixel by pixel over a block of channels (contiguous, vectorizable); int32 holds
  // 255 * pixels while pixels < 2^23, int64 beyond.
  enum { BLOCK = 256 };
  for (size_t c0 = 0; c0 < channels; c0 += BLOCK) {
    const size_t n = channels - c0 < BLOCK ? channels - c0 : BLOCK;
    int64_t sum[BLOCK];
    if (pixels < ((size_t)1 << 23)) {
      int32_t s32[BLOCK] = {0};
      for (size_t p = 0; p < pixels; p++) {
        const uint8_t* x = input + p * channels + c0;
        for (size_t ch = 0; ch < n; ch++) s32[ch] += x[ch];
      }
      for (size_t ch = 0; ch < n; ch++) sum[ch] = s32[ch];
    } else {
      for (size_t ch = 0; ch < n; ch++) sum[ch] = 0;
      for (size_t p = 0; p < pixels; p++)
        for (size_t ch = 0; ch < n; ch++) sum[ch] += input[p * channels + c0 + ch];
    }
    for (size_t ch = 0; ch < n; ch++) {
      const int64_t centered = sum[ch] - (int64_t)pixels * in_zero_point;
      const int64_t y = octet_round_shift(centered * (int64_t)multiplier, shift);
      out[c0 + ch] = (uint8_t)octet_clamp64(y + out_zero_point, 0, 255);
    }
  }
}

void octet_i8_add(const uint8_t* a, const uint8_t* b, size_t count, int32_t za, int32_t zb,
                  int32_t ma, int32_t mb, int32_t shift, int32_t zo, int32_t lo, int32_t hi,
                  uint8_t* out) {
  for (size_t i = 0; i < count; i++) {
    const int64_t x = ((int64_t)a[i] - za) * (int64_t)ma + ((int64_t)b[i] - zb) * (int64_t)mb;
    out[i] = (uint8_t)octet_clamp64(octet_round_shift(x, shift) + zo, lo, hi);
  }
}

int octet_i8_weights_fit_pairs(const int8_t* w, size_t k, size_t n) {
  for (size_t c = 0; c < n; c++)
    for (size_t j = 0; j < k; j += 2) {
      const int a = abs(w[c * k + j]), b = j + 1 < k ? abs(w[c * k + j + 1]) : 0;
      if (a + b > 128) return 0;
    }
  return 1;
}

void octet_i8_quantize_input(const float* x, size_t count, float scale, int32_t zero_point, uint8_t* out) {
  const float z = (float)zero_point;
  for (size_t i = 0; i < count; i++) {
    // §1/§12 exactly as ActivationQuantization.quantize: Float division, round half away from zero
    // (roundf), Float add; NaN and negatives -> 0, >= 255 -> 255.
    const float v = roundf(x[i] / scale) + z;
    out[i] = !(v >= 0) ? 0 : (v >= 255 ? 255 : (uint8_t)v);
  }
}

static inline uint8_t octet_pixel(float x, float a, float b) {
  const float v = x * a + b;  // no contraction into an FMA (FP_CONTRACT OFF below)
  // floor(v) for 0 < v < 255 is its truncation; NaN and v <= 0 give 0.
  return v > 0 ? (v < 255 ? (uint8_t)(int32_t)v : 255) : 0;
}

void octet_i8_input_pixels(const float* x, size_t count, const float* mean, const float* std, uint8_t* out) {
#pragma STDC FP_CONTRACT OFF
  // Blocks of 24 values (8 pixels) with the per-channel coefficients laid out alongside, so the
  // compiler vectorizes the block.
  float a[24], b[24];
  for (int j = 0; j < 24; j++) {
    a[j] = 255.0f * std[j % 3];
    b[j] = 255.0f * mean[j % 3] + 0.5f;
  }
  size_t i = 0;
  for (; i + 24 <= count; i += 24)
    for (int j = 0; j < 24; j++) out[i + (size_t)j] = octet_pixel(x[i + (size_t)j], a[j], b[j]);
  for (; i < count; i++) out[i] = octet_pixel(x[i], a[i % 3], b[i % 3]);
}

void octet_i8_conv_border(const octet_i8_window* w, const uint8_t* input, const int8_t* weights, size_t n,
                          const int32_t* class_bias, const int32_t* row_class, const int32_t* col_class,
                          int32_t col_classes, int32_t full_class, const octet_i8_epilogue* ep, uint8_t* out) {
  const size_t c_in = (size_t)w->channels;
  const size_t k = (size_t)(w->kernel_h * w->kernel_w) * c_in;
  for (int32_t oy = 0; oy < w->out_h; oy++)
    for (int32_t ox = 0; ox < w->out_w; ox++) {
      const int32_t cls = row_class[oy] * col_classes + col_class[ox];
      if (cls == full_class) continue;
      const size_t row = (size_t)oy * (size_t)w->out_w + (size_t)ox;
      const uint8_t* res = ep->residual ? ep->residual + row * ep->ld_residual : NULL;
      for (size_t j = 0; j < n; j++) {
        uint32_t acc = (uint32_t)class_bias[(size_t)cls * n + j];
        const int8_t* wj = weights + j * k;
        for (int32_t ky = 0; ky < w->kernel_h; ky++) {
          const int32_t iy = oy * w->stride_h - w->pad_top + ky;
          if (iy < 0 || iy >= w->in_h) continue;
          for (int32_t kx = 0; kx < w->kernel_w; kx++) {
            const int32_t ix = ox * w->stride_w - w->pad_left + kx;
            if (ix < 0 || ix >= w->in_w) continue;
            const uint8_t* x = input + ((size_t)iy * (size_t)w->in_w + (size_t)ix) * c_in;
            const int8_t* wt = wj + ((size_t)(ky * w->kernel_w + kx)) * c_in;
            for (size_t c = 0; c < c_in; c++) acc += (uint32_t)((int32_t)x[c] * (int32_t)wt[c]);
          }
        }
        out[row * n + j] = (uint8_t)octet_epilogue_value((int32_t)acc, j, ep, res ? res[j] : 0);
      }
    }
}
