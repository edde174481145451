#include "stackagg.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flamegraph.h"
#include "hash.h"
#include "strset.h"
#include "util.h"

/* Open-addressing index: slots hold (item index + 1), 0 is empty. Items live in the caller's
 * arrays; equality is decided by the caller through a callback. */
struct idx_table {
	uint32_t *slots;
	size_t cap; /* power of two */
	size_t n;
};

typedef bool (*idx_eq_fn)(const void *ctx, uint32_t item);

static int idx_grow(struct idx_table *t, const uint64_t *hashes)
{
	size_t ncap = t->cap ? t->cap * 2 : 256;
	uint32_t *ns = calloc(ncap, sizeof(*ns));

	if (!ns)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		uint32_t it = t->slots[i];
		size_t j;

		if (!it)
			continue;
		for (j = hashes[it - 1] & (ncap - 1); ns[j]; j = (j + 1) & (ncap - 1))
			;
		ns[j] = it;
	}
	free(t->slots);
	t->slots = ns;
	t->cap = ncap;
	return 0;
}

/* Returns the item index matching (hash, eq), or -1; *ret_slot is where to insert. */
static long idx_find(const struct idx_table *t, uint64_t hash, const uint64_t *hashes, idx_eq_fn eq,
		     const void *ctx, size_t *ret_slot)
{
	size_t j;

	if (!t->cap) {
		*ret_slot = 0;
		return -1;
	}
	for (j = hash & (t->cap - 1); t->slots[j]; j = (j + 1) & (t->cap - 1)) {
		uint32_t it = t->slots[j] - 1;

		if (hashes[it] == hash && eq(ctx, it))
			return it;
	}
	*ret_slot = j;
	return -1;
}

struct interned_frame {
	const char *name, *module, *build_id, *filename; /* interned */
	uint64_t address, map_start, map_end, map_pgoff;
	int64_t line, start_line; /* source frames (Python); 0 for native ones */
};

/* intern_frame() hashes the struct's bytes: there must be no padding in it. */
_Static_assert(sizeof(struct interned_frame) == 4 * sizeof(const char *) + 6 * sizeof(uint64_t),
	       "struct interned_frame has padding");

struct stack {
	uint32_t *frames; /* frame ids, leaf first */
	uint32_t n;
	int64_t *values;
};

struct stackagg {
	size_t nvalues;
	struct strset *strs;  /* names, modules, build-ids, source files */
	/* frames */
	struct interned_frame *frames;
	uint64_t *frame_hash;
	size_t nframes, cap_frames;
	struct idx_table frame_idx;
	/* stacks */
	struct stack *stacks;
	uint64_t *stack_hash;
	size_t nstacks, cap_stacks;
	struct idx_table stack_idx;
};

/* Grows the parallel hash array with its items array. */
static int grow2(void **arr, uint64_t **hashes, size_t *cap, size_t need, size_t elem)
{
	size_t old = *cap;
	uint64_t *nh;
	int err;

	err = util_grow(arr, cap, need, elem);
	if (err || *cap == old)
		return err;
	if (*cap > UINT32_MAX)
		return -ENOMEM; /* ids are 32-bit */
	nh = realloc(*hashes, *cap * sizeof(*nh));
	if (!nh)
		return -ENOMEM;
	*hashes = nh;
	return 0;
}

/* The stored copy of s, NULL for NULL or when out of memory. */
static const char *intern(struct stackagg *a, const char *s)
{
	return s ? strset_intern_str(a->strs, s) : NULL;
}

struct frame_key {
	const struct stackagg *a;
	const struct interned_frame *f;
};

static bool frame_eq(const void *ctx, uint32_t it)
{
	const struct frame_key *k = ctx;
	const struct interned_frame *x = &k->a->frames[it], *y = k->f;

	/* Interned strings compare by pointer. */
	return x->name == y->name && x->module == y->module && x->build_id == y->build_id &&
	       x->filename == y->filename && x->address == y->address &&
	       x->map_start == y->map_start && x->map_end == y->map_end &&
	       x->map_pgoff == y->map_pgoff && x->line == y->line && x->start_line == y->start_line;
}

