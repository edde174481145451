#include "inject.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "clog.h"
#include "counters.h"
#include "handoff.h"
#include "pycap.h"
#include "records.h"
#include "stackcap.h"

#define RECENT 8

struct tstate {
	int depth;                /* nesting of our API callbacks on this thread */
	uint32_t outer_corr;
	join_stack_t outer_stack;
	struct stackcap_bucket launch_bucket, graph_bucket;
	struct {
		uint64_t key;
		join_stack_t s;
	} recent[RECENT];         /* last stack per (kernel name or API) */
};

static __thread struct tstate tstate;

static struct inject_cfg cfg;
static struct join *ijoin;
static int active;
static uint8_t rt_class[CUPTI_RUNTIME_TRACE_CBID_SIZE];
static uint8_t drv_class[CUPTI_DRIVER_TRACE_CBID_SIZE];

/* Start-up state (inject_init) */
static CUpti_SubscriberHandle subscriber;
static struct handoff *ihandoff;
static pid_t init_pid;
static pthread_mutex_t publish_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cond;
static int stopping;
static uint64_t last_end_ns;

static const CUpti_CallbackId rt_launch[] = {
	CUPTI_RUNTIME_TRACE_CBID_cudaLaunch_v3020,
	CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000,
	CUPTI_RUNTIME_TRACE_CBID_cudaLaunch_ptsz_v7000,
	CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_ptsz_v7000,
	CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_v9000,
	CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_ptsz_v9000,
	CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernelMultiDevice_v9000,
	CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_v11060,
	CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_ptsz_v11060,
	/* CUDA 13: every nvcc <<<>>> launch goes through __cudaLaunchKernel (no params struct). */
	CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_v13000,
	CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_ptsz_v13000,
};
static const CUpti_CallbackId rt_graph[] = {
	CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_v10000,
	CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_ptsz_v10000,
};
static const CUpti_CallbackId drv_launch[] = {
	CUPTI_DRIVER_TRACE_CBID_cuLaunch,
	CUPTI_DRIVER_TRACE_CBID_cuLaunchGrid,
	CUPTI_DRIVER_TRACE_CBID_cuLaunchGridAsync,
	CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel,
	CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel_ptsz,
	CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel,
	CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel_ptsz,
	CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernelMultiDevice,
	CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx,
	CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx_ptsz,
};
static const CUpti_CallbackId drv_graph[] = {
	CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch,
	CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch_ptsz,
};

static void cfg_defaults(struct inject_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->rate = 100;
	c->graph_rate = 20;
	c->max_depth = 64;
	c->py_depth = 64;
	c->flush_ms = 1000;
	c->queue_bytes = 4u << 20;
	snprintf(c->socket, sizeof(c->socket), "%s", EMBER_GPU_DEFAULT_SOCKET);
}

static int env_num(const char *name, double lo, double hi, double *ret)
{
	const char *s = getenv(name);
	char *end;
	double v;

	if (!s || !*s)
		return 0;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || v < lo || v > hi) {
		clog_warn("%s=%s: not a number in [%g, %g], ignored", name, s, lo, hi);
		return 0;
	}
	*ret = v;
	return 1;
}

void inject_cfg_from_env(struct inject_cfg *c)
{
	const char *s;
	double v;

	cfg_defaults(c);
	if (env_num("EMBER_GPU_RATE_LIMIT", -1, 1e9, &v))
		c->rate = v;
	if (env_num("EMBER_GPU_GRAPH_RATE_LIMIT", -1, 1e9, &v))
		c->graph_rate = v;
	if (env_num("EMBER_GPU_MAX_DEPTH", 1, EMBER_GPU_MAX_FRAMES, &v))
		c->max_depth = (unsigned)v;
	if (env_num("EMBER_GPU_PY_DEPTH", 0, EMBER_GPU_MAX_PY_FRAMES, &v))
		c->py_depth = (unsigned)v;
	if (env_num("EMBER_GPU_FLUSH_MS", 100, 60000, &v))
		c->flush_ms = (unsigned)v;
	if (env_num("EMBER_GPU_QUEUE_BYTES", 65536, 1 << 30, &v))
		c->queue_bytes = (size_t)v;
	s = getenv("EMBER_GPU_GRAPH_TRACE");
	if (s && !strcmp(s, "graph"))
		c->graph_trace = 1;
	else if (s && *s && strcmp(s, "node"))
		clog_warn("EMBER_GPU_GRAPH_TRACE=%s: expected node or graph, using node", s);
	s = getenv("EMBER_GPU_SOCKET");
	if (s && *s) {
		if (strlen(s) >= sizeof(c->socket))
			clog_warn("EMBER_GPU_SOCKET: path too long, using %s", c->socket);
		else
			snprintf(c->socket, sizeof(c->socket), "%s", s);
	}
}

