// Private to CInt8Kernels: the AVX2 epilogue's inline parts (docs/quantization.md §3 requantization,
// §8 residual add), shared by every AVX2 kernel file and, through octet_i8_epilogue__avx2, by the
// AVX-512 VNNI and AMX GEMMs. Include only under #if defined(__x86_64__).
#pragma once
#include <immintrin.h>
#include "common.h"

#define AVX2 __attribute__((target("avx2")))

// Per-column requantization constants for 8 columns. §3 is y = floor((acc * m + 2^(n-1)) / 2^n)
// with a 64-bit product; AVX2 multiplies even and odd 32-bit lanes separately into 64-bit lanes.
//
// Fast form (every n >= 32, i.e. M < 1/2, which is every ResNet50 and EfficientNet-Lite0 conv):
// floor(x / 2^n) = floor(floor(x / 2^32) / 2^(n-32)), and floor(x / 2^32) of a 64-bit lane is its
// high half. So y = (high half of acc * m + 2^(n-1)) >>arith (n - 32), in 32 bits (|y| < 2^30).
// General form (any n): y = ((acc * m + 2^(n-1) + 2^62) >>logical n) - 2^(62-n), exact because
// |acc * m| < 2^62 keeps the biased sum non-negative (AVX2 has no 64-bit arithmetic shift), then
// clamped in 64 bits before narrowing.
typedef struct {
  __m256i mult, mult_odd, rnd_e, rnd_o, post, rnd32;  // fast form
  __m256i sh_e, sh_o, off_e, off_o;  // general form (rnd_* then include 2^62)
} cols8;

AVX2 static inline cols8 load_cols8(const octet_i8_epilogue* ep, size_t c, int fast) {
  cols8 p;
  const __m256i one = _mm256_set1_epi64x(1);
  p.mult = _mm256_loadu_si256((const __m256i*)(ep->multiplier + c));
  p.mult_odd = _mm256_srli_epi64(p.mult, 32);
  const __m256i sh = _mm256_loadu_si256((const __m256i*)(ep->shift + c));
  p.sh_e = _mm256_and_si256(sh, _mm256_set1_epi64x(0xffffffff));
  p.sh_o = _mm256_srli_epi64(sh, 32);
  p.rnd_e = _mm256_sllv_epi64(one, _mm256_sub_epi64(p.sh_e, one));
  p.rnd_o = _mm256_sllv_epi64(one, _mm256_sub_epi64(p.sh_o, one));
  if (fast) {
    p.post = _mm256_sub_epi32(sh, _mm256_set1_epi32(32));
    // 2^(n-33) where n >= 33 (0 where n = 32: shift counts above 31 give 0); see requant8_y.
    p.rnd32 = _mm256_sllv_epi32(_mm256_set1_epi32(1), _mm256_sub_epi32(p.post, _mm256_set1_epi32(1)));
  } else {
    const __m256i bias62 = _mm256_set1_epi64x((int64_t)1 << 62), s62 = _mm256_set1_epi64x(62);
    p.rnd_e = _mm256_add_epi64(p.rnd_e, bias62);
    p.rnd_o = _mm256_add_epi64(p.rnd_o, bias62);
    p.off_e = _mm256_sllv_epi64(one, _mm256_sub_epi64(s62, p.sh_e));
    p.off_o = _mm256_sllv_epi64(one, _mm256_sub_epi64(s62, p.sh_o));
  }
  return p;
}

AVX2 static inline __m256i clamp_epi32(__m256i y, __m256i lo, __m256i hi) {
  return _mm256_min_epi32(_mm256_max_epi32(y, lo), hi);
}

AVX2 static inline __m256i clamp_epi64(__m256i y, __m256i lo, __m256i hi) {
  y = _mm256_blendv_epi8(y, hi, _mm256_cmpgt_epi64(y, hi));
  return _mm256_blendv_epi8(y, lo, _mm256_cmpgt_epi64(lo, y));
}

