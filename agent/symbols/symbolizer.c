/* symbolizer: see symbolizer.h.
 *
 * Shape: processes live in an array sorted by pid (binary search, plus a one-entry cache for the
 * frames of one stack); each holds its executable mappings sorted by address and a pointer from
 * each mapping to a shared module. Modules (one ELF symbol table each) are found at track time
 * by file identity (dev, inode, size, mtime) or by build-id, so a per-sample lookup makes no
 * syscall. Symbols are loaded at track time, which is what keeps an exited or deleted binary
 * nameable later. Strings handed out (paths, "module+0xoffset") are interned per process and
 * freed with it.
 *
 * Choices the header leaves open:
 * - a PC in an anonymous executable mapping (JIT code, [vsyscall]) is named "[unknown]", with
 *   the maps name (or "[unknown]") as module; a file-backed one that no symbol covers is
 *   "basename+0x<file offset>";
 * - the vDSO is read from our own process (same kernel, same ABI): a 32-bit target's is not named;
 * - kernel module symbols report module "[kernel.kallsyms]" too; kallsyms is read once;
 * - a PC outside every mapping re-reads the maps at most once a second per process, never for
 *   a process seen gone;
 * - a module no tracked process holds is dropped once SYMBOLIZER_MAX_MODULES are cached. */
#include "symbolizer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "elfsyms.h"
#include "hash.h"
#include "ksyms.h"
#include "log.h"
#include "perfmap.h"
#include "procmaps.h"
#include "util.h"

/* Unreferenced modules are dropped once the cache holds this many. */
#define SYMBOLIZER_MAX_MODULES 1024
/* Interned strings per process; past it, unknown PCs are named by their module alone. */
#define PROC_MAX_STRINGS 65536
/* A PC outside every mapping re-reads the maps at most this often per process. */
#define REFRESH_INTERVAL_NS 1000000000ull

#define UNKNOWN "[unknown]"
#define KERNEL_MODULE "[kernel.kallsyms]"

struct module {
	char build_id[ELFSYMS_BUILD_ID_MAX]; /* "" when the file has none */
	bool has_ident;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct elfsyms *es; /* NULL when the file could not be read as ELF */
	unsigned int refs;  /* processes that hold it */
};

enum pmap_kind { PMAP_ANON, PMAP_FILE, PMAP_VDSO };

struct pmap {
	uint64_t start, end, pgoff;
	const char *path;   /* interned in the process */
	const char *base;   /* basename, inside path */
	struct module *mod; /* NULL for anonymous or unreadable mappings */
	enum pmap_kind kind;
};

/* Open-addressing set of strings, owned. */
struct strset {
	char **slots;
	size_t cap, nr;
};

struct proc {
	pid_t pid;
	uint64_t start_time;
	bool gone;
	bool placeholder; /* maps could not be read: symbolizer_track() tries again */
	uint64_t last_refresh_ns;
	struct pmap *maps;
	size_t nr_maps;
	struct module **mods; /* references held, kept until the process is dropped */
	size_t nr_mods, cap_mods;
	struct strset strs;
	struct perfmap *pm;   /* /tmp/perf-PID.map (JIT code, Python trampolines), opened lazily */
	bool pm_tried;
};

struct symbolizer {
	struct proc **procs; /* sorted by pid */
	size_t nr_procs, cap_procs;
	struct proc *last;
	struct module **mods;
	size_t nr_mods, cap_mods;
	struct module *vdso;
	bool vdso_tried;
	struct ksyms *ks;
	int ks_err;
	bool ks_tried;
	uint64_t lookups, misses;
};

/* ---- strset ---- */

static uint64_t str_hash(const char *s)
{
	return hash_fnv1a64_str(s);
}

static int strset_grow(struct strset *set)
{
	size_t ncap = set->cap ? set->cap * 2 : 64;
	char **slots = calloc(ncap, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < set->cap; i++) {
		size_t j;

		if (!set->slots[i])
			continue;
		for (j = str_hash(set->slots[i]) & (ncap - 1); slots[j]; j = (j + 1) & (ncap - 1))
			;
		slots[j] = set->slots[i];
	}
	free(set->slots);
	set->slots = slots;
	set->cap = ncap;
	return 0;
}

