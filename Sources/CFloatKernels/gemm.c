// GEMM with pre-packed B for convolution and linear layers: C = act(A * B + bias + residual).
//
// B (the weights) is packed once. Blocking follows BLIS: K blocks of KC rows, each split into
// panels of 16 columns; a KC x 16 panel stays in L1 while the micro-kernel sweeps an MC x KC block
// of A (kept in L2), and the 6x16 tile of C lives in 12 YMM registers. A (activations or an im2col
// tile) is read in place: each step broadcasts one element from each of up to 6 rows. Bias,
// residual and activation are applied in registers after the last K block.
//
// Packed layout: [K block][panel][kc][16], the last panel zero-padded, so one K block of B is a
// single sequential run of memory, read in order. Weights are usually cold (a network's weights
// do not fit in cache), and a sequential stream plus a software prefetch keeps the first pass over
// each panel from waiting on DRAM.
#include <string.h>
#include "common.h"

/// Rows of B per K block; part of the packed layout.
#define OCTET_GEMM_KC 256

size_t octet_f32_gemm_packed_count(size_t k, size_t n) {
  return (n + OCTET_F32_GEMM_NR - 1) / OCTET_F32_GEMM_NR * OCTET_F32_GEMM_NR * k;
}

void octet_f32_gemm_pack_b(size_t k, size_t n, const float* b, size_t ldb, float* packed) {
  for (size_t k0 = 0; k0 < k; k0 += OCTET_GEMM_KC) {
    const size_t kc = k - k0 < OCTET_GEMM_KC ? k - k0 : OCTET_GEMM_KC;
    for (size_t j0 = 0; j0 < n; j0 += OCTET_F32_GEMM_NR) {
      const size_t nc = n - j0 < OCTET_F32_GEMM_NR ? n - j0 : OCTET_F32_GEMM_NR;
      for (size_t kk = k0; kk < k0 + kc; kk++, packed += OCTET_F32_GEMM_NR) {
        for (size_t j = 0; j < nc; j++) packed[j] = b[kk * ldb + j0 + j];
        for (size_t j = nc; j < OCTET_F32_GEMM_NR; j++) packed[j] = 0.0f;
      }
    }
  }
}

