#include "CFloatKernels.h"
