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

/// §17: clamp(floor((acc·m + 2^(n-1)) / 2^n) + z_out, lo, hi), the product exact in 128 bits
/// (RequantMultiplier.applyWide's arithmetic; lo and hi are within int16, so its ±2^62 clamp
/// changes nothing).
static inline int32_t octet_a16_requant(int64_t acc, size_t col, const octet_a16_conv* c) {
  const int32_t n = c->shift[col];
  const __int128 x = (__int128)acc * c->multiplier[col] + ((__int128)1 << (n - 1));
  __int128 y = (x >> n) + c->z_out;
  if (y < c->lo) y = c->lo;
  if (y > c->hi) y = c->hi;
  return (int32_t)y;
}

static inline void octet_a16_store(const octet_a16_conv* c, void* out, size_t i, int32_t v) {
  if (c->out_bits == 16)
    ((int16_t*)out)[i] = (int16_t)v;
  else
    ((uint8_t*)out)[i] = (uint8_t)v;
}