/* Returns the interned copy of str, or NULL on allocation failure or when the set is full. */
static const char *strset_intern(struct strset *set, const char *str)
{
	size_t j;

	if (set->cap) {
		for (j = str_hash(str) & (set->cap - 1); set->slots[j]; j = (j + 1) & (set->cap - 1))
			if (!strcmp(set->slots[j], str))
				return set->slots[j];
	}
	if (set->nr >= PROC_MAX_STRINGS)
		return NULL;
	if ((set->nr + 1) * 2 > set->cap && strset_grow(set))
		return NULL;
	for (j = str_hash(str) & (set->cap - 1); set->slots[j]; j = (j + 1) & (set->cap - 1))
		;
	set->slots[j] = strdup(str);
	if (!set->slots[j])
		return NULL;
	set->nr++;
	return set->slots[j];
}

static void strset_fini(struct strset *set)
{
	for (size_t i = 0; i < set->cap; i++)
		free(set->slots[i]);
	free(set->slots);
}

/* ---- modules ---- */

static void module_free(struct module *m)
{
	if (!m)
		return;
	elfsyms_free(m->es);
	free(m);
}

/* Drops modules no process holds, once the cache is full. */
static void modules_trim(struct symbolizer *s)
{
	size_t out = 0;

	if (s->nr_mods < SYMBOLIZER_MAX_MODULES)
		return;
	for (size_t i = 0; i < s->nr_mods; i++) {
		if (!s->mods[i]->refs)
			module_free(s->mods[i]);
		else
			s->mods[out++] = s->mods[i];
	}
	s->nr_mods = out;
}

static struct module *module_find(struct symbolizer *s, const struct stat *st, const char *build_id)
{
	for (size_t i = 0; i < s->nr_mods; i++) {
		struct module *m = s->mods[i];

		if (st && m->has_ident && m->dev == st->st_dev && m->ino == st->st_ino &&
		    m->size == st->st_size && m->mtime.tv_sec == st->st_mtim.tv_sec &&
		    m->mtime.tv_nsec == st->st_mtim.tv_nsec)
			return m;
		if (build_id && build_id[0] && !strcmp(m->build_id, build_id))
			return m;
	}
	return NULL;
}

/* Loads the module of the file open on fd, or finds it in the cache. */
static int module_get(struct symbolizer *s, int fd, const char *path, const char *root,
		      struct module **ret_mod)
{
	char build_id[ELFSYMS_BUILD_ID_MAX] = "";
	struct module *m;
	struct stat st;
	int err;

	if (fstat(fd, &st))
		return -errno;
	m = module_find(s, &st, NULL);
	if (m)
		goto out;
	if (elfsyms_read_build_id(fd, build_id, sizeof(build_id)))
		build_id[0] = '\0';
	m = module_find(s, NULL, build_id);
	if (m)
		goto out;

	modules_trim(s);
	err = util_grow((void **)&s->mods, &s->cap_mods, s->nr_mods + 1, sizeof(*s->mods));
	if (err)
		return err;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->has_ident = true;
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	m->size = st.st_size;
	m->mtime = st.st_mtim;
	err = elfsyms_load_fd(fd, path, root, &m->es);
	if (err == -ENOMEM) {
		free(m);
		return err;
	}
	/* an unreadable file stays cached without symbols: it is not parsed again */
	if (err)
		log_debug("symbolizer: %s: no symbols: %s", path, strerror(-err));
	else if (elfsyms_build_id(m->es))
		snprintf(m->build_id, sizeof(m->build_id), "%s", elfsyms_build_id(m->es));
	s->mods[s->nr_mods++] = m;
out:
	*ret_mod = m;
	return 0;
}

/* The vDSO is the same image for every process of this kernel (and ABI): read ours. */
static struct module *vdso_get(struct symbolizer *s)
{
	struct module *m;
	uint64_t base;
	size_t size;

