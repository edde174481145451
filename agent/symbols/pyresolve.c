/* pyresolve: CPython processes and their code objects (see pyresolve.h). */
#include "pyresolve.h"

#include <errno.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "log.h"
#include "pycode.h"
#include "pyline.h"

/* Per process: slots for cached code objects (open addressing, powers of two, doubled when
 * 3/4 full, cleared when full at the largest size) and line-table bytes held (cleared past
 * this). A busy service has a few thousand code objects; most tables are under 1 KiB. */
#define CODE_SLOTS_MIN 256
#define CODE_SLOTS_MAX 16384
#define CODE_TABLE_BYTES (4u << 20)

/* What the INTERP slot of a module holds: whether its file holds an interpreter, and where. */
struct pymod {
	int err;                 /* 0: an interpreter we read; -ENOENT: none; -ENOTSUP: refused */
	struct pyoffsets_elf pe;
	/* file offsets of _PyRuntime and the type objects (0: unknown) */
	uint64_t runtime_off, code_type_off, str_type_off, bytes_type_off;
};

struct code_entry {
	uint64_t addr;           /* 0: empty slot */
	uint32_t key;
	int32_t firstlineno;
	const char *name, *filename; /* interned in the process */
	uint8_t *linetable;
	uint32_t linetable_len;
	bool hidden;
};

/* What the INTERP slot of a process holds. */
struct pyproc {
	int err;                 /* as pymod.err; -ESRCH: the process's memory is unreadable */
	uint64_t gen;            /* the capture it was made from */
	struct pyresolve_proc info;
	struct pycode_types types;
	pid_t pid;
	struct code_entry *codes; /* cap slots, made at the first frame */
	size_t ncodes, cap;
	size_t table_bytes;
	uint64_t *live;          /* the resolver's count of described processes, while err is 0 */
};

struct pyresolve {
	struct proccache *pc;
	struct pyresolve_stats stats;
};

/* ---- modules ---- */

/* The file offset of virtual address vaddr (in a PT_LOAD's file part), 0 when none. */
static uint64_t file_offset(Elf *e, uint64_t vaddr)
{
	size_t n;

	if (!vaddr || elf_getphdrnum(e, &n))
		return 0;
	for (size_t i = 0; i < n && i < 256; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (vaddr >= ph.p_vaddr && vaddr - ph.p_vaddr < ph.p_filesz)
			return vaddr - ph.p_vaddr + ph.p_offset;
	}
	return 0;
}

/* Cheap test first: CPython 3.10+ puts _PyRuntime in its own section. */
static bool has_runtime_section(Elf *e)
{
	Elf_Scn *scn = NULL;
	size_t shstrndx;

	if (elf_getshdrstrndx(e, &shstrndx))
		return false;
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		const char *name;

		if (!gelf_getshdr(scn, &sh))
			continue;
		name = elf_strptr(e, shstrndx, sh.sh_name);
		if (name && !strcmp(name, ".PyRuntime"))
			return true;
	}
	return false;
}

static void load_module(void *ctx, struct proccache_module *m, int fd, const char *root)
{
	struct pymod *pm;
	Elf *e;

	(void)ctx;
	(void)root;
	if (fd < 0)
		return; /* the vDSO */
	e = elf_begin(fd, ELF_C_READ, NULL); /* pread, no mapping: see proccache.h */
	if (!e)
		return;
	if (elf_kind(e) != ELF_K_ELF || !has_runtime_section(e)) {
		elf_end(e);
		return;
	}
	pm = calloc(1, sizeof(*pm));
	if (!pm) {
		elf_end(e);
		return;
	}
	pm->err = pyoffsets_from_elf(e, m->path, &pm->pe);
	if (pm->err == -EINVAL)
		pm->err = -ENOTSUP;
	if (!pm->err) {
		pm->runtime_off = file_offset(e, pm->pe.runtime_addr);
		pm->code_type_off = file_offset(e, pm->pe.code_type_addr);
		pm->str_type_off = file_offset(e, pm->pe.str_type_addr);
		pm->bytes_type_off = file_offset(e, pm->pe.bytes_type_addr);
		if (!pm->runtime_off)
			pm->err = -ENOTSUP;
	}
	elf_end(e);
	proccache_slot_set(&m->slots[PROCCACHE_SLOT_INTERP], pm, free);
}

