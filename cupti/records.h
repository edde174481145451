/* records: CUPTI activity buffers. A bounded pool of 8-byte-aligned buffers handed to CUPTI
 * (its request callback runs concurrently on application threads in CUDA 13, so every request
 * gets a distinct buffer), and the decoding of completed buffers through
 * cuptiActivityGetNextRecord into join_record(): CONCURRENT_KERNEL/KERNEL (Kernel10 prefix),
 * MEMCPY (Memcpy6), MEMSET (Memset4), GRAPH_TRACE (GraphTrace2); other kinds are counted.
 * Thread-safe. */
#ifndef EMBER_CUPTI_RECORDS_H
#define EMBER_CUPTI_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include <cupti.h>

struct join;

struct records_stats {
	uint64_t kernels, memcpys, memsets, graphs, other;
	uint64_t stopped_invalid; /* iteration stopped by CUPTI_ERROR_INVALID_KIND or another error */
};

/* Pool: buf_size bytes per buffer, at most max_buffers outstanding, `keep` kept for reuse. */
void records_pool_config(size_t buf_size, unsigned max_buffers, unsigned keep);
/* The join that completed buffers feed (set before activities are enabled). */
void records_set_join(struct join *j);
/* Frees the pooled buffers (not the ones CUPTI still holds). */
void records_pool_drain(void);

/* CUPTI's buffer callbacks (CUpti_BuffersCallbackRequestFunc / ...CompleteFunc). */
void CUPTIAPI records_buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records);
void CUPTIAPI records_buffer_completed(CUcontext ctx, uint32_t stream_id, uint8_t *buffer,
				       size_t size, size_t valid_size);

/* Decodes buffer[0..valid_size) into j. Returns the number of records joined (>= 0). */
int records_decode(uint8_t *buffer, size_t valid_size, struct join *j,
		   struct records_stats *stats);

/* "HtoD", "DtoH", ... for a CUpti_ActivityMemcpyKind. */
const char *records_copy_kind(unsigned kind);

#endif