static long intern_frame(struct stackagg *a, const struct sym_frame *in)
{
	struct interned_frame f = {
		.name = intern(a, in->name),
		.module = intern(a, in->module),
		.build_id = intern(a, in->build_id),
		.filename = intern(a, in->filename),
		.address = in->address,
		.map_start = in->map_start,
		.map_end = in->map_end,
		.map_pgoff = in->map_pgoff,
		.line = in->line,
		.start_line = in->start_line,
	};
	struct frame_key k = { a, &f };
	uint64_t h;
	size_t slot;
	long it;

	if (!f.name || (in->module && !f.module) || (in->build_id && !f.build_id) ||
	    (in->filename && !f.filename))
		return -ENOMEM;
	h = hash_fnv1a64(HASH_FNV1A64_INIT, &f, sizeof(f));
	it = idx_find(&a->frame_idx, h, a->frame_hash, frame_eq, &k, &slot);
	if (it >= 0)
		return it;
	if (grow2((void **)&a->frames, &a->frame_hash, &a->cap_frames, a->nframes + 1, sizeof(f)))
		return -ENOMEM;
	a->frames[a->nframes] = f;
	a->frame_hash[a->nframes] = h;
	a->nframes++;
	if ((a->frame_idx.n + 1) * 10 > a->frame_idx.cap * 7) {
		if (idx_grow(&a->frame_idx, a->frame_hash))
			return -ENOMEM;
		(void)idx_find(&a->frame_idx, h, a->frame_hash, frame_eq, &k, &slot);
	}
	a->frame_idx.slots[slot] = (uint32_t)a->nframes;
	a->frame_idx.n++;
	return (long)a->nframes - 1;
}

struct stack_key {
	const struct stackagg *a;
	const uint32_t *ids;
	uint32_t n;
};

static bool stack_eq(const void *ctx, uint32_t it)
{
	const struct stack_key *k = ctx;
	const struct stack *s = &k->a->stacks[it];

	return s->n == k->n && !memcmp(s->frames, k->ids, k->n * sizeof(*k->ids));
}

/* Sums saturate instead of wrapping: a client that reports absurd values (GPU time is what a
 * remote library says) must not turn a service's total negative. */
static int64_t sat_add(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

int stackagg_new(size_t nvalues, struct stackagg **ret_agg)
{
	struct stackagg *a;

	if (nvalues == 0)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->nvalues = nvalues;
	/* Unbounded for now; strset_refused() will count what a later cap refuses. */
	if (strset_new(STRSET_UNBOUNDED, STRSET_UNBOUNDED, &a->strs)) {
		free(a);
		return -ENOMEM;
	}
	*ret_agg = a;
	return 0;
}

void stackagg_free(struct stackagg *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nstacks; i++) {
		free(a->stacks[i].frames);
		free(a->stacks[i].values);
	}
	strset_free(a->strs);
	free(a->frames);
	free(a->frame_hash);
	free(a->frame_idx.slots);
	free(a->stacks);
	free(a->stack_hash);
	free(a->stack_idx.slots);
	free(a);
}

