/* perfmap: see perfmap.h.
 *
 * Budgets (sized from real writers: the JVM's perf-map-agent on a large service writes
 * 100k-300k methods of ~100 bytes, CPython's trampolines one line per code object, V8's
 * --perf-basic-prof appends for as long as the process runs):
 * - per map: PERFMAP_MAX_ENTRIES lines kept, PERFMAP_MAX_NAME_BYTES of names, PERFMAP_MAX_READ
 *   bytes read over its life (a sparse or endless file is never walked by its apparent size);
 * - all maps together: PERFMAP_GLOBAL_ENTRIES, PERFMAP_GLOBAL_NAME_BYTES held at once, and
 *   PERFMAP_GLOBAL_READ_PER_SEC bytes read per second (more waits for the next second);
 * - a line longer than PERFMAP_MAX_LINE is skipped up to its newline.
 * What is refused is counted (perfmap_get_counters()). The counters and the global budget are
 * atomics: perfmaps of several symbolizers may live in several threads. */
#include "perfmap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "util.h"

#define PERFMAP_CHUNK 65536u

struct perfmap_sym {
	uint64_t start, size;
	size_t name; /* offset in the arena */
	size_t seq;  /* line order: later lines win */
};

struct perfmap {
	char *path;     /* absolute; inside the process's root when pid is set */
	pid_t pid;      /* perfmap_open_pid(): resolved in /proc/PID/root, owner checked */
	bool have_ident;
	dev_t dev;
	ino_t ino;
	off_t size_seen;
	struct timespec mtime_seen;
	dev_t refused_dev; /* the last file refused, counted once */
	ino_t refused_ino;
	off_t offset;   /* bytes consumed (complete lines, skipped bytes) */
	bool skipping;  /* inside an over-long line: drop bytes up to the next newline */
	uint64_t bytes_read; /* over the map's life, against PERFMAP_MAX_READ */
	struct stat lst; /* what changed() saw last */
	bool lst_valid;
	bool deferred;  /* this second's global read allowance ran out: read on */
	struct perfmap_sym *syms;
	size_t nsyms, capsyms;
	char *arena;
	size_t arena_len, arena_cap;
	size_t seq;
};

static struct {
	uint64_t entries, name_bytes;   /* held now by every perfmap */
	int64_t window_sec;             /* the second read_in_window counts */
	uint64_t read_in_window;
	uint64_t refused_files, refused_owner, entries_skipped, bytes_skipped, bytes_read;
} g;

