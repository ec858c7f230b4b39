// Integer kernels for Octet's fast int8 runtime (OctetInt8's Int8FastExecutor).
//
// Arithmetic: docs/quantization.md. Every kernel here computes exactly what the Swift integer
// reference (Int8ReferenceExecutor) computes, bit for bit; the tests hold each ISA to that.
//
// Four instruction sets, picked at run time (never assumed at compile time):
//   scalar      plain C, any CPU;
//   avx2        three 6x16 GEMM kernels, one picked per layer when a model is loaded (the executor's
//               cost model, docs/quantization.md §2 AVX2), all exact: "quads" (two vpmaddubsw summed
//               in int16, then vpmaddwd; any weights, split into a bounded part and sparse fixups),
//               "pairs" (vpmaddubsw then vpmaddwd; weights whose adjacent pairs cannot saturate it)
//               and "int16" (vpmaddwd on int16-widened operands; any weights);
//   avx512vnni  vpdpbusd, u8 x s8 -> s32 in one instruction;
//   amx         AMX-INT8 tdpbusd on 16x64 tiles (needs Linux's arch_prctl permission).
// Kernels named `__avx2`, `__avx2_*`, `__avx512vnni`, `__amx` may only be called when
// `octet_i8_cpu_supports` says so. The AVX2 code lives in files named as XNNPACK names its
// microkernels (type, tile, ISA: qu8s8-gemm-6x16-quads-avx2.c, qu8-epilogue-avx2.c, ...).
//
// Data layouts (K = kh*kw*cin, the OHWI weight order; N = output channels):
//   "u8 rows"      A is row-major uint8 [rows][lda], K padded with zeros to Kp = round_up(K, kalign)
//                  (scalar, avx512vnni and the avx2 pairs and quads kernels, which read the scalar
//                  packing: kalign 4; amx: 64). B is packed in panels of 16 columns:
//                  int8 [N/16][Kp/4][16][4] (the VNNI layout; amx reads 16 k-groups of it as one tile).
//   "i16 rows"     (the avx2 int16 kernel, octet_i8_gemm__avx2; packed with OCTET_I8_AVX2) A is int16
//                  [rows][Kp] (the uint8 codes widened, Kp = round_up(K, 2)), B is
//                  int16 [N/16][Kp/2][16][2]. Columns past N are zero.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  OCTET_I8_SCALAR = 0,
  OCTET_I8_AVX2 = 1,
  OCTET_I8_AVX512VNNI = 2,
  OCTET_I8_AMX = 3,
} octet_i8_isa;

/// 1 if the CPU and the OS support `isa` (CPUID, XGETBV; for AMX also the Linux permission to use
/// tile data, requested once with arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)), else 0.
int octet_i8_cpu_supports(octet_i8_isa isa);
/// 1 if the CPU has AVX512_VBMI (byte permutes; the VNNI depthwise kernel needs it).
int octet_i8_cpu_has_vbmi(void);

/// Columns per packed B panel, all ISAs.
#define OCTET_I8_NR 16
/// Bytes of packed B up to which a GEMM runs one tile's rows at a time with all of B in L2 (the
/// AVX2 driver's blocking; the executor's thread split uses it too).
#define OCTET_I8_TILE_B_LIMIT 131072

/// K alignment of the packed operands: 4 (scalar, avx512vnni), 2 (avx2: the int16 kernel's layout), 64 (amx).
size_t octet_i8_k_align(octet_i8_isa isa);
/// Bytes of B (K x N) packed for `isa`.
size_t octet_i8_packed_b_size(octet_i8_isa isa, size_t k, size_t n);
/// Packs weights `w` [N][K] (row-major, OHWI flattened) for `isa`; `packed` must hold
/// `octet_i8_packed_b_size` bytes.
void octet_i8_pack_b(octet_i8_isa isa, const int8_t* w, size_t k, size_t n, void* packed);

