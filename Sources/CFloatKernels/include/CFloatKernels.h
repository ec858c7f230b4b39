// Float32 kernels for the float reference runtime (OctetFloat).
//
// Every tensor is NHWC and densely packed unless a leading dimension says otherwise. Kernels named
// `__portable` are plain C that the compiler vectorizes for the baseline ISA; kernels named
// `__avx2fma` use AVX2+FMA intrinsics and may only be called when `octet_f32_cpu_has_avx2fma()` is
// true (on other architectures they are absent and the probe returns 0). Kernels check nothing: the
// Swift layer validates shapes once, when a plan is built.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Fused activation, applied after bias and residual.
typedef enum {
  OCTET_F32_ACT_NONE = 0,
  OCTET_F32_ACT_RELU = 1,
  OCTET_F32_ACT_RELU6 = 2,
} octet_f32_activation;

/// Kernel family to use.
typedef enum {
  OCTET_F32_PATH_PORTABLE = 0,
  OCTET_F32_PATH_AVX2FMA = 1,
} octet_f32_path;

/// 1 if this CPU and OS support AVX2 and FMA (run-time detection), else 0.
int octet_f32_cpu_has_avx2fma(void);

/// The path to use unless the caller picks one: `OCTET_FLOAT_KERNEL=portable|avx2fma` in the
/// environment wins (an unsupported request falls back to portable), else the best the CPU
/// supports.
octet_f32_path octet_f32_default_path(void);
/// The same for a given request (the value of OCTET_FLOAT_KERNEL, or NULL), without reading the
/// environment.
octet_f32_path octet_f32_path_for_request(const char* request);

/// Geometry of a 2-D window operator (convolution, pooling) over one NHWC tensor.
typedef struct {
  int32_t batch;
  int32_t in_h, in_w;
  int32_t in_stride;  ///< floats between neighbouring input pixels (the tensor's channel count)
  int32_t out_h, out_w;
  int32_t kernel_h, kernel_w;
  int32_t stride_h, stride_w;
  int32_t pad_top, pad_left;  ///< bottom/right padding is implied by out_h/out_w
  int32_t dilation_h, dilation_w;
} octet_f32_window;

// MARK: - Convolution helpers

/// im2col over output pixels `first_row ..< first_row + row_count`, counted across the batch
/// (row = (n * out_h + oh) * out_w + ow). Writes `cols[row_count][kernel_h * kernel_w * channels]`,
/// K ordered (kh, kw, c) and reading input channels `channel_offset ..< channel_offset + channels`.
/// Taps in the padding are 0.
void octet_f32_im2col_nhwc(const octet_f32_window* w, const float* input, int32_t channel_offset,
                           int32_t channels, size_t first_row, size_t row_count, float* cols);

/// In place: y[r][c] = act(y[r][c] + bias[c] + residual[r][c]) for r < rows, c < cols.
/// `bias` and `residual` may be NULL.
void octet_f32_bias_residual_act(float* y, size_t rows, size_t cols, size_t ldy, const float* bias,
                                 const float* residual, size_t ldr, int32_t act);

/// Depthwise convolution, channel multiplier 1: input [batch][in_h][in_w][C] with in_stride == C,
/// weight [kernel_h * kernel_w][C] (tap-major), bias [C] or NULL, residual [batch][out_h][out_w][C]
/// or NULL, output [batch][out_h][out_w][C].
void octet_f32_dwconv_nhwc__portable(const octet_f32_window* w, const float* input,
                                     const float* weight, const float* bias, const float* residual,
                                     float* output, int32_t act);
#if defined(__x86_64__) || defined(__i386__)
void octet_f32_dwconv_nhwc__avx2fma(const octet_f32_window* w, const float* input,
                                    const float* weight, const float* bias, const float* residual,
                                    float* output, int32_t act);
#endif

// MARK: - Winograd F(2x2, 3x3) (winograd.c)

#if defined(__x86_64__) || defined(__i386__)
/// Input transform of tiles `tile_begin ..< tile_begin + tile_count` of a 3x3 stride-1 convolution
/// (2x2 output pixels a tile, numbered across the batch; C = w->in_stride, a multiple of 8):
/// writes row t of V[ξ] = (Bᵀ d B)[ξ] of tile `tile_begin + t`'s 4x4 input patch d, channels
/// contiguous, for the 16 positions ξ; V[ξ] starts ξ * xi_rows * C floats after `v`.
void octet_f32_winograd_input__avx2fma(const octet_f32_window* w, const float* input,
                                       size_t tile_begin, size_t tile_count, float* v,
                                       size_t xi_rows);
