/* join: correlation id → launch stack, graph node id → capture stack, and the per-interval
 * aggregation of activity records by (launch stack, capture stack, op, name).
 *
 * Every table is fixed-size and allocated once by join_new(): stacks are interned in an
 * open-addressed table whose slots are reused once no interval references them; correlation
 * ids map directly into a power-of-two array (an id overwrites the one `corr_cap` ids before
 * it, which handles u32 wrap-around and bounds the table); graph node ids and kernel names are
 * interned with bounded probing. What does not fit is counted, never blocks.
 * Thread-safe: one mutex, held briefly by launch callbacks and by record decoding. */
#ifndef EMBER_CUPTI_JOIN_H
#define EMBER_CUPTI_JOIN_H

#include <linux/types.h>
#include <stddef.h>
#include <stdint.h>

#include "ember.h"
#include "ember_gpu_proto.h"

/* A stack reference: slot index + 1 in the low half, the stack's hash in the high half, so a
 * reference to a reused slot is detected. */
typedef uint64_t join_stack_t;
#define JOIN_STACK_NONE      ((join_stack_t)0)
#define JOIN_STACK_UNSAMPLED ((join_stack_t)UINT64_MAX)

struct join_cfg {
	uint32_t corr_cap;   /* correlation entries, power of two (default 65536) */
	uint32_t stack_cap;  /* distinct stacks, power of two (default 8192) */
	uint32_t node_cap;   /* graph nodes with a capture stack, power of two (default 16384) */
	uint32_t agg_cap;    /* aggregation keys per interval, power of two (default 16384) */
	uint32_t name_cap;   /* distinct op names, power of two (default 4096) */
	uint16_t max_depth;  /* frames per stack, <= EMBER_GPU_MAX_FRAMES (default 64) */
	uint16_t py_depth;   /* Python frames per stack, <= EMBER_GPU_MAX_PY_FRAMES (default 64;
			      * 0: none kept) */
};

/* One activity record, already decoded (see records.h). */
struct join_op {
	uint16_t op;            /* enum ember_gpu_op */
	const char *name;       /* kernel name (CUPTI's, copied), copy kind, or NULL */
	uint32_t corr;          /* correlationId */
	uint32_t alt_corr;      /* memcpy runtimeCorrelationId, 0 if none */
	uint64_t start, end;    /* ns; both 0: no timestamps */
	uint64_t graph_node_id; /* 0 if not a graph node */
	uint32_t graph_id;
};

/* One aggregated entry as join_flush() hands it out; pointers valid during the callback. */
struct join_entry {
	uint16_t op;
	uint32_t flags;         /* EMBER_GPU_ENTRY_* */
	const char *name;       /* never NULL */
	const uint64_t *pcs;
	size_t npcs;
	const uint64_t *capture_pcs;
	size_t ncapture;
	const struct ember_py_frame *py;         /* Python frames at the launch, or NULL */
	size_t npy;
	uint32_t py_status;                      /* enum ember_py_status, 0: no walk */
	const struct ember_py_frame *capture_py; /* ... at the graph node's creation */
	size_t ncapture_py;
	uint32_t capture_py_status;
	uint64_t gpu_time_ns;
	uint64_t launches;
};

struct join;

void join_default_cfg(struct join_cfg *cfg);
/* Returns 0, -EINVAL (a capacity not a power of two, depth too large) or -ENOMEM. */
int join_new(const struct join_cfg *cfg, struct join **ret_join);
void join_free(struct join *j);

/* Interns a stack; returns its reference, or JOIN_STACK_NONE when the table is full. */
join_stack_t join_intern(struct join *j, const uint64_t *pcs, size_t n);
/* The same with the Python frames read at the launch (py may be NULL with npy 0) and the
 * walk's status (enum ember_py_status, 0: none): part of the stack's identity. */
join_stack_t join_intern_py(struct join *j, const uint64_t *pcs, size_t n,
			    const struct ember_py_frame *py, size_t npy, uint32_t py_status);
/* True if the reference still names the stack it was made for. */
int join_stack_valid(struct join *j, join_stack_t s);
/* Records the stack of an API call (JOIN_STACK_UNSAMPLED allowed). */
void join_launch(struct join *j, uint32_t corr, join_stack_t s);
/* Graph nodes: the stack that created a node, and a clone made by graph instantiation. */
void join_graph_node(struct join *j, uint64_t node_id, join_stack_t s);
void join_graph_node_clone(struct join *j, uint64_t orig_id, uint64_t clone_id);
/* Adds one activity record to the current interval. */
void join_record(struct join *j, const struct join_op *op);

/* Hands every aggregated entry of the interval to emit (under the join's lock: emit must only
 * copy), then starts a new interval. Returns the number of entries, or emit's first negative
 * return value (the interval is cleared either way). */
int join_flush(struct join *j, int (*emit)(void *ctx, const struct join_entry *e), void *ctx);

#endif