	if (s->vdso_tried)
		return s->vdso;
	s->vdso_tried = true;
	if (procmaps_self_vdso(&base, &size))
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	if (elfsyms_load_mem((const void *)(uintptr_t)base, size, &m->es)) {
		free(m);
		return NULL;
	}
	if (elfsyms_build_id(m->es))
		snprintf(m->build_id, sizeof(m->build_id), "%s", elfsyms_build_id(m->es));
	s->vdso = m;
	return m;
}

/* ---- processes ---- */

static void proc_free(struct proc *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nr_mods; i++)
		p->mods[i]->refs--;
	free(p->mods);
	free(p->maps);
	strset_fini(&p->strs);
	perfmap_free(p->pm);
	free(p);
}

static int proc_hold(struct proc *p, struct module *m)
{
	int err;

	for (size_t i = 0; i < p->nr_mods; i++)
		if (p->mods[i] == m)
			return 0;
	err = util_grow((void **)&p->mods, &p->cap_mods, p->nr_mods + 1, sizeof(*p->mods));
	if (err)
		return err;
	p->mods[p->nr_mods++] = m;
	m->refs++;
	return 0;
}


/* Reads pid's mappings into p, replacing the previous capture (whose strings stay interned). */
static int proc_capture(struct symbolizer *s, struct proc *p)
{
	struct procmaps_entry *ents = NULL;
	struct pmap *maps = NULL;
	size_t nr_ents = 0, nr = 0;
	char root[64];
	int err;

	err = procmaps_read(p->pid, &ents, &nr_ents);
	if (err)
		return err;
	if (nr_ents == 0) {
		/* An exiting process (after exit_mm, before it is reaped) shows empty maps: keep
		 * the capture we have, as for a process that is gone. */
		procmaps_free(ents, nr_ents);
		return -ESRCH;
	}
	snprintf(root, sizeof(root), "/proc/%d/root", (int)p->pid);
	maps = calloc(nr_ents ? nr_ents : 1, sizeof(*maps));
	if (!maps) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nr_ents; i++) {
		const struct procmaps_entry *e = &ents[i];
		struct pmap *m = &maps[nr];
		const char *slash;

		if (!e->exec)
			continue;
		m->start = e->start;
		m->end = e->end;
		m->pgoff = e->pgoff;
		if (!strcmp(e->path, "[vdso]")) {
			m->kind = PMAP_VDSO;
			m->mod = vdso_get(s);
		} else if (e->inode && e->path[0] == '/') {
			int fd = procmaps_open_file(p->pid, e);

			m->kind = PMAP_FILE;
			if (fd >= 0) {
				err = module_get(s, fd, e->path, root, &m->mod);
				close(fd);
				if (err)
					goto out;
			}
		}
		if (m->mod) {
			err = proc_hold(p, m->mod);
			if (err)
				goto out;
		}
		m->path = strset_intern(&p->strs, e->path[0] ? e->path : UNKNOWN);
		if (!m->path)
			m->path = UNKNOWN;
		slash = strrchr(m->path, '/');
		m->base = slash ? slash + 1 : m->path;
		nr++;
	}
	free(p->maps);
	p->maps = maps;
	p->nr_maps = nr;
	maps = NULL;
out:
	free(maps);
	procmaps_free(ents, nr_ents);
	return err;
}

static size_t proc_index(const struct symbolizer *s, pid_t pid, bool *ret_found)
{
	size_t lo = 0, hi = s->nr_procs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->procs[mid]->pid < pid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*ret_found = lo < s->nr_procs && s->procs[lo]->pid == pid;
	return lo;
}

static struct proc *proc_find(struct symbolizer *s, pid_t pid)
{
	bool found;
	size_t i;

	if (s->last && s->last->pid == pid)
		return s->last;
	i = proc_index(s, pid, &found);
	if (!found)
		return NULL;
	s->last = s->procs[i];
	return s->last;
}

static void proc_remove(struct symbolizer *s, pid_t pid)
{
	bool found;
	size_t i = proc_index(s, pid, &found);

	if (!found)
		return;
	if (s->last == s->procs[i])
		s->last = NULL;
	proc_free(s->procs[i]);
	memmove(&s->procs[i], &s->procs[i + 1], (s->nr_procs - i - 1) * sizeof(*s->procs));
	s->nr_procs--;
}

