#include "allocprof.h"
#include "symframe.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "profile_types.h"

struct allocprof {
	struct alloc_collector *c;
	struct stackagg *agg;
	struct symbolizer *sym; /* of the drain in progress */
	int64_t totals[4];
};

static bool in_preload_lib(const char *module)
{
	const char *b = module ? strrchr(module, '/') : NULL;

	return b && !strncmp(b + 1, "libember_alloc", 14);
}

size_t allocprof_frames(struct symbolizer *sym, const struct alloc_stack *s,
			struct sym_frame *frames)
{
	pid_t pid = (pid_t)s->tgid;
	bool same_process, leading = s->preload;
	size_t n = 0;

	if (!s->nips) {
		memset(&frames[0], 0, sizeof(frames[0]));
		frames[0].name = "[lost user stack]";
		return 1;
	}
	same_process = symbolizer_holds(sym, pid, s->cookie);
	for (size_t i = 0; i < s->nips && n < ALLOCPROF_MAX_FRAMES; i++) {
		/* Uprobe mode takes the stack at the allocator's return: every PC is a return
		 * address, PC - 1 lies in the call. Preload mode starts inside the library. */
		uint64_t pc = s->ips[i] - 1;
		struct sym_info si;

		if (!same_process) {
			memset(&frames[n], 0, sizeof(frames[n]));
			frames[n].name = "[unknown]";
			frames[n++].address = pc;
			continue;
		}
		(void)symbolizer_user(sym, pid, pc, &si);
		if (leading && in_preload_lib(si.module))
			continue;
		leading = false;
		symframe_from_sym(&si, pc, &frames[n++]);
	}
	if (!n) {
		memset(&frames[0], 0, sizeof(frames[0]));
		frames[n++].name = "[unknown]";
	}
	return n;
}

void allocprof_describe(struct alloc_collector *c, struct pprof_value_type types[4],
			struct pprof_value_type *period_type, struct stackagg_profile *p,
			char *comment, size_t comment_size)
{
	const struct profile_family *fam = profile_family_find("alloc");
	__u64 st[EMBER_ASTAT_MAX] = { 0 };

	for (size_t i = 0; i < 4; i++) {
		types[i].type = fam->types[i][0];
		types[i].unit = fam->types[i][1];
	}
	period_type->type = fam->period[0];
	period_type->unit = fam->period[1];
	p->types = types;
	p->period_type = period_type;
	p->period = (int64_t)alloc_collector_interval(c);
	(void)alloc_collector_read_stats(c, st);
	snprintf(comment, comment_size,
		 "alloc mode %s, mean sampling interval %llu bytes; sampled %llu; live set %s "
		 "(live map full %llu, untracked %llu, lost %llu, no stack %llu)",
		 alloc_collector_mode_name(c), (unsigned long long)alloc_collector_interval(c),
		 (unsigned long long)st[EMBER_ASTAT_SAMPLED],
		 alloc_collector_live_incomplete(c) ? "INCOMPLETE" : "complete",
		 (unsigned long long)st[EMBER_ASTAT_LIVE_FULL],
		 (unsigned long long)st[EMBER_ASTAT_UNTRACKED],
		 (unsigned long long)(st[EMBER_ASTAT_EVENTS_LOST] + st[EMBER_ASTAT_PENDING_FULL]),
		 (unsigned long long)st[EMBER_ASTAT_STACK_LOST]);
	p->comment = comment;
}

int allocprof_preload_path(char *buf, size_t size)
{
	const char *env = getenv("EMBER_ALLOC_PRELOAD");
	char exe[PATH_MAX];
	ssize_t n;
	char *slash;

	if (env && *env) {
		snprintf(buf, size, "%s", env);
		return access(buf, R_OK) ? -ENOENT : 0;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -ENOENT;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	if ((size_t)snprintf(buf, size, "%s/libember_alloc.so", exe) >= size)
		return -ENAMETOOLONG;
	return access(buf, R_OK) ? -ENOENT : 0;
}

int allocprof_new(const struct alloc_collector_opts *opts, struct allocprof **ret_ap)
{
	struct allocprof *ap = calloc(1, sizeof(*ap));
	int err;

	if (!ap)
		return -ENOMEM;
	err = stackagg_new(4, &ap->agg);
	if (!err)
		err = alloc_collector_open(opts, &ap->c);
	if (err) {
		allocprof_free(ap);
		return err;
	}
	*ret_ap = ap;
	return 0;
}

void allocprof_free(struct allocprof *ap)
{
	if (!ap)
		return;
	alloc_collector_free(ap->c);
	stackagg_free(ap->agg);
	free(ap);
}

struct alloc_collector *allocprof_collector(struct allocprof *ap)
{
	return ap->c;
}

static void on_stack(void *ctx, const struct alloc_stack *s)
{
	struct allocprof *ap = ctx;
	struct sym_frame frames[ALLOCPROF_MAX_FRAMES];
	size_t n = allocprof_frames(ap->sym, s, frames);

	if (stackagg_add(ap->agg, frames, n, s->values) == 0)
		for (int i = 0; i < 4; i++)
			ap->totals[i] += s->values[i];
}

int allocprof_drain(struct allocprof *ap, struct symbolizer *sym)
{
	int n;

	ap->sym = sym;
	n = alloc_collector_drain(ap->c, on_stack, ap);
	ap->sym = NULL;
	return n < 0 ? n : 0;
}

int allocprof_build(struct allocprof *ap, int64_t time_nanos, int64_t duration_nanos,
		    const char *fg_title, struct stackagg_result *ret)
{
	struct pprof_value_type types[4], period_type;
	struct stackagg_profile p = { 0 };
	char comment[512];
	int err;

	allocprof_describe(ap->c, types, &period_type, &p, comment, sizeof(comment));
	p.time_nanos = time_nanos;
	p.duration_nanos = duration_nanos;
	p.fg_title = fg_title;
	p.fg_unit = "bytes";
	p.fg_value = 1; /* alloc_space */
	p.fg_divisor = 1;
	err = stackagg_build(ap->agg, &p, ret);
	if (err)
		return err;
	stackagg_free(ap->agg);
	ap->agg = NULL;
	return stackagg_new(4, &ap->agg);
}

void allocprof_totals(struct allocprof *ap, int64_t ret_totals[4])
{
	memcpy(ret_totals, ap->totals, sizeof(ap->totals));
}
