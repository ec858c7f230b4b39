// The ONNX operators' integer kernels (docs/quantization.md §20-§23): lookup, mul, concat and the
// k x k average pool. Plain C loops the compiler vectorizes where it can; each computes exactly
// the reference's integers (OctetInt8/Int8ReferenceKernels+Elementwise.swift), on every backend.
#include "CInt8Kernels.h"
#include "common.h"

void octet_i8_lookup(const uint8_t* x, size_t count, const uint8_t* table, uint8_t* out) {
  for (size_t i = 0; i < count; i++) out[i] = table[x[i]];
}

// (q - z) values times each other fit 17 bits; the product with m < 2^31 fits int64 with room,
// so the rounding constant may be added before the shift (as RequantMultiplier.apply(Int32)).
static inline uint8_t requant_u8(int32_t acc, int32_t m, int32_t n, int32_t zo) {
  const int64_t y = ((int64_t)acc * m + ((int64_t)1 << (n - 1))) >> n;
  return (uint8_t)octet_clamp64(y + zo, 0, 255);
}

void octet_i8_mul(const uint8_t* a, const uint8_t* b, size_t count, int32_t za, int32_t zb, int32_t m,
                  int32_t shift, int32_t zo, uint8_t* out) {
  for (size_t i = 0; i < count; i++)
    out[i] = requant_u8(((int32_t)a[i] - za) * ((int32_t)b[i] - zb), m, shift, zo);
}

void octet_i8_mul_channels(const uint8_t* a, const uint8_t* b, size_t pixels, size_t channels, int32_t za,
                           int32_t zb, int32_t m, int32_t shift, int32_t zo, uint8_t* out) {
  for (size_t p = 0; p < pixels; p++) {
    const uint8_t* x = a + p * channels;
    uint8_t* o = out + p * channels;
    for (size_t c = 0; c < channels; c++)
      o[c] = requant_u8(((int32_t)x[c] - za) * ((int32_t)b[c] - zb), m, shift, zo);
  }
}

void octet_i8_concat_into(const uint8_t* x, size_t pixels, size_t channels, size_t offset, size_t total,
                          int32_t zi, int32_t m, int32_t shift, int32_t zo, int copy, uint8_t* out) {
  for (size_t p = 0; p < pixels; p++) {
    const uint8_t* in = x + p * channels;
    uint8_t* o = out + p * total + offset;
    if (copy) {
      for (size_t c = 0; c < channels; c++) o[c] = in[c];
    } else {
      for (size_t c = 0; c < channels; c++) o[c] = requant_u8((int32_t)in[c] - zi, m, shift, zo);
    }
  }
}

void octet_i8_avgpool_rows(const octet_i8_window* w, const uint8_t* in, int32_t oy0, int32_t oy1,
                           const int32_t* multipliers, const int32_t* shifts, int count_include_pad,
                           int32_t zo, int32_t* sum, uint8_t* out) {
  const int32_t c = w->channels;
  for (int32_t oy = oy0; oy < oy1; oy++) {
    for (int32_t ox = 0; ox < w->out_w; ox++) {
      for (int32_t k = 0; k < c; k++) sum[k] = 0;
      int32_t taps = 0;
      for (int32_t ky = 0; ky < w->kernel_h; ky++) {
        const int32_t iy = oy * w->stride_h - w->pad_top + ky;
        if (iy < 0 || iy >= w->in_h) continue;
        for (int32_t kx = 0; kx < w->kernel_w; kx++) {
          const int32_t ix = ox * w->stride_w - w->pad_left + kx;
          if (ix < 0 || ix >= w->in_w) continue;
          taps++;
          const uint8_t* x = in + ((size_t)iy * w->in_w + ix) * c;
          for (int32_t k = 0; k < c; k++) sum[k] += (int32_t)x[k] - w->zero_point;
        }
      }
      const int32_t t = (count_include_pad ? w->kernel_h * w->kernel_w : taps) - 1;
      uint8_t* o = out + ((size_t)oy * w->out_w + ox) * c;
      for (int32_t k = 0; k < c; k++) o[k] = requant_u8(sum[k], multipliers[t], shifts[t], zo);
    }
  }
}