/// The high halves of the even lanes of `even` and of the odd lanes of `odd`, as 8 int32.
AVX2 static inline __m256i high_halves(__m256i even, __m256i odd) {
  return _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

// Per-tensor constants of the epilogue.
typedef struct {
  int fast, residual, add_fast, add_madd;
  int sat8;      // lo = 0, hi = 255: the saturating packs are the clamp
  int add_fold;  // the residual add of a whole tile row in the folded vpmaddwd form (residual16)
  int add_sat8;  // add_lo = 0, add_hi = 255
  int fast33;  // fast form and every shift of the GEMM's columns >= 33 (set by the GEMM driver)
  __m256i lo_rel, hi_rel;  // lo and hi minus the output zero point
  __m256i lo64, hi64;  // general form: clamp relative to the zero point, 64-bit
  __m256i lo, hi, zout;  // 32-bit
  __m256i res_zp, ma, mb, add_rnd, add_off, add_lo, add_hi, add_zp, add_lo64, add_hi64;
  __m128i add_pre, add_post, add_sh;
  __m256i madd_hi, madd_lo, madd_round;  // the vpmaddwd form of the residual add
  __m128i madd_post;
  __m256i fold_ch, fold_cl;  // residual16's constants
} ep_consts;

// Out of line (noinline) as it was when all AVX2 kernels were one file: it runs once per call, and
// keeping it out keeps the kernels' code as it was measured.
AVX2 __attribute__((noinline)) static inline ep_consts load_consts(const octet_i8_epilogue* ep) {
  ep_consts k;
  k.fast = ep->shifts_at_least_32 && !ep->int32_output;
  k.fast33 = 0;
  k.lo_rel = _mm256_set1_epi32(ep->lo - ep->out_zero_point);
  k.hi_rel = _mm256_set1_epi32(ep->hi - ep->out_zero_point);
  if (ep->int32_output) {
    k.lo64 = _mm256_set1_epi64x(INT32_MIN);
    k.hi64 = _mm256_set1_epi64x(INT32_MAX);
    k.zout = _mm256_setzero_si256();
  } else {
    k.lo64 = _mm256_set1_epi64x((int64_t)ep->lo - ep->out_zero_point);
    k.hi64 = _mm256_set1_epi64x((int64_t)ep->hi - ep->out_zero_point);
    k.zout = _mm256_set1_epi32(ep->out_zero_point);
  }
  k.lo = _mm256_set1_epi32(ep->lo);
  k.hi = _mm256_set1_epi32(ep->hi);
  k.sat8 = ep->lo == 0 && ep->hi == 255 && !ep->int32_output;
  k.residual = ep->residual != NULL;
  k.add_fast = 0;
  k.add_fold = 0;
  k.add_sat8 = ep->add_lo == 0 && ep->add_hi == 255;
  if (k.residual) {
    // §8, x = da * a + db * b, y = floor(x / 2^n + 1/2). With |da|, |db| <= 255, pre-shifting them by
    // pre = max(0, 32 - n) keeps them below 2^31 when n >= 9, and makes the total shift 32 + post:
    // then y is the high half of x * 2^pre + 2^(n+pre-1), shifted right by post, as above.
    const int32_t n = ep->add_shift;
    k.add_fast = n >= 9;
    // vpmaddwd form: m = h * 2^16 + l with h = round(m / 2^16) < 2^15 and l in [-2^15, 2^15), so
    // x = da * m_a + db * m_b = X_h * 2^16 + X_l, X_h = da * h_a + db * h_b, X_l = da * l_a + db * l_b,
    // both exact int32 from one vpmaddwd each on (da, db) int16 pairs; then
    // floor((x + 2^(n-1)) / 2^n) = (X_h + 2^(n-17) + (X_l >> 16)) >> (n - 16) (nested floors).
    const int32_t ha = (ep->add_mult_conv + 32768) >> 16, hb = (ep->add_mult_residual + 32768) >> 16;
    k.add_madd = n >= 17 && n <= 46 && ha <= 32767 && hb <= 32767;
    if (k.add_madd) {
      const int32_t la = ep->add_mult_conv - ha * 65536, lb = ep->add_mult_residual - hb * 65536;
      k.madd_hi = _mm256_set1_epi32((int32_t)(((uint32_t)hb << 16) | ((uint32_t)ha & 0xffff)));
      k.madd_lo = _mm256_set1_epi32((int32_t)(((uint32_t)lb << 16) | ((uint32_t)la & 0xffff)));
      k.madd_round = _mm256_set1_epi32(1 << (n - 17));
      k.madd_post = _mm_cvtsi32_si128(n - 16);
      // residual16: with r in place of db = r - z_r, and the output zero point inside the shift,
      // x + 2^(n-1) + z_o * 2^n = X_h' * 2^16 + X_l' + C, C = 2^(n-1) - z_r * m_b + z_o * 2^n,
      // X_h' = da * h_a + r * h_b, X_l' = da * l_a + r * l_b. With C = C_h * 2^16 + C_l,
      // 0 <= C_l < 2^16: y + z_o = (X_h' + C_h + ((X_l' + C_l) >> 16)) >> (n - 16) (nested floors).
      // |X_h'|, |X_l'| <= 2 * 255 * 2^15 < 2^24, so int32 holds it when |C_h| < 2^30.
      const int64_t c = ((int64_t)1 << (n - 1)) - (int64_t)ep->residual_zero_point * ep->add_mult_residual +
                        (int64_t)ep->add_zero_point * ((int64_t)1 << n);
      const int64_t ch = c >> 16;  // floor (arithmetic shift of a negative int64 in clang/gcc)
      const int64_t cl = c - ch * 65536;
      k.add_fold = ch > -((int64_t)1 << 30) && ch < ((int64_t)1 << 30) && ep->residual_zero_point >= 0 &&
                   ep->residual_zero_point <= 255;
      k.fold_ch = _mm256_set1_epi32((int32_t)ch);
      k.fold_cl = _mm256_set1_epi32((int32_t)cl);
    }
    const int32_t pre = n < 32 ? 32 - n : 0, post = n > 32 ? n - 32 : 0;
    k.add_pre = _mm_cvtsi32_si128(pre);
    k.add_post = _mm_cvtsi32_si128(post);
    k.add_sh = _mm_cvtsi32_si128(n);
    k.res_zp = _mm256_set1_epi32(ep->residual_zero_point);
    k.ma = _mm256_set1_epi64x(ep->add_mult_conv);
    k.mb = _mm256_set1_epi64x(ep->add_mult_residual);
    k.add_rnd = k.add_fast ? _mm256_set1_epi64x((int64_t)1 << (n + pre - 1))
                           : _mm256_set1_epi64x(((int64_t)1 << (n - 1)) + ((int64_t)1 << 62));
    k.add_off = _mm256_set1_epi64x((int64_t)1 << (62 - n));
    k.add_lo = _mm256_set1_epi32(ep->add_lo);
    k.add_hi = _mm256_set1_epi32(ep->add_hi);
    k.add_lo64 = _mm256_set1_epi64x((int64_t)ep->add_lo - ep->add_zero_point);
    k.add_hi64 = _mm256_set1_epi64x((int64_t)ep->add_hi - ep->add_zero_point);
    k.add_zp = _mm256_set1_epi32(ep->add_zero_point);
  }
  return k;
}

/// 8 accumulators -> the clamped code q (or, for int32 output, the saturated logit).
/// The fast form of §3 before the zero point and clamp: y = floor((acc * m + 2^(n-1)) / 2^n).
/// With every n >= 33 the rounding moves into 32 bits: 2^(n-1) = 2^32 * 2^(n-33) is a multiple of
/// 2^32, so floor((X + 2^(n-1)) / 2^n) = (floor(X / 2^32) + 2^(n-33)) >> (n - 32) (nested floors),
/// and |floor(X / 2^32)| < 2^30 leaves room for the addend.
AVX2 static inline __m256i requant8_y(__m256i acc, const cols8* p, const ep_consts* k) {
  const __m256i ye = _mm256_mul_epi32(acc, p->mult);
  const __m256i yo = _mm256_mul_epi32(_mm256_srli_epi64(acc, 32), p->mult_odd);
  if (k->fast33) return _mm256_srav_epi32(_mm256_add_epi32(high_halves(ye, yo), p->rnd32), p->post);
  return _mm256_srav_epi32(high_halves(_mm256_add_epi64(ye, p->rnd_e), _mm256_add_epi64(yo, p->rnd_o)), p->post);
}

AVX2 static inline __m256i requant8(__m256i acc, const cols8* p, const ep_consts* k) {
  if (k->fast) {
    const __m256i y = _mm256_add_epi32(requant8_y(acc, p, k), k->zout);
    return clamp_epi32(y, k->lo, k->hi);
  }
  __m256i ye = _mm256_mul_epi32(acc, p->mult);
  __m256i yo = _mm256_mul_epi32(_mm256_srli_epi64(acc, 32), p->mult_odd);
  ye = _mm256_sub_epi64(_mm256_srlv_epi64(_mm256_add_epi64(ye, p->rnd_e), p->sh_e), p->off_e);
  yo = _mm256_sub_epi64(_mm256_srlv_epi64(_mm256_add_epi64(yo, p->rnd_o), p->sh_o), p->off_o);
  ye = clamp_epi64(ye, k->lo64, k->hi64);
  yo = clamp_epi64(yo, k->lo64, k->hi64);
  return _mm256_add_epi32(_mm256_blend_epi32(ye, _mm256_slli_epi64(yo, 32), 0xAA), k->zout);
}

AVX2 static inline __m256i residual8_da(__m256i da, __m256i r, const ep_consts* k);

/// §8 on 8 lanes: q = the convolution's codes, r = the residual's codes.
AVX2 static inline __m256i residual8(__m256i q, __m256i r, const ep_consts* k) {
  return residual8_da(_mm256_sub_epi32(q, k->zout), r, k);
}

/// §8 with da = q - z_q already formed.
AVX2 static inline __m256i residual8_da(__m256i da, __m256i r, const ep_consts* k) {
  __m256i db = _mm256_sub_epi32(r, k->res_zp);
  if (k->add_madd) {
    const __m256i pairs = _mm256_blend_epi16(da, _mm256_slli_epi32(db, 16), 0xAA);
    const __m256i xh = _mm256_madd_epi16(pairs, k->madd_hi);
    const __m256i xl = _mm256_madd_epi16(pairs, k->madd_lo);
    const __m256i y = _mm256_sra_epi32(
        _mm256_add_epi32(_mm256_add_epi32(xh, k->madd_round), _mm256_srai_epi32(xl, 16)), k->madd_post);
    return clamp_epi32(_mm256_add_epi32(y, k->add_zp), k->add_lo, k->add_hi);
  }
  if (k->add_fast) {
    da = _mm256_sll_epi32(da, k->add_pre);
    db = _mm256_sll_epi32(db, k->add_pre);
  }
  __m256i xe = _mm256_add_epi64(_mm256_mul_epi32(da, k->ma), _mm256_mul_epi32(db, k->mb));
  __m256i xo = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(da, 32), k->ma),
                                _mm256_mul_epi32(_mm256_srli_epi64(db, 32), k->mb));
  xe = _mm256_add_epi64(xe, k->add_rnd);
  xo = _mm256_add_epi64(xo, k->add_rnd);
  if (k->add_fast) {
    const __m256i y = _mm256_sra_epi32(high_halves(xe, xo), k->add_post);
    return clamp_epi32(_mm256_add_epi32(y, k->add_zp), k->add_lo, k->add_hi);
  }
  xe = clamp_epi64(_mm256_sub_epi64(_mm256_srl_epi64(xe, k->add_sh), k->add_off), k->add_lo64, k->add_hi64);
  xo = clamp_epi64(_mm256_sub_epi64(_mm256_srl_epi64(xo, k->add_sh), k->add_off), k->add_lo64, k->add_hi64);
  return _mm256_add_epi32(_mm256_blend_epi32(xe, _mm256_slli_epi64(xo, 32), 0xAA), k->add_zp);
}

