/* The join of libember_cupti: correlation id → launch stack, graph launches, wrap-around,
 * eviction, missing stacks, capture-time stacks of graph nodes. No GPU, no CUPTI calls. */
#include <errno.h>
#include <stdio.h>

#include "check.h"
#include "counters.h"
#include "cupti_util.h"

static struct join *new_join(uint32_t corr_cap, uint32_t stack_cap)
{
	struct join_cfg cfg;
	struct join *j = NULL;

	join_default_cfg(&cfg);
	cfg.corr_cap = corr_cap;
	cfg.stack_cap = stack_cap;
	CHECK_INT(join_new(&cfg, &j), 0);
	return j;
}

static void kernel(struct join *j, uint32_t corr, const char *name, uint64_t ns,
		   uint64_t node)
{
	struct join_op op = { .op = EMBER_GPU_OP_KERNEL, .name = name, .corr = corr,
			      .start = 1000, .end = 1000 + ns, .graph_node_id = node,
			      .graph_id = node ? 7 : 0 };

	join_record(j, &op);
}

static void test_out_of_order(void)
{
	struct join *j = new_join(1024, 64);
	uint64_t a[] = { 0x401000, 0x402000, 0x403000 }, b[] = { 0x501000, 0x502000 };
	join_stack_t sa = join_intern(j, a, 3), sb = join_intern(j, b, 2);
	struct got g;
	const struct got_entry *e;

	CHECK(sa != JOIN_STACK_NONE && sb != JOIN_STACK_NONE && sa != sb);
	CHECK(join_intern(j, a, 3) == sa); /* interned */
	join_launch(j, 10, sa);
	join_launch(j, 11, sb);
	join_launch(j, 12, sa);
	/* Records arrive in another order than the launches. */
	kernel(j, 12, "k_a", 300, 0);
	kernel(j, 11, "k_b", 200, 0);
	kernel(j, 10, "k_a", 100, 0);
	got_flush(j, &g);
	CHECK_INT(g.n, 2);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "k_a");
	CHECK(e && e->ns == 400 && e->launches == 2 && e->npcs == 3 && e->pcs[2] == 0x403000 &&
	      e->flags == 0);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "k_b");
	CHECK(e && e->ns == 200 && e->launches == 1 && e->npcs == 2 && e->pcs[0] == 0x501000);
	/* The interval was cleared. */
	got_flush(j, &g);
	CHECK_INT(g.n, 0);
	join_free(j);
}

static void test_graph_many_records(void)
{
	struct join *j = new_join(1024, 64);
	uint64_t launch[] = { 0x1000, 0x2000 }, cap1[] = { 0x3000, 0x3100 }, cap2[] = { 0x4000 };
	join_stack_t sl = join_intern(j, launch, 2);
	struct got g;
	const struct got_entry *e;

	/* Capture: nodes 100 and 101 created under two stacks; instantiation clones them to
	 * 200 and 201; node 102 has no known creation stack. */
	join_graph_node(j, 100, join_intern(j, cap1, 2));
	join_graph_node(j, 101, join_intern(j, cap2, 1));
	join_graph_node_clone(j, 100, 200);
	join_graph_node_clone(j, 101, 201);
	join_graph_node_clone(j, 999, 300); /* unknown original: nothing */
	/* One graph launch, replayed: 3 kernels x 50 records under one correlation id. */
	join_launch(j, 77, sl);
	for (int i = 0; i < 50; i++) {
		kernel(j, 77, "g_one", 10, 200);
		kernel(j, 77, "g_two", 20, 201);
		kernel(j, 77, "g_three", 30, 102);
	}
	got_flush(j, &g);
	CHECK_INT(g.n, 3);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "g_one");
	CHECK(e && e->launches == 50 && e->ns == 500 && e->npcs == 2 && e->pcs[0] == 0x1000 &&
	      e->ncapture == 2 && e->cpcs[0] == 0x3000 && e->flags == EMBER_GPU_ENTRY_GRAPH);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "g_two");
	CHECK(e && e->launches == 50 && e->ncapture == 1 && e->cpcs[0] == 0x4000);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "g_three");
	CHECK(e && e->launches == 50 && e->ns == 1500 && e->ncapture == 0 && e->npcs == 2 &&
	      e->flags == EMBER_GPU_ENTRY_GRAPH);
	join_free(j);
}

