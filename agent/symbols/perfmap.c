#include "perfmap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PERFMAP_MAX_BYTES (256u << 20) /* refuse to read more than this */
#define PERFMAP_MAX_NAME 4096

struct perfmap_sym {
	uint64_t start, size;
	size_t name; /* offset in the arena */
	size_t seq;  /* line order: later lines win */
};

struct perfmap {
	char *path;
	dev_t dev;
	ino_t ino;
	off_t offset;   /* bytes parsed (complete lines) */
	struct perfmap_sym *syms;
	size_t nsyms, capsyms;
	char *arena;
	size_t arena_len, arena_cap;
	size_t seq;
};

int perfmap_open(const char *path, struct perfmap **ret_pm)
{
	struct perfmap *pm = calloc(1, sizeof(*pm));

	if (!pm)
		return -ENOMEM;
	pm->path = strdup(path);
	if (!pm->path) {
		free(pm);
		return -ENOMEM;
	}
	(void)perfmap_refresh(pm);
	*ret_pm = pm;
	return 0;
}

static pid_t ns_pid(pid_t pid)
{
	char path[64], line[256];
	pid_t ret = pid;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return pid;
	while (fgets(line, sizeof(line), f)) {
		char *p, *last = NULL;

		if (strncmp(line, "NSpid:", 6))
			continue;
		/* The last field is the pid in the innermost namespace. */
		for (p = strtok(line + 6, " \t\n"); p; p = strtok(NULL, " \t\n"))
			last = p;
		if (last)
			ret = (pid_t)strtol(last, NULL, 10);
		break;
	}
	fclose(f);
	return ret;
}

int perfmap_open_pid(pid_t pid, struct perfmap **ret_pm)
{
	char path[128];

	snprintf(path, sizeof(path), "/proc/%d/root/tmp/perf-%d.map", (int)pid, (int)ns_pid(pid));
	return perfmap_open(path, ret_pm);
}

void perfmap_free(struct perfmap *pm)
{
	if (!pm)
		return;
	free(pm->path);
	free(pm->syms);
	free(pm->arena);
	free(pm);
}

static void reset(struct perfmap *pm)
{
	pm->nsyms = 0;
	pm->arena_len = 0;
	pm->offset = 0;
	pm->seq = 0;
}

static int add_sym(struct perfmap *pm, uint64_t start, uint64_t size, const char *name,
		   size_t len)
{
	if (len > PERFMAP_MAX_NAME)
		len = PERFMAP_MAX_NAME;
	if (pm->nsyms == pm->capsyms) {
		size_t ncap = pm->capsyms ? pm->capsyms * 2 : 256;
		struct perfmap_sym *ns = realloc(pm->syms, ncap * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		pm->syms = ns;
		pm->capsyms = ncap;
	}
	if (pm->arena_len + len + 1 > pm->arena_cap) {
		size_t ncap = pm->arena_cap ? pm->arena_cap : 4096;
		char *na;

		while (ncap < pm->arena_len + len + 1)
			ncap *= 2;
		na = realloc(pm->arena, ncap);
		if (!na)
			return -ENOMEM;
		pm->arena = na;
		pm->arena_cap = ncap;
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
	pm->nsyms = out;
}

int perfmap_refresh(struct perfmap *pm)
{
	size_t before = pm->nsyms, len, done = 0;
	struct stat st;
	char *buf = NULL;
	ssize_t n;
	int fd, err = 0;

	fd = open(pm->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	if (st.st_dev != pm->dev || st.st_ino != pm->ino || st.st_size < pm->offset) {
		reset(pm);
		before = 0;
		pm->dev = st.st_dev;
		pm->ino = st.st_ino;
	}
	if (st.st_size == pm->offset || st.st_size > (off_t)PERFMAP_MAX_BYTES)
		goto out;
	len = (size_t)(st.st_size - pm->offset);
	buf = malloc(len + 1);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	n = pread(fd, buf, len, pm->offset);
	if (n < 0) {
		err = -errno;
		goto out;
	}
	len = (size_t)n;
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
	pm->offset += (off_t)done;
	finish(pm);
out:
	free(buf);
	close(fd);
	if (err)
		return err;
	return pm->nsyms != before || done ? (pm->nsyms ? 1 : 0) : 0;
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

const char *perfmap_lookup(struct perfmap *pm, uint64_t addr, uint64_t *ret_start)
{
	const struct perfmap_sym *s = find(pm, addr);

	if (!s && perfmap_refresh(pm) > 0)
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
