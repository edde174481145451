/* symbolizer: see symbolizer.h.
 *
 * Shape: the processes, their captured mappings and the modules are the proccache's; the
 * symbolizer keeps its symbol table in each module's SYMBOLS slot (loaded by the cache's loader
 * when the module is made, while the file is open: that is what keeps an exited or deleted
 * binary nameable later) and a process's perf map in the process's SYMBOLS slot. A per-sample
 * lookup makes no syscall. Strings handed out (paths, "module+0xoffset") are interned in the
 * process entry and freed with it; the symbolizer holds every entry it handed strings from
 * until symbolizer_forget().
 *
 * Choices the header leaves open:
 * - a PC in an anonymous executable mapping (JIT code, [vsyscall]) is named "[unknown]", with
 *   the maps name (or "[unknown]") as module; a file-backed one that no symbol covers is
 *   "basename+0x<file offset>";
 * - the vDSO is read from our own process (same kernel, same ABI): a 32-bit target's is not named;
 * - kernel module symbols report module "[kernel.kallsyms]" too; kallsyms is read once;
 * - a PC outside every mapping re-reads the maps at most once a second per process, never for
 *   a process seen gone; an exec or mmap seen by the unwinder (stale) re-reads at next use. */
#include "symbolizer.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "elffile.h"
#include "elfsyms.h"
#include "ksyms.h"
#include "log.h"
#include "perfmap.h"
#include "proccache.h"
#include "procmaps.h"
#include "util.h"

#define UNKNOWN "[unknown]"
#define KERNEL_MODULE "[kernel.kallsyms]"
#define HOLD PROCCACHE_HOLD_SYMBOLIZER

struct symbolizer {
	struct proccache *pc;
	struct ksyms *ks;
	int ks_err;
	bool ks_tried;
	uint64_t lookups, misses;
};

/* ---- the cache's symbol slots ---- */

static void free_elfsyms(void *es)
{
	elfsyms_free(es);
}

static void free_perfmap(void *pm)
{
	perfmap_free(pm);
}

/* Every new module: its symbol table, while the cache holds the file open. An unreadable file
 * stays cached without symbols: it is not parsed again. */
static void load_symbols(void *ctx, struct proccache_module *m, int fd, const char *root)
{
	struct elfsyms *es = NULL;
	int err;

	(void)ctx;
	if (fd >= 0)
		err = elfsyms_load_fd(fd, m->path, root, &es);
	else
		err = m->image ? elfsyms_load_mem(m->image, m->image_size, &es) : -ENOENT;
	if (err) {
		log_debug("symbolizer: %s: no symbols: %s", m->path, strerror(-err));
		es = NULL;
	}
	proccache_slot_set(&m->slots[PROCCACHE_SLOT_SYMBOLS], es, free_elfsyms);
}

/* ---- public API ---- */

int symbolizer_new(struct symbolizer **ret_sym)
{
	struct symbolizer *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	err = proccache_new(&s->pc);
	if (err) {
		free(s);
		return err;
	}
	proccache_set_loader(s->pc, PROCCACHE_SLOT_SYMBOLS, load_symbols, s);
	*ret_sym = s;
	return 0;
}

void symbolizer_free(struct symbolizer *s)
{
	struct proccache_proc *p;

	if (!s)
		return;
	/* the unwinder may hold the cache longer: leave it nothing of ours to call */
	proccache_set_loader(s->pc, PROCCACHE_SLOT_SYMBOLS, NULL, NULL);
	for (size_t i = 0; (p = proccache_proc_at(s->pc, i));) {
		if (p->holders & HOLD) {
			proccache_release(s->pc, p->pid, HOLD);
			if (proccache_proc_at(s->pc, i) != p)
				continue;
		}
		i++;
	}
	proccache_unref(s->pc);
	ksyms_free(s->ks);
	free(s);
}

struct proccache *symbolizer_cache(struct symbolizer *s)
{
	return s->pc;
}

static int track(struct symbolizer *s, pid_t pid, bool placeholder)
{
	struct proccache_proc *p;
	uint64_t start_time;
	int err;

	err = procmaps_start_time(pid, &start_time);
	if (err)
		return err;
	p = proccache_find(s->pc, pid);
	if (p && p->start_time == start_time && !p->placeholder) {
		p->holders |= HOLD;
		return 0;
	}
	return proccache_get(s->pc, pid, start_time, HOLD, placeholder, true, &p);
}

int symbolizer_track(struct symbolizer *s, pid_t pid)
{
	return track(s, pid, false);
}

int symbolizer_refresh(struct symbolizer *s, pid_t pid)
{
	struct proccache_proc *p;
	uint64_t start_time;
	int err;

	p = proccache_find(s->pc, pid);
	err = procmaps_start_time(pid, &start_time);
	if (err) {
		if (p && err == -ESRCH)
			p->gone = true;
		return err;
	}
	if (!p || p->start_time != start_time)
		return proccache_get(s->pc, pid, start_time, HOLD, false, true, &p);
	p->holders |= HOLD;
	return proccache_recapture(s->pc, p);
}

int symbolizer_start_time(struct symbolizer *s, pid_t pid, uint64_t *ret_ticks)
{
	struct proccache_proc *p = proccache_find(s->pc, pid);

	if (!p)
		return -ENOENT;
	*ret_ticks = p->start_time;
	return 0;
}

bool symbolizer_holds(struct symbolizer *s, pid_t pid, uint64_t start_time)
{
	struct proccache_proc *p = proccache_find(s->pc, pid);

	if (p && p->start_time == start_time)
		return true;
	(void)symbolizer_track(s, pid);
	p = proccache_find(s->pc, pid);
	return p && p->start_time == start_time;
}

