// Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions, NHWC (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016). Each 2x2 block of output pixels (a tile) is computed from
// the 4x4 input patch under it: V = Bᵀ d B per input channel, M = V · U per position ξ of the 4x4
// (16 GEMMs over the channels, U = G g Gᵀ the transformed weights, packed as GEMM B matrices), and
// Y = Aᵀ M A. 16 products of 4x4 per 2x2 outputs instead of 36: 2.25 times fewer multiply-adds than
// the direct convolution, for a few more roundings in float (the transforms use only ±1 and ½).
//
//   Bᵀ = | 1  0 -1  0 |     G = | 1    0    0  |     Aᵀ = | 1  1  1  0 |
//        | 0  1  1  0 |         | ½    ½    ½  |          | 0  1 -1 -1 |
//        | 0 -1  1  0 |         | ½   -½    ½  |
//        | 0  1  0 -1 |         | 0    0    1  |
//
// Tiles are numbered across the batch: tile = (n * tiles_h + ty) * tiles_w + tx, tiles_h =
// ceil(out_h / 2); the last row or column of tiles is partial when out_h or out_w is odd. Channels
// are a multiple of 8 (the caller falls back to im2col otherwise).
#include "common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define OCTET_AVX2 __attribute__((target("avx2,fma")))

void OCTET_AVX2 octet_f32_winograd_input__avx2fma(const octet_f32_window* w, const float* input,
                                                  size_t tile_begin, size_t tile_count, float* v,
                                                  size_t xi_rows) {
  const size_t c_in = (size_t)w->in_stride;
  const size_t tiles_w = ((size_t)w->out_w + 1) / 2, tiles_h = ((size_t)w->out_h + 1) / 2;
  const size_t xi_stride = xi_rows * c_in;  // floats between V[ξ] and V[ξ + 1]
  for (size_t t = 0; t < tile_count; t++) {
    const size_t tile = tile_begin + t;
    const size_t n = tile / (tiles_h * tiles_w), rest = tile % (tiles_h * tiles_w);
    const int32_t y0 = (int32_t)(rest / tiles_w) * 2 - w->pad_top;
    const int32_t x0 = (int32_t)(rest % tiles_w) * 2 - w->pad_left;
    const float* image = input + n * (size_t)w->in_h * (size_t)w->in_w * c_in;
    // Which of the 4x4 patch's pixels are inside the image (the rest read as 0).
    int valid[4][4];
    for (int r = 0; r < 4; r++)
      for (int c = 0; c < 4; c++)
        valid[r][c] = y0 + r >= 0 && y0 + r < w->in_h && x0 + c >= 0 && x0 + c < w->in_w;
    float* dst = v + t * c_in;
    for (size_t ch = 0; ch < c_in; ch += 8) {
      __m256 d[4][4];
      for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
          d[r][c] = valid[r][c] ? _mm256_loadu_ps(image + ((size_t)(y0 + r) * (size_t)w->in_w +
                                                            (size_t)(x0 + c)) * c_in + ch)
                                : _mm256_setzero_ps();
      // Columns: e = Bᵀ d (per column c), then rows: V = e B.
      __m256 e[4][4];
      for (int c = 0; c < 4; c++) {
        e[0][c] = _mm256_sub_ps(d[0][c], d[2][c]);
        e[1][c] = _mm256_add_ps(d[1][c], d[2][c]);
        e[2][c] = _mm256_sub_ps(d[2][c], d[1][c]);
        e[3][c] = _mm256_sub_ps(d[1][c], d[3][c]);
      }
      for (int r = 0; r < 4; r++) {
        float* row = dst + (size_t)(4 * r) * xi_stride + ch;
        _mm256_storeu_ps(row, _mm256_sub_ps(e[r][0], e[r][2]));
        _mm256_storeu_ps(row + xi_stride, _mm256_add_ps(e[r][1], e[r][2]));
        _mm256_storeu_ps(row + 2 * xi_stride, _mm256_sub_ps(e[r][2], e[r][1]));
        _mm256_storeu_ps(row + 3 * xi_stride, _mm256_sub_ps(e[r][1], e[r][3]));
      }
    }
  }
}

void OCTET_AVX2 octet_f32_winograd_output__avx2fma(const octet_f32_window* w, const float* m,
                                                   size_t xi_rows, size_t tile_begin,
                                                   size_t tile_count, size_t c_out,
                                                   const float* bias, const float* residual,
                                                   int32_t act, float* output) {
  const size_t tiles_w = ((size_t)w->out_w + 1) / 2, tiles_h = ((size_t)w->out_h + 1) / 2;
  const size_t xi_stride = xi_rows * c_out;
  float lo_s, hi_s;
  octet_f32_act_bounds(act, &lo_s, &hi_s);
  const __m256 lo = _mm256_set1_ps(lo_s), hi = _mm256_set1_ps(hi_s);
  for (size_t t = 0; t < tile_count; t++) {
    const size_t tile = tile_begin + t;
    const size_t n = tile / (tiles_h * tiles_w), rest = tile % (tiles_h * tiles_w);
    const size_t oy = rest / tiles_w * 2, ox = rest % tiles_w * 2;
    const size_t rows = oy + 1 < (size_t)w->out_h ? 2 : 1;
    const size_t cols = ox + 1 < (size_t)w->out_w ? 2 : 1;
    const size_t image = n * (size_t)w->out_h * (size_t)w->out_w;
    const float* src = m + t * c_out;
    for (size_t ch = 0; ch < c_out; ch += 8) {
      __m256 x[4][4];
      for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
          x[r][c] = _mm256_loadu_ps(src + (size_t)(4 * r + c) * xi_stride + ch);
      // Columns: s = Aᵀ x (per column c), then rows: Y = s A.
      __m256 s[2][4];
      for (int c = 0; c < 4; c++) {
        s[0][c] = _mm256_add_ps(_mm256_add_ps(x[0][c], x[1][c]), x[2][c]);
        s[1][c] = _mm256_sub_ps(_mm256_sub_ps(x[1][c], x[2][c]), x[3][c]);
      }
      const __m256 b = bias != NULL ? _mm256_loadu_ps(bias + ch) : _mm256_setzero_ps();
      for (size_t r = 0; r < rows; r++) {
        __m256 y[2];
        y[0] = _mm256_add_ps(_mm256_add_ps(s[r][0], s[r][1]), s[r][2]);
        y[1] = _mm256_sub_ps(_mm256_sub_ps(s[r][1], s[r][2]), s[r][3]);
        for (size_t c = 0; c < cols; c++) {
          const size_t at = (image + (oy + r) * (size_t)w->out_w + ox + c) * c_out + ch;
          __m256 out = _mm256_add_ps(y[c], b);
          if (residual != NULL) out = _mm256_add_ps(out, _mm256_loadu_ps(residual + at));
          if (act != OCTET_F32_ACT_NONE) out = _mm256_min_ps(hi, _mm256_max_ps(lo, out));
          _mm256_storeu_ps(output + at, out);
        }
      }
    }
  }
}
#endif