static void test_wrap_and_eviction(void)
{
	struct join *j = new_join(16, 64);
	uint64_t a[] = { 0xa000 }, b[] = { 0xb000 };
	join_stack_t sa = join_intern(j, a, 1), sb = join_intern(j, b, 1);
	uint64_t evicted = counters_get(EMBER_GPU_CTR_CORR_EVICTED);
	uint64_t nostack = counters_get(EMBER_GPU_CTR_NO_STACK);
	struct got g;
	const struct got_entry *e;

	/* Wrap-around: ids near UINT32_MAX and just past 0 coexist. */
	join_launch(j, UINT32_MAX - 1, sa);
	join_launch(j, UINT32_MAX, sa);
	join_launch(j, 0, sb);
	join_launch(j, 1, sb);
	kernel(j, UINT32_MAX, "wrap", 5, 0);
	kernel(j, 1, "wrap", 7, 0);
	kernel(j, UINT32_MAX - 1, "wrap", 5, 0);
	kernel(j, 0, "wrap", 7, 0);
	got_flush(j, &g);
	CHECK_INT(g.n, 2);
	for (size_t i = 0; i < g.n; i++) {
		CHECK(g.e[i].launches == 2 && g.e[i].npcs == 1);
		CHECK(g.e[i].pcs[0] == 0xa000 ? g.e[i].ns == 10 : g.e[i].ns == 14);
	}

	/* Eviction: 16 slots, so id 100 is overwritten by id 116 before its record arrives. */
	join_launch(j, 100, sa);
	for (uint32_t id = 101; id <= 116; id++)
		join_launch(j, id, sb);
	CHECK(counters_get(EMBER_GPU_CTR_CORR_EVICTED) > evicted);
	kernel(j, 100, "late", 9, 0);
	kernel(j, 116, "late", 1, 0);
	got_flush(j, &g);
	CHECK_INT(g.n, 2);
	e = NULL;
	for (size_t i = 0; i < g.n; i++)
		if (g.e[i].flags & EMBER_GPU_ENTRY_NO_STACK)
			e = &g.e[i];
	CHECK(e && e->ns == 9 && e->npcs == 0 && e->launches == 1);
	CHECK_INT(counters_get(EMBER_GPU_CTR_NO_STACK) - nostack, 1);
	join_free(j);
}

static void test_missing_and_unsampled(void)
{
	struct join *j = new_join(1024, 64);
	uint64_t zero = counters_get(EMBER_GPU_CTR_ZERO_TS);
	struct join_op z = { .op = EMBER_GPU_OP_MEMSET, .corr = 5 };
	struct got g;
	const struct got_entry *e;

	kernel(j, 4242, "orphan", 11, 0);          /* no launch seen at all */
	join_launch(j, 5, JOIN_STACK_UNSAMPLED);
	join_record(j, &z);                        /* zero timestamps: counted, 0 ns */
	got_flush(j, &g);
	CHECK_INT(g.n, 2);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "orphan");
	CHECK(e && e->flags == EMBER_GPU_ENTRY_NO_STACK && e->ns == 11);
	e = got_find(&g, EMBER_GPU_OP_MEMSET, "");
	CHECK(e && e->flags == EMBER_GPU_ENTRY_UNSAMPLED && e->ns == 0 && e->launches == 1);
	CHECK_INT(counters_get(EMBER_GPU_CTR_ZERO_TS) - zero, 1);
	join_free(j);
}

static void test_stack_table_reuse(void)
{
	struct join *j = new_join(1024, 16);
	uint64_t pc[1];
	join_stack_t first, s;
	int full = 0;

	pc[0] = 1;
	first = join_intern(j, pc, 1);
	join_launch(j, 1, first);
	/* Fill the 16-slot table within one interval: the 17th stack does not fit. */
	for (uint64_t i = 2; i <= 17; i++) {
		pc[0] = i;
		if (join_intern(j, pc, 1) == JOIN_STACK_NONE)
			full++;
	}
	CHECK_INT(full, 1);
	/* Two intervals later nothing references them: slots are reused and the old reference
	 * is recognised as stale (its record then gets "[no launch stack]"). */
	join_flush(j, got_emit, &(struct got){ 0 });
	join_flush(j, got_emit, &(struct got){ 0 });
	pc[0] = 1000;
	for (uint64_t i = 0; i < 16; i++) {
		pc[0] = 1000 + i;
		s = join_intern(j, pc, 1);
		CHECK(s != JOIN_STACK_NONE);
	}
	CHECK(!join_stack_valid(j, first));
	join_free(j);
}

