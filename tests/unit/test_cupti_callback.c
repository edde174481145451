/* The CUPTI callback handler, called directly with fabricated CUpti_CallbackData: CBID classes
 * (CUDA 13's __cudaLaunchKernel 505/506), runtime-then-driver nesting (only the outermost ENTER
 * walks the stack; a nested call with its own correlation id is aliased), the per-thread rate
 * limit (unsampled launches still counted and joined), per-thread depth, and graph nodes
 * created during stream capture. No GPU: the join is fed hand-built records. */
#include <pthread.h>
#include <stdio.h>

#include "check.h"
#include "counters.h"
#include "cupti_util.h"
#include "inject.h"

static struct join *j;

static void api(CUpti_CallbackDomain dom, CUpti_CallbackId cbid, CUpti_ApiCallbackSite site,
		uint32_t corr, const char *sym)
{
	CUpti_CallbackData cd;

	memset(&cd, 0, sizeof(cd));
	cd.callbackSite = site;
	cd.correlationId = corr;
	cd.symbolName = sym;
	cd.functionName = "fabricated";
	inject_callback(NULL, dom, cbid, &cd);
}

static void kernel(uint32_t corr, const char *name, uint64_t node)
{
	struct join_op op = { .op = EMBER_GPU_OP_KERNEL, .name = name, .corr = corr,
			      .start = 100, .end = 200, .graph_node_id = node };

	join_record(j, &op);
}

/* <<<>>> in CUDA 13: __cudaLaunchKernel (runtime 505), which calls cuLaunchKernel (driver). */
static __attribute__((noinline)) void site_a(uint32_t rt_corr, uint32_t drv_corr, const char *k)
{
	api(CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_v13000,
	    CUPTI_API_ENTER, rt_corr, k);
	api(CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel, CUPTI_API_ENTER,
	    drv_corr, k);
	api(CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel, CUPTI_API_EXIT,
	    drv_corr, k);
	api(CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_v13000,
	    CUPTI_API_EXIT, rt_corr, k);
	__asm__ volatile("" ::: "memory");
}

/* A driver-only launcher (Triton, cuBLAS): cuLaunchKernel at depth 0. */
static __attribute__((noinline)) void site_b(uint32_t corr, const char *k)
{
	api(CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel, CUPTI_API_ENTER,
	    corr, k);
	api(CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel, CUPTI_API_EXIT,
	    corr, k);
	__asm__ volatile("" ::: "memory");
}

static void configure(double rate)
{
	struct inject_cfg cfg;

	inject_cfg_from_env(&cfg);
	cfg.rate = rate;
	cfg.graph_rate = rate;
	cfg.max_depth = 32;
	inject_configure(&cfg, j);
}

static void test_classes(void)
{
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_RUNTIME_API, 505), INJECT_LAUNCH);
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_RUNTIME_API, 506), INJECT_LAUNCH);
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_RUNTIME_API,
			       CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000), INJECT_LAUNCH);
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_RUNTIME_API,
			       CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_v10000), INJECT_GRAPH);
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_DRIVER_API,
			       CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch_ptsz), INJECT_GRAPH);
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_DRIVER_API,
			       CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx), INJECT_LAUNCH);
	/* Copies and sets are found by name through cuptiGetCallbackName (works without GPU). */
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_RUNTIME_API,
			       CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyAsync_v3020), INJECT_COPY);
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_RUNTIME_API,
			       CUPTI_RUNTIME_TRACE_CBID_cudaMemset_v3020), INJECT_COPY);
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_DRIVER_API,
			       CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoD_v2), INJECT_COPY);
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_DRIVER_API,
			       CUPTI_DRIVER_TRACE_CBID_cuMemsetD8Async), INJECT_COPY);
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_RUNTIME_API,
			       CUPTI_RUNTIME_TRACE_CBID_cudaMalloc_v3020), INJECT_NONE);
	CHECK_INT(inject_class(CUPTI_CB_DOMAIN_RUNTIME_API, 100000), INJECT_NONE);
}

static void test_nesting(void)
{
	uint64_t cap = counters_get(EMBER_GPU_CTR_STACKS_CAPTURED);
	uint64_t calls = counters_get(EMBER_GPU_CTR_API_CALLS);
	struct got g;
	const struct got_entry *a1, *a2, *b;

	configure(-1);
	/* One call site: the driver call nested with the same id, then with another (aliased). */
	for (volatile uint32_t i = 0; i < 2; i++) /* volatile: not unrolled */
		site_a(1 + i, 1 + 2 * i, i ? "_Z3barPf" : "_Z3fooPf");
	site_b(4, "triton_k");
	CHECK_INT(counters_get(EMBER_GPU_CTR_STACKS_CAPTURED) - cap, 3);
	CHECK_INT(counters_get(EMBER_GPU_CTR_API_CALLS) - calls, 3);
	/* Not ours: ignored, depth untouched. */
	api(CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID_cudaMalloc_v3020,
	    CUPTI_API_ENTER, 9, NULL);
	CHECK_INT(counters_get(EMBER_GPU_CTR_API_CALLS) - calls, 3);
	kernel(1, "_Z3fooPf", 0);
	kernel(3, "_Z3barPf", 0);   /* the record carries the driver's id */
	kernel(4, "triton_k", 0);
	got_flush(j, &g);
	CHECK_INT(g.n, 3);
	a1 = got_find(&g, EMBER_GPU_OP_KERNEL, "_Z3fooPf");
	a2 = got_find(&g, EMBER_GPU_OP_KERNEL, "_Z3barPf");
	b = got_find(&g, EMBER_GPU_OP_KERNEL, "triton_k");
	CHECK(a1 && a2 && b);
	if (!a1 || !a2 || !b)
		return;
	CHECK(a1->flags == 0 && a2->flags == 0 && b->flags == 0);
	CHECK(a1->npcs > 3 && a1->npcs == a2->npcs && b->npcs > 3);
	/* Same call site, same stack; the driver-only site differs. */
	CHECK(!memcmp(a1->pcs, a2->pcs, a1->npcs * sizeof(uint64_t)));
	CHECK(a1->npcs != b->npcs || memcmp(a1->pcs, b->pcs, b->npcs * sizeof(uint64_t)));
}

