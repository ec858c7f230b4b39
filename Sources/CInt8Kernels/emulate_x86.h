// Scalar stand-ins for the AVX-512 VNNI and AMX-INT8 intrinsics that avx512vnni.c and amx.c use,
// written from the instruction definitions in Intel's SDM. Compiling those two files against this
// header (avx512vnni_emulated.c, amx_emulated.c) runs their loops, tiling, packing offsets and
// tails on any CPU, so the tests can hold them to the reference on machines that lack the
// instructions. The real builds never include this file.
#pragma once
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "CInt8Kernels.h"

typedef struct {
  int32_t i32[16];
} octet_emu_m512i;
#define __m512i octet_emu_m512i

static inline __m512i _mm512_loadu_si512(const void* p) {
  __m512i v;
  memcpy(&v, p, 64);
  return v;
}
static inline __m512i _mm512_load_si512(const void* p) {
  if (((uintptr_t)p & 63) != 0) abort();  // vmovdqa32 faults on a misaligned address
  return _mm512_loadu_si512(p);
}
static inline void _mm512_storeu_si512(void* p, __m512i v) { memcpy(p, &v, 64); }
static inline __m512i _mm512_set1_epi32(int32_t x) {
  __m512i v;
  for (int i = 0; i < 16; i++) v.i32[i] = x;
  return v;
}
// vpdpbusd: each int32 lane += the four products of unsigned bytes of a and signed bytes of b.
static inline __m512i _mm512_dpbusd_epi32(__m512i src, __m512i a, __m512i b) {
  const uint8_t* ua = (const uint8_t*)&a;
  const int8_t* sb = (const int8_t*)&b;
  for (int i = 0; i < 16; i++) {
    int32_t s = 0;
    for (int t = 0; t < 4; t++) s += (int32_t)ua[4 * i + t] * (int32_t)sb[4 * i + t];
    src.i32[i] = (int32_t)((uint32_t)src.i32[i] + (uint32_t)s);
  }
  return src;
}

// AMX: eight tile registers of up to 16 rows x 64 bytes, configured by a 64-byte palette-1 block.
typedef struct {
  uint8_t bytes[16][64];
  int rows, colsb;
} octet_emu_tile;
static _Thread_local octet_emu_tile octet_emu_tiles[8];
static _Thread_local int octet_emu_configured;

static inline void octet_emu_loadconfig(const void* config) {
  const uint8_t* c = config;
  if (c[0] != 1) abort();
  for (int t = 0; t < 8; t++) {
    uint16_t colsb;
    memcpy(&colsb, c + 16 + 2 * t, 2);
    octet_emu_tiles[t].colsb = colsb;
    octet_emu_tiles[t].rows = c[48 + t];
    if (colsb > 64 || c[48 + t] > 16) abort();
  }
  octet_emu_configured = 1;
}
static inline void octet_emu_loadd(int t, const void* base, size_t stride) {
  if (!octet_emu_configured) abort();
  octet_emu_tile* x = &octet_emu_tiles[t];
  for (int r = 0; r < x->rows; r++) memcpy(x->bytes[r], (const uint8_t*)base + (size_t)r * stride, (size_t)x->colsb);
}
static inline void octet_emu_stored(int t, void* base, size_t stride) {
  const octet_emu_tile* x = &octet_emu_tiles[t];
  for (int r = 0; r < x->rows; r++) memcpy((uint8_t*)base + (size_t)r * stride, x->bytes[r], (size_t)x->colsb);
}
static inline void octet_emu_zero(int t) { memset(octet_emu_tiles[t].bytes, 0, sizeof octet_emu_tiles[t].bytes); }
// tdpbusd: C[m][n] (int32) += sum over k < colsb(A)/4 and t < 4 of A[m][4k+t] (u8) * B[k][4n+t] (s8).
static inline void octet_emu_dpbusd(int c, int a, int b) {
  octet_emu_tile* C = &octet_emu_tiles[c];
  const octet_emu_tile* A = &octet_emu_tiles[a];
  const octet_emu_tile* B = &octet_emu_tiles[b];
  if (A->colsb / 4 != B->rows || C->rows != A->rows || C->colsb != B->colsb) abort();
  for (int m = 0; m < C->rows; m++)
    for (int n = 0; n < C->colsb / 4; n++) {
      int32_t acc;
      memcpy(&acc, &C->bytes[m][4 * n], 4);
      for (int k = 0; k < A->colsb / 4; k++)
        for (int t = 0; t < 4; t++)
          acc = (int32_t)((uint32_t)acc + (uint32_t)((int32_t)A->bytes[m][4 * k + t] *
                                                     (int32_t)(int8_t)B->bytes[k][4 * n + t]));
      memcpy(&C->bytes[m][4 * n], &acc, 4);
    }
}
#define _tile_loadconfig(c) octet_emu_loadconfig(c)
#define _tile_release() (octet_emu_configured = 0)
#define _tile_zero(t) octet_emu_zero(t)
#define _tile_loadd(t, base, stride) octet_emu_loadd(t, base, stride)
#define _tile_stored(t, base, stride) octet_emu_stored(t, base, stride)
#define _tile_dpbusd(c, a, b) octet_emu_dpbusd(c, a, b)

// The epilogue of the emulated builds: the one the real builds use (octet_i8_epilogue__avx2)
// wherever the CPU has AVX2, as every x86 machine the tests run on does; the scalar one only where
// it lacks AVX2 (or is not x86), which octet_i8_emulated_epilogue_isa() reports so that the tests
// can say so.
static inline void octet_i8_epilogue__emulated(const int32_t* acc, size_t ld_acc, size_t row0, size_t rows,
                                               size_t n0, size_t cols, const octet_i8_epilogue* ep, void* out,
                                               size_t ldc) {
  if (octet_i8_emulated_epilogue_isa() == OCTET_I8_AVX2) {
#if defined(__x86_64__)
    octet_i8_epilogue__avx2(acc, ld_acc, row0, rows, n0, cols, ep, out, ldc);
    return;
#endif
  }
  octet_i8_epilogue__scalar(acc, ld_acc, row0, rows, n0, cols, ep, out, ldc);
}
