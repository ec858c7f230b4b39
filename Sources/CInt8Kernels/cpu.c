// Run-time CPU feature detection for the int8 kernels.
#include <stdint.h>
#include "CInt8Kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OCTET_ARCH_REQ_XCOMP_PERM 0x1023
#define OCTET_XFEATURE_XTILEDATA 18

static uint64_t xgetbv0(void) {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((uint64_t)edx << 32) | eax;
}

static int amx_permission = 0;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

// Linux (5.16+) hands out AMX tile state only to processes that ask for it; a refusal (old
// kernel, seccomp) means the AMX path is unavailable, and the caller falls back.
static void request_amx(void) {
  amx_permission =
      syscall(SYS_arch_prctl, OCTET_ARCH_REQ_XCOMP_PERM, OCTET_XFEATURE_XTILEDATA) == 0;
}

int octet_i8_cpu_supports(octet_i8_isa isa) {
  if (isa == OCTET_I8_SCALAR) return 1;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  const int osxsave = (c >> 27) & 1;
  if (!osxsave) return 0;
  const uint64_t xcr0 = xgetbv0();
  const int ymm = (xcr0 & 0x6) == 0x6;
  const int zmm = (xcr0 & 0xe6) == 0xe6;
  const int tiles = (xcr0 & 0x60000) == 0x60000;
  if (__get_cpuid_max(0, 0) < 7) return 0;
  __cpuid_count(7, 0, a, b, c, d);
  const int avx2 = (b >> 5) & 1;
  const int avx512 = ((b >> 16) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1);  // F, BW, VL
  const int vnni = (c >> 11) & 1;
  const int amx = ((d >> 24) & 1) && ((d >> 25) & 1);  // AMX-TILE, AMX-INT8
  switch (isa) {
    case OCTET_I8_AVX2: return ymm && avx2;
    case OCTET_I8_AVX512VNNI: return ymm && zmm && avx2 && avx512 && vnni;
    case OCTET_I8_AMX:
      // The AMX kernel's epilogue uses AVX2; its tails use AVX-512 loads.
      if (!(ymm && zmm && avx2 && avx512 && amx && tiles)) return 0;
      pthread_once(&amx_once, request_amx);
      return amx_permission;
    default: return 0;
  }
}

int octet_i8_cpu_has_vbmi(void) {
  if (!octet_i8_cpu_supports(OCTET_I8_AVX512VNNI)) return 0;
  unsigned a, b, c, d;
  __cpuid_count(7, 0, a, b, c, d);
  return (c >> 1) & 1;
}
#else
int octet_i8_cpu_supports(octet_i8_isa isa) { return isa == OCTET_I8_SCALAR; }
int octet_i8_cpu_has_vbmi(void) { return 0; }
#endif