static void test_rate_limit(void)
{
	uint64_t cap = counters_get(EMBER_GPU_CTR_STACKS_CAPTURED);
	uint64_t uns = counters_get(EMBER_GPU_CTR_UNSAMPLED);
	struct got g;
	const struct got_entry *e;
	uint64_t walked;

	configure(10); /* 10 walks per second per thread, burst 10 */
	for (uint32_t i = 0; i < 100; i++)
		site_a(1000 + i, 1000 + i, "_Z4hotv");
	walked = counters_get(EMBER_GPU_CTR_STACKS_CAPTURED) - cap;
	CHECK(walked >= 10 && walked <= 11);
	CHECK_INT(counters_get(EMBER_GPU_CTR_UNSAMPLED) - uns, 100 - walked);
	/* A kernel never walked on this thread: unsampled. */
	site_b(2000, "cold_kernel");
	for (uint32_t i = 0; i < 100; i++)
		kernel(1000 + i, "_Z4hotv", 0);
	kernel(2000, "cold_kernel", 0);
	got_flush(j, &g);
	/* Every hot launch is counted, under the stack walked for that kernel. */
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "_Z4hotv");
	CHECK(e && e->launches == 100 && e->flags == 0 && e->npcs > 3 && e->ns == 10000);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "cold_kernel");
	CHECK(e && e->flags == EMBER_GPU_ENTRY_UNSAMPLED && e->launches == 1 && e->npcs == 0);
}

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stage;

static void *other_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&m);
	while (stage != 1)
		pthread_cond_wait(&cv, &m);
	pthread_mutex_unlock(&m);
	/* The main thread is inside a runtime call; this thread's depth is its own. */
	site_b(3001, "other_thread_kernel");
	pthread_mutex_lock(&m);
	stage = 2;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&m);
	return NULL;
}

static void test_per_thread_depth(void)
{
	uint64_t cap = counters_get(EMBER_GPU_CTR_STACKS_CAPTURED);
	pthread_t t;
	struct got g;
	const struct got_entry *e;

	configure(-1);
	CHECK_INT(pthread_create(&t, NULL, other_thread, NULL), 0);
	api(CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000,
	    CUPTI_API_ENTER, 3000, "main_kernel");
	pthread_mutex_lock(&m);
	stage = 1;
	pthread_cond_broadcast(&cv);
	while (stage != 2)
		pthread_cond_wait(&cv, &m);
	pthread_mutex_unlock(&m);
	api(CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000,
	    CUPTI_API_EXIT, 3000, "main_kernel");
	pthread_join(t, NULL);
	CHECK_INT(counters_get(EMBER_GPU_CTR_STACKS_CAPTURED) - cap, 2);
	kernel(3000, "main_kernel", 0);
	kernel(3001, "other_thread_kernel", 0);
	got_flush(j, &g);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "other_thread_kernel");
	CHECK(e && e->flags == 0 && e->npcs > 0);
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "main_kernel");
	CHECK(e && e->flags == 0 && e->npcs > 0);
}

static void test_graph_capture(void)
{
	struct got g;
	const struct got_entry *e, *cap_launch;

	configure(-1);
	/* Stream capture: the launch's ENTER, then GRAPHNODE_CREATED inside it. */
	api(CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_v13000,
	    CUPTI_API_ENTER, 4000, "_Z7capturedv");
	inject_graph_node_created(500);
	api(CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_v13000,
	    CUPTI_API_EXIT, 4000, "_Z7capturedv");
	/* Instantiation clones node 500 as 600; the replay is one cudaGraphLaunch. */
	join_graph_node_clone(j, 500, 600);
	site_b(4001, "unused");
	api(CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_v10000,
	    CUPTI_API_ENTER, 4002, NULL);
	api(CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_v10000,
	    CUPTI_API_EXIT, 4002, NULL);
	kernel(4000, "capture_probe", 0); /* gives us the capture-time stack to compare */
	for (int i = 0; i < 5; i++)
		kernel(4002, "_Z7capturedv", 600);
	got_flush(j, &g);
	cap_launch = got_find(&g, EMBER_GPU_OP_KERNEL, "capture_probe");
	e = got_find(&g, EMBER_GPU_OP_KERNEL, "_Z7capturedv");
	CHECK(cap_launch && e);
	if (!cap_launch || !e)
		return;
	CHECK(e->launches == 5 && e->flags == EMBER_GPU_ENTRY_GRAPH && e->npcs > 0);
	CHECK(e->ncapture == cap_launch->npcs &&
	      !memcmp(e->cpcs, cap_launch->pcs, e->ncapture * sizeof(uint64_t)));
}

int main(void)
{
	struct join_cfg cfg;

	join_default_cfg(&cfg);
	CHECK_INT(join_new(&cfg, &j), 0);
	configure(-1);
	test_classes();
	test_nesting();
	test_rate_limit();
	test_per_thread_depth();
	test_graph_capture();
	inject_deactivate();
	/* Deactivated: the handler returns at once. */
	{
		uint64_t calls = counters_get(EMBER_GPU_CTR_API_CALLS);

		site_b(5000, "x");
		CHECK_INT(counters_get(EMBER_GPU_CTR_API_CALLS), calls);
	}
	join_free(j);
	return check_exit("cupti_callback");
}
