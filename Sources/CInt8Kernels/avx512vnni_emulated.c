// avx512vnni.c compiled against scalar stand-ins of its intrinsics (emulate_x86.h), for the tests.
#define OCTET_EMULATE_ISA 1
#include "avx512vnni.c"