/// 1 if every adjacent pair of every weight row `w` [N][K] has |w[2j]| + |w[2j+1]| <= 128, so that
/// vpmaddubsw's int16 pair sums cannot saturate (255 * 128 = 32640 <= 32767).
int octet_i8_weights_fit_pairs(const int8_t* w, size_t k, size_t n);

/// The avx2 quads kernel's split of weights `w` [N][K] into w = fit + d (docs/quantization.md §2).
/// Its int16 lanes each sum four u8 x s8 products (k sets {8j, 8j+1, 8j+4, 8j+5} and
/// {8j+2, 8j+3, 8j+6, 8j+7}; in a last lone 4-group, pairs), which cannot leave int16 when a set's
/// positive weights sum to <= 128 and its negative ones to >= -128. `fit` ([N][K], may be NULL) is
/// `w` with each set's excess taken off its largest weights; `d` = w - fit, sparse, is returned per
/// panel of 16 columns as entries (k, d[k][16 columns]): panel p owns entries
/// panel_start[p] ..< panel_start[p + 1] (panel_start, if not NULL, has panels + 1 slots), fix_k[e]
/// is the k of entry e and fix_d[16 e ..< 16 e + 16] its values; only the first `capacity` entries
/// are written (fix_k and fix_d hold that many). Returns the number of entries, which may exceed
/// `capacity`: then call again with room for all. (size_t)-1 if out of memory.
size_t octet_i8_quads_split(const int8_t* w, size_t k, size_t n, int8_t* fit, uint32_t* panel_start,
                            uint32_t* fix_k, int32_t* fix_d, size_t capacity);

/// The entries of a quads split taken two at a time, as the kernel reads them: one vpmaddwd per row
/// adds a[k1] * d1 + a[k2] * d2 for 16 columns. Panel p owns pairs pair_start[p] ..< pair_start[p + 1]
/// (panels + 1 slots); pair_k[q] = k1 | k2 << 16 and pair_d[16 q + j] = (d1 & 0xffff) | d2 << 16 for
/// column j (low int16 d1, high int16 d2); a panel's odd last entry pairs with itself, d2 = 0. Pair
/// q takes entries 2q and 2q + 1 of its panel, so pair_k and pair_d need room for
/// octet_i8_quads_pair_count pairs. Returns 0, or -1 when some k is 65536 or more.
size_t octet_i8_quads_pair_count(const uint32_t* panel_start, size_t panels);
int octet_i8_quads_pair(const uint32_t* panel_start, const uint32_t* fix_k, const int32_t* fix_d, size_t panels,
                        uint32_t* pair_start, uint32_t* pair_k, int32_t* pair_d);

/// The sparse part of a quads split, as the kernel reads it: pairs of entries
/// (octet_i8_quads_pair).
typedef struct {
  const uint32_t* panel_start;
  const uint32_t* k;
  const int32_t* d;
} octet_i8_fixups;

/// Geometry of a convolution over one NHWC uint8 image, and the im2col matrix it implies:
/// row r = oy * out_w + ox, columns in (ky, kx, c) order; taps in the padding read `zero_point`.
typedef struct {
  int32_t in_h, in_w, channels;
  int32_t out_h, out_w;
  int32_t kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  int32_t zero_point;
} octet_i8_window;

/// Packs im2col rows `row0 ..< row0 + rows` of `input` (one image) into `packed`, which points at
/// the packed position of `row0`. Rows are Kp elements apart (uint8, or int16 for avx2).
void octet_i8_pack_a(octet_i8_isa isa, const octet_i8_window* w, const uint8_t* input, size_t row0,
                     size_t rows, void* packed);

