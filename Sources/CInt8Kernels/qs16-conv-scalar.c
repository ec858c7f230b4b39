// Convolutions with a 16-bit input or output (docs/quantization.md §17), plain C: the im2col
// gather, the scalar GEMM twin of qs16s16-gemm-4x8-avx2.c, and the depthwise kernel. The
// epilogue is shared through common.h's octet_a16_requant.
#include "common.h"

void octet_a16_im2col(const octet_a16_conv* c, const void* in, int32_t m0, int32_t m1, int16_t* a) {
  const size_t kp = (size_t)c->kp;
  for (int32_t m = m0; m < m1; m++) {
    const int32_t oy = m / c->out_w, ox = m % c->out_w;
    int16_t* row = a + (size_t)(m - m0) * kp;
    size_t k = 0;
    for (int32_t ky = 0; ky < c->kernel_h; ky++) {
      const int32_t iy = oy * c->stride_h - c->pad_top + ky;
      for (int32_t kx = 0; kx < c->kernel_w; kx++) {
        const int32_t ix = ox * c->stride_w - c->pad_left + kx;
        const int inside = iy >= 0 && iy < c->in_h && ix >= 0 && ix < c->in_w;
        const size_t base = ((size_t)iy * (size_t)c->in_w + (size_t)ix) * (size_t)c->in_c;
        for (int32_t i = 0; i < c->in_c; i++)
          row[k++] = (int16_t)(inside ? octet_a16_load_code(c, in, base + (size_t)i) : c->z_in);
      }
    }
    for (; k < kp; k++) row[k] = 0;
  }
}

void octet_a16_gemm__scalar(const octet_a16_conv* c, const int16_t* a, int32_t rows, void* out) {
  const size_t kp = (size_t)c->kp, n = (size_t)c->out_c;
  for (int32_t r = 0; r < rows; r++) {
    for (size_t col = 0; col < n; col++) {
      const int16_t* panel = c->weights + (col / 8) * (kp / 2) * 16 + (col % 8) * 2;
      int64_t acc = c->bias[col];
      for (size_t k = 0; k < kp; k += 2) {
        acc += (int64_t)a[(size_t)r * kp + k] * panel[k / 2 * 16];
        acc += (int64_t)a[(size_t)r * kp + k + 1] * panel[k / 2 * 16 + 1];
      }
      octet_a16_store(c, out, (size_t)r * n + col, octet_a16_requant(acc, col, c));
    }
  }
}

void octet_a16_dwconv__scalar(const octet_a16_conv* c, const void* in, int32_t oy0, int32_t oy1, void* out) {
  const size_t ch = (size_t)c->out_c;
  for (int32_t oy = oy0; oy < oy1; oy++)
    for (int32_t ox = 0; ox < c->out_w; ox++)
      for (size_t q = 0; q < ch; q++)
        octet_a16_store(c, out, ((size_t)oy * (size_t)c->out_w + (size_t)ox) * ch + q,
                        octet_a16_requant(octet_a16_dw_acc(c, in, oy, ox, q), q, c));
}
