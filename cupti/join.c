#include "join.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"

#define PROBE 16

struct stack_slot {
	uint64_t hash;
	uint32_t epoch;  /* last interval that referenced it */
	uint16_t n;
	uint16_t used;
	uint8_t npy;     /* Python frames */
	uint8_t py_status;
};

struct corr_slot {
	uint32_t corr;
	uint16_t used;
	uint16_t hits;   /* records joined to it (graph launches have many) */
	join_stack_t s;
};

struct node_slot {
	uint64_t id;     /* 0: empty (CUPTI node ids start at 1) */
	join_stack_t s;
};

struct name_slot {
	uint64_t hash;
	char *s;
};

struct agg_slot {
	join_stack_t s, cs;
	const char *name;
	uint32_t flags;
	uint16_t op;
	uint16_t used;
	uint64_t ns, launches;
};

struct join {
	pthread_mutex_t lock;
	struct join_cfg cfg;
	uint32_t epoch;
	struct stack_slot *stacks;
	uint64_t *pcs;           /* stack_cap * max_depth */
	struct ember_py_frame *py; /* stack_cap * py_depth, NULL when py_depth is 0 */
	struct corr_slot *corr;
	struct node_slot *nodes;
	struct name_slot *names;
	struct agg_slot *agg;
	uint32_t agg_used;
};

void join_default_cfg(struct join_cfg *cfg)
{
	cfg->corr_cap = 65536;
	cfg->stack_cap = 8192;
	cfg->node_cap = 16384;
	cfg->agg_cap = 16384;
	cfg->name_cap = 4096;
	cfg->max_depth = 64;
	cfg->py_depth = 64;
}

static bool pow2(uint32_t v)
{
	return v >= PROBE && !(v & (v - 1));
}

int join_new(const struct join_cfg *cfg, struct join **ret_join)
{
	struct join *j;

	if (!pow2(cfg->corr_cap) || !pow2(cfg->stack_cap) || !pow2(cfg->node_cap) ||
	    !pow2(cfg->agg_cap) || !pow2(cfg->name_cap) || cfg->max_depth == 0 ||
	    cfg->max_depth > EMBER_GPU_MAX_FRAMES || cfg->py_depth > EMBER_GPU_MAX_PY_FRAMES)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->cfg = *cfg;
	j->epoch = 2; /* slots with epoch + 2 <= current are reusable; 0 means never used */
	pthread_mutex_init(&j->lock, NULL);
	j->stacks = calloc(cfg->stack_cap, sizeof(*j->stacks));
	j->pcs = calloc((size_t)cfg->stack_cap * cfg->max_depth, sizeof(*j->pcs));
	/* Untouched pages cost no memory: a process without Python never writes here. */
	if (cfg->py_depth)
		j->py = calloc((size_t)cfg->stack_cap * cfg->py_depth, sizeof(*j->py));
	j->corr = calloc(cfg->corr_cap, sizeof(*j->corr));
	j->nodes = calloc(cfg->node_cap, sizeof(*j->nodes));
	j->names = calloc(cfg->name_cap, sizeof(*j->names));
	j->agg = calloc(cfg->agg_cap, sizeof(*j->agg));
	if (!j->stacks || !j->pcs || !j->corr || !j->nodes || !j->names || !j->agg ||
	    (cfg->py_depth && !j->py)) {
		join_free(j);
		return -ENOMEM;
	}
	*ret_join = j;
	return 0;
}

void join_free(struct join *j)
{
	if (!j)
		return;
	if (j->names)
		for (uint32_t i = 0; i < j->cfg.name_cap; i++)
			free(j->names[i].s);
	free(j->stacks);
	free(j->pcs);
	free(j->py);
	free(j->corr);
	free(j->nodes);
	free(j->names);
	free(j->agg);
	pthread_mutex_destroy(&j->lock);
	free(j);
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	h *= 0xff51afd7ed558ccdull;
	return h ^ (h >> 33);
}

static uint32_t hash32(uint64_t h)
{
	uint32_t v = (uint32_t)(h ^ (h >> 32));

	return v ? v : 1;
}

