/* inject: the CUDA injection entry point and the CUPTI callback handler.
 *
 * The driver calls InitializeInjection() (the library's only export) inside cuInit when
 * CUDA_INJECTION64_PATH names this library. inject_init() subscribes with cuptiSubscribe_v2;
 * if CUPTI is held by another tool, or cannot start (no driver), it logs once and leaves the
 * application alone. Otherwise it enables the launch, graph-launch, memcpy and memset
 * callbacks one CBID at a time in the runtime and driver domains, the graph-node and
 * context-destroy resource callbacks, and CONCURRENT_KERNEL, MEMCPY and MEMSET activity (or
 * GRAPH_TRACE in graph mode); a flush thread hands a batch to the agent every flush period.
 *
 * The callback handler keeps per-thread API nesting depth across both domains: only the
 * outermost ENTER captures a stack (rate-limited per thread; an unsampled call reuses the
 * thread's last stack for the same kernel name or API, else is marked unsampled), and nested
 * calls with another correlation id are aliased to it. Thread-safe. Internal functions are
 * hidden; tests link the objects directly. */
#ifndef EMBER_CUPTI_INJECT_H
#define EMBER_CUPTI_INJECT_H

#include <stdint.h>

#include <cupti.h>

#include "join.h"

struct inject_cfg {
	double rate;          /* stack walks per second per thread for launches/copies (-1: all) */
	double graph_rate;    /* ... for graph launches and graph node creation */
	unsigned max_depth;   /* frames per stack, 1..EMBER_GPU_MAX_FRAMES */
	unsigned py_depth;    /* Python frames per stack, 0 (none) ..EMBER_GPU_MAX_PY_FRAMES */
	int graph_trace;      /* 1: GRAPH_TRACE (one record per graph launch) */
	unsigned flush_ms;    /* flush/batch period */
	size_t queue_bytes;   /* hand-off buffer while the agent is away */
	char socket[108];
};

/* Defaults, then EMBER_GPU_* environment variables (bad values are logged and ignored). */
void inject_cfg_from_env(struct inject_cfg *cfg);

/* Makes the callback handler live without CUPTI subscription (tests), or as the last step of
 * inject_init(): sets the join, the configuration and the CBID class tables. */
void inject_configure(const struct inject_cfg *cfg, struct join *j);
/* Stops handling callbacks (the handler returns at once). */
void inject_deactivate(void);

/* The CUpti_CallbackFunc subscribed with cuptiSubscribe_v2. */
void CUPTIAPI inject_callback(void *userdata, CUpti_CallbackDomain domain,
			      CUpti_CallbackId cbid, const void *cbdata);
/* What GRAPHNODE_CREATED does once it has the node id (split out for tests). */
void inject_graph_node_created(uint64_t node_id);

/* Class of a CBID: 0 not ours, INJECT_LAUNCH, INJECT_GRAPH, INJECT_COPY. */
enum { INJECT_NONE = 0, INJECT_LAUNCH = 1, INJECT_GRAPH = 2, INJECT_COPY = 3 };
int inject_class(CUpti_CallbackDomain domain, CUpti_CallbackId cbid);

/* Full start-up; 0 when profiling is on, -EBUSY (CUPTI held by another subscriber), -ENODEV
 * (CUPTI cannot start), -ECANCELED (disabled by EMBER_GPU_DISABLE) or -errno. */
int inject_init(void);

#endif
