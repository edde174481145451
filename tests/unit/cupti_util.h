/* cupti_util: helpers shared by the libember_cupti unit tests: collect join_flush() output. */
#ifndef EMBER_TEST_CUPTI_UTIL_H
#define EMBER_TEST_CUPTI_UTIL_H

#include <stdlib.h>
#include <string.h>

#include "join.h"

struct got_entry {
	uint16_t op;
	uint32_t flags;
	char name[256];
	uint64_t pcs[EMBER_GPU_MAX_FRAMES], cpcs[EMBER_GPU_MAX_FRAMES];
	size_t npcs, ncapture;
	struct ember_py_frame py[8], cpy[8];
	size_t npy, ncapture_py;
	uint32_t py_status, capture_py_status;
	uint64_t ns, launches;
};

struct got {
	struct got_entry e[64];
	size_t n;
};

static inline int got_emit(void *ctx, const struct join_entry *e)
{
	struct got *g = ctx;
	struct got_entry *o;

	if (g->n == 64)
		return -1;
	o = &g->e[g->n++];
	memset(o, 0, sizeof(*o));
	o->op = e->op;
	o->flags = e->flags;
	snprintf(o->name, sizeof(o->name), "%s", e->name);
	o->npcs = e->npcs;
	o->ncapture = e->ncapture;
	if (e->npcs)
		memcpy(o->pcs, e->pcs, e->npcs * sizeof(uint64_t));
	if (e->ncapture)
		memcpy(o->cpcs, e->capture_pcs, e->ncapture * sizeof(uint64_t));
	o->npy = e->npy;
	o->ncapture_py = e->ncapture_py;
	o->py_status = e->py_status;
	o->capture_py_status = e->capture_py_status;
	if (e->py && e->npy <= 8)
		memcpy(o->py, e->py, e->npy * sizeof(*e->py));
	if (e->capture_py && e->ncapture_py <= 8)
		memcpy(o->cpy, e->capture_py, e->ncapture_py * sizeof(*e->capture_py));
	o->ns = e->gpu_time_ns;
	o->launches = e->launches;
	return 0;
}

static inline void got_flush(struct join *j, struct got *g)
{
	g->n = 0;
	(void)join_flush(j, got_emit, g);
}

/* The entry with this name (and op), or NULL. */
static inline const struct got_entry *got_find(const struct got *g, uint16_t op, const char *name)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->e[i].op == op && !strcmp(g->e[i].name, name))
			return &g->e[i];
	return NULL;
}

#endif