AVX2 static inline void store_u8x8(uint8_t* dst, __m256i v) {
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  _mm_storel_epi64((__m128i*)dst, _mm_packus_epi16(w, w));
}

/// One output vector of 8 columns: acc (bias included) -> uint8 or int32 at dst.
AVX2 static inline void finish8(__m256i acc, const cols8* p, const ep_consts* k, int int32_output,
                                const uint8_t* res, void* dst) {
  const __m256i q = requant8(acc, p, k);
  if (int32_output) {
    _mm256_storeu_si256((__m256i*)dst, q);
    return;
  }
  if (k->residual)
    store_u8x8(dst, residual8(q, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)res)), k));
  else
    store_u8x8(dst, q);
}

/// The epilogue of a block of accumulators, with the per-tensor constants `k` already loaded.
AVX2 static inline void epilogue_block(const int32_t* acc, size_t ld_acc, size_t row0, size_t rows, size_t n0,
                                       size_t cols, const octet_i8_epilogue* ep, const ep_consts* kp, void* out,
                                       size_t ldc) {
  const ep_consts k = *kp;
  const size_t esize = ep->int32_output ? 4 : 1;
  size_t j = 0;
  for (; j + 8 <= cols; j += 8) {
    const cols8 p = load_cols8(ep, n0 + j, k.fast);
    for (size_t r = 0; r < rows; r++) {
      const size_t row = row0 + r;
      const uint8_t* res = k.residual ? ep->residual + row * ep->ld_residual + n0 + j : NULL;
      finish8(_mm256_loadu_si256((const __m256i*)(acc + r * ld_acc + j)), &p, &k, ep->int32_output, res,
              (uint8_t*)out + (row * ldc + n0 + j) * esize);
    }
  }
  if (j < cols)
    octet_i8_epilogue__scalar(acc + j, ld_acc, row0, rows, n0 + j, cols - j, ep, out, ldc);
}