int stackagg_add(struct stackagg *a, const struct sym_frame *frames, size_t n,
		 const int64_t *values)
{
	uint32_t ids[512];
	struct stack_key k = { a, ids, 0 };
	struct stack *s;
	uint64_t h;
	size_t slot;
	long it;

	if (n == 0 || n > sizeof(ids) / sizeof(ids[0]))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		long id = intern_frame(a, &frames[i]);

		if (id < 0)
			return (int)id;
		ids[i] = (uint32_t)id;
	}
	k.n = (uint32_t)n;
	h = hash_fnv1a64(HASH_FNV1A64_INIT, ids, n * sizeof(ids[0]));
	it = idx_find(&a->stack_idx, h, a->stack_hash, stack_eq, &k, &slot);
	if (it < 0) {
		if (grow2((void **)&a->stacks, &a->stack_hash, &a->cap_stacks, a->nstacks + 1,
			  sizeof(*a->stacks)))
			return -ENOMEM;
		s = &a->stacks[a->nstacks];
		s->frames = malloc(n * sizeof(*ids));
		s->values = calloc(a->nvalues, sizeof(*s->values));
		if (!s->frames || !s->values) {
			free(s->frames);
			free(s->values);
			return -ENOMEM;
		}
		memcpy(s->frames, ids, n * sizeof(*ids));
		s->n = (uint32_t)n;
		a->stack_hash[a->nstacks] = h;
		a->nstacks++;
		if ((a->stack_idx.n + 1) * 10 > a->stack_idx.cap * 7) {
			if (idx_grow(&a->stack_idx, a->stack_hash))
				return -ENOMEM;
			(void)idx_find(&a->stack_idx, h, a->stack_hash, stack_eq, &k, &slot);
		}
		a->stack_idx.slots[slot] = (uint32_t)a->nstacks;
		a->stack_idx.n++;
		it = (long)a->nstacks - 1;
	}
	s = &a->stacks[it];
	for (size_t v = 0; v < a->nvalues; v++)
		s->values[v] = sat_add(s->values[v], values[v]);
	return 0;
}

size_t stackagg_count(const struct stackagg *a)
{
	return a->nstacks;
}

int64_t stackagg_total(const struct stackagg *a, size_t idx)
{
	int64_t t = 0;

	for (size_t i = 0; i < a->nstacks && idx < a->nvalues; i++)
		t = sat_add(t, a->stacks[i].values[idx]);
	return t;
}

static const struct stackagg *sort_agg;

static int by_value_desc(const void *x, const void *y)
{
	int64_t a = sort_agg->stacks[*(const uint32_t *)x].values[0];
	int64_t b = sort_agg->stacks[*(const uint32_t *)y].values[0];

	if (a != b)
		return a < b ? 1 : -1;
	return *(const uint32_t *)x < *(const uint32_t *)y ? -1 : 1;
}

static uint32_t add_mapping(struct pprof_builder *b, const struct interned_frame *f)
{
	struct pprof_mapping_desc m = {
		.start = f->map_start,
		.limit = f->map_end,
		.file_offset = f->map_pgoff,
		.file = f->module,
		.build_id = f->build_id,
	};

	if (!f->module || f->map_end <= f->map_start)
		return 0;
	return pprof_add_mapping(b, &m);
}

/* Builds the pprof from the first `keep` stacks of order[] plus "[other]" for the rest. */
static int build_once(struct stackagg *a, const struct stackagg_profile *p, const uint32_t *order,
		      size_t keep, bool gzip, uint8_t **ret_buf, size_t *ret_len)
{
	struct pprof_builder *b = NULL;
	struct pprof_frame pf[512];
	int64_t *other = NULL;
	int err;

	err = pprof_builder_new(p->types, a->nvalues, p->period_type, p->period, &b);
	if (err)
		return err;
	pprof_set_time(b, p->time_nanos, p->duration_nanos);
	if (p->comment && (err = pprof_add_comment(b, p->comment)))
		goto out;
	for (size_t i = 0; i < keep; i++) {
		const struct stack *s = &a->stacks[order[i]];

		for (uint32_t j = 0; j < s->n; j++) {
			const struct interned_frame *f = &a->frames[s->frames[j]];

			pf[j] = (struct pprof_frame){
				.function = f->name,
				.address = f->address,
				.mapping_id = add_mapping(b, f),
				.filename = f->filename,
				.line = f->line,
				.start_line = f->start_line,
			};
		}
		err = pprof_add_sample(b, pf, s->n, s->values);
		if (err)
			goto out;
	}
	if (keep < a->nstacks) {
		other = calloc(a->nvalues, sizeof(*other));
		if (!other) {
			err = -ENOMEM;
			goto out;
		}
		for (size_t i = keep; i < a->nstacks; i++)
			for (size_t v = 0; v < a->nvalues; v++)
				other[v] = sat_add(other[v], a->stacks[order[i]].values[v]);
		pf[0] = (struct pprof_frame){ .function = "[other]" };
		err = pprof_add_sample(b, pf, 1, other);
		if (err)
			goto out;
	}
	err = pprof_encode(b, gzip, ret_buf, ret_len);
out:
	free(other);
	pprof_builder_free(b);
	return err;
}

