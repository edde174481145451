#include "unwmode.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fpdetect.h"
#include "log.h"

#define EXE_SLOTS 256
#define PID_SLOTS 4096

struct exe_verdict {
	dev_t dev;
	ino_t ino;
	off_t size;
	time_t mtime;
	bool used;
	bool dwarf;
};

struct pid_counts {
	pid_t pid;
	unsigned long total, shorts;
	bool switched;
};

struct unwmode {
	struct exe_verdict exes[EXE_SLOTS];
	struct pid_counts pids[PID_SLOTS];
};

int unwmode_new(struct unwmode **ret_u)
{
	*ret_u = calloc(1, sizeof(**ret_u));
	return *ret_u ? 0 : -ENOMEM;
}

void unwmode_free(struct unwmode *u)
{
	free(u);
}

bool unwmode_initial_dwarf(struct unwmode *u, pid_t pid)
{
	enum fpdetect_result r = FPDETECT_UNKNOWN;
	struct exe_verdict *v;
	double share = -1;
	char path[64];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true; /* cannot look: DWARF works either way */
	if (fstat(fd, &st)) {
		close(fd);
		return true;
	}
	v = &u->exes[(st.st_ino * 2654435761u + st.st_dev) % EXE_SLOTS];
	if (v->used && v->dev == st.st_dev && v->ino == st.st_ino && v->size == st.st_size &&
	    v->mtime == st.st_mtime) {
		close(fd);
		return v->dwarf;
	}
	if (fpdetect_fd(fd, &r, &share))
		r = FPDETECT_UNKNOWN; /* not readable as ELF: DWARF works either way */
	close(fd);
	*v = (struct exe_verdict){ .dev = st.st_dev, .ino = st.st_ino, .size = st.st_size,
				   .mtime = st.st_mtime, .used = true, .dwarf = r != FPDETECT_FP };
	log_debug("unwind: pid %d: executable %s frame pointers (share %.2f): %s", (int)pid,
		  r == FPDETECT_FP ? "keeps" : r == FPDETECT_NO_FP ? "omits" : "cannot tell",
		  share, v->dwarf ? "dwarf" : "frame pointers");
	return v->dwarf;
}

bool unwmode_is_root(const char *root)
{
	/* Where glibc starts threads of execution: main's caller, and the thread entry. */
	static const char *const roots[] = {
		"__libc_start_call_main", "__libc_start_main", "__libc_start_main_impl", "_start",
		"start_thread", "clone", "clone3", "__clone", "__clone3", "__GI___clone3",
	};

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
		if (!strcmp(root, roots[i]))
			return true;
	return false;
}

bool unwmode_note_fp_stack(struct unwmode *u, pid_t pid, bool complete, unsigned long hits)
{
	struct pid_counts *c = &u->pids[((unsigned)pid * 2654435761u) % PID_SLOTS];

	if (c->pid != pid)
		*c = (struct pid_counts){ .pid = pid };
	if (c->switched)
		return false;
	c->total += hits;
	if (!complete)
		c->shorts += hits;
	if (c->total >= UNWMODE_MIN_STACKS && (double)c->shorts > UNWMODE_SHORT_SHARE * (double)c->total) {
		c->switched = true;
		log_debug("unwind: pid %d: %lu of %lu frame-pointer stacks stop short: switching to dwarf",
			  (int)pid, c->shorts, c->total);
		return true;
	}
	return false;
}

void unwmode_forget(struct unwmode *u, pid_t pid)
{
	struct pid_counts *c = &u->pids[((unsigned)pid * 2654435761u) % PID_SLOTS];

	if (c->pid == pid)
		c->pid = 0;
}
