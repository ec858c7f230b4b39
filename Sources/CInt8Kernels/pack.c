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

// A run of n input bytes into a row of A. Runs shorter than 64 bytes move 16 (or 8) bytes at a
// time, the last move overlapping the previous one, so the stem's 7 x 3 = 21-byte runs take two
// moves instead of a byte loop: its packing went from 0.66 to 0.50 ms in L2-sized blocks.
static inline void copy_run_u8(uint8_t* d, const uint8_t* s, int32_t n) {
  if (n >= 64) {
    for (int32_t i = 0; i < n; i++) d[i] = s[i];  // long runs: the compiler's vectorized loop
  } else if (n >= 16) {
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) memcpy(d + i, s + i, 16);
    if (i < n) memcpy(d + n - 16, s + n - 16, 16);
  } else if (n >= 8) {
    memcpy(d, s, 8);
    memcpy(d + n - 8, s + n - 8, 8);
  } else {
    for (int32_t i = 0; i < n; i++) d[i] = s[i];
  }
}

// The int16 copy widens, which the compiler vectorizes with the function's target ISA.
#define OCTET_COPY_RUN_I16(d, s, n) \
  for (int32_t i = 0; i < (n); i++) (d)[i] = (int16_t)(s)[i];

// One im2col row (output pixel `row`) into `dst` [kp], zero past K. T is uint8_t or int16_t; COPY
// moves a run of input bytes into it.
#define OCTET_GATHER_ROW(NAME, T, ATTR, COPY)                                                  \
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
        COPY(d, s, run);                                                                     \
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

OCTET_GATHER_ROW(gather_row_u8, uint8_t, , copy_run_u8)
#if defined(__x86_64__)
OCTET_GATHER_ROW(gather_row_i16, int16_t, __attribute__((target("avx2"))), OCTET_COPY_RUN_I16)
#else
OCTET_GATHER_ROW(gather_row_i16, int16_t, , OCTET_COPY_RUN_I16)
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

// The quads kernel's weight split (CInt8Kernels.h, docs/quantization.md §2). Its int16 lanes sum
// four products: for each pair of 4-groups (g, g+1), g even, the k sets {4g, 4g+1, 4g+4, 4g+5} and
// {4g+2, 4g+3, 4g+6, 4g+7}; a last lone group g contributes {4g, 4g+1} and {4g+2, 4g+3}. With
// activations in [0, 255], a lane cannot leave int16 when its positive weights sum to at most 128
// and its negative ones to at least -128 (255 * 128 = 32640). Where a set exceeds that, the
// excess is taken off its largest weights of that sign (fit) and kept in d, which the kernel adds
// exactly afterwards; then w = fit + d everywhere.
size_t octet_i8_quads_split(const int8_t* w, size_t k, size_t n, int8_t* fit, uint32_t* panel_start,
                            uint32_t* fix_k, int32_t* fix_d, size_t capacity) {
  const size_t kp = octet_round_up(k, 4), kg = kp / 4, kg2 = kg / 2 * 2;
  const size_t panels = octet_round_up(n, OCTET_I8_NR) / OCTET_I8_NR;
  int32_t* d = malloc((kp ? kp : 1) * OCTET_I8_NR * sizeof(int32_t));  // one panel's d [k][16]
  if (d == NULL) return (size_t)-1;
  size_t entries = 0;
  for (size_t panel = 0; panel < panels; panel++) {
    memset(d, 0, kp * OCTET_I8_NR * sizeof(int32_t));
    if (panel_start) panel_start[panel] = (uint32_t)entries;
    for (size_t j = 0; j < OCTET_I8_NR; j++) {
      const size_t col = panel * OCTET_I8_NR + j;
      if (col >= n) break;
      const int8_t* wc = w + col * k;
      for (size_t g = 0; g < kg; g += (g < kg2 ? 2 : 1))
        for (size_t h = 0; h < 2; h++) {
          size_t idx[4], m = 0;
          const size_t first = 4 * g + 2 * h;
          const size_t members[4] = {first, first + 1, first + 4, first + 5};
          for (size_t i = 0; i < (g < kg2 ? 4u : 2u); i++)
            if (members[i] < k) idx[m++] = members[i];
          for (int sign = 1; sign >= -1; sign -= 2) {
            int32_t sum = 0;
            for (size_t i = 0; i < m; i++) {
              const int32_t v = sign * wc[idx[i]];
              if (v > 0) sum += v;
            }
            for (int32_t excess = sum - 128; excess > 0;) {
              size_t best = idx[0];
              int32_t most = INT32_MIN;
              for (size_t i = 0; i < m; i++) {
                const int32_t v = sign * (wc[idx[i]] - d[idx[i] * OCTET_I8_NR + j]);
                if (v > most) most = v, best = idx[i];
              }
              const int32_t r = most < excess ? most : excess;
              d[best * OCTET_I8_NR + j] += sign * r;
              excess -= r;
            }
          }
        }
      if (fit)
        for (size_t kk = 0; kk < k; kk++) fit[col * k + kk] = (int8_t)(wc[kk] - d[kk * OCTET_I8_NR + j]);
    }
    for (size_t kk = 0; kk < k; kk++) {
      int any = 0;
      for (size_t j = 0; j < OCTET_I8_NR; j++) any |= d[kk * OCTET_I8_NR + j] != 0;
      if (!any) continue;
      if (entries < capacity) {
        fix_k[entries] = (uint32_t)kk;
        memcpy(fix_d + entries * OCTET_I8_NR, d + kk * OCTET_I8_NR, OCTET_I8_NR * sizeof(int32_t));
      }
      entries++;
    }
  }
  if (panel_start) panel_start[panels] = (uint32_t)entries;
  free(d);
  return entries;
}

size_t octet_i8_quads_pair_count(const uint32_t* panel_start, size_t panels) {
  size_t pairs = 0;
  for (size_t p = 0; p < panels; p++) pairs += (panel_start[p + 1] - panel_start[p] + 1) / 2;
  return pairs;
}

// Two entries share one vpmaddwd in the kernel: their activations go in the two int16 halves of
// each 32-bit lane, their values in the matching halves of the pair's d (CInt8Kernels.h).
int octet_i8_quads_pair(const uint32_t* panel_start, const uint32_t* fix_k, const int32_t* fix_d, size_t panels,
                        uint32_t* pair_start, uint32_t* pair_k, int32_t* pair_d) {
  size_t q = 0;
  for (size_t p = 0; p < panels; p++) {
    pair_start[p] = (uint32_t)q;
    for (size_t e = panel_start[p]; e < panel_start[p + 1]; e += 2, q++) {
      const int second = e + 1 < panel_start[p + 1];
      const uint32_t k1 = fix_k[e], k2 = second ? fix_k[e + 1] : k1;
      if (k1 > 0xffff || k2 > 0xffff) return -1;
      pair_k[q] = k1 | k2 << 16;
      for (size_t j = 0; j < OCTET_I8_NR; j++) {
        const uint32_t d1 = (uint32_t)fix_d[e * OCTET_I8_NR + j] & 0xffff;
        const uint32_t d2 = second ? (uint32_t)fix_d[(e + 1) * OCTET_I8_NR + j] & 0xffff : 0;
        pair_d[q * OCTET_I8_NR + j] = (int32_t)(d1 | d2 << 16);
      }
    }
  }
  pair_start[panels] = (uint32_t)q;
  return 0;
}
