/* proccache: see proccache.h.
 *
 * Shape: processes live in an array sorted by pid (binary search, plus a one-entry cache for
 * the frames of one stack), each with all its mappings sorted by address and the list of
 * modules it holds. Modules live in one array, found at capture time by file identity, so a
 * per-sample lookup makes no syscall.
 *
 * Choices the header leaves open:
 * - a module is made only for files mapped executable (the other mappings of such a file point
 *   to it too); data files, fonts and locale archives are never opened;
 * - a re-read reuses the previous capture's module for a mapping of the same path, device and
 *   inode without opening the file again;
 * - the vDSO is read from our own process (same kernel, same ABI);
 * - a module no process holds is dropped once PROCCACHE_MAX_MODULES are cached. */
#include "proccache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "elfsyms.h"
#include "log.h"
#include "procmaps.h"
#include "strset.h"
#include "util.h"

/* Unreferenced modules are dropped once the cache holds this many. */
#define PROCCACHE_MAX_MODULES 1024
/* Interned strings per process. */
#define PROC_MAX_STRINGS 65536
#define PROC_MAX_STRING_BYTES (16u << 20) /* paths and names of one process */
/* An address outside every mapping re-reads the maps at most this often per process. */
#define REFRESH_INTERVAL_NS 1000000000ull

/* Open-addressing set of strings, owned. */
struct proccache {
	unsigned int refcount;
	struct proccache_proc **procs; /* sorted by pid */
	size_t nr_procs, cap_procs;
	struct proccache_proc *last;
	struct proccache_module **mods;
	size_t nr_mods, cap_mods;
	struct proccache_module *vdso;
	bool vdso_tried;
	struct {
		proccache_load_fn fn;
		void *ctx;
	} loaders[PROCCACHE_SLOT_MAX];
	uint64_t module_opens, captures;
};

/* ---- strings ---- */

const char *proccache_intern(struct proccache_proc *p, const char *str)
{
	if (!p->strs && strset_new(PROC_MAX_STRINGS, PROC_MAX_STRING_BYTES, &p->strs))
		return NULL;
	return strset_intern_str(p->strs, str);
}

/* ---- slots ---- */

static void slot_fini(struct proccache_slot *s)
{
	if (s->data && s->free)
		s->free(s->data);
	memset(s, 0, sizeof(*s));
}

void proccache_slot_set(struct proccache_slot *s, void *data, void (*free_fn)(void *))
{
	slot_fini(s);
	s->data = data;
	s->free = free_fn;
	s->tried = true;
}

/* ---- modules ---- */

static void module_free(struct proccache_module *m)
{
	if (!m)
		return;
	for (int i = 0; i < PROCCACHE_SLOT_MAX; i++)
		slot_fini(&m->slots[i]);
	if (m->elf)
		elf_end(m->elf);
	free(m->image);
	free(m->path);
	free(m->root);
	free(m);
}

Elf *proccache_module_elf(struct proccache_module *m)
{
	if (m->elf_tried)
		return m->elf;
	m->elf_tried = true;
	if (!m->image)
		return NULL;
	elffile_init();
	m->elf = elf_memory((char *)m->image, m->image_size);
	if (m->elf && elf_kind(m->elf) != ELF_K_ELF) {
		elf_end(m->elf);
		m->elf = NULL;
	}
	return m->elf;
}

static void module_load_slots(struct proccache *pc, struct proccache_module *m, int fd)
{
	for (int i = 0; i < PROCCACHE_SLOT_MAX; i++)
		if (pc->loaders[i].fn)
			pc->loaders[i].fn(pc->loaders[i].ctx, m, fd, m->root);
}

/* Drops modules no process holds, once the cache is full. */
static void modules_trim(struct proccache *pc)
{
	size_t out = 0;

	if (pc->nr_mods < PROCCACHE_MAX_MODULES)
		return;
	for (size_t i = 0; i < pc->nr_mods; i++) {
		if (!pc->mods[i]->refs)
			module_free(pc->mods[i]);
		else
			pc->mods[out++] = pc->mods[i];
	}
	pc->nr_mods = out;
}

/* The module of the file open on fd, from the cache or made now. */
static int module_get(struct proccache *pc, int fd, const char *path, const char *root,
		      struct proccache_module **ret_mod)
{
	struct proccache_module *m;
	struct stat st;
	int err;

