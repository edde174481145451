#include "records.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clog.h"
#include "counters.h"
#include "join.h"

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t pool_buf_size = 256 * 1024;
static unsigned pool_max = 64, pool_keep = 16, pool_out;
static void *pool_free[64];
static unsigned pool_nfree;
static struct join *records_join;

void records_pool_config(size_t buf_size, unsigned max_buffers, unsigned keep)
{
	pthread_mutex_lock(&pool_lock);
	pool_buf_size = (buf_size + 7) & ~(size_t)7;
	pool_max = max_buffers;
	pool_keep = keep < 64 ? keep : 64;
	pthread_mutex_unlock(&pool_lock);
}

void records_set_join(struct join *j)
{
	__atomic_store_n(&records_join, j, __ATOMIC_RELEASE);
}

void records_pool_drain(void)
{
	pthread_mutex_lock(&pool_lock);
	while (pool_nfree)
		free(pool_free[--pool_nfree]);
	pthread_mutex_unlock(&pool_lock);
}

void CUPTIAPI records_buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records)
{
	void *b = NULL;
	bool allowed = false;
	size_t sz;

	pthread_mutex_lock(&pool_lock);
	sz = pool_buf_size;
	if (pool_out < pool_max) {
		if (pool_nfree)
			b = pool_free[--pool_nfree];
		pool_out++;
		allowed = true;
	}
	pthread_mutex_unlock(&pool_lock);
	if (allowed && !b && posix_memalign(&b, 8, sz) != 0)
		b = NULL;
	if (!b) {
		/* Declining makes CUPTI drop records; it counts them as dropped. */
		counters_add(EMBER_GPU_CTR_BUFFERS_REFUSED, 1);
		if (allowed) {
			pthread_mutex_lock(&pool_lock);
			pool_out--;
			pthread_mutex_unlock(&pool_lock);
		}
		*buffer = NULL;
		*size = 0;
		*max_records = 0;
		return;
	}
	*buffer = b;
	*size = sz;
	*max_records = 0; /* fill the buffer */
}

static void pool_put(uint8_t *buffer, size_t size)
{
	pthread_mutex_lock(&pool_lock);
	if (pool_out)
		pool_out--;
	if (size == pool_buf_size && pool_nfree < pool_keep) {
		pool_free[pool_nfree++] = buffer;
		buffer = NULL;
	}
	pthread_mutex_unlock(&pool_lock);
	free(buffer);
}

void CUPTIAPI records_buffer_completed(CUcontext ctx, uint32_t stream_id, uint8_t *buffer,
				       size_t size, size_t valid_size)
{
	struct join *j = __atomic_load_n(&records_join, __ATOMIC_ACQUIRE);
	struct records_stats st = { 0 };

	(void)ctx;
	(void)stream_id;
	if (!buffer)
		return;
	if (j && valid_size)
		(void)records_decode(buffer, valid_size, j, &st);
	pool_put(buffer, size);
}

const char *records_copy_kind(unsigned kind)
{
	static const char *const names[] = { "unknown", "HtoD", "DtoH", "HtoA", "AtoH", "AtoA",
					     "AtoD", "DtoA", "DtoD", "HtoH", "PtoP" };

	return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "unknown";
}

int records_decode(uint8_t *buffer, size_t valid_size, struct join *j,
		   struct records_stats *stats)
{
	CUpti_Activity *rec = NULL;
	int n = 0;

	for (;;) {
		CUptiResult r = cuptiActivityGetNextRecord(buffer, valid_size, &rec);
		struct join_op op = { 0 };

		if (r == CUPTI_ERROR_MAX_LIMIT_REACHED)
			break;
		if (r != CUPTI_SUCCESS) {
			/* CUPTI_ERROR_INVALID_KIND: an incomplete or invalid record; stop here. */
			const char *msg = NULL;

			(void)cuptiGetResultString(r, &msg);
			clog_debug("records: cuptiActivityGetNextRecord: %s", msg ? msg : "?");
			stats->stopped_invalid++;
			break;
		}
		switch (rec->kind) {
		case CUPTI_ACTIVITY_KIND_KERNEL:
		case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
			/* Fields read here sit at the same offsets in Kernel5..Kernel11. */
			const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;

			op.op = EMBER_GPU_OP_KERNEL;
			op.name = k->name;
			op.corr = k->correlationId;
			op.start = k->start;
			op.end = k->end;
			op.graph_node_id = k->graphNodeId;
			op.graph_id = k->graphId;
			stats->kernels++;
			break;
		}
		case CUPTI_ACTIVITY_KIND_MEMCPY: {
			const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)rec;

			op.op = EMBER_GPU_OP_MEMCPY;
			op.name = records_copy_kind(m->copyKind);
			op.corr = m->correlationId;
			op.alt_corr = m->runtimeCorrelationId;
			op.start = m->start;
			op.end = m->end;
			op.graph_node_id = m->graphNodeId;
			op.graph_id = m->graphId;
			stats->memcpys++;
			break;
		}
		case CUPTI_ACTIVITY_KIND_MEMSET: {
			const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)rec;

			op.op = EMBER_GPU_OP_MEMSET;
			op.corr = m->correlationId;
			op.start = m->start;
			op.end = m->end;
			op.graph_node_id = m->graphNodeId;
			op.graph_id = m->graphId;
			stats->memsets++;
			break;
		}
		case CUPTI_ACTIVITY_KIND_GRAPH_TRACE: {
			const CUpti_ActivityGraphTrace2 *g = (const CUpti_ActivityGraphTrace2 *)rec;
			char name[32];

			snprintf(name, sizeof(name), "graph %u", g->graphId);
			op.op = EMBER_GPU_OP_GRAPH;
			op.name = name;
			op.corr = g->correlationId;
			op.start = g->start;
			op.end = g->end;
			op.graph_id = g->graphId;
			stats->graphs++;
			join_record(j, &op);
			n++;
			continue;
		}
		default:
			stats->other++;
			counters_add(EMBER_GPU_CTR_OTHER_RECORDS, 1);
			continue;
		}
		join_record(j, &op);
		n++;
	}
	return n;
}
