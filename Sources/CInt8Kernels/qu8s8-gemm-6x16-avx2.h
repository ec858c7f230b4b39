// Private to CInt8Kernels: what the three AVX2 6x16 GEMM microkernels share (docs/quantization.md
// §2): the tile contract, the epilogue fused into a whole tile's registers, the row macros and the
// blocking driver. Each kernel has its file:
//   qu8s8-gemm-6x16-int16-avx2.c  vpmaddwd on int16-widened operands, each pair summed exactly into
//                                 int32: any weights;
//   qu8s8-gemm-6x16-pairs-avx2.c  vpmaddubsw (u8 x s8 pair sums in int16, saturating) then vpmaddwd
//                                 by 1: weights whose adjacent pairs cannot saturate it;
//   qu8s8-gemm-6x16-quads-avx2.c  two vpmaddubsw summed in int16, then vpmaddwd by 1: any weights,
//                                 split so that no int16 lane can overflow, the excess added back
//                                 exactly from a sparse list.
// Include only under #if defined(__x86_64__).
#pragma once
#include "qu8-epilogue-avx2.h"

// Blocking of the GEMM driver (bytes; overridable at compile time for tuning experiments): B up
// to OCTET_TILE_B_LIMIT runs a tile's rows at a time, larger B in row blocks of OCTET_A_BLOCK.
// B's limit is well under the 512 KB L2 of Zen 3, part of which another tenant's thread on the
// same core may take (256 KB measured about 4 % slower over ResNet50, 6 rounds); A's blocks are
// larger, since every block streams all of B again (64 KB measured 1-3 % slower, 10 alternations).
#ifndef OCTET_TILE_B_LIMIT
#define OCTET_TILE_B_LIMIT OCTET_I8_TILE_B_LIMIT
#endif
#ifndef OCTET_A_BLOCK
#define OCTET_A_BLOCK (256 * 1024)
#endif

/// Where a 6x16 tile's results go. `fused`: the tile is whole (6 rows, 16 columns), its epilogue
/// has the 32-bit fast form and writes uint8, so the kernel finishes it from its registers into
/// `out` (row 0, first column of the tile; rows `ldc` apart), reading the residual at `res`.
/// Otherwise the kernel stores the accumulators and the driver runs the general epilogue.
typedef struct {
  int fused;
  const ep_consts* k;
  cols8 p0, p1;
  uint8_t* out;
  const uint8_t* res;
  size_t ldc, ld_res;
} tile_out;

/// The residual add of 16 lanes (§8) in the folded form of load_consts: da0, da1 = q - z_q of
/// columns 0-7 and 8-15, `res` their 16 residual codes; returns y + z_o (unclamped).
AVX2 static inline void residual16(__m256i da0, __m256i da1, const uint8_t* res, const ep_consts* k, __m256i* y0,
                                   __m256i* y1) {
  // The residual codes straight into the high int16 of each lane (r << 16): bytes 0-3 / 4-7 of
  // each half for columns 0-7, bytes 8-11 / 12-15 for columns 8-15.
  const __m256i rr = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)res));
  const __m256i m0 = _mm256_setr_epi8(-1, -1, 0, -1, -1, -1, 1, -1, -1, -1, 2, -1, -1, -1, 3, -1,
                                      -1, -1, 4, -1, -1, -1, 5, -1, -1, -1, 6, -1, -1, -1, 7, -1);
  const __m256i m1 = _mm256_setr_epi8(-1, -1, 8, -1, -1, -1, 9, -1, -1, -1, 10, -1, -1, -1, 11, -1,
                                      -1, -1, 12, -1, -1, -1, 13, -1, -1, -1, 14, -1, -1, -1, 15, -1);
  const __m256i p0 = _mm256_blend_epi16(da0, _mm256_shuffle_epi8(rr, m0), 0xAA);
  const __m256i p1 = _mm256_blend_epi16(da1, _mm256_shuffle_epi8(rr, m1), 0xAA);
  const __m256i h0 = _mm256_add_epi32(_mm256_madd_epi16(p0, k->madd_hi), k->fold_ch);
  const __m256i h1 = _mm256_add_epi32(_mm256_madd_epi16(p1, k->madd_hi), k->fold_ch);
  const __m256i l0 = _mm256_srai_epi32(_mm256_add_epi32(_mm256_madd_epi16(p0, k->madd_lo), k->fold_cl), 16);
  const __m256i l1 = _mm256_srai_epi32(_mm256_add_epi32(_mm256_madd_epi16(p1, k->madd_lo), k->fold_cl), 16);
  *y0 = _mm256_sra_epi32(_mm256_add_epi32(h0, l0), k->madd_post);
  *y1 = _mm256_sra_epi32(_mm256_add_epi32(h1, l1), k->madd_post);
}