/* Python frames are part of a stack: the same native stack under two Python callers (or two
 * lines of one) is two stacks, and a flush hands out each one's frames and walk status, for the
 * launch and for a graph node's capture. */
static void test_python_frames(void)
{
	struct join *j = new_join(1024, 64);
	uint64_t pcs[] = { 0x401000, 0x402000 };
	const struct ember_py_frame pa[] = { { .code = 0x7f0000001000ull, .key = 1, .instr = 10 },
					     { .code = 0x7f0000002000ull, .key = 2, .instr = 4 } };
	const struct ember_py_frame pb[] = { { .code = 0x7f0000001000ull, .key = 1, .instr = 12 },
					     { .code = 0x7f0000002000ull, .key = 2, .instr = 4 } };
	join_stack_t sa = join_intern_py(j, pcs, 2, pa, 2, EMBER_PY_COMPLETE);
	join_stack_t sb = join_intern_py(j, pcs, 2, pb, 2, EMBER_PY_COMPLETE);
	join_stack_t sn = join_intern(j, pcs, 2);
	join_stack_t st = join_intern_py(j, pcs, 2, pa, 2, EMBER_PY_TRUNCATED);
	struct got g;
	const struct got_entry *e;

	CHECK(sa && sb && sn && st && sa != sb && sa != sn && sb != sn && st != sa);
	CHECK(join_intern_py(j, pcs, 2, pa, 2, EMBER_PY_COMPLETE) == sa);
	join_launch(j, 1, sa);
	join_launch(j, 2, sb);
	join_launch(j, 3, sn);
	join_graph_node(j, 77, sb);
	kernel(j, 1, "k_a", 100, 0);
	kernel(j, 2, "k_b", 200, 0);
	kernel(j, 3, "k_n", 300, 0);
	join_launch(j, 4, sa);
	kernel(j, 4, "k_g", 400, 77);
	got_flush(j, &g);
	CHECK_INT(g.n, 4);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "k_a");
	CHECK(e && e->npcs == 2 && e->npy == 2 && e->py_status == EMBER_PY_COMPLETE &&
	      !memcmp(e->py, pa, sizeof(pa)));
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "k_b");
	CHECK(e && e->npy == 2 && e->py[0].instr == 12);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "k_n");
	CHECK(e && e->npcs == 2 && e->npy == 0 && e->py_status == 0);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "k_g");
	CHECK(e && e->npy == 2 && e->py[0].instr == 10 && e->ncapture_py == 2 &&
	      e->cpy[0].instr == 12 && e->capture_py_status == EMBER_PY_COMPLETE);
	join_free(j);

	/* py_depth bounds what is kept; 0 keeps none. */
	{
		struct join_cfg cfg;

		join_default_cfg(&cfg);
		cfg.py_depth = 1;
		CHECK_INT(join_new(&cfg, &j), 0);
		join_launch(j, 1, join_intern_py(j, pcs, 2, pa, 2, EMBER_PY_COMPLETE));
		kernel(j, 1, "k", 1, 0);
		got_flush(j, &g);
		CHECK(g.n == 1 && g.e[0].npy == 1 && g.e[0].py[0].code == pa[0].code);
		join_free(j);
		cfg.py_depth = EMBER_GPU_MAX_PY_FRAMES + 1;
		CHECK_INT(join_new(&cfg, &j), -EINVAL);
	}
}

int main(void)
{
	struct join_cfg bad;
	struct join *j = NULL;

	join_default_cfg(&bad);
	bad.corr_cap = 1000;
	CHECK_INT(join_new(&bad, &j), -EINVAL);
	test_out_of_order();
	test_graph_many_records();
	test_wrap_and_eviction();
	test_missing_and_unsampled();
	test_stack_table_reuse();
	test_python_frames();
	return check_exit("cupti_join");
}
