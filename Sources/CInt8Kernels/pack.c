// Packing: weights once at model load, activations (im2col) per layer. Layouts: CInt8Kernels.h.
#include <stdlib.h>
#include <string.h>
#include "common.h"

size_t octet_i8_k_align(octet_i8_isa isa) {
  switch (isa) {
    case OCTET_I8_AVX2: return 2;
    case OCTET_I8_AMX: return 64;
    default: return 4;
  }
}

size_t octet_i8_packed_b_size(octet_i8_isa isa, size_t k, size_t n) {
  const size_t kp = octet_round_up(k, octet_i8_k_align(isa));
  const size_t np = octet_round_up(n, OCTET_I8_NR);
  return kp * np * (isa == OCTET_I8_AVX2 ? 2 : 1);
}

void octet_i8_pack_b(octet_i8_isa isa, const int8_t* w, size_t k, size_t n, void* packed) {
  const size_t kp = octet_round_up(k, octet_i8_k_align(isa));
  const size_t panels = octet_round_up(n, OCTET_I8_NR) / OCTET_I8_NR;
  if (isa == OCTET_I8_AVX2) {
    // [panel][k / 2][16 columns][2]: one ymm holds 8 columns x 2 k as int16 pairs for vpmaddwd.
    int16_t* p = packed;
    for (size_t panel = 0; panel < panels; panel++)
      for (size_t kq = 0; kq < kp / 2; kq++)
        for (size_t j = 0; j < OCTET_I8_NR; j++)
          for (size_t t = 0; t < 2; t++) {
            const size_t col = panel * OCTET_I8_NR + j, kk = kq * 2 + t;
            *p++ = (col < n && kk < k) ? w[col * k + kk] : 0;
          }
  } else {
    // [panel][k / 4][16 columns][4]: vpdpbusd's and tdpbusd's B layout.
    int8_t* p = packed;
    for (size_t panel = 0; panel < panels; panel++)
      for (size_t kg = 0; kg < kp / 4; kg++)
        for (size_t j = 0; j < OCTET_I8_NR; j++)
          for (size_t t = 0; t < 4; t++) {
            const size_t col = panel * OCTET_I8_NR + j, kk = kg * 4 + t;
            *p++ = (col < n && kk < k) ? w[col * k + kk] : 0;
          }
  }
}

size_t octet_i8_packed_a_size(octet_i8_isa isa, size_t rows, size_t k) {
  const size_t kp = octet_round_up(k, octet_i8_k_align(isa));
  return rows * kp * (isa == OCTET_I8_AVX2 ? 2 : 1);
}

// One im2col row (output pixel `row`) into `dst` [kp], zero past K. T is uint8_t or int16_t; for
// int16 the copy widens, which the compiler vectorizes with the function's target ISA.
#define OCTET_GATHER_ROW(NAME, T, ATTR)                                                        \
  ATTR static void NAME(const octet_i8_window* w, const uint8_t* input, size_t row, T* dst,  \
                        size_t kp) {                                                         \
    const int32_t oy = (int32_t)(row / (size_t)w->out_w), ox = (int32_t)(row % (size_t)w->out_w); \
    const int32_t c = w->channels;                                                           \
    const T zp = (T)w->zero_point;                                                           \
    const int32_t ix0 = ox * w->stride_w - w->pad_left;                                      \
    const int32_t run = w->kernel_w * c;                                                     \
    size_t k = 0;                                                                            \
    for (int32_t ky = 0; ky < w->kernel_h; ky++) {                                           \
      const int32_t iy = oy * w->stride_h - w->pad_top + ky;                                 \
      T* d = dst + k;                                                                        \
      k += (size_t)run;                                                                      \
      if (iy < 0 || iy >= w->in_h) {                                                         \
        for (int32_t i = 0; i < run; i++) d[i] = zp;                                         \
        continue;                                                                            \
      }                                                                                      \
      const uint8_t* s = input + (size_t)iy * (size_t)w->in_w * (size_t)c;                   \
      if (ix0 >= 0 && ix0 + w->kernel_w <= w->in_w) {                                        \
        /* The whole kernel row lies inside: kw pixels are contiguous in NHWC. */            \
        s += (size_t)ix0 * (size_t)c;                                                        \
        for (int32_t i = 0; i < run; i++) d[i] = (T)s[i];                                    \
        continue;                                                                            \
      }                                                                                      \
      for (int32_t kx = 0; kx < w->kernel_w; kx++, d += c) {                                 \
        const int32_t ix = ix0 + kx;                                                         \
        if (ix >= 0 && ix < w->in_w) {                                                       \
          const uint8_t* p = s + (size_t)ix * (size_t)c;                                     \
          for (int32_t i = 0; i < c; i++) d[i] = (T)p[i];                                    \
        } else {                                                                             \
          for (int32_t i = 0; i < c; i++) d[i] = zp;                                         \
        }                                                                                    \
      }                                                                                      \
    }                                                                                        \
    for (; k < kp; k++) dst[k] = 0;                                                          \
  }

OCTET_GATHER_ROW(gather_row_u8, uint8_t, )
#if defined(__x86_64__)
OCTET_GATHER_ROW(gather_row_i16, int16_t, __attribute__((target("avx2"))))
#else
OCTET_GATHER_ROW(gather_row_i16, int16_t, )
#endif

void octet_i8_pack_a(octet_i8_isa isa, const octet_i8_window* w, const uint8_t* input, size_t row0,
                     size_t rows, void* packed) {
  const size_t k = (size_t)w->kernel_h * (size_t)w->kernel_w * (size_t)w->channels;
  const size_t kp = octet_round_up(k, octet_i8_k_align(isa));
  if (isa == OCTET_I8_AVX2) {
    int16_t* p = packed;
    for (size_t r = 0; r < rows; r++) gather_row_i16(w, input, row0 + r, p + r * kp, kp);
  } else {
    uint8_t* p = packed;
    for (size_t r = 0; r < rows; r++) gather_row_u8(w, input, row0 + r, p + r * kp, kp);
  }
}

void octet_i8_pad_image(const uint8_t* input, int32_t in_h, int32_t in_w, int32_t channels,
                        int32_t top, int32_t left, int32_t bottom, int32_t right, uint8_t zero_point,
                        uint8_t* padded) {
  const size_t pw = (size_t)(in_w + left + right), c = (size_t)channels;
  const size_t ph = (size_t)(in_h + top + bottom);
  memset(padded, zero_point, ph * pw * c);
  for (int32_t y = 0; y < in_h; y++)
    memcpy(padded + (((size_t)(y + top)) * pw + (size_t)left) * c, input + (size_t)y * (size_t)in_w * c,
           (size_t)in_w * c);
}