/* ---- processes ---- */

static void free_pyproc(void *data)
{
	struct pyproc *pp = data;

	if (!pp)
		return;
	if (!pp->err && pp->live)
		(*pp->live)--;
	for (size_t i = 0; pp->codes && i < pp->cap; i++)
		free(pp->codes[i].linetable);
	free(pp->codes);
	free(pp);
}

/* The runtime address of file offset off of module mod in p, 0 when not mapped. */
static uint64_t runtime_address(const struct proccache_proc *p, const struct proccache_module *mod,
				uint64_t off)
{
	if (!off)
		return 0;
	for (size_t i = 0; i < p->nr_maps; i++) {
		const struct proccache_map *m = &p->maps[i];

		if (m->mod == mod && off >= m->pgoff && off - m->pgoff < m->end - m->start)
			return m->start + (off - m->pgoff);
	}
	return 0;
}

static void describe(struct pyresolve *r, struct proccache_proc *p, struct pyproc *pp,
		     const struct pyproc *old)
{
	pp->err = -ENOENT;
	for (size_t i = 0; i < p->nr_maps; i++) {
		const struct proccache_map *m = &p->maps[i];
		const struct pymod *pm = m->mod ? m->mod->slots[PROCCACHE_SLOT_INTERP].data : NULL;

		if (!pm || pm->err == -ENOENT)
			continue;
		if (pm->err) {
			pp->err = pm->err;
			if (old && old->err == pm->err)
				return; /* said and counted at an earlier capture */
			r->stats.refused++;
			log_debug("python: pid %d: %s is an interpreter build Ember does not read "
				  "(debug, free-threaded or unknown version): native stacks only",
				  (int)p->pid, m->path);
			return;
		}
		pp->info.off = pm->pe.off;
		pp->info.runtime = runtime_address(p, m->mod, pm->runtime_off);
		pp->info.module = m->path;
		pp->types.code = runtime_address(p, m->mod, pm->code_type_off);
		pp->types.str = runtime_address(p, m->mod, pm->str_type_off);
		pp->types.bytes = runtime_address(p, m->mod, pm->bytes_type_off);
		if (!pp->info.runtime)
			continue; /* the data segment is not mapped (yet) */
		pp->err = 0;
		if (!p->gone && (!old || old->err))
			log_debug("python: pid %d: CPython %u.%u in %s, _PyRuntime at 0x%llx", (int)p->pid,
			  pp->info.off.version_hex >> 24, (pp->info.off.version_hex >> 16) & 0xff,
			  m->path, (unsigned long long)pp->info.runtime);
		return;
	}
}

/* The process's state, made or remade for its current capture. */
static struct pyproc *get_proc(struct pyresolve *r, pid_t pid)
{
	struct proccache_proc *p = proccache_find(r->pc, pid);
	struct pyproc *pp, *old;

	if (!p)
		return NULL;
	old = p->slots[PROCCACHE_SLOT_INTERP].data;
	if (old && old->gen == p->gen)
		return old;
	pp = calloc(1, sizeof(*pp));
	if (!pp)
		return NULL;
	pp->gen = p->gen;
	pp->pid = pid;
	describe(r, p, pp, old);
	if (!pp->err) {
		pp->live = &r->stats.processes;
		r->stats.processes++;
		/* A new capture of the same interpreter (a dlopen, a re-read at exit): the code
		 * objects read so far stay, the keys still guard every use. */
		if (old && !old->err && old->info.runtime == pp->info.runtime &&
		    old->info.off.version_hex == pp->info.off.version_hex) {
			pp->codes = old->codes;
			pp->ncodes = old->ncodes;
			pp->cap = old->cap;
			pp->table_bytes = old->table_bytes;
			old->codes = NULL;
		}
	}
	proccache_slot_set(&p->slots[PROCCACHE_SLOT_INTERP], pp, free_pyproc);
	return pp;
}

int pyresolve_process(struct pyresolve *r, pid_t pid, const struct pyresolve_proc **ret)
{
	struct pyproc *pp = get_proc(r, pid);

	if (!pp)
		return -ESRCH;
	if (pp->err)
		return pp->err;
	*ret = &pp->info;
	return 0;
}

/* ---- code objects ---- */

