/* Activity record decoding through the real cuptiActivityGetNextRecord (libcupti, no driver
 * needed) on hand-built buffers: Kernel10, Memcpy6, Memset4, GraphTrace2 back to back (stride =
 * sizeof of the CUDA 13.0 struct), zero timestamps, an unknown kind, a truncated buffer. */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "counters.h"
#include "cupti_util.h"
#include "records.h"

struct buf {
	uint8_t *p;
	size_t len;
};

static void put(struct buf *b, const void *rec, size_t size)
{
	memcpy(b->p + b->len, rec, size);
	b->len += size;
}

static void put_kernel(struct buf *b, uint32_t corr, const char *name, uint64_t start,
		       uint64_t end, uint64_t node)
{
	CUpti_ActivityKernel10 k;

	memset(&k, 0, sizeof(k));
	k.kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
	k.correlationId = corr;
	k.name = name;
	k.start = start;
	k.end = end;
	k.graphNodeId = node;
	k.graphId = node ? 3 : 0;
	put(b, &k, sizeof(k));
}

int main(void)
{
	struct buf b = { .p = aligned_alloc(8, 1 << 16) };
	uint64_t stack_a[] = { 0x1111, 0x2222 };
	struct records_stats st = { 0 };
	CUpti_ActivityMemcpy6 mc;
	CUpti_ActivityMemset4 ms;
	CUpti_ActivityGraphTrace2 gt;
	CUpti_ActivityAPI api;
	struct join_cfg cfg;
	struct join *j = NULL;
	join_stack_t sa;
	struct got g;
	const struct got_entry *e;
	uint64_t zero0 = counters_get(EMBER_GPU_CTR_ZERO_TS);
	size_t full;
	int n;

	CHECK_INT(sizeof(CUpti_ActivityKernel10), 216);
	CHECK_INT(sizeof(CUpti_ActivityMemcpy6), 96);
	CHECK_INT(sizeof(CUpti_ActivityMemset4), 88);
	CHECK_INT(sizeof(CUpti_ActivityGraphTrace2), 56);
	join_default_cfg(&cfg);
	CHECK_INT(join_new(&cfg, &j), 0);
	sa = join_intern(j, stack_a, 2);
	for (uint32_t id = 1; id <= 6; id++)
		join_launch(j, id, sa);
	join_launch(j, 50, sa);   /* the runtime id of the copy */

	memset(b.p, 0, 1 << 16);
	put_kernel(&b, 1, "_Z6squarePfi", 1000, 4000, 0);
	put_kernel(&b, 2, "_Z6squarePfi", 5000, 6000, 0);
	memset(&mc, 0, sizeof(mc));
	mc.kind = CUPTI_ACTIVITY_KIND_MEMCPY;
	mc.copyKind = CUPTI_ACTIVITY_MEMCPY_KIND_HTOD;
	mc.correlationId = 9999;        /* driver id unknown: the runtime id is used */
	mc.runtimeCorrelationId = 50;
	mc.start = 100;
	mc.end = 350;
	put(&b, &mc, sizeof(mc));
	memset(&ms, 0, sizeof(ms));
	ms.kind = CUPTI_ACTIVITY_KIND_MEMSET;
	ms.correlationId = 3;
	ms.start = 10;
	ms.end = 30;
	put(&b, &ms, sizeof(ms));
	/* An API record (a kind we do not join) in the middle. */
	memset(&api, 0, sizeof(api));
	api.kind = CUPTI_ACTIVITY_KIND_RUNTIME;
	api.correlationId = 4;
	put(&b, &api, sizeof(api));
	memset(&gt, 0, sizeof(gt));
	gt.kind = CUPTI_ACTIVITY_KIND_GRAPH_TRACE;
	gt.correlationId = 4;
	gt.graphId = 12;
	gt.start = 2000;
	gt.end = 2600;
	put(&b, &gt, sizeof(gt));
	put_kernel(&b, 5, "plain_kernel", 0, 0, 0);   /* zero timestamps */
	put_kernel(&b, 6, "node_kernel", 100, 110, 42);
	full = b.len;

	n = records_decode(b.p, full, j, &st);
	CHECK_INT(n, 7);
	CHECK_INT(st.kernels, 4);
	CHECK_INT(st.memcpys, 1);
	CHECK_INT(st.memsets, 1);
	CHECK_INT(st.graphs, 1);
	CHECK_INT(st.other, 1);
	CHECK_INT(st.stopped_invalid, 0);
	CHECK_INT(counters_get(EMBER_GPU_CTR_ZERO_TS) - zero0, 1);
	got_flush(j, &g);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "_Z6squarePfi");
	CHECK(e && e->ns == 4000 && e->launches == 2 && e->npcs == 2 && e->pcs[1] == 0x2222);
	e = got_find(&g, EMBER_GPU_OP_MEMCPY, "HtoD");
	CHECK(e && e->ns == 250 && e->launches == 1 && e->npcs == 2);
	e = got_find(&g, EMBER_GPU_OP_MEMSET, "");
	CHECK(e && e->ns == 20);
	e = got_find(&g, EMBER_GPU_OP_GRAPH, "graph 12");
	CHECK(e && e->ns == 600 && (e->flags & EMBER_GPU_ENTRY_GRAPH));
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "plain_kernel");
	CHECK(e && e->ns == 0 && e->launches == 1);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "node_kernel");
	CHECK(e && e->ns == 10 && e->flags == EMBER_GPU_ENTRY_GRAPH);

	/* Truncated: the last record cut in half is not decoded, the rest is. */
	memset(&st, 0, sizeof(st));
	n = records_decode(b.p, full - 100, j, &st);
	CHECK_INT(n, 6);
	CHECK_INT(st.kernels, 3);
	got_flush(j, &g);
	CHECK(got_find(&g, EMBER_GPU_OP_KERNEL, "node_kernel") == NULL);
	/* Empty buffer: nothing. */
	memset(&st, 0, sizeof(st));
	CHECK_INT(records_decode(b.p, 0, j, &st), 0);

	/* The pool: distinct buffers, refusal over the limit, reuse. */
	{
		uint8_t *b1, *b2, *b3;
		size_t s1, s2, s3, m;
		uint64_t refused = counters_get(EMBER_GPU_CTR_BUFFERS_REFUSED);

		records_pool_config(4096, 2, 1);
		records_buffer_requested(&b1, &s1, &m);
		records_buffer_requested(&b2, &s2, &m);
		records_buffer_requested(&b3, &s3, &m);
		CHECK(b1 && b2 && b1 != b2 && s1 == 4096 && ((uintptr_t)b1 & 7) == 0);
		CHECK(b3 == NULL && s3 == 0);
		CHECK_INT(counters_get(EMBER_GPU_CTR_BUFFERS_REFUSED) - refused, 1);
		records_set_join(j);
		records_buffer_completed(NULL, 0, b1, s1, 0);
		records_buffer_completed(NULL, 0, b2, s2, 0);
		records_buffer_requested(&b3, &s3, &m);
		CHECK(b3 != NULL);
		records_buffer_completed(NULL, 0, b3, s3, 0);
		records_set_join(NULL);
		records_pool_drain();
	}
	CHECK_STR(records_copy_kind(CUPTI_ACTIVITY_MEMCPY_KIND_DTOH), "DtoH");
	CHECK_STR(records_copy_kind(CUPTI_ACTIVITY_MEMCPY_KIND_PTOP), "PtoP");
	CHECK_STR(records_copy_kind(200), "unknown");
	join_free(j);
	free(b.p);
	return check_exit("cupti_records");
}
