// AVX-512 VNNI kernel: vpdpbusd multiplies 4 u8 activations by 4 s8 weights and adds the four
// products to an int32 lane in one instruction, with no intermediate saturation. The epilogue is
// the AVX2 one (every AVX-512 CPU has AVX2).
#if defined(OCTET_EMULATE_ISA)
#include "emulate_x86.h"
#elif defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__x86_64__) || defined(OCTET_EMULATE_ISA)
#include "common.h"

#if defined(OCTET_EMULATE_ISA)
#define VNNI
#define OCTET_GEMM octet_i8_gemm__avx512vnni_emulated
#define OCTET_EPILOGUE octet_i8_epilogue__emulated
#else
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2")))
#define VNNI_DW __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2")))
#define OCTET_GEMM octet_i8_gemm__avx512vnni
#define OCTET_EPILOGUE octet_i8_epilogue__avx2
#endif

// The native build finishes tiles of 16 or 32 columns (8 rows, or the 1-7 rows left at the end of
// an image's rows, each row count its own kernel) from their registers with the AVX2 kernels' fused epilogue
// (finish_row16: the 32-bit fast form of §3 and the folded residual add of §8, the same code the
// AVX2 GEMMs run), each zmm accumulator split into its two ymm halves; the per-tensor constants are
// loaded once per call; finish16_512 (qu8-epilogue-avx512.h) does it on 16 lanes, in the fast form or, for any
// shift, the general one. Narrower column tails, int32 outputs and unfolded residual adds without
// the fast form store the accumulators and run the general epilogue. The emulated build (tests on any CPU)
// always takes that path.
#if !defined(OCTET_EMULATE_ISA)
#include "qu8-epilogue-avx512.h"

/// N output pixels of a depthwise convolution (N a compile-time constant after inlining): one
/// accumulator chain per pixel, four taps per vpdpbusd, then the epilogue (finish16_512 where the
/// fused form applies, else finish8 on each half). `off` has `quads * 4` entries.
VNNI_DW __attribute__((always_inline)) static inline void dw_pixels(
    size_t N, const uint8_t* base, size_t step, const size_t* off, size_t quads, const __m512i* wq, __m512i bias,
    __m512i idx01, __m512i idx23, const ep_consts* k, const consts512* c5, int use512, const cols16* p16,
    const cols8* p0, const cols8* p1, const octet_i8_epilogue* ep, size_t pixel, size_t c, size_t c0,
    uint8_t* out) {
  __m512i acc[4];
  for (size_t i = 0; i < N; i++) acc[i] = bias;
  for (size_t q = 0; q < quads; q++) {
    const size_t* o = off + 4 * q;
    for (size_t i = 0; i < N; i++) {
      const uint8_t* b = base + i * step;
      // The lane of channel j gets the bytes (x_0[j], x_1[j], x_2[j], x_3[j]) of the quad's taps.
      const __m512i a = _mm512_permutex2var_epi8(_mm512_castsi128_si512(_mm_loadu_si128((const __m128i*)(b + o[0]))),
                                                 idx01,
                                                 _mm512_castsi128_si512(_mm_loadu_si128((const __m128i*)(b + o[1]))));
      const __m512i d = _mm512_permutex2var_epi8(_mm512_castsi128_si512(_mm_loadu_si128((const __m128i*)(b + o[2]))),
                                                 idx23,
                                                 _mm512_castsi128_si512(_mm_loadu_si128((const __m128i*)(b + o[3]))));
      acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_mask_blend_epi8(0xCCCCCCCCCCCCCCCCull, a, d), wq[q]);
    }
  }
  for (size_t i = 0; i < N; i++) {
    const uint8_t* res = k->residual ? ep->residual + (pixel + i) * ep->ld_residual + c0 : NULL;
    uint8_t* dst = out + (pixel + i) * c + c0;
    if (use512) {
      finish16_512(acc[i], p16, k, c5, dst, res);
    } else {
      finish8(_mm512_castsi512_si256(acc[i]), p0, k, 0, res, dst);
      finish8(_mm512_extracti64x4_epi64(acc[i], 1), p1, k, 0, res ? res + 8 : NULL, dst + 8);
    }
  }
}

