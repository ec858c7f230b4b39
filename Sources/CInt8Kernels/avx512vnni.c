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
#define OCTET_GEMM octet_i8_gemm__avx512vnni
#define OCTET_EPILOGUE octet_i8_epilogue__avx2
#endif

// 8 rows x (16 * NP) columns over the whole K; rows past `rows` repeat row 0 and are discarded.
#define OCTET_VNNI_KERNEL(NAME, NP)                                                               \
  VNNI static void NAME(const uint8_t* a, size_t lda, size_t rows, const int8_t* b, size_t kp,    \
                        size_t kg, const int32_t* bias, int32_t acc[8][32]) {                     \
    const uint8_t* r[8];                                                                          \
    for (size_t i = 0; i < 8; i++) r[i] = a + (i < rows ? i : 0) * lda;                           \
    __m512i c[8][NP];                                                                             \
    for (size_t p = 0; p < NP; p++) {                                                             \
      const __m512i bv = _mm512_loadu_si512(bias + 16 * p);                                       \
      for (size_t i = 0; i < 8; i++) c[i][p] = bv;                                                \
    }                                                                                             \
    for (size_t g = 0; g < kg; g++) {                                                             \
      __m512i w[NP];                                                                              \
      for (size_t p = 0; p < NP; p++) w[p] = _mm512_load_si512(b + p * kp * 16 + g * 64);         \
      for (size_t i = 0; i < 8; i++) {                                                            \
        const __m512i x = _mm512_set1_epi32(octet_load_i32(r[i] + 4 * g));                        \
        for (size_t p = 0; p < NP; p++) c[i][p] = _mm512_dpbusd_epi32(c[i][p], x, w[p]);          \
      }                                                                                           \
    }                                                                                             \
    for (size_t i = 0; i < 8; i++)                                                                \
      for (size_t p = 0; p < NP; p++) _mm512_storeu_si512(acc[i] + 16 * p, c[i][p]);              \
  }

OCTET_VNNI_KERNEL(kernel_8x32, 2)
OCTET_VNNI_KERNEL(kernel_8x16, 1)

VNNI void OCTET_GEMM(const uint8_t* a, size_t lda, const int8_t* b, size_t kp,
                                    size_t n, size_t m0, size_t m1, size_t n0, size_t n1,
                                    const octet_i8_epilogue* ep, void* out, size_t ldc) {
  // As in the AVX2 kernels: a tile's rows at a time when B fits in L2, else L2-sized A blocks.
  const size_t b_bytes = kp * octet_round_up(n, OCTET_I8_NR);
  size_t mc = b_bytes <= 256 * 1024 ? 8 : (160 * 1024) / kp / 8 * 8;
  if (mc < 8) mc = 8;
  int32_t acc[8][32];
  int32_t bias[32];
  for (size_t mb = m0; mb < m1; mb += mc) {
    const size_t me = mb + mc < m1 ? mb + mc : m1;
    for (size_t p0 = n0; p0 < n1; p0 += 2 * OCTET_I8_NR) {
      const size_t cols = n1 - p0 < 2 * OCTET_I8_NR ? n1 - p0 : 2 * OCTET_I8_NR;
      for (size_t j = 0; j < 32; j++) bias[j] = j < cols ? ep->bias[p0 + j] : 0;
      const int8_t* panel = b + (p0 / OCTET_I8_NR) * kp * OCTET_I8_NR;
      for (size_t m = mb; m < me; m += 8) {
        const size_t rows = me - m < 8 ? me - m : 8;
        if (cols > OCTET_I8_NR)
          kernel_8x32(a + m * lda, lda, rows, panel, kp, kp / 4, bias, acc);
        else
          kernel_8x16(a + m * lda, lda, rows, panel, kp, kp / 4, bias, acc);
        OCTET_EPILOGUE(&acc[0][0], 32, m, rows, p0, cols, ep, out, ldc);
      }
    }
  }
}
#endif