static join_stack_t make_ref(uint32_t idx, uint64_t hash)
{
	return ((uint64_t)hash32(hash) << 32) | (uint64_t)(idx + 1);
}

/* The slot a real reference names, or NULL when the slot was reused since. */
static struct stack_slot *ref_slot(struct join *j, join_stack_t s)
{
	uint32_t idx;
	struct stack_slot *sl;

	if (s == JOIN_STACK_NONE || s == JOIN_STACK_UNSAMPLED)
		return NULL;
	idx = (uint32_t)s - 1;
	if (idx >= j->cfg.stack_cap)
		return NULL;
	sl = &j->stacks[idx];
	if (!sl->used || hash32(sl->hash) != (uint32_t)(s >> 32))
		return NULL;
	return sl;
}

/* Keeps a referenced stack alive through this interval and the next. */
static join_stack_t touch(struct join *j, join_stack_t s)
{
	struct stack_slot *sl;

	if (s == JOIN_STACK_NONE || s == JOIN_STACK_UNSAMPLED)
		return s;
	sl = ref_slot(j, s);
	if (!sl)
		return JOIN_STACK_NONE;
	sl->epoch = j->epoch;
	return s;
}

join_stack_t join_intern(struct join *j, const uint64_t *pcs, size_t n)
{
	return join_intern_py(j, pcs, n, NULL, 0, 0);
}

static struct ember_py_frame *slot_py(struct join *j, uint32_t idx)
{
	return j->py ? &j->py[(size_t)idx * j->cfg.py_depth] : NULL;
}

join_stack_t join_intern_py(struct join *j, const uint64_t *pcs, size_t n,
			    const struct ember_py_frame *py, size_t npy, uint32_t py_status)
{
	uint64_t h = 0x5bd1e995u;
	uint32_t mask = j->cfg.stack_cap - 1, victim = UINT32_MAX;
	join_stack_t ret = JOIN_STACK_NONE;

	if (n > j->cfg.max_depth)
		n = j->cfg.max_depth;
	if (!py || npy > j->cfg.py_depth)
		npy = py ? j->cfg.py_depth : 0;
	if (py_status > UINT8_MAX)
		py_status = 0;
	for (size_t i = 0; i < n; i++)
		h = mix(h, pcs[i]);
	h = mix(h, n);
	for (size_t i = 0; i < npy; i++)
		h = mix(mix(h, py[i].code), (uint64_t)py[i].key << 32 | (uint32_t)py[i].instr);
	h = mix(h, npy << 8 | py_status);

	pthread_mutex_lock(&j->lock);
	for (uint32_t p = 0; p < PROBE; p++) {
		uint32_t idx = (uint32_t)(h + p) & mask;
		struct stack_slot *sl = &j->stacks[idx];

		if (sl->used && sl->hash == h && sl->n == n && sl->npy == npy &&
		    sl->py_status == py_status &&
		    !memcmp(&j->pcs[(size_t)idx * j->cfg.max_depth], pcs, n * sizeof(*pcs)) &&
		    (!npy || !memcmp(slot_py(j, idx), py, npy * sizeof(*py)))) {
			sl->epoch = j->epoch;
			ret = make_ref(idx, h);
			goto out;
		}
		if (victim == UINT32_MAX && (!sl->used || sl->epoch + 2 <= j->epoch))
			victim = idx;
	}
	if (victim == UINT32_MAX) {
		counters_add(EMBER_GPU_CTR_STACK_TABLE_FULL, 1);
		goto out;
	}
	j->stacks[victim] = (struct stack_slot){ .hash = h, .epoch = j->epoch, .n = (uint16_t)n,
						 .used = 1, .npy = (uint8_t)npy,
						 .py_status = (uint8_t)py_status };
	memcpy(&j->pcs[(size_t)victim * j->cfg.max_depth], pcs, n * sizeof(*pcs));
	if (npy)
		memcpy(slot_py(j, victim), py, npy * sizeof(*py));
	ret = make_ref(victim, h);
out:
	pthread_mutex_unlock(&j->lock);
	return ret;
}