void octet_f32_gemm_unpack_b(size_t k, size_t n, const float* packed, float* b, size_t ldb) {
  for (size_t k0 = 0; k0 < k; k0 += OCTET_GEMM_KC) {
    const size_t kc = k - k0 < OCTET_GEMM_KC ? k - k0 : OCTET_GEMM_KC;
    for (size_t j0 = 0; j0 < n; j0 += OCTET_F32_GEMM_NR) {
      const size_t nc = n - j0 < OCTET_F32_GEMM_NR ? n - j0 : OCTET_F32_GEMM_NR;
      for (size_t kk = k0; kk < k0 + kc; kk++, packed += OCTET_F32_GEMM_NR)
        for (size_t j = 0; j < nc; j++) b[kk * ldb + j0 + j] = packed[j];
    }
  }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define OCTET_AVX2 __attribute__((target("avx2,fma")))
#define OCTET_GEMM_MC 72
/// Software prefetch distance into the packed B stream, in floats (32 steps of 16 = 2 KB).
#define OCTET_GEMM_PREFETCH (32 * OCTET_F32_GEMM_NR)

typedef struct {
  const float* bias;      // already offset to the tile's first column, or NULL
  const float* residual;  // already offset to the tile, or NULL
  size_t ldr;
  int32_t act;
  int first;  // first K block: C is not read
  int last;   // last K block: apply bias, residual, activation
} octet_gemm_epilogue;

// The epilogue touches rows of C and of the residual that are often cold (a fresh output buffer, a
// shortcut written several layers ago); a tile starts fetching them before its k loop so the loads
// overlap it instead of stalling after it. Both ends of each row, as it may straddle two lines.
static inline __attribute__((always_inline)) void octet_gemm_prefetch_epilogue(
    const int MR, size_t mr, size_t nr, const float* c, size_t ldc, const octet_gemm_epilogue* e) {
  for (int r = 0; r < MR && r < (int)mr; r++) {
    __builtin_prefetch(c + (size_t)r * ldc, 1);
    __builtin_prefetch(c + (size_t)r * ldc + nr - 1, 1);
    if (e->last && e->residual != NULL) {
      __builtin_prefetch(e->residual + (size_t)r * e->ldr, 0);
      __builtin_prefetch(e->residual + (size_t)r * e->ldr + nr - 1, 0);
    }
  }
}

// MR x NR tile (MR <= 6, NR 8 or 16) over kc steps. Rows/columns past (mr, nr) are computed on
// duplicated/zero data and not stored. Specialized by the compiler for each constant MR and NR.
static inline __attribute__((always_inline)) OCTET_AVX2 void octet_gemm_tile(
    const int MR, const int NR, size_t kc, const float* a, size_t lda, size_t mr, size_t nr,
    const float* b, float* c, size_t ldc, const octet_gemm_epilogue* e) {
  const int NV = NR / 8;
  const float* rows[6];
  for (int r = 0; r < MR; r++) rows[r] = a + (r < (int)mr ? (size_t)r : mr - 1) * lda;
  octet_gemm_prefetch_epilogue(MR, mr, nr, c, ldc, e);
  __m256 acc[6][2];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();

  for (size_t k = 0; k < kc; k++, b += OCTET_F32_GEMM_NR) {
    // Past the end of the block this runs into the next panel, which is read next anyway.
    _mm_prefetch((const char*)(b + OCTET_GEMM_PREFETCH), _MM_HINT_T0);
    __m256 bv[2];
    for (int v = 0; v < NV; v++) bv[v] = _mm256_load_ps(b + 8 * v);
    for (int r = 0; r < MR; r++) {
      const __m256 av = _mm256_broadcast_ss(rows[r] + k);
      for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }

  if ((int)mr == MR && (int)nr == NR) {
    float lo_s, hi_s;
    octet_f32_act_bounds(e->act, &lo_s, &hi_s);
    const __m256 lo = _mm256_set1_ps(lo_s), hi = _mm256_set1_ps(hi_s);
    for (int r = 0; r < MR; r++) {
      float* crow = c + (size_t)r * ldc;
      for (int v = 0; v < NV; v++) {
        __m256 x = acc[r][v];
        if (!e->first) x = _mm256_add_ps(x, _mm256_loadu_ps(crow + 8 * v));
        if (e->last) {
          if (e->bias != NULL) x = _mm256_add_ps(x, _mm256_loadu_ps(e->bias + 8 * v));
          if (e->residual != NULL)
            x = _mm256_add_ps(x, _mm256_loadu_ps(e->residual + (size_t)r * e->ldr + 8 * v));
          if (e->act != OCTET_F32_ACT_NONE) x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
        }
        _mm256_storeu_ps(crow + 8 * v, x);
      }
    }
    return;
  }

  // Partial tile: spill and finish the valid part in scalar code.
  float tmp[6][16];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) _mm256_storeu_ps(&tmp[r][8 * v], acc[r][v]);
  float lo, hi;
  octet_f32_act_bounds(e->act, &lo, &hi);
  for (size_t r = 0; r < mr; r++) {
    float* crow = c + r * ldc;
    for (size_t j = 0; j < nr; j++) {
      float x = tmp[r][j];
      if (!e->first) x += crow[j];
      if (e->last) {
        if (e->bias != NULL) x += e->bias[j];
        if (e->residual != NULL) x += e->residual[r * e->ldr + j];
        if (e->act != OCTET_F32_ACT_NONE) x = octet_f32_clamp(x, lo, hi);
      }
      crow[j] = x;
    }
  }
}

#define OCTET_GEMM_TILE_CASES(NR)                                               \
  switch (mr) {                                                                 \
    case 6: octet_gemm_tile(6, NR, kc, a, lda, mr, nr, b, c, ldc, e); break;    \
    case 5: octet_gemm_tile(5, NR, kc, a, lda, mr, nr, b, c, ldc, e); break;    \
    case 4: octet_gemm_tile(4, NR, kc, a, lda, mr, nr, b, c, ldc, e); break;    \
    case 3: octet_gemm_tile(3, NR, kc, a, lda, mr, nr, b, c, ldc, e); break;    \
    case 2: octet_gemm_tile(2, NR, kc, a, lda, mr, nr, b, c, ldc, e); break;    \
    default: octet_gemm_tile(1, NR, kc, a, lda, mr, nr, b, c, ldc, e); break;   \
  }

static OCTET_AVX2 void octet_gemm_tile_any(size_t kc, const float* a, size_t lda, size_t mr,
                                           size_t nr, const float* b, float* c, size_t ldc,
                                           const octet_gemm_epilogue* e) {
  if (nr > 8) {
    OCTET_GEMM_TILE_CASES(16)
  } else {
    OCTET_GEMM_TILE_CASES(8)
  }
}

typedef void (*octet_gemm_tile_fn)(size_t kc, const float* a, size_t lda, size_t mr, size_t nr, const float* b,
                                   float* c, size_t ldc, const octet_gemm_epilogue* e);

// The blocking both kernels share: K blocks of KC rows (B's packed blocks), A in blocks of MC rows,
// then tiles of `tile_rows` x `tile_cols` (whole panels); the tile function is a constant after
// inlining.
static inline __attribute__((always_inline)) void octet_gemm_blocks(
    octet_gemm_tile_fn tile, size_t tile_rows, size_t tile_cols, size_t m, size_t n, size_t k, const float* a,
    size_t lda, const float* packed_b, size_t j_begin, size_t j_end, float* c, size_t ldc, const float* bias,
    const float* residual, size_t ldr, int32_t act) {
  const size_t padded_n = (n + OCTET_F32_GEMM_NR - 1) / OCTET_F32_GEMM_NR * OCTET_F32_GEMM_NR;
  for (size_t k0 = 0; k0 < k; k0 += OCTET_GEMM_KC) {
    const size_t kc = k - k0 < OCTET_GEMM_KC ? k - k0 : OCTET_GEMM_KC;
    const float* block = packed_b + k0 * padded_n;
    for (size_t m0 = 0; m0 < m; m0 += OCTET_GEMM_MC) {
      const size_t mc = m - m0 < OCTET_GEMM_MC ? m - m0 : OCTET_GEMM_MC;
      for (size_t j0 = j_begin; j0 < j_end; j0 += tile_cols) {
        const size_t nr = j_end - j0 < tile_cols ? j_end - j0 : tile_cols;
        const float* b = block + j0 * kc;
        for (size_t i = m0; i < m0 + mc; i += tile_rows) {
          const size_t mr = m0 + mc - i < tile_rows ? m0 + mc - i : tile_rows;
          const octet_gemm_epilogue e = {
              .bias = bias != NULL ? bias + j0 : NULL,
              .residual = residual != NULL ? residual + i * ldr + j0 : NULL,
              .ldr = ldr,
              .act = act,
              .first = k0 == 0,
              .last = k0 + kc == k,
          };
          tile(kc, a + i * lda + k0, lda, mr, nr, b, c + i * ldc + j0, ldc, &e);
        }
      }
    }
  }
}

void OCTET_AVX2 octet_f32_gemm_6x16__avx2fma(size_t m, size_t n, size_t k, const float* a,
                                             size_t lda, const float* packed_b, size_t j_begin,
                                             size_t j_end, float* c, size_t ldc, const float* bias,
                                             const float* residual, size_t ldr, int32_t act) {
  if (k == 0) {
    // Degenerate product: C is just the epilogue applied to zeros.
    for (size_t i = 0; i < m; i++)
      memset(c + i * ldc + j_begin, 0, (j_end - j_begin) * sizeof(float));
    octet_f32_bias_residual_act(c + j_begin, m, j_end - j_begin, ldc,
                                bias != NULL ? bias + j_begin : NULL,
                                residual != NULL ? residual + j_begin : NULL, ldr, act);
    return;
  }
  octet_gemm_blocks(octet_gemm_tile_any, 6, OCTET_F32_GEMM_NR, m, n, k, a, lda, packed_b, j_begin, j_end, c,
                    ldc, bias, residual, ldr, act);
}
// MARK: - AVX-512F: the same packed B, tiles of 8 rows x 32 columns (two panels)
//
// 16 zmm accumulators; each k step loads 16 floats of each of the two panels and broadcasts one
// element of each of the 8 rows (one vbroadcastss, shared by the row's two FMAs). Column tails use
// masked loads and stores instead of a scalar spill. The sums are those of the AVX2 kernel, one FMA
// per k in the same order, so both give the same floats.

#define OCTET_AVX512 __attribute__((target("avx512f,avx2,fma")))

static inline __attribute__((always_inline)) OCTET_AVX512 void octet_gemm512_tile(
    const int MR, const int NP, size_t kc, const float* a, size_t lda, size_t mr, size_t nr,
    const float* b, float* c, size_t ldc, const octet_gemm_epilogue* e) {
  const float* rows[8];
  for (int r = 0; r < MR; r++) rows[r] = a + (r < (int)mr ? (size_t)r : mr - 1) * lda;
  octet_gemm_prefetch_epilogue(MR, mr, nr, c, ldc, e);
  const float* b1 = b + kc * OCTET_F32_GEMM_NR;  // the second panel of the same K block
  __m512 acc[8][2];
  for (int r = 0; r < MR; r++)
    for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
  for (size_t k = 0; k < kc; k++) {
    const size_t o = k * OCTET_F32_GEMM_NR;
    _mm_prefetch((const char*)(b + o + OCTET_GEMM_PREFETCH), _MM_HINT_T0);
    if (NP == 2) _mm_prefetch((const char*)(b1 + o + OCTET_GEMM_PREFETCH), _MM_HINT_T0);
    __m512 bv[2];
    bv[0] = _mm512_loadu_ps(b + o);
    if (NP == 2) bv[1] = _mm512_loadu_ps(b1 + o);
    for (int r = 0; r < MR; r++) {
      const __m512 av = _mm512_set1_ps(rows[r][k]);
      for (int p = 0; p < NP; p++) acc[r][p] = _mm512_fmadd_ps(av, bv[p], acc[r][p]);
    }
  }
  float lo_s, hi_s;
  octet_f32_act_bounds(e->act, &lo_s, &hi_s);
  const __m512 lo = _mm512_set1_ps(lo_s), hi = _mm512_set1_ps(hi_s);
  for (int r = 0; r < MR && r < (int)mr; r++) {
    float* crow = c + (size_t)r * ldc;
    for (int p = 0; p < NP; p++) {
      const size_t j = (size_t)p * 16;
      if (j >= nr) break;
      const __mmask16 mask = nr - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nr - j)) - 1);
      __m512 x = acc[r][p];
      if (!e->first) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, crow + j));
      if (e->last) {
        if (e->bias != NULL) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, e->bias + j));
        if (e->residual != NULL)
          x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, e->residual + (size_t)r * e->ldr + j));
        if (e->act != OCTET_F32_ACT_NONE) x = _mm512_min_ps(hi, _mm512_max_ps(lo, x));
      }
      _mm512_mask_storeu_ps(crow + j, mask, x);
    }
  }
}

