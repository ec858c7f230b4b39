// Private to CInt8Kernels: the fused epilogue on 16 int32 lanes (AVX-512), shared by the native
// avx512vnni and amx GEMMs and the VNNI depthwise kernel. Include only under #if defined(__x86_64__)
// and not in the emulated builds.
#pragma once
#include "qu8s8-gemm-6x16-avx2.h"

#define AVX512_EPI __attribute__((target("avx512f,avx512bw,avx512vl,avx2")))

// The fused epilogue on 16 lanes at once: finish_row16's arithmetic (§3's fast form, the folded
// residual add of §8, the saturating store) written with AVX-512 instructions, lane for lane the
// same operations, so the same codes; and §3's general form (any shift), which AVX-512 can do in
// 64-bit lanes directly (arithmetic shifts and min/max of int64). Used when there is no residual
// add or it has the folded form (k->add_fold); otherwise finish_row16 runs on the two halves.
// Built from cols8 loaded with fast = 1 (rnd_e, rnd_o = 2^(n-1), without the AVX2 general form's
// 2^62 bias).
typedef struct {
  __m512i mult, mult_odd, rnd_e, rnd_o, rnd32, post, sh_e, sh_o;
} cols16;

typedef struct {
  __m512i zout, lo, hi, lo_rel, hi_rel, lo64, hi64, add_lo, add_hi, madd_hi, madd_lo, fold_ch, fold_cl, zero;
  __m128i madd_post;
  // finish16_512 serves this epilogue (any shift; no residual add or the folded one; 8-bit output).
  // 0: finish_row16 on the halves for fused tiles, the general epilogue otherwise.
  int use512;
} consts512;

AVX512_EPI static inline __m512i octet_join(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

AVX512_EPI static inline cols16 cols16_of(const cols8* a, const cols8* b) {
  cols16 p;
  p.mult = octet_join(a->mult, b->mult);
  p.mult_odd = octet_join(a->mult_odd, b->mult_odd);
  p.rnd_e = octet_join(a->rnd_e, b->rnd_e);
  p.rnd_o = octet_join(a->rnd_o, b->rnd_o);
  p.rnd32 = octet_join(a->rnd32, b->rnd32);
  p.post = octet_join(a->post, b->post);
  p.sh_e = octet_join(a->sh_e, b->sh_e);
  p.sh_o = octet_join(a->sh_o, b->sh_o);
  return p;
}

// Each per-tensor constant of `k` (the same in every lane) widened to 16 lanes.
#define OCTET_WIDE(f) c.f = octet_join(k->f, k->f)
AVX512_EPI static inline consts512 consts512_of(const ep_consts* k, int int32_output) {
  consts512 c;
  OCTET_WIDE(zout);
  OCTET_WIDE(lo);
  OCTET_WIDE(hi);
  OCTET_WIDE(lo_rel);
  OCTET_WIDE(hi_rel);
  OCTET_WIDE(lo64);
  OCTET_WIDE(hi64);
  c.use512 = (!k->residual || k->add_fold) && !int32_output;
  if (k->residual && k->add_fold) {
    OCTET_WIDE(add_lo);
    OCTET_WIDE(add_hi);
    OCTET_WIDE(madd_hi);
    OCTET_WIDE(madd_lo);
    OCTET_WIDE(fold_ch);
    OCTET_WIDE(fold_cl);
    c.madd_post = k->madd_post;
  }
  c.zero = _mm512_setzero_si512();
  return c;
}
#undef OCTET_WIDE

/// finish_row16 on one zmm of 16 accumulators: requant8_y, then the residual add (folded form) or
/// the zero point and clamp, then store_sat16's saturation to [0, 255].
AVX512_EPI static inline void finish16_512(__m512i acc, const cols16* p, const ep_consts* k, const consts512* c,
                                     uint8_t* dst, const uint8_t* res) {
  const __m512i ye = _mm512_mul_epi32(acc, p->mult);
  const __m512i yo = _mm512_mul_epi32(_mm512_srli_epi64(acc, 32), p->mult_odd);
  __m512i q;
  if (!k->fast) {
    // §3 as written: y = (acc * m + 2^(n-1)) >> n in int64 (|acc * m| < 2^62), clamped to
    // [lo - z, hi - z] in int64, then narrowed: the even lanes' low halves, the odd lanes' moved up.
    const __m512i e = _mm512_min_epi64(
        _mm512_max_epi64(_mm512_srav_epi64(_mm512_add_epi64(ye, p->rnd_e), p->sh_e), c->lo64), c->hi64);
    const __m512i o = _mm512_min_epi64(
        _mm512_max_epi64(_mm512_srav_epi64(_mm512_add_epi64(yo, p->rnd_o), p->sh_o), c->lo64), c->hi64);
    q = _mm512_mask_blend_epi32(0xAAAA, e, _mm512_slli_epi64(o, 32));
  } else if (k->fast33)
    q = _mm512_srav_epi32(
        _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(ye, 32), yo), p->rnd32), p->post);
  else
    q = _mm512_srav_epi32(_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(_mm512_add_epi64(ye, p->rnd_e), 32),
                                                  _mm512_add_epi64(yo, p->rnd_o)),
                          p->post);
  if (k->residual) {
    const __m512i da = _mm512_min_epi32(_mm512_max_epi32(q, c->lo_rel), c->hi_rel);
    const __m512i r = _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)res)), 16);
    const __m512i pr = _mm512_mask_blend_epi16(0xAAAAAAAA, da, r);
    const __m512i h = _mm512_add_epi32(_mm512_madd_epi16(pr, c->madd_hi), c->fold_ch);
    const __m512i l = _mm512_srai_epi32(_mm512_add_epi32(_mm512_madd_epi16(pr, c->madd_lo), c->fold_cl), 16);
    q = _mm512_sra_epi32(_mm512_add_epi32(h, l), c->madd_post);
    if (!k->add_sat8) {
      // add_lo, add_hi are inside [0, 255]: after this clamp the codes fit a byte as they are.
      _mm_storeu_si128((__m128i*)dst,
                       _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(q, c->add_lo), c->add_hi)));
      return;
    }
  } else {
    q = _mm512_add_epi32(q, c->zout);
    if (!k->sat8) {
      // lo, hi are inside [0, 255] (8-bit outputs only come here): the same.
      _mm_storeu_si128((__m128i*)dst, _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(q, c->lo), c->hi)));
      return;
    }
  }
  // The clamp is [0, 255]: max with 0, then the unsigned saturating narrowing does the top.
  _mm_storeu_si128((__m128i*)dst, _mm512_cvtusepi32_epi8(_mm512_max_epi32(q, c->zero)));
}

/// The whole-tile columns of a 16- or 32-column panel pair starting at column p0 (`cols` of them):
/// whether its tiles are finished by the fused epilogue (their columns fill the width; the fast form,
/// or finish16_512, which also has the general one), and if so their per-column constants in o and p16.
AVX512_EPI static inline int whole_tile_cols(const octet_i8_epilogue* ep, int fusable, const consts512* c5,
                                             size_t p0, size_t cols, tile_out* o, cols16* p16) {
  const int whole = (fusable || c5->use512) && (cols == 2 * OCTET_I8_NR || cols == OCTET_I8_NR);
  if (whole)
    for (size_t p = 0; p * OCTET_I8_NR < cols; p++) {
      o[p].p0 = load_cols8(ep, p0 + 16 * p, 1);
      o[p].p1 = load_cols8(ep, p0 + 16 * p + 8, 1);
      p16[p] = cols16_of(&o[p].p0, &o[p].p1);
    }
  return whole;
}