	if (fstat(fd, &st))
		return -errno;
	for (size_t i = 0; i < pc->nr_mods; i++) {
		m = pc->mods[i];
		if (m->dev == st.st_dev && m->ino == st.st_ino && m->size == st.st_size &&
		    m->mtime.tv_sec == st.st_mtim.tv_sec && m->mtime.tv_nsec == st.st_mtim.tv_nsec) {
			*ret_mod = m;
			return 0;
		}
	}

	modules_trim(pc);
	err = util_grow((void **)&pc->mods, &pc->cap_mods, pc->nr_mods + 1, sizeof(*pc->mods));
	if (err)
		return err;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	m->size = st.st_size;
	m->mtime = st.st_mtim;
	m->path = strdup(path);
	m->root = strdup(root);
	if (!m->path || !m->root) {
		module_free(m);
		return -ENOMEM;
	}
	/* No view of the file is kept: its owner may truncate it at any time, and a mapping of
	 * it (shared or private) would then fault (SIGBUS) at the next read. The loaders copy
	 * what they need while fd is open. */
	if (elfsyms_read_build_id(fd, m->build_id, sizeof(m->build_id)))
		m->build_id[0] = '\0';
	pc->module_opens++;
	/* an unreadable file stays cached as it is: it is not read again */
	module_load_slots(pc, m, fd);
	pc->mods[pc->nr_mods++] = m;
	*ret_mod = m;
	return 0;
}

/* The vDSO is the same image for every process of this kernel (and ABI): read ours. */
static struct proccache_module *vdso_get(struct proccache *pc)
{
	struct proccache_module *m;
	uint64_t base;
	size_t size;

	if (pc->vdso_tried)
		return pc->vdso;
	pc->vdso_tried = true;
	if (procmaps_self_vdso(&base, &size))
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->vdso = true;
	m->image = malloc(size);
	m->path = strdup("[vdso]");
	m->root = strdup("/");
	if (!m->image || !m->path || !m->root) {
		module_free(m);
		return NULL;
	}
	memcpy(m->image, (const void *)(uintptr_t)base, size);
	m->image_size = size;
	if (!proccache_module_elf(m) || elffile_build_id(m->elf, m->build_id, sizeof(m->build_id)))
		m->build_id[0] = '\0';
	module_load_slots(pc, m, -1);
	m->refs = 1; /* held by the cache, never trimmed */
	pc->vdso = m;
	return m;
}

/* ---- processes ---- */

static void release_mods(struct proccache_module **mods, size_t nr)
{
	for (size_t i = 0; i < nr; i++)
		mods[i]->refs--;
	free(mods);
}

static void proc_free(struct proccache_proc *p)
{
	if (!p)
		return;
	for (int i = 0; i < PROCCACHE_SLOT_MAX; i++)
		slot_fini(&p->slots[i]);
	release_mods(p->mods, p->nr_mods);
	free(p->maps);
	strset_free(p->strs);
	free(p);
}

static int hold_mod(struct proccache_module ***mods, size_t *nr, size_t *cap,
		    struct proccache_module *m)
{
	int err;

	for (size_t i = 0; i < *nr; i++)
		if ((*mods)[i] == m)
			return 0;
	err = util_grow((void **)mods, cap, *nr + 1, sizeof(**mods));
	if (err)
		return err;
	(*mods)[(*nr)++] = m;
	m->refs++;
	return 0;
}

static bool same_file(const struct procmaps_entry *a, const struct procmaps_entry *b)
{
	return a->inode == b->inode && a->dev_major == b->dev_major && a->dev_minor == b->dev_minor;
}

/* The module of the previous capture for this mapping's file (same path, device, inode). */
static struct proccache_module *prev_module(const struct proccache_proc *p,
					    const struct procmaps_entry *e)
{
	for (size_t i = 0; i < p->nr_maps; i++) {
		const struct proccache_map *m = &p->maps[i];

		if (m->mod && !m->vdso && m->mod->ino == e->inode &&
		    major(m->mod->dev) == e->dev_major && minor(m->mod->dev) == e->dev_minor &&
		    !strcmp(m->path, e->path))
			return m->mod;
	}
	return NULL;
}