/// Depthwise convolution on AVX-512 VNNI + VBMI (the contract of octet_i8_dwconv__avx2; the same
/// int16 weights, which are the int8 weights widened): 16 channels in the 16 int32 lanes of a zmm, four taps
/// per vpdpbusd. Two vpermt2b put each channel's codes at four taps into its lane's four bytes, the
/// weights' lane holds the channel's four int8 weights, so one instruction adds the four products
/// u8 x s8 to the lane exactly, with no intermediate saturation (the int32 sum is the AVX2
/// kernel's: both wrap alike). A last quad with fewer taps repeats a tap with weight 0. Four output
/// pixels at a time (four independent chains), the row's last 1-3 together. Channel counts that
/// are not a multiple of 16 (every layer of Lite0 and MobileNetV2 is) and kernels of more than 64
/// taps go to the AVX2 kernel.
VNNI_DW void octet_i8_dwconv__avx512vnni(const octet_i8_window* w, const uint8_t* padded, int32_t padded_w,
                                         const int16_t* weights, const octet_i8_epilogue* ep, int32_t oy0,
                                         int32_t oy1, uint8_t* out) {
  const size_t c = (size_t)w->channels, pw = (size_t)padded_w;
  const size_t taps = (size_t)(w->kernel_h * w->kernel_w), quads = (taps + 3) / 4;
  if (taps > 64 || c % 16 != 0) {
    octet_i8_dwconv__avx2(w, padded, padded_w, weights, ep, oy0, oy1, out);
    return;
  }
  ep_consts k = load_consts(ep);
  (void)fused_epilogue_consts(&k, ep, 0, c);  // sets k.fast33
  const consts512 c5 = consts512_of(&k, ep->int32_output);
  const int use512 = c5.use512;
  size_t off[64];  // each tap's byte offset from the window's corner; the last quad's spares repeat tap 0
  for (size_t t = 0; t < 4 * quads; t++) {
    const size_t tap = t < taps ? t : 0;
    off[t] = ((size_t)(tap / (size_t)w->kernel_w) * pw + tap % (size_t)w->kernel_w) * c;
  }
  // Byte 4j + t of the lane comes from byte j of tap t's load (t = 0, 1 from the first pair of
  // tables, t = 2, 3 from the second; bit 6 of an index picks the second table).
  uint8_t i01[64], i23[64];
  for (int j = 0; j < 16; j++) {
    i01[4 * j] = (uint8_t)j;
    i01[4 * j + 1] = (uint8_t)(64 + j);
    i01[4 * j + 2] = i01[4 * j + 3] = (uint8_t)j;
    i23[4 * j] = i23[4 * j + 1] = (uint8_t)j;
    i23[4 * j + 2] = (uint8_t)j;
    i23[4 * j + 3] = (uint8_t)(64 + j);
  }
  const __m512i idx01 = _mm512_loadu_si512(i01), idx23 = _mm512_loadu_si512(i23);
  const size_t step = (size_t)w->stride_w * c;  // from one output pixel's window to the next
  const size_t ow = (size_t)w->out_w;
  for (size_t c0 = 0; c0 < c; c0 += 16) {
    // The weights' quads, gathered as the codes are: tap t's 16 weights narrowed to bytes (they are
    // int8 values), spare taps 0.
    __m512i wq[16];
    for (size_t q = 0; q < quads; q++) {
      __m512i n[4];
      for (size_t t = 0; t < 4; t++)
        n[t] = 4 * q + t < taps ? _mm512_castsi128_si512(_mm256_cvtepi16_epi8(
                                      _mm256_loadu_si256((const __m256i*)(weights + (4 * q + t) * c + c0))))
                                : _mm512_setzero_si512();
      wq[q] = _mm512_mask_blend_epi8(0xCCCCCCCCCCCCCCCCull, _mm512_permutex2var_epi8(n[0], idx01, n[1]),
                                     _mm512_permutex2var_epi8(n[2], idx23, n[3]));
    }
    const __m512i bias = _mm512_loadu_si512(ep->bias + c0);
    // finish16_512 takes its columns' constants in the fast = 1 layout (cols16), finish8 in k.fast's.
    const int fast_layout = use512 ? 1 : k.fast;
    const cols8 p0 = load_cols8(ep, c0, fast_layout), p1 = load_cols8(ep, c0 + 8, fast_layout);
    cols16 p16;
    if (use512) p16 = cols16_of(&p0, &p1);
    for (int32_t oy = oy0; oy < oy1; oy++) {
      const uint8_t* row = padded + (size_t)(oy * w->stride_h) * pw * c + c0;
      const size_t pixel0 = (size_t)oy * ow;
      size_t ox = 0;
#define OCTET_DW_PIXELS(N)                                                                                    \
  dw_pixels(N, row + ox * step, step, off, quads, wq, bias, idx01, idx23, &k, &c5, use512, &p16, &p0, &p1, ep, \
            pixel0 + ox, c, c0, out)
      for (; ox + 4 <= ow; ox += 4) OCTET_DW_PIXELS(4);
      switch (ow - ox) {
        case 3: OCTET_DW_PIXELS(3); break;
        case 2: OCTET_DW_PIXELS(2); break;
        case 1: OCTET_DW_PIXELS(1); break;
        default: break;
      }
#undef OCTET_DW_PIXELS
    }
  }
}

