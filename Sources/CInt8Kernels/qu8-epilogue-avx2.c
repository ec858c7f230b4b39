// The AVX2 epilogue on its own (octet_i8_epilogue__avx2): requantizes a block of int32
// accumulators, with the optional residual add. The AVX-512 VNNI and AMX GEMMs finish with it.
#if defined(__x86_64__)
#include "qu8-epilogue-avx2.h"

AVX2 void octet_i8_epilogue__avx2(const int32_t* acc, size_t ld_acc, size_t row0, size_t rows, size_t n0,
                                  size_t cols, const octet_i8_epilogue* ep, void* out, size_t ldc) {
  const ep_consts k = load_consts(ep);
  epilogue_block(acc, ld_acc, row0, rows, n0, cols, ep, &k, out, ldc);
}
#endif