/// Output transform: from rows t of M[ξ] (M[ξ] starting ξ * xi_rows * c_out floats after `m`;
/// c_out a multiple of 8), writes tile `tile_begin + t`'s pixels of
/// output[batch][out_h][out_w][c_out] = act(Aᵀ M A + bias + residual).
void octet_f32_winograd_output__avx2fma(const octet_f32_window* w, const float* m,
                                        size_t xi_rows, size_t tile_begin, size_t tile_count,
                                        size_t c_out, const float* bias, const float* residual,
                                        int32_t act, float* output);
#endif

// MARK: - GEMM with pre-packed weights (C = act(A * B + bias + residual))

/// Columns of B per packed panel.
#define OCTET_F32_GEMM_NR 16
/// Floats needed to hold a K x N matrix B packed for `octet_f32_gemm_6x16__avx2fma`.
size_t octet_f32_gemm_packed_count(size_t k, size_t n);
/// Packs B (K x N, row-major with leading dimension ldb) for `octet_f32_gemm_6x16__avx2fma`:
/// blocks of 256 rows, each split into panels of 16 columns (the last zero-padded). The buffer must
/// be 32-byte aligned.
void octet_f32_gemm_pack_b(size_t k, size_t n, const float* b, size_t ldb, float* packed);
/// Inverse of `octet_f32_gemm_pack_b`.
void octet_f32_gemm_unpack_b(size_t k, size_t n, const float* packed, float* b, size_t ldb);
#if defined(__x86_64__) || defined(__i386__)
/// Columns `j_begin ..< j_end` of C[M][N] (leading dimension ldc) =
/// act(A[M][K] (lda) * B + bias[N] + residual[M][N] (ldr)), B packed by `octet_f32_gemm_pack_b`
/// for the full N. `j_begin` is a multiple of 16 (so threads can split the columns by panels);
/// `c`, `bias` and `residual` point at column 0; `bias` and `residual` may be NULL.
void octet_f32_gemm_6x16__avx2fma(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                  const float* packed_b, size_t j_begin, size_t j_end, float* c,
                                  size_t ldc, const float* bias, const float* residual, size_t ldr,
                                  int32_t act);
/// The same GEMM on AVX-512F (tiles of 8 rows x 32 columns, the same packed B; one FMA per k in the
/// same order, so the same floats). Only when `octet_f32_cpu_has_avx512f()`.
void octet_f32_gemm_8x32__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                  const float* packed_b, size_t j_begin, size_t j_end, float* c,
                                  size_t ldc, const float* bias, const float* residual, size_t ldr,
                                  int32_t act);
/// The avx2fma path's GEMM: `octet_f32_gemm_default_isa()`'s kernel of the two above.
void octet_f32_gemm_packed(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* packed_b,
                           size_t j_begin, size_t j_end, float* c, size_t ldc, const float* bias,
                           const float* residual, size_t ldr, int32_t act);
#endif

/// Which kernel `octet_f32_gemm_packed` runs on the avx2fma path.
typedef enum {
  OCTET_F32_GEMM_AVX2 = 0,
  OCTET_F32_GEMM_AVX512 = 1,
} octet_f32_gemm_isa;

/// 1 if this CPU and OS support AVX-512F (and AVX2 and FMA), else 0.
int octet_f32_cpu_has_avx512f(void);
/// `OCTET_FLOAT_GEMM=avx2` in the environment (read once) forces the AVX2 GEMM; else AVX-512F
/// where the CPU has it.
octet_f32_gemm_isa octet_f32_gemm_default_isa(void);
/// The same for a given request (the value of OCTET_FLOAT_GEMM, or NULL), without the environment.
octet_f32_gemm_isa octet_f32_gemm_isa_for_request(const char* request);

// MARK: - Pooling and element-wise

/// Max pool: input [batch][in_h][in_w][C] (in_stride == C), output [batch][out_h][out_w][C].
/// Padding never wins; a window that lies wholly in the padding yields -infinity.
void octet_f32_maxpool_nhwc(const octet_f32_window* w, const float* input, float* output);

/// Mean over `pixels` rows: input [batch][pixels][channels] -> output [batch][channels].
void octet_f32_global_avgpool_nhwc(const float* input, size_t batch, size_t pixels,
                                   size_t channels, float* output);

/// y[i] = act(a[i] + b[i]); y may alias a or b.
void octet_f32_add_act(const float* a, const float* b, float* y, size_t count, int32_t act);

/// In place: y[i] = act(y[i]).
void octet_f32_act_inplace(float* y, size_t count, int32_t act);

/// y[r][c] = x[r][c] * scale[c] + shift[c] for r < rows, c < channels.
void octet_f32_scale_shift(const float* x, const float* scale, const float* shift, float* y,
                           size_t rows, size_t channels);

#ifdef __cplusplus
}
#endif
