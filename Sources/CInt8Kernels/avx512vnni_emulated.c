// avx512vnni.c compiled against scalar stand-ins of its intrinsics (emulate_x86.h), for the tests.
#define OCTET_EMULATE_ISA 1
#include "avx512vnni.c"

#include <pthread.h>

static octet_i8_isa emulated_epilogue = OCTET_I8_SCALAR;
static pthread_once_t emulated_epilogue_once = PTHREAD_ONCE_INIT;
static void choose_emulated_epilogue(void) {
  emulated_epilogue = octet_i8_cpu_supports(OCTET_I8_AVX2) ? OCTET_I8_AVX2 : OCTET_I8_SCALAR;
}

octet_i8_isa octet_i8_emulated_epilogue_isa(void) {
  pthread_once(&emulated_epilogue_once, choose_emulated_epilogue);
  return emulated_epilogue;
}