static int has_prefix(const char *s, const char *p)
{
	return s && !strncmp(s, p, strlen(p));
}

static void build_classes(void)
{
	const char *name;

	memset(rt_class, 0, sizeof(rt_class));
	memset(drv_class, 0, sizeof(drv_class));
	/* Copies and sets by name: 13.0 has 66 runtime and 105 driver CBIDs for them. */
	for (CUpti_CallbackId id = 1; id < CUPTI_RUNTIME_TRACE_CBID_SIZE; id++)
		if (cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, id, &name) == CUPTI_SUCCESS &&
		    (has_prefix(name, "cudaMemcpy") || has_prefix(name, "cudaMemset")))
			rt_class[id] = INJECT_COPY;
	for (CUpti_CallbackId id = 1; id < CUPTI_DRIVER_TRACE_CBID_SIZE; id++)
		if (cuptiGetCallbackName(CUPTI_CB_DOMAIN_DRIVER_API, id, &name) == CUPTI_SUCCESS &&
		    (has_prefix(name, "cuMemcpy") || has_prefix(name, "cuMemset")))
			drv_class[id] = INJECT_COPY;
	for (size_t i = 0; i < sizeof(rt_launch) / sizeof(rt_launch[0]); i++)
		rt_class[rt_launch[i]] = INJECT_LAUNCH;
	for (size_t i = 0; i < sizeof(rt_graph) / sizeof(rt_graph[0]); i++)
		rt_class[rt_graph[i]] = INJECT_GRAPH;
	for (size_t i = 0; i < sizeof(drv_launch) / sizeof(drv_launch[0]); i++)
		drv_class[drv_launch[i]] = INJECT_LAUNCH;
	for (size_t i = 0; i < sizeof(drv_graph) / sizeof(drv_graph[0]); i++)
		drv_class[drv_graph[i]] = INJECT_GRAPH;
}

int inject_class(CUpti_CallbackDomain domain, CUpti_CallbackId cbid)
{
	if (domain == CUPTI_CB_DOMAIN_RUNTIME_API && cbid < CUPTI_RUNTIME_TRACE_CBID_SIZE)
		return rt_class[cbid];
	if (domain == CUPTI_CB_DOMAIN_DRIVER_API && cbid < CUPTI_DRIVER_TRACE_CBID_SIZE)
		return drv_class[cbid];
	return INJECT_NONE;
}

void inject_configure(const struct inject_cfg *c, struct join *j)
{
	cfg = *c;
	if (cfg.max_depth == 0 || cfg.max_depth > EMBER_GPU_MAX_FRAMES)
		cfg.max_depth = 64;
	if (cfg.py_depth > EMBER_GPU_MAX_PY_FRAMES)
		cfg.py_depth = EMBER_GPU_MAX_PY_FRAMES;
	ijoin = j;
	build_classes();
	__atomic_store_n(&active, 1, __ATOMIC_RELEASE);
}

void inject_deactivate(void)
{
	__atomic_store_n(&active, 0, __ATOMIC_RELEASE);
}

/* FNV-1a of the callback and symbol, never 0. cupti/ includes nothing from agent/, so not
 * agent/lib/hash.h. */