static uint64_t atomic_get(uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

static void atomic_add(uint64_t *v, uint64_t n)
{
	__atomic_fetch_add(v, n, __ATOMIC_RELAXED);
}

static void atomic_sub(uint64_t *v, uint64_t n)
{
	__atomic_fetch_sub(v, n, __ATOMIC_RELAXED);
}

void perfmap_get_counters(struct perfmap_counters *ret)
{
	ret->entries = atomic_get(&g.entries);
	ret->name_bytes = atomic_get(&g.name_bytes);
	ret->refused_files = atomic_get(&g.refused_files);
	ret->refused_owner = atomic_get(&g.refused_owner);
	ret->entries_skipped = atomic_get(&g.entries_skipped);
	ret->bytes_skipped = atomic_get(&g.bytes_skipped);
	ret->bytes_read = atomic_get(&g.bytes_read);
}

/* Takes up to want bytes of this second's global read allowance; returns what was granted. */
static uint64_t read_allowance(uint64_t want)
{
	int64_t sec = util_now_ns(CLOCK_MONOTONIC) / NSEC_PER_SEC;
	int64_t cur = __atomic_load_n(&g.window_sec, __ATOMIC_RELAXED);
	uint64_t used;

	if (cur != sec && __atomic_compare_exchange_n(&g.window_sec, &cur, sec, false,
						      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		__atomic_store_n(&g.read_in_window, 0, __ATOMIC_RELAXED);
	used = __atomic_fetch_add(&g.read_in_window, want, __ATOMIC_RELAXED);
	if (used >= PERFMAP_GLOBAL_READ_PER_SEC)
		return 0;
	return want < PERFMAP_GLOBAL_READ_PER_SEC - used ? want : PERFMAP_GLOBAL_READ_PER_SEC - used;
}

static int perfmap_new(const char *path, pid_t pid, struct perfmap **ret_pm)
{
	struct perfmap *pm = calloc(1, sizeof(*pm));

	if (!pm)
		return -ENOMEM;
	pm->path = strdup(path);
	if (!pm->path) {
		free(pm);
		return -ENOMEM;
	}
	pm->pid = pid;
	(void)perfmap_refresh(pm);
	*ret_pm = pm;
	return 0;
}

int perfmap_open(const char *path, struct perfmap **ret_pm)
{
	return perfmap_new(path, 0, ret_pm);
}

/* From /proc/PID/status: the pid in the innermost namespace (the last NSpid field) and the
 * effective uid (the second Uid field). */
static int read_status(pid_t pid, pid_t *ret_nspid, uid_t *ret_euid)
{
	char path[64], line[256];
	bool have_uid = false;
	FILE *f;

	*ret_nspid = pid;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *p, *last = NULL, *save = NULL;
		unsigned long r, e;

		if (!strncmp(line, "Uid:", 4) && sscanf(line + 4, "%lu %lu", &r, &e) == 2) {
			*ret_euid = (uid_t)e;
			have_uid = true;
		} else if (!strncmp(line, "NSpid:", 6)) {
			for (p = strtok_r(line + 6, " \t\n", &save); p; p = strtok_r(NULL, " \t\n", &save))
				last = p;
			if (last)
				*ret_nspid = (pid_t)strtol(last, NULL, 10);
		}
	}
	fclose(f);
	return have_uid ? 0 : -ESRCH;
}

int perfmap_open_pid(pid_t pid, struct perfmap **ret_pm)
{
	char path[64];
	pid_t nspid;
	uid_t euid;

	if (pid <= 0)
		return -EINVAL;
	if (read_status(pid, &nspid, &euid))
		nspid = pid;
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)nspid);
	return perfmap_new(path, pid, ret_pm);
}

static void reset(struct perfmap *pm)
{
	atomic_sub(&g.entries, pm->nsyms);
	atomic_sub(&g.name_bytes, pm->arena_len);
	pm->nsyms = 0;
	pm->arena_len = 0;
	pm->offset = 0;
	pm->seq = 0;
	pm->skipping = false;
	pm->bytes_read = 0;
}

void perfmap_free(struct perfmap *pm)
{
	if (!pm)
		return;
	reset(pm);
	free(pm->path);
	free(pm->syms);
	free(pm->arena);
	free(pm);
}

/* Whether one more entry with len bytes of name fits this map's and the global budget. */
static bool budget_take(struct perfmap *pm, size_t len)
{
	if (pm->nsyms >= PERFMAP_MAX_ENTRIES || pm->arena_len + len + 1 > PERFMAP_MAX_NAME_BYTES)
		return false;
	if (__atomic_add_fetch(&g.entries, 1, __ATOMIC_RELAXED) > PERFMAP_GLOBAL_ENTRIES) {
		atomic_sub(&g.entries, 1);
		return false;
	}
	if (__atomic_add_fetch(&g.name_bytes, len + 1, __ATOMIC_RELAXED) >
	    PERFMAP_GLOBAL_NAME_BYTES) {
		atomic_sub(&g.name_bytes, len + 1);
		atomic_sub(&g.entries, 1);
		return false;
	}
	return true;
}

static int add_sym(struct perfmap *pm, uint64_t start, uint64_t size, const char *name,
		   size_t len)
{
	if (len > PERFMAP_MAX_NAME)
		len = PERFMAP_MAX_NAME;
	if (!budget_take(pm, len)) {
		atomic_add(&g.entries_skipped, 1);
		return 0;
	}
	if (util_grow((void **)&pm->syms, &pm->capsyms, pm->nsyms + 1, sizeof(*pm->syms)) ||
	    util_grow((void **)&pm->arena, &pm->arena_cap, pm->arena_len + len + 1, 1)) {
		atomic_sub(&g.entries, 1);
		atomic_sub(&g.name_bytes, len + 1);
		return -ENOMEM;
	}
	memcpy(pm->arena + pm->arena_len, name, len);
	pm->arena[pm->arena_len + len] = '\0';
	pm->syms[pm->nsyms++] = (struct perfmap_sym){ .start = start, .size = size,
						      .name = pm->arena_len, .seq = pm->seq++ };
	pm->arena_len += len + 1;
	return 0;
}