void symbolizer_forget(struct symbolizer *s, pid_t pid)
{
	proccache_release(s->pc, pid, HOLD);
}

/* The executable mapping of p holding pc, or NULL. */
static const struct proccache_map *exec_map_find(const struct proccache_proc *p, uint64_t pc)
{
	const struct proccache_map *m = proccache_map_find(p, pc);

	return m && m->exec ? m : NULL;
}

static void fill_unknown(struct sym_info *ret, const char *module)
{
	memset(ret, 0, sizeof(*ret));
	ret->name = UNKNOWN;
	ret->module = module;
}

int symbolizer_user(struct symbolizer *s, pid_t pid, uint64_t pc, struct sym_info *ret)
{
	const struct proccache_map *m;
	struct proccache_slot *pms;
	const char *name = NULL, *base;
	struct proccache_proc *p;
	struct elfsyms *es;
	uint64_t off, vaddr;
	char buf[PATH_MAX + 32];
	int err;

	s->lookups++;
	p = proccache_find(s->pc, pid);
	if (!p) {
		err = track(s, pid, true);
		p = proccache_find(s->pc, pid);
		if (!p) {
			s->misses++;
			fill_unknown(ret, UNKNOWN);
			return err ? err : -ESRCH;
		}
	} else if (p->stale) {
		(void)proccache_recapture(s->pc, p); /* exec or mmap seen: keeps the old on failure */
	}
	p->holders |= HOLD; /* strings handed out live until symbolizer_forget() */
	m = exec_map_find(p, pc);
	if (!m && proccache_miss_due(p)) {
		(void)symbolizer_refresh(s, pid);
		p = proccache_find(s->pc, pid);
		m = p ? exec_map_find(p, pc) : NULL;
	}
	if (!m) {
		s->misses++;
		fill_unknown(ret, UNKNOWN);
		return 0;
	}
	ret->module = m->path[0] ? m->path : UNKNOWN;
	ret->build_id = m->mod && m->mod->build_id[0] ? m->mod->build_id : NULL;
	ret->map_start = m->start;
	ret->map_end = m->end;
	ret->map_pgoff = m->pgoff;
	off = pc - m->start + m->pgoff;
	es = m->mod ? m->mod->slots[PROCCACHE_SLOT_SYMBOLS].data : NULL;
	if (es && elfsyms_off_to_vaddr(es, off, &vaddr))
		name = elfsyms_lookup(es, vaddr, NULL);
	ret->known = name != NULL;
	if (name) {
		ret->name = name;
		return 0;
	}
	if (!m->mod && !m->vdso && m->path[0] != '/') {
		/* JIT code: the process may describe it in /tmp/perf-PID.map (perf's convention,
		 * used by Python 3.12+'s perf trampolines, the JVM's perf-map-agent, V8, ...).
		 * Names are copied into the process's strings: a map reload must not free them. */
		pms = &p->slots[PROCCACHE_SLOT_SYMBOLS];
		if (!pms->tried) {
			struct perfmap *pm = NULL;

			if (perfmap_open_pid(pid, &pm))
				pm = NULL;
			proccache_slot_set(pms, pm, free_perfmap);
		}
		name = pms->data ? perfmap_lookup(pms->data, pc, NULL) : NULL;
		ret->name = name ? proccache_intern(p, name) : NULL;
		ret->known = ret->name != NULL;
		if (ret->known)
			return 0;
		s->misses++;
		ret->name = UNKNOWN;
		return 0;
	}
	s->misses++;
	base = strrchr(ret->module, '/');
	base = base ? base + 1 : ret->module;
	snprintf(buf, sizeof(buf), "%s+0x%" PRIx64, base, off);
	ret->name = proccache_intern(p, buf);
	if (!ret->name)
		ret->name = base;
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
	struct elfsyms_counters ec;
	struct elffile_counters fc;
	struct perfmap_counters pc;
	struct proccache_stats cs;
	struct proccache_proc *p;

	memset(ret_stats, 0, sizeof(*ret_stats));
	ret_stats->lookups = s->lookups;
	ret_stats->misses = s->misses;
	for (size_t i = 0; (p = proccache_proc_at(s->pc, i)); i++)
		if (p->holders & HOLD)
			ret_stats->processes++;
	proccache_get_stats(s->pc, &cs);
	ret_stats->modules = cs.modules;
	ret_stats->module_opens = cs.module_opens;
	elfsyms_get_counters(&ec);
	elffile_get_counters(&fc);
	perfmap_get_counters(&pc);
	ret_stats->elf_symbols = ec.entries;
	ret_stats->elf_name_bytes = ec.name_bytes;
	ret_stats->elf_symbols_skipped = ec.entries_skipped;
	ret_stats->elf_name_bytes_skipped = ec.bytes_skipped;
	ret_stats->elf_sections_refused = fc.sections_refused;
	ret_stats->debug_refused_owner = fc.debug_refused_owner;
	ret_stats->debug_refused_files = fc.debug_refused_files;
	ret_stats->perfmap_entries = pc.entries;
	ret_stats->perfmap_name_bytes = pc.name_bytes;
	ret_stats->perfmap_refused_files = pc.refused_files;
	ret_stats->perfmap_refused_owner = pc.refused_owner;
	ret_stats->perfmap_entries_skipped = pc.entries_skipped;
	ret_stats->perfmap_bytes_skipped = pc.bytes_skipped;
	ret_stats->perfmap_bytes_read = pc.bytes_read;
}