#define OCTET_GEMM512_TILE_CASES(NP)                                                \
  switch (mr) {                                                                     \
    case 8: octet_gemm512_tile(8, NP, kc, a, lda, mr, nr, b, c, ldc, e); break;     \
    case 7: octet_gemm512_tile(7, NP, kc, a, lda, mr, nr, b, c, ldc, e); break;     \
    case 6: octet_gemm512_tile(6, NP, kc, a, lda, mr, nr, b, c, ldc, e); break;     \
    case 5: octet_gemm512_tile(5, NP, kc, a, lda, mr, nr, b, c, ldc, e); break;     \
    case 4: octet_gemm512_tile(4, NP, kc, a, lda, mr, nr, b, c, ldc, e); break;     \
    case 3: octet_gemm512_tile(3, NP, kc, a, lda, mr, nr, b, c, ldc, e); break;     \
    case 2: octet_gemm512_tile(2, NP, kc, a, lda, mr, nr, b, c, ldc, e); break;     \
    default: octet_gemm512_tile(1, NP, kc, a, lda, mr, nr, b, c, ldc, e); break;    \
  }

static OCTET_AVX512 void octet_gemm512_tile_any(size_t kc, const float* a, size_t lda, size_t mr, size_t nr,
                                                const float* b, float* c, size_t ldc,
                                                const octet_gemm_epilogue* e) {
  if (nr > 16) {
    OCTET_GEMM512_TILE_CASES(2)
  } else {
    OCTET_GEMM512_TILE_CASES(1)
  }
}