/// What happens to each int32 accumulator (bias already included) of column c:
///   y = clamp(((acc * multiplier[c] + 2^(shift[c]-1)) >> shift[c]) + out_zero_point, lo, hi)
/// (docs/quantization.md §3), written as uint8. With `residual`, y is then the conv side of a
/// residual add (§8) with the uint8 tensor `residual` (same layout as the output):
///   y = clamp(round_shift((y - out_zero_point) * add_mult_conv
///                         + (r - residual_zero_point) * add_mult_residual, add_shift)
///             + add_zero_point, add_lo, add_hi)
/// With `int32_output`, y = saturate_int32((acc * m + 2^(n-1)) >> n) is written as int32 (§11).
typedef struct {
  const int32_t* bias;  ///< [N]: b_q - z_in * sum(w) (§5)
  const int32_t* multiplier;  ///< [N]
  const int32_t* shift;  ///< [N], 1...62
  int32_t out_zero_point, lo, hi;
  int32_t int32_output;
  int32_t shifts_at_least_32;  ///< 1 if every shift[c] >= 32 (lets SIMD epilogues stay in 32 bits)
  const uint8_t* residual;  ///< NULL: no fused add
  size_t ld_residual;
  int32_t residual_zero_point;
  int32_t add_mult_conv, add_mult_residual, add_shift;
  int32_t add_zero_point, add_lo, add_hi;
} octet_i8_epilogue;

/// C = epilogue(A * B) for rows `m0 ..< m1` and columns `n0 ..< n1` (n0 a multiple of 16; 32 for
/// avx512vnni and amx) of an M x N result. `a` is A's row 0 (u8 rows `lda` bytes apart; the avx2 int16
/// kernel: int16 rows `kp` apart), `b` the packed B for all N, `kp` the padded K.
/// Output: uint8 `out[row * ldc + col]`, or int32 when `ep->int32_output`.
void octet_i8_gemm__scalar(const uint8_t* a, size_t lda, const int8_t* b, size_t kp, size_t n,
                           size_t m0, size_t m1, size_t n0, size_t n1, const octet_i8_epilogue* ep,
                           void* out, size_t ldc);
#if defined(__x86_64__)
/// AVX2 "int16": vpmaddwd on the i16-row layouts, any weights (qu8s8-gemm-6x16-int16-avx2.c).
void octet_i8_gemm__avx2(const int16_t* a, const int16_t* b, size_t kp, size_t n, size_t m0,
                         size_t m1, size_t n0, size_t n1, const octet_i8_epilogue* ep, void* out,
                         size_t ldc);
/// AVX2 on the u8-row / VNNI layouts with vpmaddubsw: exact only for weights where every adjacent
/// pair (w[c][2j], w[c][2j+1]) has |w0| + |w1| <= 128 (octet_i8_weights_fit_pairs).
void octet_i8_gemm__avx2_pairs(const uint8_t* a, size_t lda, const int8_t* b, size_t kp, size_t n,
                               size_t m0, size_t m1, size_t n0, size_t n1, const octet_i8_epilogue* ep,
                               void* out, size_t ldc);
/// AVX2 "quads": two vpmaddubsw summed in int16 before one vpmaddwd, on `b` packed (VNNI layout)
/// from the `fit` of octet_i8_quads_split, plus its `fixups` added exactly: any int8 weights.
void octet_i8_gemm__avx2_quads(const uint8_t* a, size_t lda, const int8_t* b, const octet_i8_fixups* fixups,
                               size_t kp, size_t n, size_t m0, size_t m1, size_t n0, size_t n1,
                               const octet_i8_epilogue* ep, void* out, size_t ldc);
void octet_i8_gemm__avx512vnni(const uint8_t* a, size_t lda, const int8_t* b, size_t kp, size_t n,
                               size_t m0, size_t m1, size_t n0, size_t n1,
                               const octet_i8_epilogue* ep, void* out, size_t ldc);
void octet_i8_gemm__amx(const uint8_t* a, size_t lda, const int8_t* b, size_t kp, size_t n,
                        size_t m0, size_t m1, size_t n0, size_t n1, const octet_i8_epilogue* ep,
                        void* out, size_t ldc);