/* Captures pid afresh and stores it, replacing any older capture of that pid. With placeholder,
 * a process whose maps cannot be read (another user's, without privileges) is stored without
 * mappings all the same, so that its samples cost no syscalls until a refresh; the error is
 * still returned. */
static int proc_add(struct symbolizer *s, pid_t pid, uint64_t start_time, bool placeholder)
{
	struct proc *p;
	bool found;
	int err, ret;
	size_t i;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->pid = pid;
	p->start_time = start_time;
	p->last_refresh_ns = (uint64_t)util_now_ns(CLOCK_MONOTONIC);
	err = proc_capture(s, p);
	if (err && (!placeholder || err == -ESRCH || err == -ENOMEM))
		goto err_free;
	ret = err;
	p->placeholder = err != 0;
	proc_remove(s, pid);
	err = util_grow((void **)&s->procs, &s->cap_procs, s->nr_procs + 1, sizeof(*s->procs));
	if (err)
		goto err_free;
	i = proc_index(s, pid, &found);
	memmove(&s->procs[i + 1], &s->procs[i], (s->nr_procs - i) * sizeof(*s->procs));
	s->procs[i] = p;
	s->nr_procs++;
	return ret;
err_free:
	proc_free(p);
	return err;
}

/* ---- public API ---- */

int symbolizer_new(struct symbolizer **ret_sym)
{
	struct symbolizer *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	*ret_sym = s;
	return 0;
}

void symbolizer_free(struct symbolizer *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nr_procs; i++)
		proc_free(s->procs[i]);
	free(s->procs);
	for (size_t i = 0; i < s->nr_mods; i++)
		module_free(s->mods[i]);
	free(s->mods);
	module_free(s->vdso);
	ksyms_free(s->ks);
	free(s);
}

static int track(struct symbolizer *s, pid_t pid, bool placeholder)
{
	uint64_t start_time;
	struct proc *p;
	int err;

	err = procmaps_start_time(pid, &start_time);
	if (err)
		return err;
	p = proc_find(s, pid);
	if (p && p->start_time == start_time && !p->placeholder)
		return 0;
	return proc_add(s, pid, start_time, placeholder);
}

int symbolizer_track(struct symbolizer *s, pid_t pid)
{
	return track(s, pid, false);
}

int symbolizer_refresh(struct symbolizer *s, pid_t pid)
{
	uint64_t start_time;
	struct proc *p;
	int err;

	p = proc_find(s, pid);
	err = procmaps_start_time(pid, &start_time);
	if (err) {
		if (p && err == -ESRCH)
			p->gone = true;
		return err;
	}
	if (!p || p->start_time != start_time)
		return proc_add(s, pid, start_time, false);
	p->last_refresh_ns = (uint64_t)util_now_ns(CLOCK_MONOTONIC);
	err = proc_capture(s, p);
	if (err == -ESRCH)
		p->gone = true;
	else if (!err)
		p->placeholder = false;
	return err;
}

int symbolizer_start_time(struct symbolizer *s, pid_t pid, uint64_t *ret_ticks)
{
	struct proc *p = proc_find(s, pid);

	if (!p)
		return -ENOENT;
	*ret_ticks = p->start_time;
	return 0;
}

bool symbolizer_holds(struct symbolizer *s, pid_t pid, uint64_t start_time)
{
	struct proc *p = proc_find(s, pid);

	if (p && p->start_time == start_time)
		return true;
	(void)symbolizer_track(s, pid);
	p = proc_find(s, pid);
	return p && p->start_time == start_time;
}

void symbolizer_forget(struct symbolizer *s, pid_t pid)
{
	proc_remove(s, pid);
}

static const struct pmap *pmap_find(const struct proc *p, uint64_t pc)
{
	size_t lo = 0, hi = p->nr_maps;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->maps[mid].end <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < p->nr_maps && p->maps[lo].start <= pc)
		return &p->maps[lo];
	return NULL;
}