static uint64_t key_of(CUpti_CallbackDomain domain, CUpti_CallbackId cbid, const char *sym)
{
	uint64_t h = 0xcbf29ce484222325ull ^ ((uint64_t)domain << 32 | cbid);

	for (; sym && *sym; sym++)
		h = (h ^ (unsigned char)*sym) * 0x100000001b3ull;
	return h ? h : 1;
}

/* The native stack and, in a Python process, the thread's Python frames (pycap.h). */
static join_stack_t walk(void)
{
	uint64_t pcs[EMBER_GPU_MAX_FRAMES];
	struct ember_py_frame py[EMBER_GPU_MAX_PY_FRAMES];
	uint32_t py_status = 0;
	size_t n, npy = 0;
	bool fallback;

	n = stackcap_capture(pcs, cfg.max_depth, &fallback);
	counters_add(EMBER_GPU_CTR_STACKS_CAPTURED, 1);
	if (fallback)
		counters_add(EMBER_GPU_CTR_UNW_FALLBACKS, 1);
	if (cfg.py_depth && pycap_ready()) {
		npy = pycap_capture(py, cfg.py_depth, &py_status);
		counters_add(npy ? EMBER_GPU_CTR_PY_STACKS : EMBER_GPU_CTR_PY_NO_TSTATE, 1);
	}
	if (!n && !npy)
		return JOIN_STACK_NONE;
	return join_intern_py(ijoin, pcs, n, npy ? py : NULL, npy, npy ? py_status : 0);
}

/* The stack for an outermost API call: walked if the thread's bucket allows, else the
 * thread's last stack for the same kernel name / API, else unsampled. */
static join_stack_t launch_stack(struct tstate *t, CUpti_CallbackDomain domain,
				 CUpti_CallbackId cbid, int cls, const CUpti_CallbackData *cd)
{
	uint64_t key = key_of(cls == INJECT_LAUNCH ? 0 : domain, cls == INJECT_LAUNCH ? 0 : cbid,
			      cls == INJECT_LAUNCH ? cd->symbolName : NULL);
	unsigned slot = (unsigned)(key % RECENT);
	struct stackcap_bucket *b = cls == INJECT_GRAPH ? &t->graph_bucket : &t->launch_bucket;
	double rate = cls == INJECT_GRAPH ? cfg.graph_rate : cfg.rate;
	join_stack_t s;

	if (stackcap_take(b, rate, rate > 1 ? rate : 1, stackcap_now_ns())) {
		s = walk();
		if (s != JOIN_STACK_NONE) {
			t->recent[slot].key = key;
			t->recent[slot].s = s;
			return s;
		}
		return JOIN_STACK_UNSAMPLED;
	}
	counters_add(EMBER_GPU_CTR_UNSAMPLED, 1);
	if (t->recent[slot].key == key && t->recent[slot].s != JOIN_STACK_NONE)
		return t->recent[slot].s;
	return JOIN_STACK_UNSAMPLED;
}

static void api_callback(CUpti_CallbackDomain domain, CUpti_CallbackId cbid,
			 const CUpti_CallbackData *cd)
{
	struct tstate *t = &tstate;
	int cls = inject_class(domain, cbid);

	if (cls == INJECT_NONE || !cd)
		return;
	if (cd->callbackSite == CUPTI_API_EXIT) {
		if (t->depth > 0)
			t->depth--;
		return;
	}
	if (t->depth++ > 0) {
		/* Nested (a driver call inside a runtime call): same stack, maybe another id. */
		if (cd->correlationId != t->outer_corr)
			join_launch(ijoin, cd->correlationId, t->outer_stack);
		return;
	}
	counters_add(EMBER_GPU_CTR_API_CALLS, 1);
	t->outer_corr = cd->correlationId;
	t->outer_stack = launch_stack(t, domain, cbid, cls, cd);
	join_launch(ijoin, cd->correlationId, t->outer_stack);
}

