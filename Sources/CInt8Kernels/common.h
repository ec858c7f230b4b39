// Shared scalar helpers of the int8 kernels: the arithmetic of docs/quantization.md, in C.
#pragma once
#include <stdint.h>
#include <string.h>
#include "CInt8Kernels.h"

/// §3: floor(acc * m / 2^n + 1/2), one rounding, 64-bit (n in 1...62).
static inline int64_t octet_requant(int32_t acc, int32_t m, int32_t n) {
  return ((int64_t)acc * (int64_t)m + ((int64_t)1 << (n - 1))) >> n;
}

/// §3/§8: floor(x / 2^n + 1/2) for any 64-bit x, without overflow.
static inline int64_t octet_round_shift(int64_t x, int32_t n) {
  return (x >> n) + ((x >> (n - 1)) & 1);
}

static inline int64_t octet_clamp64(int64_t y, int64_t lo, int64_t hi) {
  return y < lo ? lo : (y > hi ? hi : y);
}

/// The whole epilogue for one accumulator of column c; `r` is the residual code (ignored without one).
static inline int32_t octet_epilogue_value(int32_t acc, size_t c, const octet_i8_epilogue* ep, uint8_t r) {
  int64_t y = octet_requant(acc, ep->multiplier[c], ep->shift[c]);
  if (ep->int32_output) return (int32_t)octet_clamp64(y, INT32_MIN, INT32_MAX);
  y = octet_clamp64(y + ep->out_zero_point, ep->lo, ep->hi);
  if (ep->residual == NULL) return (int32_t)y;
  const int64_t x = (y - ep->out_zero_point) * (int64_t)ep->add_mult_conv +
                    ((int64_t)r - ep->residual_zero_point) * (int64_t)ep->add_mult_residual;
  return (int32_t)octet_clamp64(octet_round_shift(x, ep->add_shift) + ep->add_zero_point, ep->add_lo,
                                ep->add_hi);
}

static inline size_t octet_round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static inline int32_t octet_load_i32(const void* p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

/// §17: clamp(floor((acc·m + 2^(n-1)) / 2^n) + z, lo, hi), the product exact in 128 bits
/// (RequantMultiplier.applyWide's arithmetic; lo and hi are within int16, so its ±2^62 clamp
/// changes nothing). When acc fits in int32 (most outputs), acc·m + 2^(n-1) < 2^62 + 2^61 is exact
/// in 64 bits and this is §3's octet_requant: the same value with one 64-bit multiply.
static inline int32_t octet_a16_requant_value(int64_t acc, int32_t m, int32_t n, int32_t z, int32_t lo, int32_t hi) {
  if (acc == (int64_t)(int32_t)acc) return (int32_t)octet_clamp64(octet_requant((int32_t)acc, m, n) + z, lo, hi);
  const __int128 y = (((__int128)acc * m + ((__int128)1 << (n - 1))) >> n) + z;
  return y < lo ? lo : (y > hi ? hi : (int32_t)y);
}

static inline int32_t octet_a16_requant(int64_t acc, size_t col, const octet_a16_conv* c) {
  return octet_a16_requant_value(acc, c->multiplier[col], c->shift[col], c->z_out, c->lo, c->hi);
}

static inline void octet_a16_store(const octet_a16_conv* c, void* out, size_t i, int32_t v) {
  if (c->out_bits == 16)
    ((int16_t*)out)[i] = (int16_t)v;
  else
    ((uint8_t*)out)[i] = (uint8_t)v;
}

/// octet_a16_requant for `count` (at most 8) consecutive columns from col0, stored at out[i0...].
/// The parameters are read once into locals and the codes gathered before one copy out: stores
/// through uint8_t may alias anything, which would make the compiler reload every parameter per
/// value.
static inline void octet_a16_requant_store(const octet_a16_conv* c, const int64_t* acc, size_t col0, size_t count,
                                           void* out, size_t i0) {
  const int32_t z = c->z_out, lo = c->lo, hi = c->hi;
  const int32_t* mul = c->multiplier + col0;
  const int32_t* sh = c->shift + col0;
  int32_t v[8];
  for (size_t j = 0; j < count; j++) v[j] = octet_a16_requant_value(acc[j], mul[j], sh[j], z, lo, hi);
  if (c->out_bits == 16) {
    int16_t b[8];
    for (size_t j = 0; j < count; j++) b[j] = (int16_t)v[j];
    memcpy((int16_t*)out + i0, b, count * sizeof b[0]);
  } else {
    uint8_t b[8];
    for (size_t j = 0; j < count; j++) b[j] = (uint8_t)v[j];
    memcpy((uint8_t*)out + i0, b, count);
  }
}

/// A 16-bit-input layer's input code i (uint8 or int16 by in_bits).
static inline int32_t octet_a16_load_code(const octet_a16_conv* c, const void* in, size_t i) {
  return c->in_bits == 16 ? (int32_t)((const int16_t*)in)[i] : (int32_t)((const uint8_t*)in)[i];
}

/// The depthwise accumulator of channel q at output (oy, ox): bias + Σ_taps x·w in int64, taps
/// outside the input reading z_in; weights [kh·kw][C]. The scalar kernel and the vector kernels'
/// channel tails.
static inline int64_t octet_a16_dw_acc(const octet_a16_conv* c, const void* in, int32_t oy, int32_t ox, size_t q) {
  const size_t ch = (size_t)c->out_c;
  int64_t acc = c->bias[q];
  for (int32_t ky = 0; ky < c->kernel_h; ky++) {
    const int32_t iy = oy * c->stride_h - c->pad_top + ky;
    for (int32_t kx = 0; kx < c->kernel_w; kx++) {
      const int32_t ix = ox * c->stride_w - c->pad_left + kx;
      const int inside = iy >= 0 && iy < c->in_h && ix >= 0 && ix < c->in_w;
      const int32_t x =
          inside ? octet_a16_load_code(c, in, ((size_t)iy * (size_t)c->in_w + (size_t)ix) * ch + q) : c->z_in;
      acc += (int64_t)x * c->weights[(size_t)(ky * c->kernel_w + kx) * ch + q];
    }
  }
  return acc;
}
