#include "allocprof.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pystack.h"
#include "symframe.h"

static bool in_preload_lib(const char *module)
{
	const char *b = module ? strrchr(module, '/') : NULL;

	return b && !strncmp(b + 1, "libember_alloc", 14);
}

size_t allocprof_frames(struct symbolizer *sym, struct pyresolve *py, const struct alloc_stack *s,
			struct sym_frame *frames)
{
	struct sym_frame user[EMBER_MAX_STACK_DEPTH];
	pid_t pid = (pid_t)s->tgid;
	bool same_process, leading = s->preload, rooted;
	size_t n = 0;

	if (!s->nips && !(py && s->npy)) {
		memset(&frames[0], 0, sizeof(frames[0]));
		frames[0].name = "[lost user stack]";
		return 1;
	}
	same_process = symbolizer_holds(sym, pid, s->cookie);
	for (size_t i = 0; i < s->nips && n < EMBER_MAX_STACK_DEPTH; i++) {
		/* Uprobe mode takes the stack at the allocator's return: every PC is a return
		 * address, PC - 1 lies in the call. Preload mode starts inside the library. */
		uint64_t pc = s->ips[i] - 1;
		struct sym_info si;

		if (!same_process) {
			symframe_synthetic(&user[n], "[unknown]");
			user[n++].address = pc;
			continue;
		}
		(void)symbolizer_user(sym, pid, pc, &si);
		if (leading && in_preload_lib(si.module))
			continue;
		leading = false;
		symframe_from_sym(&si, pc, &user[n++]);
	}
	if (py && s->npy && same_process) {
		n = pystack_merge(py, pid, user, n, s->py, s->npy, s->py_status, frames,
				  ALLOCPROF_MAX_FRAMES, &rooted);
	} else {
		memcpy(frames, user, n * sizeof(*frames));
	}
	if (!n) {
		memset(&frames[0], 0, sizeof(frames[0]));
		frames[n++].name = "[unknown]";
	}
	return n;
}

void allocprof_comment(struct alloc_collector *c, char *comment, size_t comment_size)
{
	__u64 st[EMBER_ASTAT_MAX] = { 0 };

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
