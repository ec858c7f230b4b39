// libFuzzer's entry point for programs that have their own main (compiler-rt FuzzerInterface.h).
// SwiftPM links an executable target with main defined as `<module>_main`, so each fuzz target
// defines that and hands over to libFuzzer here.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