void inject_graph_node_created(uint64_t node_id)
{
	struct tstate *t = &tstate;
	join_stack_t s;

	if (!__atomic_load_n(&active, __ATOMIC_ACQUIRE))
		return;
	if (t->depth > 0) {
		/* Stream capture: the node comes from the launch being captured. */
		s = t->outer_stack;
	} else if (stackcap_take(&t->graph_bucket, cfg.graph_rate,
				 cfg.graph_rate > 1 ? cfg.graph_rate : 1, stackcap_now_ns())) {
		s = walk();
	} else {
		counters_add(EMBER_GPU_CTR_UNSAMPLED, 1);
		return;
	}
	if (s != JOIN_STACK_NONE && s != JOIN_STACK_UNSAMPLED)
		join_graph_node(ijoin, node_id, s);
}

static void flush_forced(void);

static void resource_callback(CUpti_CallbackId cbid, const CUpti_ResourceData *rd)
{
	const CUpti_GraphData *gd;
	uint64_t id = 0, orig = 0;

	switch (cbid) {
	case CUPTI_CBID_RESOURCE_CONTEXT_DESTROY_STARTING:
		/* The context is still valid: deliver its records now. */
		flush_forced();
		break;
	case CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED:
		gd = rd ? rd->resourceDescriptor : NULL;
		if (gd && cuptiGetGraphNodeId(gd->node, &id) == CUPTI_SUCCESS)
			inject_graph_node_created(id);
		break;
	case CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED:
		gd = rd ? rd->resourceDescriptor : NULL;
		if (gd && cuptiGetGraphNodeId(gd->originalNode, &orig) == CUPTI_SUCCESS &&
		    cuptiGetGraphNodeId(gd->node, &id) == CUPTI_SUCCESS)
			join_graph_node_clone(ijoin, orig, id);
		break;
	default:
		break;
	}
}

void CUPTIAPI inject_callback(void *userdata, CUpti_CallbackDomain domain,
			      CUpti_CallbackId cbid, const void *cbdata)
{
	(void)userdata;
	if (!__atomic_load_n(&active, __ATOMIC_ACQUIRE))
		return;
	if (domain == CUPTI_CB_DOMAIN_RUNTIME_API || domain == CUPTI_CB_DOMAIN_DRIVER_API)
		api_callback(domain, cbid, cbdata);
	else if (domain == CUPTI_CB_DOMAIN_RESOURCE)
		resource_callback(cbid, cbdata);
}

/* ---- start-up, flushing, exit ---- */

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int emit_entry(void *ctx, const struct join_entry *e)
{
	return handoff_batch_add(ctx, e);
}

/* One interval: CUPTI's completed buffers, dropped records, the batch and counters. */
static void publish(int forced)
{
	size_t dropped = 0;
	uint64_t now;

	if (getpid() != init_pid)
		return;
	/* No lock of ours is held across FlushAll: its completion callback takes the join's. */
	(void)cuptiActivityFlushAll(forced ? CUPTI_ACTIVITY_FLAG_FLUSH_FORCED : 0);
	if (cuptiActivityGetNumDroppedRecords(NULL, 0, &dropped) == CUPTI_SUCCESS && dropped)
		counters_add(EMBER_GPU_CTR_CUPTI_DROPPED, dropped);
	pthread_mutex_lock(&publish_lock);
	now = clock_ns(CLOCK_REALTIME);
	handoff_batch_begin(ihandoff, last_end_ns, now);
	(void)join_flush(ijoin, emit_entry, ihandoff);
	handoff_batch_end(ihandoff);
	handoff_counters(ihandoff);
	last_end_ns = now;
	(void)handoff_pump(ihandoff, clock_ns(CLOCK_MONOTONIC));
	pthread_mutex_unlock(&publish_lock);
}

static void flush_forced(void)
{
	if (getpid() != init_pid || !ihandoff)
		return;
	(void)cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
}

static void *flush_main(void *arg)
{
	struct timespec ts;

	(void)arg;
	(void)prctl(PR_SET_NAME, "ember-cupti", 0, 0, 0);
	pthread_mutex_lock(&stop_lock);
	while (!stopping) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += cfg.flush_ms / 1000;
		ts.tv_nsec += (long)(cfg.flush_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&stop_cond, &stop_lock, &ts);
		if (stopping)
			break;
		pthread_mutex_unlock(&stop_lock);
		publish(0);
		pthread_mutex_lock(&stop_lock);
	}
	pthread_mutex_unlock(&stop_lock);
	return NULL;
}

