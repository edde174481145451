/* The library's hand-off encoder against the agent's receiver: join entries → handoff (BATCH,
 * COUNTERS, HELLO on connect) → Unix socket → gpu_receiver. Also: with no agent listening the
 * bounded queue keeps what fits, counts what it drops, and delivers the rest once one appears. */
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "counters.h"
#include "gpu_receiver.h"
#include "handoff.h"
#include "join.h"

struct seen {
	size_t n;
	int64_t ns, launches;
	int kernel_ok, nostack_ok;
};

static void on_sample(void *ctx, const struct gpu_sample *s)
{
	struct seen *v = ctx;

	v->n++;
	v->ns += s->gpu_ns;
	v->launches += s->launches;
	CHECK(s->pid == getpid());
	if (!strcmp(s->leaf, "[cuda kernel] square(float*, int)") && s->npcs == 3 &&
	    s->pcs[0] == 0x401000 && s->pcs[2] == 0x403000)
		v->kernel_ok = 1;
	if (!strcmp(s->leaf, "[cuda kernel] orphan") && (s->flags & EMBER_GPU_ENTRY_NO_STACK) &&
	    s->npcs == 0)
		v->nostack_ok = 1;
}

static uint64_t mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int emit(void *ctx, const struct join_entry *e)
{
	return handoff_batch_add(ctx, e);
}

static void one_interval(struct join *j, struct handoff *h, uint32_t corr)
{
	uint64_t pcs[] = { 0x401000, 0x402000, 0x403000 };
	struct join_op k = { .op = EMBER_GPU_OP_KERNEL, .name = "_Z6squarePfi", .corr = corr,
			     .start = 10, .end = 110 };
	struct join_op o = { .op = EMBER_GPU_OP_KERNEL, .name = "orphan", .corr = corr + 1,
			     .start = 10, .end = 20 };

	join_launch(j, corr, join_intern(j, pcs, 3));
	join_record(j, &k);
	join_record(j, &o);
	handoff_batch_begin(h, 1000, 2000);
	CHECK_INT(join_flush(j, emit, h), 2);
	handoff_batch_end(h);
	handoff_counters(h);
}

int main(void)
{
	char dir[] = "/tmp/ember-cupti-handoff-XXXXXX", path[256];
	struct ember_gpu_hello hello = { .pid = (uint32_t)getpid() };
	struct gpu_receiver *r = NULL;
	struct gpu_receiver_stats st;
	struct handoff *h = NULL;
	struct join_cfg cfg;
	struct join *j = NULL;
	struct seen v = { 0 };
	uint64_t dropped0 = counters_get(EMBER_GPU_CTR_HANDOFF_DROPPED);
	size_t queued;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/gpu.sock", dir);
	join_default_cfg(&cfg);
	CHECK_INT(join_new(&cfg, &j), 0);
	/* A small queue: about three intervals fit. */
	CHECK_INT(handoff_new(path, 1024, &hello, &h), 0);

	/* No agent yet: intervals queue up to the bound, then are dropped and counted. */
	for (uint32_t i = 0; i < 6; i++) {
		one_interval(j, h, 10 + 2 * i);
		CHECK(handoff_pump(h, mono() + i * 2000000000ull) < 0);
	}
	queued = handoff_queued(h);
	CHECK(queued > 0 && queued <= 1024);
	CHECK(counters_get(EMBER_GPU_CTR_HANDOFF_DROPPED) > dropped0);
	CHECK(!handoff_connected(h));

	/* The agent starts: the next pump connects, sends HELLO then the queue. */
	CHECK_INT(gpu_receiver_start(path, &r), 0);
	CHECK_INT(handoff_pump(h, mono() + 100 * 1000000000ull), 1);
	CHECK(handoff_connected(h));
	one_interval(j, h, 100);
	handoff_drain(h, 1000);
	CHECK_INT(handoff_queued(h), 0);
	for (int i = 0; i < 200; i++) {
		gpu_receiver_get_stats(r, &st);
		if (st.batches >= 2 && st.lib[EMBER_GPU_CTR_RECORDS] >= 14)
			break;
		usleep(10000);
	}
	gpu_receiver_get_stats(r, &st);
	CHECK_INT(st.rejected, 0);
	CHECK(st.batches >= 2);
	CHECK(st.lib[EMBER_GPU_CTR_HANDOFF_DROPPED] >= 1);
	CHECK(gpu_receiver_drain(r, on_sample, &v) >= 4);
	CHECK(v.kernel_ok);
	CHECK(v.nostack_ok);
	CHECK_INT(v.ns % 110, 0);      /* whole intervals only: 100 + 10 ns each */
	CHECK_INT(v.launches, (int64_t)v.n);

	/* The agent goes away: the library notices on send and reconnects later. */
	gpu_receiver_stop(r);
	one_interval(j, h, 200);
	(void)handoff_pump(h, mono() + 200 * 1000000000ull);
	(void)handoff_pump(h, mono() + 201 * 1000000000ull);
	handoff_free(h);
	join_free(j);
	rmdir(dir);
	return check_exit("cupti_handoff");
}
