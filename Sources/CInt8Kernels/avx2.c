// AVX2 kernels, three GEMMs with one driver (docs/quantization.md §2):
//   int16  vpmaddwd on int16-widened operands, each pair summed exactly into int32: any weights;
//   pairs  vpmaddubsw (u8 x s8 pair sums in int16, saturating) then vpmaddwd by 1: weights whose
//          adjacent pairs cannot saturate it;
//   quads  two vpmaddubsw summed in int16, then vpmaddwd by 1: any weights, split so that no int16
//          lane can overflow, the excess added back exactly from a sparse list.
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include "common.h"

#define AVX2 __attribute__((target("avx2")))

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

AVX2 static inline ep_consts load_consts(const octet_i8_epilogue* ep) {
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

AVX2 void octet_i8_epilogue__avx2(const int32_t* acc, size_t ld_acc, size_t row0, size_t rows, size_t n0,
                                  size_t cols, const octet_i8_epilogue* ep, void* out, size_t ldc) {
  const ep_consts k = load_consts(ep);
  epilogue_block(acc, ld_acc, row0, rows, n0, cols, ep, &k, out, ldc);
}

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

// What both 6x16 tile kernels do around their different inner loops: row pointers (rows past
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

/// 6 rows x 16 columns over the whole K: acc[r][j] = bias[j] + sum_k a[r][k] * b[k][j].
AVX2 static inline void kernel_6x16(const int16_t* a, size_t lda, size_t rows, const int16_t* b,
                                    size_t kq, const int32_t* bias, const tile_out* o, int32_t acc[6][16]) {
  OCTET_6X16_BEGIN(int16_t)
  for (size_t q = 0; q < kq; q++) {
    const __m256i b0 = _mm256_load_si256((const __m256i*)(b + q * 32));
    const __m256i b1 = _mm256_load_si256((const __m256i*)(b + q * 32 + 16));
    __m256i x;
#define OCTET_ROW(ROW, C0, C1)                                   \
  x = _mm256_set1_epi32(octet_load_i32(ROW + 2 * q));            \
  C0 = _mm256_add_epi32(C0, _mm256_madd_epi16(x, b0));           \
  C1 = _mm256_add_epi32(C1, _mm256_madd_epi16(x, b1));
    OCTET_ROW(a0, c00, c01)
    OCTET_ROW(a1, c10, c11)
    OCTET_ROW(a2, c20, c21)
    OCTET_ROW(a3, c30, c31)
    OCTET_ROW(a4, c40, c41)
    OCTET_ROW(a5, c50, c51)
#undef OCTET_ROW
  }
  OCTET_6X16_FINISH(o, 1, -1)
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
AVX2 __attribute__((always_inline)) static inline void gemm_6x16(octet_tile_6x16 tile, const uint8_t* a, size_t lda, const uint8_t* b,
                                  size_t element, const octet_i8_fixups* fix, size_t kp, size_t n, size_t m0,
                                  size_t m1, size_t n0, size_t n1, const octet_i8_epilogue* ep, void* out,
                                  size_t ldc) {
  const size_t b_bytes = kp * element * octet_round_up(n, OCTET_I8_NR);
  size_t mc = b_bytes <= OCTET_TILE_B_LIMIT ? 6 : OCTET_A_BLOCK / (kp * element) / 6 * 6;
  if (mc < 6) mc = 6;
  int32_t acc[6][16];
  int32_t bias[16];
  ep_consts k = load_consts(ep);
  const int fusable = k.fast && !ep->int32_output;
  if (fusable) {
    k.fast33 = 1;
    for (size_t c = n0; c < n1; c++) k.fast33 &= ep->shift[c] >= 33;
  }
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

AVX2 static void tile_int16(const uint8_t* a, size_t lda, size_t rows, const uint8_t* panel, size_t kp,
                            const octet_i8_fixups* fix, size_t p, const int32_t* bias, const tile_out* o,
                            int32_t acc[6][16]) {
  (void)fix, (void)p;
  kernel_6x16((const int16_t*)a, lda / 2, rows, (const int16_t*)panel, kp / 2, bias, o, acc);
}

AVX2 void octet_i8_gemm__avx2(const int16_t* a, const int16_t* b, size_t kp, size_t n, size_t m0,
                              size_t m1, size_t n0, size_t n1, const octet_i8_epilogue* ep, void* out,
                              size_t ldc) {
  gemm_6x16(tile_int16, (const uint8_t*)a, kp * 2, (const uint8_t*)b, 2, NULL, kp, n, m0, m1, n0, n1, ep, out, ldc);
}

AVX2 void octet_i8_dwconv__avx2(const octet_i8_window* w, const uint8_t* padded, int32_t padded_w,
                                const int16_t* weights, const octet_i8_epilogue* ep, int32_t oy0,
                                int32_t oy1, uint8_t* out) {
  const size_t c = (size_t)w->channels, pw = (size_t)padded_w;
  const size_t taps = (size_t)(w->kernel_h * w->kernel_w);
  const ep_consts k = load_consts(ep);
  const size_t vec = c / 16 * 16;
  for (int32_t oy = oy0; oy < oy1; oy++) {
    for (size_t c0 = 0; c0 < vec; c0 += 16) {
      const cols8 p0 = load_cols8(ep, c0, k.fast), p1 = load_cols8(ep, c0 + 8, k.fast);
      const __m256i bias0 = _mm256_loadu_si256((const __m256i*)(ep->bias + c0));
      const __m256i bias1 = _mm256_loadu_si256((const __m256i*)(ep->bias + c0 + 8));
      for (int32_t ox = 0; ox < w->out_w; ox++) {
        __m256i acc0 = bias0, acc1 = bias1;
        const uint8_t* base = padded + ((size_t)(oy * w->stride_h) * pw + (size_t)(ox * w->stride_w)) * c + c0;
        for (int32_t ky = 0; ky < w->kernel_h; ky++)
          for (int32_t kx = 0; kx < w->kernel_w; kx++) {
            const size_t tap = (size_t)(ky * w->kernel_w + kx);
            const __m256i x = _mm256_cvtepu8_epi16(
                _mm_loadu_si128((const __m128i*)(base + ((size_t)ky * pw + (size_t)kx) * c)));
            const __m256i wv = _mm256_loadu_si256((const __m256i*)(weights + tap * c + c0));
            // |x * w| <= 255 * 127 < 2^15: the int16 product is exact.
            const __m256i prod = _mm256_mullo_epi16(x, wv);
            acc0 = _mm256_add_epi32(acc0, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(prod)));
            acc1 = _mm256_add_epi32(acc1, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(prod, 1)));
          }
        (void)taps;
        const size_t pixel = (size_t)oy * (size_t)w->out_w + (size_t)ox;
        const uint8_t* res = k.residual ? ep->residual + pixel * ep->ld_residual + c0 : NULL;
        uint8_t* dst = out + pixel * c + c0;
        finish8(acc0, &p0, &k, 0, res, dst);
        finish8(acc1, &p1, &k, 0, res ? res + 8 : NULL, dst + 8);
      }
    }
    // Channels past the last multiple of 16, one at a time.
    for (size_t ch = vec; ch < c; ch++)
      for (int32_t ox = 0; ox < w->out_w; ox++) {
        uint32_t acc = (uint32_t)ep->bias[ch];
        for (int32_t ky = 0; ky < w->kernel_h; ky++)
          for (int32_t kx = 0; kx < w->kernel_w; kx++) {
            const size_t iy = (size_t)(oy * w->stride_h + ky), ix = (size_t)(ox * w->stride_w + kx);
            acc += (uint32_t)((int32_t)padded[(iy * pw + ix) * c + ch] *
                              (int32_t)weights[(size_t)(ky * w->kernel_w + kx) * c + ch]);
          }
        const size_t pixel = (size_t)oy * (size_t)w->out_w + (size_t)ox;
        const uint8_t r = ep->residual ? ep->residual[pixel * ep->ld_residual + ch] : 0;
        out[pixel * c + ch] = (uint8_t)octet_epilogue_value((int32_t)acc, ch, ep, r);
      }
  }
}
#endif

#if defined(__x86_64__)
// The "pairs" kernel: vpmaddubsw (u8 x s8, adjacent pairs summed into int16, saturating), then
// vpmaddwd by 1 to sum the two pairs of each 4-byte group into int32. It does twice the
// multiply-adds per multiplier-port instruction of the vpmaddwd kernel, and is exact only when
// no pair sum can leave int16: 255 * (|w0| + |w1|) <= 32767, guaranteed by |w0| + |w1| <= 128
// for every adjacent pair of a weight row (`octet_i8_weights_fit_pairs`; weights quantized to
// [-64, 64] always qualify). A and B use the u8-row / VNNI layouts with K padded to 4.
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

AVX2 static inline void kernel_pairs_6x16(const uint8_t* a, size_t lda, size_t rows, const int8_t* b,
                                          size_t kg, const int32_t* bias, const tile_out* o, int32_t acc[6][16]) {
  OCTET_6X16_BEGIN(uint8_t)
  const __m256i ones = _mm256_set1_epi16(1);
  for (size_t g = 0; g < kg; g++) { OCTET_PAIRS_STEP(g, 6) }
  OCTET_6X16_FINISH(o, 1, -1)
}

AVX2 static void tile_pairs(const uint8_t* a, size_t lda, size_t rows, const uint8_t* panel, size_t kp,
                            const octet_i8_fixups* fix, size_t p, const int32_t* bias, const tile_out* o,
                            int32_t acc[6][16]) {
  (void)fix, (void)p;
  kernel_pairs_6x16(a, lda, rows, (const int8_t*)panel, kp / 4, bias, o, acc);
}

AVX2 void octet_i8_gemm__avx2_pairs(const uint8_t* a, size_t lda, const int8_t* b, size_t kp, size_t n,
                                    size_t m0, size_t m1, size_t n0, size_t n1,
                                    const octet_i8_epilogue* ep, void* out, size_t ldc) {
  gemm_6x16(tile_pairs, a, lda, (const uint8_t*)b, 1, NULL, kp, n, m0, m1, n0, n1, ep, out, ldc);
}

// The "quads" kernel: two vpmaddubsw (4-groups g and g+1) summed in int16 by vpaddw before one
// vpmaddwd by 1, so three multiplier-port instructions per 64 products instead of four. Each int16
// lane then holds four products, which octet_i8_quads_split guarantees cannot leave int16 by moving
// any excess weight into sparse fixups; those are added here after the main loop, two entries at
// a time, as a vpmaddwd of the broadcast activations (a[k1], a[k2]) in the int16 halves of each
// lane by the pair's values (d1, d2) (|d| <= 128, within int16; octet_i8_quads_pair).
// R (1 to 6, a constant at each call) is the number of rows computed: a partial last tile does not
// pay for six (the classifier has one row, layer4 of ResNet50 49 = 8 x 6 + 1).
AVX2 __attribute__((always_inline)) static inline void kernel_quads(const int R, const int RES, const uint8_t* a,
                                                                    size_t lda,
                                                                    const int8_t* b, size_t kg, const uint32_t* fk,
                                                                    const int32_t* fd, size_t nfix,
                                                                    const int32_t* bias, const tile_out* o,
                                                                    int32_t acc[6][16]) {
  const size_t rows = (size_t)R;
  OCTET_6X16_BEGIN(uint8_t)
  const __m256i ones = _mm256_set1_epi16(1);
  size_t g = 0;
  for (; g + 2 <= kg; g += 2) {
    const __m256i* bp = (const __m256i*)(b + g * 64);
    __m256i x, y, t0, t1;
#define OCTET_ROW(ROW, C0, C1)                                                                       \
  x = _mm256_set1_epi32(octet_load_i32(ROW + 4 * g));                                                \
  y = _mm256_set1_epi32(octet_load_i32(ROW + 4 * g + 4));                                            \
  t0 = _mm256_add_epi16(_mm256_maddubs_epi16(x, _mm256_load_si256(bp)),                              \
                        _mm256_maddubs_epi16(y, _mm256_load_si256(bp + 2)));                         \
  t1 = _mm256_add_epi16(_mm256_maddubs_epi16(x, _mm256_load_si256(bp + 1)),                          \
                        _mm256_maddubs_epi16(y, _mm256_load_si256(bp + 3)));                         \
  C0 = _mm256_add_epi32(C0, _mm256_madd_epi16(t0, ones));                                            \
  C1 = _mm256_add_epi32(C1, _mm256_madd_epi16(t1, ones));
    OCTET_FOR_ROWS(R, OCTET_ROW)
#undef OCTET_ROW
  }
  if (g < kg) OCTET_PAIRS_STEP(g, R)
  for (size_t e = 0; e < nfix; e++) {
    const size_t k1 = fk[e] & 0xffff, k2 = fk[e] >> 16;
    const __m256i d0 = _mm256_loadu_si256((const __m256i*)(fd + 16 * e));
    const __m256i d1 = _mm256_loadu_si256((const __m256i*)(fd + 16 * e + 8));
    __m256i x;
#define OCTET_ROW(ROW, C0, C1)                           \
  x = _mm256_set1_epi32((int32_t)(ROW[k1] | (uint32_t)ROW[k2] << 16)); \
  C0 = _mm256_add_epi32(C0, _mm256_madd_epi16(x, d0));   \
  C1 = _mm256_add_epi32(C1, _mm256_madd_epi16(x, d1));
    OCTET_FOR_ROWS(R, OCTET_ROW)
#undef OCTET_ROW
  }
  // Only whole tiles (R = 6) finish in registers; RES (0 or 1) is whether there is a residual.
  OCTET_6X16_FINISH(o, R == 6, RES)
}

// The quads tile without (RES 0) and with (RES 1) a fused residual add.
#define OCTET_TILE_QUADS(NAME, RES)                                                                        \
  AVX2 static void NAME(const uint8_t* a, size_t lda, size_t rows, const uint8_t* panel, size_t kp,       \
                        const octet_i8_fixups* fix, size_t p, const int32_t* bias, const tile_out* o,     \
                        int32_t acc[6][16]) {                                                            \
    const size_t e0 = fix->panel_start[p], e1 = fix->panel_start[p + 1];                                \
    const int8_t* b = (const int8_t*)panel;                                                              \
    const uint32_t* fk = fix->k + e0;                                                                    \
    const int32_t* fd = fix->d + 16 * e0;                                                                \
    switch (rows) {                                                                                      \
      case 6: kernel_quads(6, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;             \
      case 5: kernel_quads(5, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;             \
      case 4: kernel_quads(4, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;             \
      case 3: kernel_quads(3, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;             \
      case 2: kernel_quads(2, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;             \
      default: kernel_quads(1, RES, a, lda, b, kp / 4, fk, fd, e1 - e0, bias, o, acc); break;            \
    }                                                                                                    \
  }
OCTET_TILE_QUADS(tile_quads, 0)
OCTET_TILE_QUADS(tile_quads_residual, 1)

AVX2 void octet_i8_gemm__avx2_quads(const uint8_t* a, size_t lda, const int8_t* b, const octet_i8_fixups* fixups,
                                    size_t kp, size_t n, size_t m0, size_t m1, size_t n0, size_t n1,
                                    const octet_i8_epilogue* ep, void* out, size_t ldc) {
  if (ep->residual)
    gemm_6x16(tile_quads_residual, a, lda, (const uint8_t*)b, 1, fixups, kp, n, m0, m1, n0, n1, ep, out, ldc);
  else
    gemm_6x16(tile_quads, a, lda, (const uint8_t*)b, 1, fixups, kp, n, m0, m1, n0, n1, ep, out, ldc);
}

// §12 as octet_i8_quantize_input: v = x / s (IEEE division, as in the scalar code), rounded half
// away from zero as roundf does: t = trunc(v), and t + copysign(1, v) when |v - t| >= 1/2 (v - t is
// exact; for |v| >= 2^23, v is already an integer and v - t = 0; for infinities v - t is NaN and
// the comparison false). Then + z, and NaN or negatives -> 0 (maxps returns its second operand
// when the first is NaN), >= 255 -> 255, truncated to uint8.
AVX2 void octet_i8_quantize_input__avx2(const float* x, size_t count, float scale, int32_t zero_point, uint8_t* out) {
  const __m256 s = _mm256_set1_ps(scale), z = _mm256_set1_ps((float)zero_point);
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.0f);
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), s);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 far = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), half, _CMP_GE_OQ);
    const __m256 step = _mm256_and_ps(far, _mm256_or_ps(_mm256_and_ps(v, sign), one));
    const __m256 w = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(_mm256_add_ps(t, step), z), zero), top);
    const __m256i q = _mm256_cvttps_epi32(w);
    const __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64((__m128i*)(out + i), _mm_packus_epi16(h, h));
  }
  if (i < count) octet_i8_quantize_input(x + i, count - i, scale, zero_point, out + i);
}
#endif