/* "START SIZE name": hex numbers, optional 0x, the name is the rest of the line. */
static int parse_line(struct perfmap *pm, char *line, size_t len)
{
	char *end, *p = line;
	uint64_t start, size;

	line[len] = '\0';
	errno = 0;
	start = strtoull(p, &end, 16);
	if (errno || end == p || *end != ' ')
		return 0;
	p = end + 1;
	size = strtoull(p, &end, 16);
	if (errno || end == p || *end != ' ' || size == 0)
		return 0;
	p = end + 1;
	if (!*p)
		return 0;
	return add_sym(pm, start, size, p, strlen(p));
}

static int cmp_sym(const void *a, const void *b)
{
	const struct perfmap_sym *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts and keeps the last line for each start address. */
static void finish(struct perfmap *pm)
{
	size_t out = 0;

	qsort(pm->syms, pm->nsyms, sizeof(*pm->syms), cmp_sym);
	for (size_t i = 0; i < pm->nsyms; i++) {
		if (out && pm->syms[out - 1].start == pm->syms[i].start)
			out--;
		pm->syms[out++] = pm->syms[i];
	}
	atomic_sub(&g.entries, pm->nsyms - out);
	pm->nsyms = out;
}

/* Opens the map: in pid mode inside the process's root, never following a link, and only
 * a regular file owned by the process's effective uid (the uid its writes are made with). */
static int open_map(struct perfmap *pm, struct stat *st)
{
	char root[64];
	pid_t nspid;
	uid_t euid;
	int rootfd, fd, err;

	if (!pm->pid)
		return fileio_open_untrusted(AT_FDCWD, pm->path, FILEIO_UNTRUSTED_NOFOLLOW, 0, st);
	err = read_status(pm->pid, &nspid, &euid);
	if (err)
		return err;
	snprintf(root, sizeof(root), "/proc/%d/root", (int)pm->pid);
	rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return -errno;
	fd = fileio_open_untrusted(rootfd, pm->path,
				   FILEIO_UNTRUSTED_NOFOLLOW | FILEIO_UNTRUSTED_IN_ROOT, 0, st);
	close(rootfd);
	if (fd >= 0 && st->st_uid != euid) {
		close(fd);
		if (st->st_dev != pm->refused_dev || st->st_ino != pm->refused_ino) {
			pm->refused_dev = st->st_dev;
			pm->refused_ino = st->st_ino;
			atomic_add(&g.refused_owner, 1);
		}
		return -EPERM;
	}
	return fd;
}

/* Reads whole lines from pm->offset, PERFMAP_CHUNK at a time, within the budgets. Returns 0,
 * 1 when this second's global allowance ran out first (the rest waits), or -errno. */
static int read_lines(struct perfmap *pm, int fd, off_t size)
{
	char *buf = malloc(PERFMAP_CHUNK + 1);
	int err = 0;

	if (!buf)
		return -ENOMEM;
	while (pm->offset < size) {
		uint64_t want = (uint64_t)(size - pm->offset), got;
		size_t len, done = 0;
		ssize_t n;

		if (want > PERFMAP_CHUNK)
			want = PERFMAP_CHUNK;
		if (pm->bytes_read >= PERFMAP_MAX_READ) {
			atomic_add(&g.bytes_skipped, (uint64_t)(size - pm->offset));
			pm->offset = size; /* spent: nothing more of this file is read */
			break;
		}
		if (want > PERFMAP_MAX_READ - pm->bytes_read)
			want = PERFMAP_MAX_READ - pm->bytes_read;
		got = read_allowance(want);
		if (!got) {
			err = 1; /* the next second */
			break;
		}
		n = pread(fd, buf, got, pm->offset);
		if (n < 0) {
			err = -errno;
			break;
		}
		if (n == 0)
			break;
		len = (size_t)n;
		pm->bytes_read += len;
		atomic_add(&g.bytes_read, len);
		if (pm->skipping) {
			char *nl = memchr(buf, '\n', len);

			done = nl ? (size_t)(nl - buf) + 1 : len;
			atomic_add(&g.bytes_skipped, done);
			pm->skipping = !nl;
		}
		/* Whole lines only: a writer may be in the middle of one. */
		while (done < len) {
			char *nl = memchr(buf + done, '\n', len - done);

			if (!nl)
				break;
			err = parse_line(pm, buf + done, (size_t)(nl - (buf + done)));
			if (err)
				break;
			done = (size_t)(nl - buf) + 1;
		}
		if (err)
			break;
		if (len - done > PERFMAP_MAX_LINE) {
			/* no newline in sight: skip this line, whatever its length */
			atomic_add(&g.bytes_skipped, len - done);
			done = len;
			pm->skipping = true;
		}
		pm->offset += (off_t)done;
		if (len < got || !done)
			break; /* the end, or a line still being written */
	}
	free(buf);
	return err;
}

int perfmap_refresh(struct perfmap *pm)
{
	size_t before = pm->nsyms;
	struct stat st;
	int fd, err;

	pm->deferred = false;
	fd = open_map(pm, &st);
	if (fd < 0) {
		if (fd != -ENOENT && fd != -EPERM && fd != -ESRCH)
			atomic_add(&g.refused_files, 1);
		return fd == -ENOENT || fd == -EPERM || fd == -ESRCH ? 0 : fd;
	}
	if (!pm->have_ident || st.st_dev != pm->dev || st.st_ino != pm->ino ||
	    st.st_size < pm->offset) {
		reset(pm);
		before = 0;
		pm->have_ident = true;
		pm->dev = st.st_dev;
		pm->ino = st.st_ino;
	} else if (st.st_size == pm->size_seen && st.st_mtim.tv_sec == pm->mtime_seen.tv_sec &&
		   st.st_mtim.tv_nsec == pm->mtime_seen.tv_nsec) {
		close(fd);
		return 0; /* unchanged since the last read */
	}
	err = read_lines(pm, fd, st.st_size);
	close(fd);
	if (err == 0) {
		/* read up to the end (a partial last line waits): not again until it changes */
		pm->size_seen = st.st_size;
		pm->mtime_seen = st.st_mtim;
	}
	if (err > 0) {
		pm->deferred = true;
		err = 0;
	}
	if (pm->nsyms != before)
		finish(pm);
	if (err)
		return err;
	return pm->nsyms != before && pm->nsyms ? 1 : 0;
}

static const struct perfmap_sym *find(const struct perfmap *pm, uint64_t addr)
{
	size_t lo = 0, hi = pm->nsyms;

	/* Last symbol with start <= addr. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (pm->syms[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	if (addr - pm->syms[lo - 1].start >= pm->syms[lo - 1].size)
		return NULL;
	return &pm->syms[lo - 1];
}

/* Has the file changed since the last look? One lstat, no open: on a path through
 * /proc/PID/root a link inside it may lead anywhere, but only to metadata that decides whether
 * the real open (inside the root, no links, owner checked) is tried. A file that does not
 * change (or never ends its last line, or was refused) is not opened again. */
static bool changed(struct perfmap *pm)
{
	char path[PATH_MAX];
	struct stat st;
	bool same;

	if (pm->pid)
		snprintf(path, sizeof(path), "/proc/%d/root%s", (int)pm->pid, pm->path);
	if (fstatat(AT_FDCWD, pm->pid ? path : pm->path, &st, AT_SYMLINK_NOFOLLOW))
		memset(&st, 0, sizeof(st));
	same = pm->lst_valid && st.st_dev == pm->lst.st_dev && st.st_ino == pm->lst.st_ino &&
	       st.st_size == pm->lst.st_size && st.st_uid == pm->lst.st_uid &&
	       st.st_mtim.tv_sec == pm->lst.st_mtim.tv_sec &&
	       st.st_mtim.tv_nsec == pm->lst.st_mtim.tv_nsec;
	if (same && !pm->deferred)
		return false;
	pm->lst = st;
	pm->lst_valid = true;
	return true;
}

const char *perfmap_lookup(struct perfmap *pm, uint64_t addr, uint64_t *ret_start)
{
	const struct perfmap_sym *s = find(pm, addr);

	if (!s && changed(pm) && perfmap_refresh(pm) > 0)
		s = find(pm, addr);
	if (!s)
		return NULL;
	if (ret_start)
		*ret_start = s->start;
	return pm->arena + s->name;
}

size_t perfmap_count(const struct perfmap *pm)
{
	return pm->nsyms;
}