static int read_mem(void *ctx, uint64_t addr, void *buf, size_t len)
{
	const struct pyproc *pp = ctx;
	struct iovec local = { .iov_base = buf, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)addr, .iov_len = len };
	ssize_t n;

	if (len > PYLINE_MAX_TABLE)
		return -E2BIG;
	n = process_vm_readv(pp->pid, &local, 1, &remote, 1, 0);
	if (n < 0)
		return errno == ESRCH ? -ESRCH : -EFAULT;
	return (size_t)n == len ? 0 : -EFAULT;
}

static uint64_t u64_at(const uint8_t *b, uint32_t off)
{
	uint64_t v = 0;

	if (off != PYOFF_NONE && off + 8 <= EMBER_PY_CODE_READ)
		memcpy(&v, b + off, 8);
	return v;
}

/* The key of the code object at addr now, as BPF computes it (ember_py_code_key()). */
static int current_key(struct pyproc *pp, uint64_t addr, uint32_t *ret)
{
	const struct pyoffsets *o = &pp->info.off;
	uint8_t b[EMBER_PY_CODE_READ];
	uint32_t first = 0;
	int err;

	err = read_mem(pp, addr, b, sizeof(b));
	if (err)
		return err;
	if (o->code_firstlineno + 4 <= sizeof(b))
		memcpy(&first, b + o->code_firstlineno, 4);
	*ret = ember_py_code_key(first, u64_at(b, o->code_filename), u64_at(b, o->code_name),
				 u64_at(b, o->code_qualname), u64_at(b, o->code_linetable));
	return 0;
}

static void clear_codes(struct pyproc *pp)
{
	for (size_t i = 0; i < pp->cap; i++) {
		free(pp->codes[i].linetable);
		pp->codes[i] = (struct code_entry){ 0 };
	}
	pp->ncodes = 0;
	pp->table_bytes = 0;
}

static size_t code_slot(uint64_t addr, size_t cap)
{
	return (size_t)((addr >> 4) * 0x9e3779b97f4a7c15ULL >> 40) & (cap - 1);
}

static struct code_entry *find_code(struct pyproc *pp, uint64_t addr, bool *ret_found)
{
	size_t i = code_slot(addr, pp->cap);

	while (pp->codes[i].addr && pp->codes[i].addr != addr)
		i = (i + 1) & (pp->cap - 1);
	*ret_found = pp->codes[i].addr == addr;
	return &pp->codes[i];
}

/* Room for one more entry: the table doubled, or emptied at its largest. 0 or -ENOMEM. */
static int make_room(struct pyproc *pp, size_t table_len)
{
	struct code_entry *old = pp->codes, *nc;
	size_t ocap = pp->cap, ncap;

	if (pp->table_bytes + table_len > CODE_TABLE_BYTES)
		clear_codes(pp);
	if (pp->ncodes + 1 <= pp->cap * 3 / 4)
		return 0;
	if (pp->cap >= CODE_SLOTS_MAX) {
		clear_codes(pp);
		return 0;
	}
	ncap = pp->cap * 2;
	nc = calloc(ncap, sizeof(*nc));
	if (!nc)
		return -ENOMEM;
	pp->codes = nc;
	pp->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		bool found;

		if (old[i].addr)
			*find_code(pp, old[i].addr, &found) = old[i];
	}
	free(old);
	return 0;
}

/* Interpreter helpers that CPython's own tracebacks never show. */
static bool helper_frame(const struct pycode_info *ci)
{
	if (!strcmp(ci->filename, "<shim>"))
		return true; /* 3.12 <interpreter trampoline> */
	return ci->firstlineno <= 0 && !strcmp(ci->filename, "__init__") &&
	       !strcmp(ci->name, "__init__"); /* 3.13 _Py_InitCleanup */
}

