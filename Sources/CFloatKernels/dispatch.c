#include <stdlib.h>
#include <string.h>
#include "CFloatKernels.h"

int octet_f32_cpu_has_avx2fma(void) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports also checks that the OS saves the YMM state (XGETBV).
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return 0;
#endif
}

octet_f32_path octet_f32_default_path(void) { return octet_f32_path_for_request(getenv("OCTET_FLOAT_KERNEL")); }

octet_f32_path octet_f32_path_for_request(const char* request) {
  const int avx2fma = octet_f32_cpu_has_avx2fma();
  if (request != NULL) {
    if (strcmp(request, "portable") == 0) return OCTET_F32_PATH_PORTABLE;
    if (strcmp(request, "avx2fma") == 0)
      return avx2fma ? OCTET_F32_PATH_AVX2FMA : OCTET_F32_PATH_PORTABLE;
  }
  return avx2fma ? OCTET_F32_PATH_AVX2FMA : OCTET_F32_PATH_PORTABLE;
}
