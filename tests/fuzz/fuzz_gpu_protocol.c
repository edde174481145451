/* fuzz_gpu_protocol: the GPU receiver's parser (agent/collectors/gpu_receiver.c), fed as one
 * client's byte stream (cupti/ember_gpu_proto.h: HELLO, BATCH, COUNTERS), in chunks of the
 * sizes a recv() might return. The input's first 8 bytes seed the chunk sizes (1 byte to
 * 64 KiB); the rest is the stream. Each input must end in the client kept or disconnected,
 * never a crash, a leak, a hang or unbounded memory; every stored sample must be well formed. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_receiver.h"
#include "gpu_receiver_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_sample(void *ctx, const struct gpu_sample *s)
{
	size_t *n = ctx;

	/* Touch everything a consumer reads: ASan checks the bounds. */
	if (strlen(s->name) > EMBER_GPU_MAX_NAME || !s->leaf[0] || s->npcs > EMBER_GPU_MAX_FRAMES ||
	    s->ncapture > EMBER_GPU_MAX_FRAMES || s->gpu_ns < 0 || s->launches < 0 || !s->start_time)
		abort();
	for (size_t i = 0; i < s->npcs; i++)
		*n += s->pcs[i] & 1;
	for (size_t i = 0; i < s->ncapture; i++)
		*n += s->capture_pcs[i] & 1;
	/* Version 2: Python frames bounded, each one readable, a status with every walk. */
	if (s->npy > EMBER_GPU_MAX_PY_FRAMES || s->ncapture_py > EMBER_GPU_MAX_PY_FRAMES ||
	    (s->npy && (!s->py || !s->py_status)) ||
	    (s->ncapture_py && (!s->capture_py || !s->capture_py_status)))
		abort();
	for (size_t i = 0; i < s->npy; i++)
		*n += (s->py[i].code ^ s->py[i].key ^ (uint32_t)s->py[i].instr) & 1;
	for (size_t i = 0; i < s->ncapture_py; i++)
		*n += (s->capture_py[i].code ^ s->capture_py[i].key) & 1;
	*n += strlen(s->leaf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gpu_receiver *r;
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	size_t n = 0;

	if (size >= 8) {
		uint64_t seed;

		memcpy(&seed, data, 8);
		rng ^= seed;
		data += 8;
		size -= 8;
	}
	r = gpu_receiver_new_detached();
	if (!r)
		return 0;
	while (size) {
		size_t chunk;
		int err;

		rng ^= rng >> 12;
		rng ^= rng << 25;
		rng ^= rng >> 27;
		chunk = (size_t)((rng * 2685821657736338717ull) >> 48) + 1; /* 1 .. 65536 */
		if (chunk > size)
			chunk = size;
		err = gpu_receiver_feed(r, data, chunk);
		data += chunk;
		size -= chunk;
		(void)gpu_receiver_drain(r, check_sample, &n);
		if (err)
			break;
	}
	gpu_receiver_stop(r);
	return 0;
}