static int load_code(struct pyresolve *r, struct proccache_proc *p, struct pyproc *pp,
		     uint64_t addr, uint32_t want_key, struct code_entry **ret)
{
	struct pycode_info ci;
	struct code_entry *ce;
	uint32_t key;
	bool found;
	int err;

	err = current_key(pp, addr, &key);
	if (err)
		return err;
	if (want_key && key != want_key)
		return -ESTALE;
	err = pycode_resolve(read_mem, pp, &pp->info.off, &pp->types, addr, &ci);
	if (err)
		return err;
	err = make_room(pp, ci.linetable_len);
	if (err) {
		pycode_info_fini(&ci);
		return err;
	}
	ce = find_code(pp, addr, &found);
	free(ce->linetable);
	if (!found)
		pp->ncodes++;
	*ce = (struct code_entry){
		.addr = addr,
		.key = key,
		.firstlineno = ci.firstlineno,
		.name = proccache_intern(p, ci.qualname),
		.filename = proccache_intern(p, ci.filename),
		.linetable = ci.linetable,
		.linetable_len = (uint32_t)ci.linetable_len,
		.hidden = helper_frame(&ci),
	};
	pp->table_bytes += ci.linetable_len;
	ci.linetable = NULL; /* now the entry's */
	pycode_info_fini(&ci);
	if (!ce->name || !ce->filename) {
		/* the process holds too many strings: do not cache a frame without names */
		free(ce->linetable);
		*ce = (struct code_entry){ 0 };
		pp->ncodes--;
		return -ENOMEM;
	}
	r->stats.resolved++;
	*ret = ce;
	return 0;
}

int pyresolve_frame(struct pyresolve *r, pid_t pid, const struct ember_py_frame *f,
		    struct pyresolve_frame *ret)
{
	uint64_t addr = f->code & EMBER_PYF_ADDR_MASK, instr;
	struct proccache_proc *p;
	struct code_entry *ce;
	struct pyproc *pp;
	int32_t boff, line;
	bool found;
	int err;

	pp = get_proc(r, pid);
	if (!pp || pp->err)
		return -ENOENT;
	p = proccache_find(r->pc, pid);
	if (!pp->codes) {
		pp->cap = CODE_SLOTS_MIN;
		pp->codes = calloc(pp->cap, sizeof(*pp->codes));
		if (!pp->codes)
			return -ENOMEM;
	}
	if ((f->code & EMBER_PYF_MARKER) || !addr)
		return -EINVAL;
	ce = find_code(pp, addr, &found);
	if (found && (!f->key || ce->key == f->key)) {
		r->stats.cache_hits++;
	} else {
		err = load_code(r, p, pp, addr, f->key, &ce);
		if (err == -ESTALE) {
			r->stats.stale++;
			return err;
		}
		if (err) {
			r->stats.unreadable++;
			log_debug("python: pid %d: code object at 0x%llx: %s", (int)pid,
				  (unsigned long long)addr, strerror(-err));
			return err;
		}
	}
	ret->name = ce->name;
	ret->filename = ce->filename;
	ret->start_line = pyline_start_line(ce->firstlineno);
	ret->hidden = ce->hidden;
	ret->line = 0;
	if (f->instr == INT32_MIN)
		return 0;
	instr = pp->info.off.instr_kind == PYOFF_INSTR_LASTI ? (uint64_t)(int64_t)f->instr
							      : addr + (uint64_t)(int64_t)f->instr;
	if (pycode_instr_offset(&pp->info.off, addr, instr, &boff))
		return 0;
	if (pyline_addr2line(pp->info.off.line_format, ce->linetable, ce->linetable_len,
			     ce->firstlineno, boff, &line) == 0 && line > 0)
		ret->line = line;
	return 0;
}

/* ---- lifecycle ---- */

int pyresolve_new(struct proccache *pc, struct pyresolve **ret)
{
	struct pyresolve *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->pc = pc;
	proccache_set_loader(pc, PROCCACHE_SLOT_INTERP, load_module, r);
	*ret = r;
	return 0;
}

void pyresolve_free(struct pyresolve *r)
{
	struct proccache_proc *p;

	if (!r)
		return;
	proccache_set_loader(r->pc, PROCCACHE_SLOT_INTERP, NULL, NULL);
	/* The processes' states outlive the resolver (the cache goes later): they must not
	 * count down into it. */
	for (size_t i = 0; (p = proccache_proc_at(r->pc, i)); i++) {
		struct pyproc *pp = p->slots[PROCCACHE_SLOT_INTERP].data;

		if (pp)
			pp->live = NULL;
	}
	free(r);
}

void pyresolve_get_stats(const struct pyresolve *r, struct pyresolve_stats *ret)
{
	*ret = r->stats;
}