#define OCTET_VNNI_FINISH(NP, MR)                                                                 \
  if (o != NULL && o[0].fused) {                                                                  \
    if (c5->use512) {                                                                             \
      for (size_t i = 0; i < MR; i++)                                                             \
        for (size_t p = 0; p < NP; p++)                                                           \
          finish16_512(c[i][p], &p16[p], o[p].k, c5, o[p].out + i * o[p].ldc,                      \
                       o[p].res ? o[p].res + i * o[p].ld_res : NULL);                              \
    } else {                                                                                      \
      for (size_t i = 0; i < MR; i++)                                                             \
        for (size_t p = 0; p < NP; p++)                                                           \
          finish_row16(_mm512_castsi512_si256(c[i][p]), _mm512_extracti64x4_epi64(c[i][p], 1), &o[p], i, -1); \
    }                                                                                             \
    return;                                                                                       \
  }
typedef tile_out vnni_out;
#define OCTET_VNNI_EXTRA , const cols16* p16, const consts512* c5
#define OCTET_VNNI_EXTRA_ARGS , p16, &c5
#else
#define OCTET_VNNI_FINISH(NP, MR)
typedef struct { int fused; } vnni_out;
#define OCTET_VNNI_EXTRA
#define OCTET_VNNI_EXTRA_ARGS
#endif

// MR rows (1 to 8; a tile of fewer rows than 8 is the tail of an image's rows, e.g. 49 = 6 * 8 + 1
// on a 7x7 layer, and computes only its own rows) x (16 * NP) columns over the whole K.
// `o` (NP of them, one per 16 columns): where a fused tile's codes go; otherwise acc gets the sums.
#define OCTET_VNNI_KERNEL(NAME, NP, MR)                                                           \
  VNNI static void NAME(const uint8_t* a, size_t lda, size_t rows, const int8_t* b, size_t kp,    \
                        size_t kg, const int32_t* bias, const vnni_out* o, int32_t acc[8][32] OCTET_VNNI_EXTRA) { \
    const uint8_t* r[MR];                                                                         \
    (void)rows;                                                                                   \
    for (size_t i = 0; i < MR; i++) r[i] = a + i * lda;                                           \
    __m512i c[MR][NP];                                                                            \
    for (size_t p = 0; p < NP; p++) {                                                             \
      const __m512i bv = _mm512_loadu_si512(bias + 16 * p);                                       \
      for (size_t i = 0; i < MR; i++) c[i][p] = bv;                                               \
    }                                                                                             \
    for (size_t g = 0; g < kg; g++) {                                                             \
      __m512i w[NP];                                                                              \
      for (size_t p = 0; p < NP; p++) w[p] = _mm512_load_si512(b + p * kp * 16 + g * 64);         \
      for (size_t i = 0; i < MR; i++) {                                                           \
        const __m512i x = _mm512_set1_epi32(octet_load_i32(r[i] + 4 * g));                        \
        for (size_t p = 0; p < NP; p++) c[i][p] = _mm512_dpbusd_epi32(c[i][p], x, w[p]);          \
      }                                                                                           \
    }                                                                                             \
    OCTET_VNNI_FINISH(NP, MR)                                                                     \
    for (size_t i = 0; i < MR; i++)                                                               \
      for (size_t p = 0; p < NP; p++) _mm512_storeu_si512(acc[i] + 16 * p, c[i][p]);              \
  }

#define OCTET_VNNI_ROWS(R) OCTET_VNNI_KERNEL(kernel_##R##x32, 2, R) OCTET_VNNI_KERNEL(kernel_##R##x16, 1, R)
OCTET_VNNI_ROWS(1)
OCTET_VNNI_ROWS(2)
OCTET_VNNI_ROWS(3)
OCTET_VNNI_ROWS(4)
OCTET_VNNI_ROWS(5)
OCTET_VNNI_ROWS(6)
OCTET_VNNI_ROWS(7)
OCTET_VNNI_ROWS(8)
#undef OCTET_VNNI_ROWS