/// 16 int32 lanes (columns 0-7 in q0, 8-15 in q1) to 16 uint8 codes at dst, saturating: the clamp
/// to [0, 255] for any int32.
AVX2 static inline void store_sat16(uint8_t* dst, __m256i q0, __m256i q1) {
  const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
  _mm_storeu_si128((__m128i*)dst, _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
}

/// Requantizes (and adds the residual to) one row of a whole tile and writes its 16 codes.
/// `res`: 1 with a residual add, 0 without, -1 to test k->residual (a constant 0 or 1 leaves the
/// other form's code out of the kernel, which kept it from slowing the one it runs).
AVX2 __attribute__((always_inline)) static inline void finish_row16(__m256i c0, __m256i c1, const tile_out* o, size_t r,
                                                                    const int res) {
  const ep_consts* k = o->k;
  const int residual = res < 0 ? k->residual : res;
  __m256i q0 = requant8_y(c0, &o->p0, k), q1 = requant8_y(c1, &o->p1, k);
  if (residual) {
    // q - z_q = clamp(y + z_q, lo, hi) - z_q = clamp(y, lo - z_q, hi - z_q).
    const __m256i da0 = clamp_epi32(q0, k->lo_rel, k->hi_rel);
    const __m256i da1 = clamp_epi32(q1, k->lo_rel, k->hi_rel);
    const uint8_t* res_row = o->res + r * o->ld_res;
    if (k->add_fold) {
      residual16(da0, da1, res_row, k, &q0, &q1);
      if (!k->add_sat8) {
        q0 = clamp_epi32(q0, k->add_lo, k->add_hi);
        q1 = clamp_epi32(q1, k->add_lo, k->add_hi);
      }
    } else {
      const __m128i rr = _mm_loadu_si128((const __m128i*)res_row);
      q0 = residual8_da(da0, _mm256_cvtepu8_epi32(rr), k);
      q1 = residual8_da(da1, _mm256_cvtepu8_epi32(_mm_srli_si128(rr, 8)), k);
    }
  } else {
    // requant8's fast form (a fused tile always has it), its clamp left to the packs when it is [0, 255].
    q0 = _mm256_add_epi32(q0, k->zout);
    q1 = _mm256_add_epi32(q1, k->zout);
    if (!k->sat8) {
      q0 = clamp_epi32(q0, k->lo, k->hi);
      q1 = clamp_epi32(q1, k->lo, k->hi);
    }
  }
  store_sat16(o->out + r * o->ldc, q0, q1);
}

// What every 6x16 tile kernel does around their different inner loops: row pointers (rows past
// `rows` repeat row 0, their results discarded), twelve accumulators starting at the bias, and
// their store into acc[6][16].
#define OCTET_6X16_BEGIN(T)                                                                     \
  const T* a0 = a;                                                                              \
  const T* a1 = rows > 1 ? a + lda : a0;                                                        \
  const T* a2 = rows > 2 ? a + 2 * lda : a0;                                                    \
  const T* a3 = rows > 3 ? a + 3 * lda : a0;                                                    \
  const T* a4 = rows > 4 ? a + 4 * lda : a0;                                                    \
  const T* a5 = rows > 5 ? a + 5 * lda : a0;                                                    \
  const __m256i bias0 = _mm256_loadu_si256((const __m256i*)bias);                               \
  const __m256i bias1 = _mm256_loadu_si256((const __m256i*)(bias + 8));                         \
  __m256i c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1, c20 = bias0, c21 = bias1;         \
  __m256i c30 = bias0, c31 = bias1, c40 = bias0, c41 = bias1, c50 = bias0, c51 = bias1;
#define OCTET_6X16_FINISH(o, FUSABLE, RES)                                                      \
  if ((FUSABLE) && (o)->fused) {                                                                \
    finish_row16(c00, c01, o, 0, RES); finish_row16(c10, c11, o, 1, RES);                       \
    finish_row16(c20, c21, o, 2, RES); finish_row16(c30, c31, o, 3, RES);                       \
    finish_row16(c40, c41, o, 4, RES); finish_row16(c50, c51, o, 5, RES);                       \
  } else {                                                                                      \
    OCTET_6X16_STORE()                                                                          \
  }
#define OCTET_6X16_STORE()                                                                      \
  _mm256_storeu_si256((__m256i*)acc[0], c00); _mm256_storeu_si256((__m256i*)(acc[0] + 8), c01); \
  _mm256_storeu_si256((__m256i*)acc[1], c10); _mm256_storeu_si256((__m256i*)(acc[1] + 8), c11); \
  _mm256_storeu_si256((__m256i*)acc[2], c20); _mm256_storeu_si256((__m256i*)(acc[2] + 8), c21); \
  _mm256_storeu_si256((__m256i*)acc[3], c30); _mm256_storeu_si256((__m256i*)(acc[3] + 8), c31); \
  _mm256_storeu_si256((__m256i*)acc[4], c40); _mm256_storeu_si256((__m256i*)(acc[4] + 8), c41); \
  _mm256_storeu_si256((__m256i*)acc[5], c50); _mm256_storeu_si256((__m256i*)(acc[5] + 8), c51);

/// Whether whole tiles of columns n0 ..< n1 can be finished from their registers (the fast form,
/// uint8 output); if so, sets k->fast33 when every column's shift is at least 33 (requant8_y).
AVX2 static inline int fused_epilogue_consts(ep_consts* k, const octet_i8_epilogue* ep, size_t n0, size_t n1) {
  const int fusable = k->fast && !ep->int32_output;
  if (fusable) {
    k->fast33 = 1;
    for (size_t c = n0; c < n1; c++) k->fast33 &= ep->shift[c] >= 33;
  }
  return fusable;
}

/// A 6x16 tile kernel over the whole K: rows `lda` bytes apart, B one packed panel.
/// `fix` is the quads kernel's sparse weight part (NULL for the others), `p` the panel's index.
typedef void (*octet_tile_6x16)(const uint8_t* a, size_t lda, size_t rows, const uint8_t* panel, size_t kp,
                                const octet_i8_fixups* fix, size_t p, const int32_t* bias, const tile_out* o,
                                int32_t acc[6][16]);

/// The loops around a 6x16 tile kernel, shared by the vpmaddwd and vpmaddubsw kernels; `element`
/// is the byte size of A's and B's elements (2 or 1). Rows per block: when all of B fits in L2,
/// one tile's rows at a time, so the tile's output (and residual) rows are finished whole while in
/// L1; else as many rows as keep the block's A in L2 while every panel of B streams past it
/// (GotoBLAS order).
AVX2 __attribute__((always_inline)) static inline void gemm_driver_6x16(octet_tile_6x16 tile, const uint8_t* a, size_t lda, const uint8_t* b,
                                  size_t element, const octet_i8_fixups* fix, size_t kp, size_t n, size_t m0,
                                  size_t m1, size_t n0, size_t n1, const octet_i8_epilogue* ep, void* out,
                                  size_t ldc) {
  const size_t b_bytes = kp * element * octet_round_up(n, OCTET_I8_NR);
  size_t mc = b_bytes <= OCTET_TILE_B_LIMIT ? 6 : OCTET_A_BLOCK / (kp * element) / 6 * 6;
  if (mc < 6) mc = 6;
  int32_t acc[6][16];
  int32_t bias[16];
  ep_consts k = load_consts(ep);
  const int fusable = fused_epilogue_consts(&k, ep, n0, n1);
  tile_out o;
  o.k = &k;
  o.ldc = ldc;
  o.ld_res = ep->ld_residual;
  for (size_t mb = m0; mb < m1; mb += mc) {
    const size_t me = mb + mc < m1 ? mb + mc : m1;
    for (size_t p0 = n0; p0 < n1; p0 += OCTET_I8_NR) {
      const size_t cols = n1 - p0 < OCTET_I8_NR ? n1 - p0 : OCTET_I8_NR;
      const int32_t* bp = ep->bias + p0;
      if (cols < OCTET_I8_NR) {
        for (size_t j = 0; j < OCTET_I8_NR; j++) bias[j] = j < cols ? ep->bias[p0 + j] : 0;
        bp = bias;
      }
      const uint8_t* panel = b + (p0 / OCTET_I8_NR) * kp * OCTET_I8_NR * element;
      if (fusable && cols == OCTET_I8_NR) {
        o.p0 = load_cols8(ep, p0, 1);
        o.p1 = load_cols8(ep, p0 + 8, 1);
      }
      for (size_t m = mb; m < me; m += 6) {
        const size_t rows = me - m < 6 ? me - m : 6;
        o.fused = fusable && cols == OCTET_I8_NR && rows == 6;
        o.out = (uint8_t*)out + m * ldc + p0;
        o.res = k.residual ? ep->residual + m * ep->ld_residual + p0 : NULL;
        tile(a + m * lda, lda, rows, panel, kp, fix, p0 / OCTET_I8_NR, bp, &o, acc);
        if (!o.fused) epilogue_block(&acc[0][0], 16, m, rows, p0, cols, ep, &k, out, ldc);
      }
    }
  }
}

// M(row pointer, accumulator of columns 0-7, of columns 8-15) for the first R rows of a tile; with
// R a compile-time constant the rows past it (and their accumulators) vanish.
#define OCTET_FOR_ROWS(R, M)                                                                  \
  M(a0, c00, c01)                                                                             \
  if ((R) > 1) { M(a1, c10, c11) }                                                            \
  if ((R) > 2) { M(a2, c20, c21) }                                                            \
  if ((R) > 3) { M(a3, c30, c31) }                                                            \
  if ((R) > 4) { M(a4, c40, c41) }                                                            \
  if ((R) > 5) { M(a5, c50, c51) }

// One 4-group gg of k (16 products per output column pair-summed by vpmaddubsw) for R rows.
#define OCTET_PAIRS_STEP(gg, R)                                                               \
  {                                                                                           \
    const size_t pg = (gg);                                                                   \
    const __m256i b0 = _mm256_load_si256((const __m256i*)(b + pg * 64));                      \
    const __m256i b1 = _mm256_load_si256((const __m256i*)(b + pg * 64 + 32));                 \
    __m256i x;                                                                                \
    OCTET_FOR_ROWS(R, OCTET_PAIRS_ROW)                                                        \
  }
#define OCTET_PAIRS_ROW(ROW, C0, C1)                                                          \
  x = _mm256_set1_epi32(octet_load_i32(ROW + 4 * pg));                                        \
  C0 = _mm256_add_epi32(C0, _mm256_madd_epi16(_mm256_maddubs_epi16(x, b0), ones));            \
  C1 = _mm256_add_epi32(C1, _mm256_madd_epi16(_mm256_maddubs_epi16(x, b1), ones));