int join_stack_valid(struct join *j, join_stack_t s)
{
	int ok;

	pthread_mutex_lock(&j->lock);
	ok = ref_slot(j, s) != NULL;
	pthread_mutex_unlock(&j->lock);
	return ok;
}

void join_launch(struct join *j, uint32_t corr, join_stack_t s)
{
	struct corr_slot *c = &j->corr[corr & (j->cfg.corr_cap - 1)];

	pthread_mutex_lock(&j->lock);
	if (c->used && c->corr != corr && c->hits == 0)
		counters_add(EMBER_GPU_CTR_CORR_EVICTED, 1);
	s = touch(j, s);
	*c = (struct corr_slot){ .corr = corr, .used = 1, .s = s ? s : JOIN_STACK_UNSAMPLED };
	pthread_mutex_unlock(&j->lock);
}

static struct node_slot *node_find(struct join *j, uint64_t id, bool create)
{
	uint32_t mask = j->cfg.node_cap - 1;
	uint64_t h = mix(0, id);

	for (uint32_t p = 0; p < PROBE; p++) {
		struct node_slot *n = &j->nodes[(uint32_t)(h + p) & mask];

		if (n->id == id || (create && n->id == 0))
			return n;
	}
	/* Full window: the home slot gives way. */
	return create ? &j->nodes[(uint32_t)h & mask] : NULL;
}

void join_graph_node(struct join *j, uint64_t node_id, join_stack_t s)
{
	struct node_slot *n;

	if (!node_id)
		return;
	pthread_mutex_lock(&j->lock);
	n = node_find(j, node_id, true);
	n->id = node_id;
	n->s = touch(j, s);
	pthread_mutex_unlock(&j->lock);
}

void join_graph_node_clone(struct join *j, uint64_t orig_id, uint64_t clone_id)
{
	struct node_slot *o, *n;
	join_stack_t s;

	if (!orig_id || !clone_id)
		return;
	pthread_mutex_lock(&j->lock);
	o = node_find(j, orig_id, false);
	if (o) {
		s = o->s;
		n = node_find(j, clone_id, true);
		n->id = clone_id;
		n->s = touch(j, s);
	}
	pthread_mutex_unlock(&j->lock);
}

/* Interned copy of name (NUL-terminated, at most EMBER_GPU_MAX_NAME bytes). The library's own
 * bounded, lock-held table with FNV-1a: libember_cupti.so is loaded into the profiled process and
 * includes nothing from agent/, so agent/lib's strset and hash.h are out of reach on purpose. */
static const char *name_intern(struct join *j, const char *name)
{
	uint32_t mask = j->cfg.name_cap - 1;
	size_t len = name ? strnlen(name, EMBER_GPU_MAX_NAME) : 0;
	uint64_t h = 0xcbf29ce484222325ull;

	if (!name)
		return "";
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 0x100000001b3ull;
	for (uint32_t p = 0; p < PROBE; p++) {
		struct name_slot *ns = &j->names[(uint32_t)(h + p) & mask];

		if (!ns->s) {
			ns->s = strndup(name, len);
			if (!ns->s)
				return "[out of memory]";
			ns->hash = h;
			return ns->s;
		}
		if (ns->hash == h && !strncmp(ns->s, name, len) && ns->s[len] == '\0')
			return ns->s;
	}
	return "[name table full]";
}

static struct corr_slot *corr_find(struct join *j, uint32_t corr)
{
	struct corr_slot *c = &j->corr[corr & (j->cfg.corr_cap - 1)];

	return c->used && c->corr == corr ? c : NULL;
}