static void at_exit(void)
{
	if (getpid() != init_pid)
		return;
	pthread_mutex_lock(&stop_lock);
	stopping = 1;
	pthread_cond_signal(&stop_cond);
	pthread_mutex_unlock(&stop_lock);
	publish(1);
	pthread_mutex_lock(&publish_lock);
	handoff_drain(ihandoff, 200);
	pthread_mutex_unlock(&publish_lock);
	inject_deactivate();
}

static void at_fork_child(void)
{
	/* The child has no flush thread and cannot use CUDA; stay quiet. */
	inject_deactivate();
}

static uint64_t self_start_ticks(void)
{
	char buf[1024], *p;
	FILE *f = fopen("/proc/self/stat", "re");
	unsigned long long v = 0;
	size_t n;

	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	/* After ") ": field 3 (state) ... field 22 (starttime) is the 20th token. */
	for (int i = 0; p && i < 20; i++)
		p = strchr(p + 1, ' ');
	if (p)
		v = strtoull(p + 1, NULL, 10);
	return v;
}

static const char *result_str(CUptiResult r)
{
	const char *s = NULL;

	(void)cuptiGetResultString(r, &s);
	return s ? s : "unknown CUPTI error";
}

static int enable_callbacks(void)
{
	int failed = 0;

	for (CUpti_CallbackId id = 1; id < CUPTI_RUNTIME_TRACE_CBID_SIZE; id++)
		if (rt_class[id] && cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API,
							 id) != CUPTI_SUCCESS)
			failed++;
	for (CUpti_CallbackId id = 1; id < CUPTI_DRIVER_TRACE_CBID_SIZE; id++)
		if (drv_class[id] && cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_DRIVER_API,
							  id) != CUPTI_SUCCESS)
			failed++;
	if (cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_RESOURCE,
				CUPTI_CBID_RESOURCE_CONTEXT_DESTROY_STARTING) != CUPTI_SUCCESS)
		failed++;
	if (!cfg.graph_trace &&
	    (cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_RESOURCE,
				 CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED) != CUPTI_SUCCESS ||
	     cuptiEnableCallback(1, subscriber, CUPTI_CB_DOMAIN_RESOURCE,
				 CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED) != CUPTI_SUCCESS))
		failed++;
	return failed;
}