#endif
/// The avx512vnni and amx kernels compiled against scalar stand-ins of their intrinsics
/// (emulate_x86.h): same loops, layouts and tails, on any CPU. For tests. Their epilogue is the
/// real builds' one (octet_i8_epilogue__avx2) where the CPU has AVX2, else the scalar one:
/// octet_i8_emulated_epilogue_isa() says which (OCTET_I8_AVX2 or OCTET_I8_SCALAR).
octet_i8_isa octet_i8_emulated_epilogue_isa(void);
void octet_i8_gemm__avx512vnni_emulated(const uint8_t* a, size_t lda, const int8_t* b, size_t kp,
                                        size_t n, size_t m0, size_t m1, size_t n0, size_t n1,
                                        const octet_i8_epilogue* ep, void* out, size_t ldc);
void octet_i8_gemm__amx_emulated(const uint8_t* a, size_t lda, const int8_t* b, size_t kp, size_t n,
                                 size_t m0, size_t m1, size_t n0, size_t n1,
                                 const octet_i8_epilogue* ep, void* out, size_t ldc);

/// The epilogue alone: accumulators acc[r * ld_acc + j] (bias included) of rows row0 + r
/// (r < rows) and columns n0 + j (j < cols) -> out[(row0 + r) * ldc + n0 + j]. `out` and the
/// residual in `ep` point at row 0, column 0.
void octet_i8_epilogue__scalar(const int32_t* acc, size_t ld_acc, size_t row0, size_t rows, size_t n0,
                               size_t cols, const octet_i8_epilogue* ep, void* out, size_t ldc);
#if defined(__x86_64__)
void octet_i8_epilogue__avx2(const int32_t* acc, size_t ld_acc, size_t row0, size_t rows, size_t n0,
                             size_t cols, const octet_i8_epilogue* ep, void* out, size_t ldc);
#endif

// MARK: - Depthwise convolution (channel multiplier 1)

/// Depthwise convolution of one image. `padded` is the input copied into a
/// (in_h + pad_top + pad_bottom) x (in_w + pad_left + pad_right) x C buffer whose border holds the
/// input zero point (make it with `octet_i8_pad_image`); `padded_w` is its width.
/// Weights are tap-major [kh * kw][C]: int8 for scalar, int16 for avx2. Output rows
/// `oy0 ..< oy1` of [out_h][out_w][C]; the epilogue is applied per channel (bias included).
void octet_i8_dwconv__scalar(const octet_i8_window* w, const uint8_t* padded, int32_t padded_w,
                             const int8_t* weights, const octet_i8_epilogue* ep, int32_t oy0,
                             int32_t oy1, uint8_t* out);
#if defined(__x86_64__)
void octet_i8_dwconv__avx2(const octet_i8_window* w, const uint8_t* padded, int32_t padded_w,
                           const int16_t* weights, const octet_i8_epilogue* ep, int32_t oy0,
                           int32_t oy1, uint8_t* out);
/// The same on AVX-512 VNNI with VBMI (vpdpbusd, four taps per instruction), same int16 weights
/// (int8 values); it hands layers whose channel count is not a multiple of 16 to the AVX2 kernel.
/// Call it only where octet_i8_cpu_has_vbmi() says so.
void octet_i8_dwconv__avx512vnni(const octet_i8_window* w, const uint8_t* padded, int32_t padded_w,
                                 const int16_t* weights, const octet_i8_epilogue* ep, int32_t oy0,
                                 int32_t oy1, uint8_t* out);
#endif

/// Copies an [in_h][in_w][C] image into the middle of a padded buffer
/// [in_h + top + bottom][in_w + left + right][C] whose border is `zero_point`.
void octet_i8_pad_image(const uint8_t* input, int32_t in_h, int32_t in_w, int32_t channels,
                        int32_t top, int32_t left, int32_t bottom, int32_t right, uint8_t zero_point,
                        uint8_t* padded);