typedef void (*vnni_kernel)(const uint8_t*, size_t, size_t, const int8_t*, size_t, size_t, const int32_t*,
                            const vnni_out*, int32_t[8][32] OCTET_VNNI_EXTRA);
// [rows - 1]: the kernel of that many rows, 32 or 16 columns wide.
static const vnni_kernel kernels32[8] = {kernel_1x32, kernel_2x32, kernel_3x32, kernel_4x32,
                                         kernel_5x32, kernel_6x32, kernel_7x32, kernel_8x32};
static const vnni_kernel kernels16[8] = {kernel_1x16, kernel_2x16, kernel_3x16, kernel_4x16,
                                         kernel_5x16, kernel_6x16, kernel_7x16, kernel_8x16};

VNNI void OCTET_GEMM(const uint8_t* a, size_t lda, const int8_t* b, size_t kp,
                                    size_t n, size_t m0, size_t m1, size_t n0, size_t n1,
                                    const octet_i8_epilogue* ep, void* out, size_t ldc) {
  // When B fits in L2: blocks of about 16 KB of A (at least one tile's rows), so a panel's
  // per-column constants and bias are set up once for several tiles; at K = 64 setting them up for
  // every 8-row tile cost a third of the layer (ResNet50 at 1 thread went from 1.18 to 1.11 of ORT's
  // time on a Zen 4). Else L2-sized A blocks, as in the AVX2 kernels.
  const size_t b_bytes = kp * octet_round_up(n, OCTET_I8_NR);
  size_t mc = b_bytes <= 256 * 1024 ? (16 * 1024) / kp / 8 * 8 : (160 * 1024) / kp / 8 * 8;
  if (mc < 8) mc = 8;
  int32_t acc[8][32];
  int32_t bias[32];
  vnni_out o[2];
  o[0].fused = o[1].fused = 0;
#if !defined(OCTET_EMULATE_ISA)
  ep_consts k = load_consts(ep);
  const int fusable = fused_epilogue_consts(&k, ep, n0, n1);
  const consts512 c5 = consts512_of(&k, ep->int32_output);
  cols16 p16[2];
  for (size_t p = 0; p < 2; p++) {
    o[p].k = &k;
    o[p].ldc = ldc;
    o[p].ld_res = ep->ld_residual;
  }
#endif
  for (size_t mb = m0; mb < m1; mb += mc) {
    const size_t me = mb + mc < m1 ? mb + mc : m1;
    for (size_t p0 = n0; p0 < n1; p0 += 2 * OCTET_I8_NR) {
      const size_t cols = n1 - p0 < 2 * OCTET_I8_NR ? n1 - p0 : 2 * OCTET_I8_NR;
      for (size_t j = 0; j < 32; j++) bias[j] = j < cols ? ep->bias[p0 + j] : 0;
      const int8_t* panel = b + (p0 / OCTET_I8_NR) * kp * OCTET_I8_NR;
      // A tile is fused when its columns fill its kernel's width (32, or 16 at the end).
#if !defined(OCTET_EMULATE_ISA)
      const int whole = whole_tile_cols(ep, fusable, &c5, p0, cols, o, p16);
#endif
      for (size_t m = mb; m < me; m += 8) {
        const size_t rows = me - m < 8 ? me - m : 8;
#if !defined(OCTET_EMULATE_ISA)
        o[0].fused = whole;
        for (size_t p = 0; p < 2; p++) {
          o[p].out = (uint8_t*)out + m * ldc + p0 + 16 * p;
          o[p].res = k.residual ? ep->residual + m * ep->ld_residual + p0 + 16 * p : NULL;
        }
#endif
        (cols > OCTET_I8_NR ? kernels32 : kernels16)[rows - 1](a + m * lda, lda, rows, panel, kp, kp / 4, bias, o,
                                                               acc OCTET_VNNI_EXTRA_ARGS);
        if (o[0].fused) continue;
#if !defined(OCTET_EMULATE_ISA)
        epilogue_block(&acc[0][0], 32, m, rows, p0, cols, ep, &k, out, ldc);
#else
        OCTET_EPILOGUE(&acc[0][0], 32, m, rows, p0, cols, ep, out, ldc);
#endif
      }
    }
  }
}
#endif