static int proc_capture(struct proccache *pc, struct proccache_proc *p)
{
	struct procmaps_entry *ents = NULL;
	struct proccache_map *maps = NULL;
	struct proccache_module **mods = NULL;
	size_t nr_ents = 0, nr_mods = 0, cap_mods = 0;
	char root[64];
	int err;

	pc->captures++;
	p->last_refresh_ns = (uint64_t)util_now_ns(CLOCK_MONOTONIC);
	p->stale = false; /* a failed re-read is not tried again at every use */
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
	maps = calloc(nr_ents, sizeof(*maps));
	if (!maps) {
		err = -ENOMEM;
		goto out;
	}
	/* executable mappings first: they decide which files are modules */
	for (size_t i = 0; i < nr_ents; i++) {
		const struct procmaps_entry *e = &ents[i];
		struct proccache_map *m = &maps[i];

		m->start = e->start;
		m->end = e->end;
		m->pgoff = e->pgoff;
		m->exec = e->exec;
		m->path = proccache_intern(p, e->path);
		if (!m->path)
			m->path = "[unknown]"; /* out of strings: the maps still serve */
		if (!strcmp(e->path, "[vdso]")) {
			m->vdso = true;
			m->mod = vdso_get(pc);
		} else if (e->exec && e->inode && e->path[0] == '/') {
			for (size_t j = 0; j < i && !m->mod; j++)
				if (maps[j].mod && ents[j].exec && same_file(&ents[j], e))
					m->mod = maps[j].mod;
			if (!m->mod && !e->deleted)
				m->mod = prev_module(p, e);
			if (!m->mod) {
				int fd = procmaps_open_file(p->pid, e);

				if (fd >= 0) {
					err = module_get(pc, fd, e->path, root, &m->mod);
					close(fd);
					if (err)
						goto out;
				}
			}
		}
		if (m->mod) {
			err = hold_mod(&mods, &nr_mods, &cap_mods, m->mod);
			if (err)
				goto out;
		}
	}
	/* the other mappings of those files (.eh_frame_hdr sits in a read-only segment) */
	for (size_t i = 0; i < nr_ents; i++) {
		if (ents[i].exec || !ents[i].inode || ents[i].path[0] != '/')
			continue;
		for (size_t j = 0; j < nr_ents && !maps[i].mod; j++)
			if (ents[j].exec && maps[j].mod && same_file(&ents[j], &ents[i]))
				maps[i].mod = maps[j].mod;
	}
	release_mods(p->mods, p->nr_mods);
	p->mods = mods;
	p->nr_mods = nr_mods;
	p->cap_mods = cap_mods;
	mods = NULL;
	free(p->maps);
	p->maps = maps;
	p->nr_maps = nr_ents;
	maps = NULL;
	p->gen++;
	p->placeholder = false;
out:
	if (mods)
		release_mods(mods, nr_mods);
	free(maps);
	procmaps_free(ents, nr_ents);
	return err;
}