// MARK: - Pooling and element-wise (portable C; the compiler vectorizes them)

/// §12: out[i] = clamp(roundf(x[i] / scale) + zero_point, 0, 255), NaN -> 0; the same Float
/// operations as ActivationQuantization.quantize.
void octet_i8_quantize_input(const float* x, size_t count, float scale, int32_t zero_point, uint8_t* out);
#if defined(__x86_64__)
/// The same, 8 floats at a time (vdivps; round half away from zero built from truncation).
void octet_i8_quantize_input__avx2(const float* x, size_t count, float scale, int32_t zero_point, uint8_t* out);
#endif

/// §12 exact input: out[i] = the pixel floor(x[i] * (255 * std[c]) + (255 * mean[c] + 1/2)), each
/// operation in float32, clamped to [0, 255], NaN -> 0, with c = i % 3 (NHWC RGB).
void octet_i8_input_pixels(const float* x, size_t count, const float* mean, const float* std, uint8_t* out);

/// §12 exact input: recomputes the output positions of one image whose window overhangs the
/// input (border class != `full_class`) with their class's bias. `input` holds uint8 pixels (zero
/// point 0: padded taps add nothing), `weights` are [N][kh][kw][C] int8, `class_bias` is
/// [classes][N], class = row_class[oy] * col_classes + col_class[ox]. The epilogue (bias ignored,
/// residual honoured) writes out[(oy * out_w + ox) * N + c]. `full_class` < 0: no class is full.
void octet_i8_conv_border(const octet_i8_window* w, const uint8_t* input, const int8_t* weights, size_t n,
                          const int32_t* class_bias, const int32_t* row_class, const int32_t* col_class,
                          int32_t col_classes, int32_t full_class, const octet_i8_epilogue* ep, uint8_t* out);

/// Max pool of one image; padded taps are skipped (docs/quantization.md §9).
void octet_i8_maxpool(const octet_i8_window* w, const uint8_t* input, uint8_t* out);
/// Output rows oy0 ..< oy1 only (`out` is still the whole output image), for splitting between threads.
void octet_i8_maxpool_rows(const octet_i8_window* w, const uint8_t* input, int32_t oy0, int32_t oy1, uint8_t* out);

/// Global average pool of one image [pixels][C] -> [C] (§10):
/// out[c] = clamp(((sum_p (x - z_in)) * m + 2^(n-1)) >> n) + z_out, 0, 255).
void octet_i8_global_avgpool(const uint8_t* input, size_t pixels, size_t channels,
                             int32_t in_zero_point, int32_t multiplier, int32_t shift,
                             int32_t out_zero_point, uint8_t* out);

/// Residual add (§8): out[i] = clamp(round_shift((a-za)*ma + (b-zb)*mb, n) + zo, lo, hi).
void octet_i8_add(const uint8_t* a, const uint8_t* b, size_t count, int32_t za, int32_t zb,
                  int32_t ma, int32_t mb, int32_t shift, int32_t zo, int32_t lo, int32_t hi,
                  uint8_t* out);

/// Per-channel clamp post-pass (§7.1), in place over [rows][channels] uint8:
/// q = min(max(q, lo[c]), hi[c]). The scalar twin and the AVX2 form (32 channels at a time).
void octet_i8_channel_clamp(uint8_t* data, size_t rows, size_t channels, const uint8_t* lo, const uint8_t* hi);
#if defined(__x86_64__)
void octet_i8_channel_clamp__avx2(uint8_t* data, size_t rows, size_t channels, const uint8_t* lo,
                                  const uint8_t* hi);
#endif