static int build_svg(struct stackagg *a, const struct flamegraph_view *view, const uint32_t *order,
		     size_t keep, struct stackagg_result *r)
{
	struct flamegraph *fg = flamegraph_new(view->title, view->unit ? view->unit : "samples");
	const char *names[512];
	int64_t div = view->divisor > 0 ? view->divisor : 1, other = 0;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int err = 0;

	if (!fg)
		return -ENOMEM;
	for (size_t i = 0; i < a->nstacks && !err; i++) {
		const struct stack *s = &a->stacks[order[i]];
		int64_t v = view->value < a->nvalues ? s->values[view->value] / div : 0;

		if (i >= keep) {
			other = sat_add(other, v);
			continue;
		}
		if (v <= 0)
			continue;
		/* by name only: a function's lines are one box, as flame graphs show them */
		for (uint32_t j = 0; j < s->n; j++)
			names[j] = a->frames[s->frames[s->n - 1 - j]].name;
		err = flamegraph_add(fg, names, s->n, (uint64_t)v);
	}
	if (!err && other > 0) {
		names[0] = "[other]";
		err = flamegraph_add(fg, names, 1, (uint64_t)other);
	}
	if (!err) {
		f = open_memstream(&buf, &len);
		if (!f) {
			err = -errno;
		} else {
			err = flamegraph_write(fg, f);
			if (fclose(f) && !err)
				err = -EIO;
		}
	}
	flamegraph_free(fg);
	if (err) {
		free(buf);
		return err;
	}
	r->svg = (uint8_t *)buf;
	r->svg_len = len;
	return 0;
}

int stackagg_build(struct stackagg *a, const struct stackagg_profile *p,
		   const struct flamegraph_view *fg, struct stackagg_result *ret)
{
	struct stackagg_result r = { 0 };
	uint32_t *order;
	size_t keep = a->nstacks;
	uint8_t *raw = NULL;
	size_t raw_len = 0;
	int err;

	order = malloc((a->nstacks ? a->nstacks : 1) * sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < a->nstacks; i++)
		order[i] = (uint32_t)i;
	sort_agg = a;
	qsort(order, a->nstacks, sizeof(*order), by_value_desc);
	sort_agg = NULL;

	if (p->max_samples && keep > p->max_samples)
		keep = p->max_samples - 1; /* one slot for "[other]" */
	for (;;) {
		err = build_once(a, p, order, keep, false, &raw, &raw_len);
		if (err)
			goto out;
		if (!p->max_bytes || raw_len <= p->max_bytes || keep == 0)
			break;
		/* Too big: shrink in proportion, with a margin, and try again. */
		free(raw);
		raw = NULL;
		keep = (size_t)((double)keep * (double)p->max_bytes / (double)raw_len * 0.9);
	}
	r.pprof_raw_len = raw_len;
	free(raw);
	raw = NULL;
	err = build_once(a, p, order, keep, true, &r.pprof_gz, &r.pprof_len);
	if (err)
		goto out;
	r.samples = keep + (keep < a->nstacks);
	r.folded = a->nstacks - keep;
	if (fg) {
		err = build_svg(a, fg, order, keep, &r);
		if (err)
			goto out;
	}
	*ret = r;
	r = (struct stackagg_result){ 0 };
out:
	stackagg_result_fini(&r);
	free(order);
	return err;
}

void stackagg_result_fini(struct stackagg_result *r)
{
	free(r->pprof_gz);
	free(r->svg);
	memset(r, 0, sizeof(*r));
}