void OCTET_AVX512 octet_f32_gemm_8x32__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                               const float* packed_b, size_t j_begin, size_t j_end, float* c,
                                               size_t ldc, const float* bias, const float* residual, size_t ldr,
                                               int32_t act) {
  if (k == 0) {
    octet_f32_gemm_6x16__avx2fma(m, n, k, a, lda, packed_b, j_begin, j_end, c, ldc, bias, residual, ldr, act);
    return;
  }
  octet_gemm_blocks(octet_gemm512_tile_any, 8, 2 * OCTET_F32_GEMM_NR, m, n, k, a, lda, packed_b, j_begin, j_end,
                    c, ldc, bias, residual, ldr, act);
}
#endif

// MARK: - Dispatch

int octet_f32_cpu_has_avx512f(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return octet_f32_cpu_has_avx2fma() && __builtin_cpu_supports("avx512f");
#else
  return 0;
#endif
}

octet_f32_gemm_isa octet_f32_gemm_isa_for_request(const char* request) {
  const int avx512 = octet_f32_cpu_has_avx512f();
  if (request != NULL && strcmp(request, "avx2") == 0) return OCTET_F32_GEMM_AVX2;
  return avx512 ? OCTET_F32_GEMM_AVX512 : OCTET_F32_GEMM_AVX2;
}