/// A convolution with a 16-bit input or output (docs/quantization.md §17). Inputs are uint8
/// (in_bits 8) or int16 (16) NHWC codes, outputs uint8 or int16 (out_bits); the accumulator is
/// int64: acc = bias[c] + Σ x·w, then clamp(floor((acc·m + 2^(n-1)) / 2^n) + z_out, lo, hi) with the
/// product in 128 bits. Dense layers (groups 1) run as a GEMM over int16 im2col rows `a` [rows][kp]
/// (kp = K rounded up to even, padded with 0) and weights packed [ceil(N/8)][kp/2][8][2] int16
/// (zero padded); depthwise layers read weights [kh·kw][C] int16.
typedef struct octet_a16_conv {
  int32_t in_h, in_w, in_c, out_h, out_w, out_c;
  int32_t kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  int32_t in_bits, out_bits, weight_bits;
  int32_t z_in, z_out, lo, hi;
  int32_t k, kp;
  const int16_t* weights;
  const int64_t* bias;
  const int32_t* multiplier;
  const int32_t* shift;
} octet_a16_conv;

/// Rows [m0, m1) of one image's int16 im2col matrix (row = oy·out_w + ox, K in (ky, kx, cin)
/// order, padding taps z_in, K padding 0) into a [(m1-m0)][kp].
void octet_a16_im2col(const octet_a16_conv* c, const void* in, int32_t m0, int32_t m1, int16_t* a);
/// out rows [0, rows) (out points at the first row's first channel, uint8 or int16 by out_bits)
/// from im2col rows a [rows][kp]: the plain twin, and the AVX2 one (vpmaddwd, int32 partial sums
/// over blocks of K that cannot overflow, added into int64).
void octet_a16_gemm__scalar(const octet_a16_conv* c, const int16_t* a, int32_t rows, void* out);
void octet_a16_gemm__avx2(const octet_a16_conv* c, const int16_t* a, int32_t rows, void* out);
/// Depthwise output rows [oy0, oy1) of one image: the plain twin, and the AVX2 one (four channels
/// per vector in exact int64 lanes, vpmuldq).
void octet_a16_dwconv__scalar(const octet_a16_conv* c, const void* in, int32_t oy0, int32_t oy1, void* out);
void octet_a16_dwconv__avx2(const octet_a16_conv* c, const void* in, int32_t oy0, int32_t oy1, void* out);

/// The ONNX operators (docs/quantization.md §20-§23, elementwise.c); each equals the reference.
/// Lookup (§20): out[i] = table[x[i]].
void octet_i8_lookup(const uint8_t* x, size_t count, const uint8_t* table, uint8_t* out);
/// Mul (§21): out[i] = clamp(((a-za)(b-zb)·m + 2^(n-1)) >> n + zo, 0, 255) for equal shapes, and
/// the [pixels][channels] by [channels] form (squeeze-and-excitation).
void octet_i8_mul(const uint8_t* a, const uint8_t* b, size_t count, int32_t za, int32_t zb, int32_t m,
                  int32_t shift, int32_t zo, uint8_t* out);
void octet_i8_mul_channels(const uint8_t* a, const uint8_t* b, size_t pixels, size_t channels, int32_t za,
                           int32_t zb, int32_t m, int32_t shift, int32_t zo, uint8_t* out);
/// Concat (§22): channels [offset, offset + channels) of out [pixels][total] from x
/// [pixels][channels], requantized (copy != 0: the quantizations are equal, a copy).
void octet_i8_concat_into(const uint8_t* x, size_t pixels, size_t channels, size_t offset, size_t total,
                          int32_t zi, int32_t m, int32_t shift, int32_t zo, int copy, uint8_t* out);
/// Average pool (§23), output rows [oy0, oy1) of one image; window->zero_point is z_in; the
/// multiplier of a window of t taps is entry t-1; sum is scratch of `channels` int32.
void octet_i8_avgpool_rows(const octet_i8_window* w, const uint8_t* in, int32_t oy0, int32_t oy1,
                           const int32_t* multipliers, const int32_t* shifts, int count_include_pad,
                           int32_t zo, int32_t* sum, uint8_t* out);

#ifdef __cplusplus
}
#endif