static size_t proc_index(const struct proccache *pc, pid_t pid, bool *ret_found)
{
	size_t lo = 0, hi = pc->nr_procs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (pc->procs[mid]->pid < pid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*ret_found = lo < pc->nr_procs && pc->procs[lo]->pid == pid;
	return lo;
}

struct proccache_proc *proccache_find(struct proccache *pc, pid_t pid)
{
	bool found;
	size_t i;

	if (pc->last && pc->last->pid == pid)
		return pc->last;
	i = proc_index(pc, pid, &found);
	if (!found)
		return NULL;
	pc->last = pc->procs[i];
	return pc->last;
}

static void proc_remove(struct proccache *pc, pid_t pid)
{
	bool found;
	size_t i = proc_index(pc, pid, &found);

	if (!found)
		return;
	if (pc->last == pc->procs[i])
		pc->last = NULL;
	proc_free(pc->procs[i]);
	memmove(&pc->procs[i], &pc->procs[i + 1], (pc->nr_procs - i - 1) * sizeof(*pc->procs));
	pc->nr_procs--;
}

int proccache_get(struct proccache *pc, pid_t pid, uint64_t start_time, unsigned int holder,
		  bool placeholder, bool retry, struct proccache_proc **ret_p)
{
	struct proccache_proc *p;
	bool found;
	int err, ret;
	size_t i;

	if (!start_time && procmaps_start_time(pid, &start_time))
		start_time = 0; /* gone: an existing capture may still serve */
	p = proccache_find(pc, pid);
	if (p && (!start_time || p->start_time == start_time)) {
		err = 0;
		if (p->stale || (p->placeholder && retry))
			err = proccache_recapture(pc, p); /* keeps the old maps on failure */
		p->holders |= holder;
		*ret_p = p;
		return p->placeholder ? err : 0;
	}
	if (!start_time)
		return -ESRCH;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->pid = pid;
	p->start_time = start_time;
	err = proc_capture(pc, p);
	if (err && (!placeholder || err == -ESRCH || err == -ENOMEM))
		goto err_free;
	ret = err;
	p->placeholder = err != 0;
	proc_remove(pc, pid); /* the pid was reused */
	err = util_grow((void **)&pc->procs, &pc->cap_procs, pc->nr_procs + 1, sizeof(*pc->procs));
	if (err)
		goto err_free;
	i = proc_index(pc, pid, &found);
	memmove(&pc->procs[i + 1], &pc->procs[i], (pc->nr_procs - i) * sizeof(*pc->procs));
	pc->procs[i] = p;
	pc->nr_procs++;
	p->holders = holder;
	*ret_p = p;
	return ret;
err_free:
	proc_free(p);
	return err;
}

int proccache_recapture(struct proccache *pc, struct proccache_proc *p)
{
	int err = proc_capture(pc, p);

	if (err == -ESRCH)
		p->gone = true;
	return err;
}

bool proccache_miss_due(const struct proccache_proc *p)
{
	return !p->gone &&
	       (uint64_t)util_now_ns(CLOCK_MONOTONIC) - p->last_refresh_ns >= REFRESH_INTERVAL_NS;
}

void proccache_mark_stale(struct proccache *pc, pid_t pid)
{
	struct proccache_proc *p = proccache_find(pc, pid);

	if (p)
		p->stale = true;
}

void proccache_release(struct proccache *pc, pid_t pid, unsigned int holder)
{
	struct proccache_proc *p = proccache_find(pc, pid);

	if (!p)
		return;
	p->holders &= ~holder;
	if (!p->holders)
		proc_remove(pc, pid);
}

struct proccache_proc *proccache_proc_at(struct proccache *pc, size_t i)
{
	return i < pc->nr_procs ? pc->procs[i] : NULL;
}

const struct proccache_map *proccache_map_find(const struct proccache_proc *p, uint64_t addr)
{
	size_t lo = 0, hi = p->nr_maps;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->maps[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < p->nr_maps && p->maps[lo].start <= addr)
		return &p->maps[lo];
	return NULL;
}

/* ---- the cache ---- */

int proccache_new(struct proccache **ret_pc)
{
	struct proccache *pc = calloc(1, sizeof(*pc));

	if (!pc)
		return -ENOMEM;
	pc->refcount = 1;
	*ret_pc = pc;
	return 0;
}

struct proccache *proccache_ref(struct proccache *pc)
{
	if (pc)
		pc->refcount++;
	return pc;
}

void proccache_unref(struct proccache *pc)
{
	if (!pc || --pc->refcount)
		return;
	for (size_t i = 0; i < pc->nr_procs; i++)
		proc_free(pc->procs[i]);
	free(pc->procs);
	for (size_t i = 0; i < pc->nr_mods; i++)
		module_free(pc->mods[i]);
	free(pc->mods);
	module_free(pc->vdso);
	free(pc);
}

void proccache_set_loader(struct proccache *pc, enum proccache_slot_id slot, proccache_load_fn fn,
			  void *ctx)
{
	pc->loaders[slot].fn = fn;
	pc->loaders[slot].ctx = ctx;
}

void proccache_get_stats(const struct proccache *pc, struct proccache_stats *ret_stats)
{
	memset(ret_stats, 0, sizeof(*ret_stats));
	ret_stats->processes = pc->nr_procs;
	ret_stats->modules = pc->nr_mods + (pc->vdso ? 1 : 0);
	ret_stats->module_opens = pc->module_opens;
	ret_stats->captures = pc->captures;
}
