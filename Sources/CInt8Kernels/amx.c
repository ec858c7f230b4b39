// AMX-INT8 kernel: tdpbusd multiplies a 16x64 uint8 tile of A by a 16x64 (16 k-groups x 16 columns
// x 4) int8 tile of B into a 16x16 int32 tile, 16,384 multiply-adds per instruction. Each block
// computes 32 rows x 32 columns in four accumulator tiles (tmm0-3), with A in tmm4-5 and B in
// tmm6-7. K is padded to 64 (octet_i8_k_align). The process must have asked Linux for tile data
// (octet_i8_cpu_supports(OCTET_I8_AMX) does), or the first tile instruction faults.
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
#define AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx2")))
#define OCTET_GEMM octet_i8_gemm__amx
#define OCTET_EPILOGUE octet_i8_epilogue__avx2
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
  int32_t acc[32][32];
  // Tail rows (fewer than 32 left) are copied into a zero-padded block, so tile loads never read
  // past the caller's A.
  uint8_t* tail = NULL;
  size_t mc = (512 * 1024) / kp / 32 * 32;
  if (mc < 32) mc = 32;
  for (size_t mb = m0; mb < m1; mb += mc) {
    const size_t me = mb + mc < m1 ? mb + mc : m1;
    for (size_t p0 = n0; p0 < n1; p0 += 2 * OCTET_I8_NR) {
      const size_t cols = n1 - p0 < 2 * OCTET_I8_NR ? n1 - p0 : 2 * OCTET_I8_NR;
      const int two = cols > OCTET_I8_NR;
      const int8_t* panel0 = b + (p0 / OCTET_I8_NR) * kp * OCTET_I8_NR;
      const int8_t* panel1 = panel0 + kp * OCTET_I8_NR;
      for (size_t m = mb; m < me; m += 32) {
        const size_t rows = me - m < 32 ? me - m : 32;
        const uint8_t* ablock = a + m * lda;
        size_t stride = lda;
        if (rows < 32) {
          if (tail == NULL) tail = calloc(32 * kp, 1);
          if (tail == NULL) abort();
          memset(tail, 0, 32 * kp);
          for (size_t r = 0; r < rows; r++) memcpy(tail + r * kp, ablock + r * lda, kp);
          ablock = tail;
          stride = kp;
        }
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (size_t kb = 0; kb < kp / 64; kb++) {
          _tile_loadd(4, ablock + kb * 64, stride);
          _tile_loadd(5, ablock + 16 * stride + kb * 64, stride);
          _tile_loadd(6, panel0 + kb * 1024, 64);
          _tile_dpbusd(0, 4, 6);
          _tile_dpbusd(2, 5, 6);
          if (two) {
            _tile_loadd(7, panel1 + kb * 1024, 64);
            _tile_dpbusd(1, 4, 7);
            _tile_dpbusd(3, 5, 7);
          }
        }
        _tile_stored(0, &acc[0][0], 128);
        _tile_stored(2, &acc[16][0], 128);
        if (two) {
          _tile_stored(1, &acc[0][16], 128);
          _tile_stored(3, &acc[16][16], 128);
        }
        for (size_t r = 0; r < rows; r++)
          for (size_t j = 0; j < cols; j++)
            acc[r][j] = (int32_t)((uint32_t)acc[r][j] + (uint32_t)ep->bias[p0 + j]);
        OCTET_EPILOGUE(&acc[0][0], 32, m, rows, p0, cols, ep, out, ldc);
      }
    }
  }
  _tile_release();
  free(tail);
}
#endif
