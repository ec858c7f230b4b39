// AMX-INT8 kernel: tdpbusd multiplies a 16x64 uint8 tile of A by a 16x64 (16 k-groups x 16 columns
// x 4) int8 tile of B into a 16x16 int32 tile, 16,384 multiply-adds per instruction. Each block
// computes 32 rows x 32 columns in four accumulator tiles (tmm0-3), with A in tmm4-5 and B in
// tmm6-7. K is padded to 64 (octet_i8_k_align). The process must have asked Linux for tile data
// (octet_i8_cpu_supports(OCTET_I8_AMX) does), or the first tile instruction faults.
//
// The accumulators start at the bias (a tile load of one bias row with stride 0 repeats it in all
// 16 rows), so the block's sums leave the tiles complete. The native build then finishes whole
// blocks (16 or 32 columns) with the 16-lane fused epilogue of the VNNI kernel (finish16_512, or
// finish_row16 on the halves for an unfolded residual add with the fast form), and everything else
// with the general AVX2 epilogue; the emulated build (tests on any CPU) always takes the general one.
// The multiply-adds wrap modulo 2^32 like every other kernel's, so the order (bias first) does not
// change a bit.
#if defined(OCTET_EMULATE_ISA)
#include "emulate_x86.h"
#elif defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__x86_64__) || defined(OCTET_EMULATE_ISA)
#include <stdlib.h>
#include "common.h"

#if defined(OCTET_EMULATE_ISA)
#define AMX
#define OCTET_GEMM octet_i8_gemm__amx_emulated
#define OCTET_EPILOGUE octet_i8_epilogue__emulated
#else
#include "qu8-epilogue-avx512.h"
#define AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx2")))
#define OCTET_GEMM octet_i8_gemm__amx
#endif

typedef struct __attribute__((packed)) {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} octet_tile_config;

AMX void OCTET_GEMM(const uint8_t* a, size_t lda, const int8_t* b, size_t kp, size_t n,
                    size_t m0, size_t m1, size_t n0, size_t n1, const octet_i8_epilogue* ep,
                    void* out, size_t ldc) {
  (void)n;
  octet_tile_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 8; t++) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  _Alignas(64) int32_t acc[32][32];
  _Alignas(64) int32_t bias[32];
#if !defined(OCTET_EMULATE_ISA)
  ep_consts k = load_consts(ep);
  const int fusable = fused_epilogue_consts(&k, ep, n0, n1);
  const consts512 c5 = consts512_of(&k, ep->int32_output);
  tile_out o[2];
  cols16 p16[2];
  for (size_t p = 0; p < 2; p++) {
    o[p].k = &k;
    o[p].ldc = ldc;
    o[p].ld_res = ep->ld_residual;
  }
#endif
  // The last block of rows of an A block, when it has fewer than 32, is copied once per A block
  // into a zero-padded buffer, so tile loads never read past the caller's A.
  uint8_t* tail = NULL;
  size_t mc = (512 * 1024) / kp / 32 * 32;
  if (mc < 32) mc = 32;
  for (size_t mb = m0; mb < m1; mb += mc) {
    const size_t me = mb + mc < m1 ? mb + mc : m1;
    const size_t tail_m = mb + (me - mb) / 32 * 32;  // first row of the partial block, if any
    if (tail_m < me) {
      if (tail == NULL) tail = calloc(32 * kp, 1);
      if (tail == NULL) abort();
      memset(tail, 0, 32 * kp);
      for (size_t r = 0; r < me - tail_m; r++) memcpy(tail + r * kp, a + (tail_m + r) * lda, kp);
    }
    for (size_t p0 = n0; p0 < n1; p0 += 2 * OCTET_I8_NR) {
      const size_t cols = n1 - p0 < 2 * OCTET_I8_NR ? n1 - p0 : 2 * OCTET_I8_NR;
      const int two = cols > OCTET_I8_NR;
      const int8_t* panel0 = b + (p0 / OCTET_I8_NR) * kp * OCTET_I8_NR;
      const int8_t* panel1 = panel0 + kp * OCTET_I8_NR;
      for (size_t j = 0; j < 32; j++) bias[j] = j < cols ? ep->bias[p0 + j] : 0;
#if !defined(OCTET_EMULATE_ISA)
      // Whole blocks of columns are finished by the fused epilogue (as in the VNNI kernel).
      const int whole = whole_tile_cols(ep, fusable, &c5, p0, cols, o, p16);
#endif
      for (size_t m = mb; m < me; m += 32) {
        const size_t rows = me - m < 32 ? me - m : 32;
        const int lower = rows > 16;  // the block's rows 16-31 hold any row of A
        const uint8_t* ablock = rows < 32 ? tail : a + m * lda;
        const size_t stride = rows < 32 ? kp : lda;
        _tile_loadd(0, bias, 0);
        if (two) _tile_loadd(1, bias + 16, 0);
        if (lower) {
          _tile_loadd(2, bias, 0);
          if (two) _tile_loadd(3, bias + 16, 0);
        }
        for (size_t kb = 0; kb < kp / 64; kb++) {
          _tile_loadd(4, ablock + kb * 64, stride);
          _tile_loadd(6, panel0 + kb * 1024, 64);
          _tile_dpbusd(0, 4, 6);
          if (lower) {
            _tile_loadd(5, ablock + 16 * stride + kb * 64, stride);
            _tile_dpbusd(2, 5, 6);
          }
          if (two) {
            _tile_loadd(7, panel1 + kb * 1024, 64);
            _tile_dpbusd(1, 4, 7);
            if (lower) _tile_dpbusd(3, 5, 7);
          }
        }
        _tile_stored(0, &acc[0][0], 128);
        if (two) _tile_stored(1, &acc[0][16], 128);
        if (lower) {
          _tile_stored(2, &acc[16][0], 128);
          if (two) _tile_stored(3, &acc[16][16], 128);
        }
#if !defined(OCTET_EMULATE_ISA)
        if (whole) {
          const size_t np = cols / OCTET_I8_NR;
          if (c5.use512) {
            for (size_t r = 0; r < rows; r++)
              for (size_t p = 0; p < np; p++)
                finish16_512(_mm512_load_si512(&acc[r][16 * p]), &p16[p], &k, &c5,
                             (uint8_t*)out + (m + r) * ldc + p0 + 16 * p,
                             k.residual ? ep->residual + (m + r) * ep->ld_residual + p0 + 16 * p : NULL);
          } else {
            for (size_t p = 0; p < np; p++) {
              o[p].out = (uint8_t*)out + m * ldc + p0 + 16 * p;
              o[p].res = k.residual ? ep->residual + m * ep->ld_residual + p0 + 16 * p : NULL;
            }
            for (size_t r = 0; r < rows; r++)
              for (size_t p = 0; p < np; p++)
                finish_row16(_mm256_load_si256((const __m256i*)&acc[r][16 * p]),
                             _mm256_load_si256((const __m256i*)&acc[r][16 * p + 8]), &o[p], r, -1);
          }
          continue;
        }
        epilogue_block(&acc[0][0], 32, m, rows, p0, cols, ep, &k, out, ldc);
#else
        OCTET_EPILOGUE(&acc[0][0], 32, m, rows, p0, cols, ep, out, ldc);
#endif
      }
    }
  }
  _tile_release();
  free(tail);
}
#endif