void join_record(struct join *j, const struct join_op *op)
{
	uint32_t mask = j->cfg.agg_cap - 1, flags = 0;
	join_stack_t s = JOIN_STACK_NONE, cs = JOIN_STACK_NONE;
	struct corr_slot *c;
	const char *name;
	uint64_t ns = 0, h;

	if (op->start == 0 && op->end == 0)
		counters_add(EMBER_GPU_CTR_ZERO_TS, 1);
	else if (op->end > op->start)
		ns = op->end - op->start;
	counters_add(EMBER_GPU_CTR_RECORDS, 1);

	pthread_mutex_lock(&j->lock);
	c = corr_find(j, op->corr);
	if (!c && op->alt_corr)
		c = corr_find(j, op->alt_corr);
	if (c) {
		if (c->hits < UINT16_MAX)
			c->hits++;
		s = touch(j, c->s);
	}
	if (s == JOIN_STACK_NONE) {
		flags |= EMBER_GPU_ENTRY_NO_STACK;
		counters_add(EMBER_GPU_CTR_NO_STACK, 1);
	} else if (s == JOIN_STACK_UNSAMPLED) {
		flags |= EMBER_GPU_ENTRY_UNSAMPLED;
	}
	if (op->graph_node_id) {
		struct node_slot *n = node_find(j, op->graph_node_id, false);

		flags |= EMBER_GPU_ENTRY_GRAPH;
		if (n) {
			cs = touch(j, n->s);
			if (cs == JOIN_STACK_UNSAMPLED)
				cs = JOIN_STACK_NONE;
		}
	} else if (op->op == EMBER_GPU_OP_GRAPH) {
		flags |= EMBER_GPU_ENTRY_GRAPH;
	}
	name = name_intern(j, op->name);

	h = mix(mix(mix(mix(s, cs), (uint64_t)(uintptr_t)name), op->op), flags);
	for (uint32_t p = 0; p < PROBE; p++) {
		struct agg_slot *a = &j->agg[(uint32_t)(h + p) & mask];

		if (!a->used) {
			*a = (struct agg_slot){ .s = s, .cs = cs, .name = name, .flags = flags,
						.op = op->op, .used = 1 };
			j->agg_used++;
		} else if (a->s != s || a->cs != cs || a->name != name || a->op != op->op ||
			   a->flags != flags) {
			continue;
		}
		a->ns += ns;
		a->launches++;
		goto out;
	}
	counters_add(EMBER_GPU_CTR_AGG_FULL, 1);
out:
	pthread_mutex_unlock(&j->lock);
}

int join_flush(struct join *j, int (*emit)(void *ctx, const struct join_entry *e), void *ctx)
{
	int n = 0, err = 0;

	pthread_mutex_lock(&j->lock);
	for (uint32_t i = 0; j->agg_used && i < j->cfg.agg_cap; i++) {
		struct agg_slot *a = &j->agg[i];
		struct stack_slot *sl, *csl;
		struct join_entry e;

		if (!a->used)
			continue;
		sl = ref_slot(j, a->s);
		csl = ref_slot(j, a->cs);
		e = (struct join_entry){ .op = a->op, .flags = a->flags, .name = a->name,
					 .gpu_time_ns = a->ns, .launches = a->launches };
		if (sl) {
			e.pcs = &j->pcs[(size_t)(sl - j->stacks) * j->cfg.max_depth];
			e.npcs = sl->n;
			e.py = sl->npy ? slot_py(j, (uint32_t)(sl - j->stacks)) : NULL;
			e.npy = sl->npy;
			e.py_status = sl->py_status;
		} else if (!(e.flags & EMBER_GPU_ENTRY_UNSAMPLED)) {
			e.flags |= EMBER_GPU_ENTRY_NO_STACK;
		}
		if (csl) {
			e.capture_pcs = &j->pcs[(size_t)(csl - j->stacks) * j->cfg.max_depth];
			e.ncapture = csl->n;
			e.capture_py = csl->npy ? slot_py(j, (uint32_t)(csl - j->stacks)) : NULL;
			e.ncapture_py = csl->npy;
			e.capture_py_status = csl->py_status;
		}
		if (!err) {
			err = emit(ctx, &e);
			n++;
		}
	}
	memset(j->agg, 0, (size_t)j->cfg.agg_cap * sizeof(*j->agg));
	j->agg_used = 0;
	j->epoch++;
	pthread_mutex_unlock(&j->lock);
	return err < 0 ? err : n;
}