int inject_init(void)
{
	char old[CUPTI_OLD_SUBSCRIBER_NAME_MIN_LEN] = "";
	static const char *const ignore[] = { "libcupti.so", "libcuda.so", NULL };
	CUpti_SubscriberParams sp = {
		.structSize = CUpti_SubscriberParams_STRUCT_SIZE,
		.subscriberName = "ember",
		.oldSubscriberName = old,
		.oldSubscriberSize = sizeof(old),
	};
	struct ember_gpu_hello hello = { 0 };
	struct inject_cfg c;
	struct join_cfg jc;
	struct join *j = NULL;
	pthread_condattr_t ca;
	pthread_attr_t attr;
	pthread_t tid;
	sigset_t all, saved;
	CUptiResult r;
	FILE *f;
	int err, failed;

	clog_init();
	if (init_pid == getpid())
		return 0;
	if (getenv("EMBER_GPU_DISABLE") && strcmp(getenv("EMBER_GPU_DISABLE"), "0")) {
		clog_info("EMBER_GPU_DISABLE is set: GPU profiling is off");
		return -ECANCELED;
	}
	inject_cfg_from_env(&c);

	r = cuptiSubscribe_v2(&subscriber, inject_callback, NULL, &sp);
	if (r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED) {
		clog_warn("CUPTI is already in use by \"%s\" (a profiler such as Nsight or the PyTorch "
			  "profiler): GPU profiling is off for this process", old[0] ? old : "?");
		return -EBUSY;
	}
	if (r != CUPTI_SUCCESS) {
		clog_warn("cuptiSubscribe_v2: %s: GPU profiling is off for this process",
			  result_str(r));
		return -ENODEV;
	}

	join_default_cfg(&jc);
	jc.max_depth = (uint16_t)c.max_depth;
	jc.py_depth = (uint16_t)c.py_depth;
	err = join_new(&jc, &j);
	if (err)
		goto err_unsub;
	hello.pid = (uint32_t)getpid();
	(void)cuptiGetVersion(&hello.cupti_version);
	hello.start_ticks = self_start_ticks();
	hello.init_realtime_ns = clock_ns(CLOCK_REALTIME);
	hello.flags = c.graph_trace ? EMBER_GPU_HELLO_GRAPH_TRACE : 0;
	if (c.py_depth && pycap_ready())
		hello.flags |= EMBER_GPU_HELLO_PYTHON;
	f = fopen("/proc/self/comm", "re");
	if (f) {
		if (fgets(hello.comm, sizeof(hello.comm), f))
			hello.comm[strcspn(hello.comm, "\n")] = '\0';
		fclose(f);
	}
	err = handoff_new(c.socket, c.queue_bytes, &hello, &ihandoff);
	if (err)
		goto err_join;

	(void)stackcap_ignore_objects(ignore, (const void *)inject_callback);
	records_set_join(j);
	r = cuptiActivityRegisterCallbacks(records_buffer_requested, records_buffer_completed);
	if (r != CUPTI_SUCCESS) {
		clog_warn("cuptiActivityRegisterCallbacks: %s: GPU profiling is off", result_str(r));
		err = -ENODEV;
		goto err_handoff;
	}
	init_pid = getpid();
	last_end_ns = clock_ns(CLOCK_REALTIME);
	inject_configure(&c, j);
	failed = enable_callbacks();
	if (failed)
		clog_warn("%d CUPTI callbacks could not be enabled; some launches have no stack",
			  failed);

	r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
	if (r == CUPTI_SUCCESS && (r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY)) == CUPTI_SUCCESS &&
	    (r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET)) == CUPTI_SUCCESS && c.graph_trace)
		r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_GRAPH_TRACE);
	if (r != CUPTI_SUCCESS) {
		clog_warn("cuptiActivityEnable: %s: GPU profiling is off", result_str(r));
		err = -ENODEV;
		goto err_active;
	}

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&stop_cond, &ca);
	pthread_condattr_destroy(&ca);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	err = -pthread_create(&tid, &attr, flush_main, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (err) {
		clog_warn("flush thread: %s: GPU profiling is off", strerror(-err));
		goto err_activity;
	}
	(void)atexit(at_exit);
	(void)pthread_atfork(NULL, NULL, at_fork_child);
	clog_info("GPU profiling on: socket %s, graph mode %s, %g stacks/s per thread",
		  c.socket, c.graph_trace ? "graph" : "node", c.rate);
	return 0;

err_activity:
	(void)cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
	(void)cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMCPY);
	(void)cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMSET);
	if (c.graph_trace)
		(void)cuptiActivityDisable(CUPTI_ACTIVITY_KIND_GRAPH_TRACE);
err_active:
	inject_deactivate();
	records_set_join(NULL);
	init_pid = 0;
err_handoff:
	handoff_free(ihandoff);
	ihandoff = NULL;
err_join:
	/* Once callbacks were enabled a racing callback may still hold the join: leak it. */
	if (ijoin != j)
		join_free(j);
err_unsub:
	(void)cuptiUnsubscribe(subscriber);
	if (err == -ENOMEM)
		clog_warn("out of memory: GPU profiling is off");
	return err;
}

/* The driver calls this from cuInit when CUDA_INJECTION64_PATH names this library. It always
 * reports success: a profiler that cannot start must not stop the application. */
__attribute__((visibility("default"))) int InitializeInjection(void);
int InitializeInjection(void)
{
	(void)inject_init();
	return 1;
}