#if defined(__x86_64__) || defined(__i386__)
#include <stdatomic.h>
#include <stdlib.h>
static _Atomic int octet_gemm_isa_cached = -1;

octet_f32_gemm_isa octet_f32_gemm_default_isa(void) {
  int isa = atomic_load_explicit(&octet_gemm_isa_cached, memory_order_relaxed);
  if (isa < 0) {
    isa = (int)octet_f32_gemm_isa_for_request(getenv("OCTET_FLOAT_GEMM"));
    atomic_store_explicit(&octet_gemm_isa_cached, isa, memory_order_relaxed);
  }
  return (octet_f32_gemm_isa)isa;
}

void octet_f32_gemm_packed(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* packed_b,
                           size_t j_begin, size_t j_end, float* c, size_t ldc, const float* bias,
                           const float* residual, size_t ldr, int32_t act) {
  if (octet_f32_gemm_default_isa() == OCTET_F32_GEMM_AVX512)
    octet_f32_gemm_8x32__avx512f(m, n, k, a, lda, packed_b, j_begin, j_end, c, ldc, bias, residual, ldr, act);
  else
    octet_f32_gemm_6x16__avx2fma(m, n, k, a, lda, packed_b, j_begin, j_end, c, ldc, bias, residual, ldr, act);
}
#endif