static void fill_unknown(struct sym_info *ret, const char *module)
{
	memset(ret, 0, sizeof(*ret));
	ret->name = UNKNOWN;
	ret->module = module;
}

int symbolizer_user(struct symbolizer *s, pid_t pid, uint64_t pc, struct sym_info *ret)
{
	const struct pmap *m;
	const char *name = NULL;
	uint64_t off, vaddr;
	struct proc *p;
	char buf[PATH_MAX + 32];
	int err;

	s->lookups++;
	p = proc_find(s, pid);
	if (!p) {
		err = track(s, pid, true);
		p = proc_find(s, pid);
		if (!p) {
			s->misses++;
			fill_unknown(ret, UNKNOWN);
			return err ? err : -ESRCH;
		}
	}
	m = pmap_find(p, pc);
	if (!m && !p->gone && (uint64_t)util_now_ns(CLOCK_MONOTONIC) - p->last_refresh_ns >= REFRESH_INTERVAL_NS) {
		(void)symbolizer_refresh(s, pid);
		p = proc_find(s, pid);
		m = p ? pmap_find(p, pc) : NULL;
	}
	if (!m) {
		s->misses++;
		fill_unknown(ret, UNKNOWN);
		return 0;
	}
	ret->module = m->path;
	ret->build_id = m->mod && m->mod->build_id[0] ? m->mod->build_id : NULL;
	ret->map_start = m->start;
	ret->map_end = m->end;
	ret->map_pgoff = m->pgoff;
	off = pc - m->start + m->pgoff;
	if (m->mod && m->mod->es && elfsyms_off_to_vaddr(m->mod->es, off, &vaddr))
		name = elfsyms_lookup(m->mod->es, vaddr, NULL);
	ret->known = name != NULL;
	if (name) {
		ret->name = name;
		return 0;
	}
	if (m->kind == PMAP_ANON) {
		/* JIT code: the process may describe it in /tmp/perf-PID.map (perf's convention,
		 * used by Python 3.12+'s perf trampolines, the JVM's perf-map-agent, V8, ...).
		 * Names are copied into the process's strings: a map reload must not free them. */
		if (!p->pm_tried) {
			p->pm_tried = true;
			(void)perfmap_open_pid(pid, &p->pm);
		}
		name = p->pm ? perfmap_lookup(p->pm, pc, NULL) : NULL;
		ret->name = name ? strset_intern(&p->strs, name) : NULL;
		ret->known = ret->name != NULL;
		if (ret->known)
			return 0;
		s->misses++;
		ret->name = UNKNOWN;
		return 0;
	}
	s->misses++;
	snprintf(buf, sizeof(buf), "%s+0x%" PRIx64, m->base, off);
	ret->name = strset_intern(&p->strs, buf);
	if (!ret->name)
		ret->name = m->base;
	return 0;
}

int symbolizer_load_kernel(struct symbolizer *s)
{
	if (!s->ks_tried) {
		s->ks_tried = true;
		s->ks_err = ksyms_load("/proc/kallsyms", &s->ks);
	}
	return s->ks_err;
}

int symbolizer_kernel(struct symbolizer *s, uint64_t pc, struct sym_info *ret)
{
	const char *name;

	s->lookups++;
	(void)symbolizer_load_kernel(s);
	memset(ret, 0, sizeof(*ret));
	ret->module = KERNEL_MODULE;
	if (s->ks_err) {
		s->misses++;
		ret->name = "[kernel]";
		return -ENOENT;
	}
	name = ksyms_lookup(s->ks, pc, NULL);
	ret->known = name != NULL;
	ret->name = name ? name : UNKNOWN;
	if (!name)
		s->misses++;
	return 0;
}

void symbolizer_get_stats(const struct symbolizer *s, struct symbolizer_stats *ret_stats)
{
	memset(ret_stats, 0, sizeof(*ret_stats));
	ret_stats->lookups = s->lookups;
	ret_stats->misses = s->misses;
	ret_stats->processes = s->nr_procs;
	ret_stats->modules = s->nr_mods + (s->vdso ? 1 : 0);
}
