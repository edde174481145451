/* counters: the library's cumulative counters (enum ember_gpu_counter), process-global and
 * updated with relaxed atomics from any thread. Sent to the agent in COUNTERS messages. */
#ifndef EMBER_CUPTI_COUNTERS_H
#define EMBER_CUPTI_COUNTERS_H

#include <stdint.h>

#include "ember_gpu_proto.h"

extern uint64_t counters_v[EMBER_GPU_CTR_COUNT];

static inline void counters_add(enum ember_gpu_counter c, uint64_t n)
{
	__atomic_fetch_add(&counters_v[c], n, __ATOMIC_RELAXED);
}

static inline uint64_t counters_get(enum ember_gpu_counter c)
{
	return __atomic_load_n(&counters_v[c], __ATOMIC_RELAXED);
}

#endif
