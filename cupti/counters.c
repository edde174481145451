#include "counters.h"

uint64_t counters_v[EMBER_GPU_CTR_COUNT];
