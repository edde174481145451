/* elfsyms: see elfsyms.h. */
#include "elfsyms.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "demangle.h"
#include "elffile.h"
#include "log.h"
#include "strset.h"

struct elfsym {
	uint64_t addr;
	uint64_t size;
	const char *name;    /* interned in es->names */
	bool demangle_tried;
	char *demangled;     /* malloc'ed, or NULL when not mangled */
};

/* Process-wide (atomics): what all tables hold now, and what the budgets refused. */
static struct {
	uint64_t entries, name_bytes;
	uint64_t entries_skipped, bytes_skipped;
} g;

void elfsyms_get_counters(struct elfsyms_counters *ret)
{
	ret->entries = __atomic_load_n(&g.entries, __ATOMIC_RELAXED);
	ret->name_bytes = __atomic_load_n(&g.name_bytes, __ATOMIC_RELAXED);
	ret->entries_skipped = __atomic_load_n(&g.entries_skipped, __ATOMIC_RELAXED);
	ret->bytes_skipped = __atomic_load_n(&g.bytes_skipped, __ATOMIC_RELAXED);
}

struct load_seg {
	uint64_t offset, vaddr, filesz, memsz;
};

struct elfsyms {
	struct elfsym *syms;
	size_t nr;
	struct strset *names; /* each distinct name once, within the budgets */
	size_t names_counted; /* bytes of it counted in g.name_bytes */
	struct load_seg *segs;
	size_t nr_segs;
	char build_id[ELFSYMS_BUILD_ID_MAX];
	char *debug_path;
	void *image; /* elfsyms_load_mem(): the copy libelf reads while loading */
};

/* A symbol while loading: the name points into libelf's data. */
struct raw_sym {
	uint64_t addr, size;
	const char *name;
	size_t name_len;
	uint32_t rank; /* 0 global, 1 weak, 2 local */
	uint32_t underscores; /* leading '_' count */
	uint32_t seq;  /* table order, keeps the sort stable */
};

struct len_slot {
	const char *p;
	uint32_t len;
};

struct raw_vec {
	struct raw_sym *v;
	size_t nr, cap;
	uint64_t skipped;
	uint64_t scanned;  /* name bytes read, against ELFSYMS_MAX_SCAN_BYTES */
	uint64_t strtab_bytes; /* sizes of the string tables walked */
	/* name lengths by the name's address: many symbols of one name are scanned once */
	struct len_slot *memo;
	size_t memo_nr, memo_cap;
};

static size_t memo_hash(const char *p, size_t mask)
{
	return (size_t)(((uintptr_t)p * 0x9e3779b97f4a7c15ull) >> 17) & mask;
}

/* The length of name up to its "@VERSION" and at most ELFSYMS_MAX_NAME; the bytes scanned are
 * counted once per distinct name address. Returns 0, -ENOSPC (scan budget spent), -ENOMEM. */
static int name_len(struct raw_vec *vec, const char *name, size_t *ret_len)
{
	const char *at;
	size_t i, n;

	if (vec->memo_nr * 2 >= vec->memo_cap) {
		size_t ncap = vec->memo_cap ? vec->memo_cap * 2 : 1024;
		struct len_slot *nm = calloc(ncap, sizeof(*nm));

		if (!nm)
			return -ENOMEM;
		for (size_t j = 0; j < vec->memo_cap; j++) {
			if (!vec->memo[j].p)
				continue;
			i = memo_hash(vec->memo[j].p, ncap - 1);
			while (nm[i].p)
				i = (i + 1) & (ncap - 1);
			nm[i] = vec->memo[j];
		}
		free(vec->memo);
		vec->memo = nm;
		vec->memo_cap = ncap;
	}
	i = memo_hash(name, vec->memo_cap - 1);
	while (vec->memo[i].p && vec->memo[i].p != name)
		i = (i + 1) & (vec->memo_cap - 1);
	if (vec->memo[i].p) {
		*ret_len = vec->memo[i].len;
		return 0;
	}
	if (vec->scanned >= ELFSYMS_MAX_SCAN_BYTES)
		return -ENOSPC;
	n = strnlen(name, ELFSYMS_MAX_NAME);
	vec->scanned += n;
	/* "memcpy@@GLIBC_2.14": the version is not part of the function's name */
	at = memchr(name, '@', n);
	if (at)
		n = (size_t)(at - name);
	vec->memo[i].p = name;
	vec->memo[i].len = (uint32_t)n;
	vec->memo_nr++;
	*ret_len = n;
	return 0;
}

/* libelf reports errors through elf_errno(): translated here, once. */
static int elf_err(const char *what)
{
	log_debug("elfsyms: %s: %s", what, elf_errmsg(-1));
	return -EINVAL;
}

static int raw_push(struct raw_vec *vec, const struct raw_sym *s)
{
	if (vec->nr == vec->cap) {
		size_t ncap = vec->cap ? vec->cap * 2 : 256;
		void *p;

		if (ncap > SIZE_MAX / sizeof(*vec->v))
			return -ENOMEM;
		p = realloc(vec->v, ncap * sizeof(*vec->v));
		if (!p)
			return -ENOMEM;
		vec->v = p;
		vec->cap = ncap;
	}
	vec->v[vec->nr++] = *s;
	return 0;
}

static int collect_one(const struct elffile_sym *sym, void *ctx)
{
	struct raw_vec *vec = ctx;
	struct raw_sym rs;
	size_t len, us = 0;
	int err;

	if (vec->nr >= ELFSYMS_MAX_RAW) {
		vec->skipped++;
		return 0;
	}
	err = name_len(vec, sym->name, &len); /* names longer than ELFSYMS_MAX_NAME are cut */
	if (err == -ENOSPC) {
		vec->skipped++;
		return 0;
	}
	if (err)
		return err;
	while (us < len && sym->name[us] == '_')
		us++;
	rs = (struct raw_sym){
		.addr = sym->value,
		.size = sym->size,
		.name = sym->name,
		.name_len = len,
		.rank = sym->bind == STB_WEAK ? 1 : sym->bind == STB_LOCAL ? 2 : 0,
		.underscores = (uint32_t)us,
		.seq = (uint32_t)vec->nr,
	};

	return raw_push(vec, &rs);
}

/* Appends the function symbols (and IFUNCs) of every section of type (SHT_SYMTAB or
 * SHT_DYNSYM). */
static int collect_syms(Elf *e, Elf64_Word type, struct raw_vec *vec)
{
	unsigned int table = type == SHT_SYMTAB ? ELFFILE_SYM_SYMTAB : ELFFILE_SYM_DYNSYM;
	Elf_Scn *scn = NULL, *str;
	GElf_Shdr sh, strsh;

	while ((scn = elf_nextscn(e, scn)))
		if (gelf_getshdr(scn, &sh) && sh.sh_type == type && (str = elf_getscn(e, sh.sh_link)) &&
		    gelf_getshdr(str, &strsh))
			vec->strtab_bytes += strsh.sh_size;

	return elffile_for_each_symbol(e, table | ELFFILE_SYM_IFUNC, collect_one, vec);
}

static int raw_cmp(const void *a, const void *b)
{
	const struct raw_sym *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	/* "malloc" over "__libc_malloc", as perf chooses */
	if (x->underscores != y->underscores)
		return x->underscores < y->underscores ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Names already interned, by their address in libelf's string table: aliases of one name
 * (the same st_name) are interned once, without hashing the name again for every alias. */
struct name_memo {
	struct { const char *p; uint32_t id; } *slots;
	size_t mask;
};

static int memo_init(struct name_memo *m, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n)
		cap *= 2;
	m->slots = calloc(cap, sizeof(*m->slots));
	m->mask = cap - 1;
	return m->slots ? 0 : -ENOMEM;
}

/* The slot of p: holding p, or empty. */
static size_t memo_slot(const struct name_memo *m, const char *p)
{
	size_t i = (size_t)(((uintptr_t)p * 0x9e3779b97f4a7c15ull) >> 17) & m->mask;

	while (m->slots[i].p && m->slots[i].p != p)
		i = (i + 1) & m->mask;
	return i;
}

/* Sorts, keeps one symbol per address and copies the names out of libelf, each distinct name
 * once (a file may give one huge name to many addresses), within this table's budget and
 * what is left of the global one. What does not fit is left out and counted. */
static int build_table(struct elfsyms *es, struct raw_vec *vec)
{
	uint64_t held = __atomic_load_n(&g.name_bytes, __ATOMIC_RELAXED);
	uint64_t held_entries = __atomic_load_n(&g.entries, __ATOMIC_RELAXED);
	size_t max_bytes = ELFSYMS_MAX_NAME_BYTES, max_entries = ELFSYMS_MAX_ENTRIES, out = 0, kept;
	struct name_memo memo = {};
	bool full = false;
	int err;

	if (vec->skipped)
		__atomic_fetch_add(&g.entries_skipped, vec->skipped, __ATOMIC_RELAXED);
	if (!vec->nr)
		return 0;
	if (held >= ELFSYMS_GLOBAL_NAME_BYTES || held_entries >= ELFSYMS_GLOBAL_ENTRIES) {
		__atomic_fetch_add(&g.entries_skipped, vec->nr, __ATOMIC_RELAXED);
		return 0;
	}
	/* The names of a real file are the strings of its string tables (a linker may share a
	 * suffix between two); more would be names made of overlapping pieces of one string. */
	if (max_bytes > 2 * vec->strtab_bytes + 65536)
		max_bytes = (size_t)(2 * vec->strtab_bytes + 65536);
	if (max_bytes > ELFSYMS_GLOBAL_NAME_BYTES - held)
		max_bytes = (size_t)(ELFSYMS_GLOBAL_NAME_BYTES - held);
	if (max_entries > ELFSYMS_GLOBAL_ENTRIES - held_entries)
		max_entries = (size_t)(ELFSYMS_GLOBAL_ENTRIES - held_entries);
	qsort(vec->v, vec->nr, sizeof(*vec->v), raw_cmp);
	for (size_t i = 0; i < vec->nr; i++) {
		if (out && vec->v[out - 1].addr == vec->v[i].addr) {
			/* an alias: keep the preferred name, but the known size */
			if (vec->v[i].size > vec->v[out - 1].size)
				vec->v[out - 1].size = vec->v[i].size;
			continue;
		}
		vec->v[out++] = vec->v[i];
	}
	kept = out;
	err = strset_new(max_entries, max_bytes, &es->names);
	if (err)
		return err;
	if (out > max_entries)
		out = max_entries; /* the rest is counted below */
	es->syms = calloc(out, sizeof(*es->syms));
	err = es->syms ? memo_init(&memo, out) : -ENOMEM;
	if (err)
		return err;
	for (size_t i = 0; i < out; i++) {
		const struct raw_sym *r = &vec->v[i];
		size_t slot = memo_slot(&memo, r->name);
		struct elfsym *s;
		uint32_t id;
		int ierr = 0;

		if (memo.slots[slot].p) {
			id = memo.slots[slot].id;
		} else if (full ||
			   (ierr = strset_intern(es->names, r->name, r->name_len, &id)) == -ENOSPC) {
			/* the byte budget is spent: no name is hashed any more */
			full = true;
			__atomic_fetch_add(&g.entries_skipped, 1, __ATOMIC_RELAXED);
			__atomic_fetch_add(&g.bytes_skipped, r->name_len + 1, __ATOMIC_RELAXED);
			continue;
		} else if (ierr) {
			free(memo.slots);
			return ierr;
		} else {
			memo.slots[slot].p = r->name;
			memo.slots[slot].id = id;
		}
		s = &es->syms[es->nr++];
		s->addr = r->addr;
		s->size = r->size;
		s->name = strset_str(es->names, id);
	}
	free(memo.slots);
	if (kept > out)
		__atomic_fetch_add(&g.entries_skipped, kept - out, __ATOMIC_RELAXED);
	es->names_counted = strset_bytes(es->names);
	__atomic_fetch_add(&g.name_bytes, es->names_counted, __ATOMIC_RELAXED);
	__atomic_fetch_add(&g.entries, es->nr, __ATOMIC_RELAXED);
	return 0;
}

static int load_segments(struct elfsyms *es, Elf *e)
{
	size_t nph = 0;

	if (elf_getphdrnum(e, &nph))
		return elf_err("program headers");
	es->segs = calloc(nph ? nph : 1, sizeof(*es->segs));
	if (!es->segs)
		return -ENOMEM;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		es->segs[es->nr_segs++] = (struct load_seg){
			.offset = ph.p_offset, .vaddr = ph.p_vaddr,
			.filesz = ph.p_filesz, .memsz = ph.p_memsz,
		};
	}
	return 0;
}

static int load_elf(Elf *e, int fd, const char *path, const char *root, struct elfsyms *es)
{
	struct elffile_debug dbg = { .fd = -1 };
	struct raw_vec vec = {};
	struct stat st;
	int err;

	if (elf_kind(e) != ELF_K_ELF) {
		log_debug("elfsyms: %s: not an ELF file", path ? path : "(memory)");
		return -ENOEXEC;
	}
	if (elffile_build_id(e, es->build_id, sizeof(es->build_id)))
		es->build_id[0] = '\0';
	err = load_segments(es, e);
	if (err)
		return err;
	if (elffile_has_symtab(e)) {
		err = collect_syms(e, SHT_SYMTAB, &vec);
	} else if (fd >= 0 && fstat(fd, &st) == 0 &&
		   !elffile_find_debug(e, st.st_dev, st.st_ino, path, root, es->build_id, &dbg)) {
		log_debug("elfsyms: %s: symbols from %s", path ? path : "?", dbg.path);
		es->debug_path = dbg.path;
		dbg.path = NULL;
		err = collect_syms(dbg.elf, SHT_SYMTAB, &vec);
	}
	if (!err)
		err = collect_syms(e, SHT_DYNSYM, &vec);
	/* names are copied out while the debug file is still mapped */
	if (!err)
		err = build_table(es, &vec);
	free(vec.v);
	free(vec.memo);
	elffile_debug_close(&dbg);
	return err;
}

int elfsyms_load_fd(int fd, const char *path, const char *root, struct elfsyms **ret_es)
{
	struct elfsyms *es;
	Elf *e;
	int err;

	elffile_init();
	es = calloc(1, sizeof(*es));
	if (!es)
		return -ENOMEM;
	/* pread, never mmap: the file's owner may truncate it while we read (a fault on a
	 * truncated mapping is a SIGBUS; a short read is an error). libelf reads only the
	 * headers and the sections asked for, within elffile's budgets. */
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e) {
		err = elf_err(path ? path : "elf_begin");
		goto err_free;
	}
	err = load_elf(e, fd, path, root, es);
	elf_end(e);
	if (err)
		goto err_free;
	*ret_es = es;
	return 0;
err_free:
	elfsyms_free(es);
	return err;
}

int elfsyms_load_mem(const void *image, size_t size, struct elfsyms **ret_es)
{
	struct elfsyms *es;
	Elf *e;
	int err;

	elffile_init();
	es = calloc(1, sizeof(*es));
	if (!es)
		return -ENOMEM;
	es->image = malloc(size);
	if (!es->image) {
		err = -ENOMEM;
		goto err_free;
	}
	memcpy(es->image, image, size);
	e = elf_memory(es->image, size);
	if (!e) {
		err = elf_err("elf_memory");
		goto err_free;
	}
	err = load_elf(e, -1, NULL, NULL, es);
	elf_end(e);
	free(es->image);
	es->image = NULL;
	if (err)
		goto err_free;
	*ret_es = es;
	return 0;
err_free:
	elfsyms_free(es);
	return err;
}

void elfsyms_free(struct elfsyms *es)
{
	if (!es)
		return;
	for (size_t i = 0; i < es->nr; i++)
		free(es->syms[i].demangled);
	__atomic_fetch_sub(&g.entries, es->names ? es->nr : 0, __ATOMIC_RELAXED);
	__atomic_fetch_sub(&g.name_bytes, es->names_counted, __ATOMIC_RELAXED);
	free(es->syms);
	strset_free(es->names);
	free(es->segs);
	free(es->debug_path);
	free(es->image);
	free(es);
}

int elfsyms_read_build_id(int fd, char *buf, size_t size)
{
	Elf *e;
	int err;

	elffile_init();
	e = elf_begin(fd, ELF_C_READ, NULL); /* pread: see elfsyms_load_fd() */
	if (!e)
		return elf_err("elf_begin");
	if (elf_kind(e) != ELF_K_ELF)
		err = -ENOEXEC;
	else
		err = elffile_build_id(e, buf, size);
	elf_end(e);
	return err;
}

const char *elfsyms_build_id(const struct elfsyms *es)
{
	return es->build_id[0] ? es->build_id : NULL;
}

const char *elfsyms_debug_path(const struct elfsyms *es)
{
	return es->debug_path;
}

size_t elfsyms_count(const struct elfsyms *es)
{
	return es->nr;
}

bool elfsyms_off_to_vaddr(const struct elfsyms *es, uint64_t off, uint64_t *ret_vaddr)
{
	const struct load_seg *best = NULL;

	for (size_t i = 0; i < es->nr_segs; i++) {
		const struct load_seg *s = &es->segs[i];

		if (off >= s->offset && off - s->offset < s->filesz) {
			*ret_vaddr = off - s->offset + s->vaddr;
			return true;
		}
		/* the mapping starts at the page holding p_offset: accept that slack */
		if (!best && off < s->offset && s->offset - off < 4096 && s->filesz)
			best = s;
	}
	if (!best)
		return false;
	*ret_vaddr = best->vaddr - (best->offset - off);
	return true;
}

const char *elfsyms_lookup(struct elfsyms *es, uint64_t vaddr, uint64_t *ret_symoff)
{
	size_t lo = 0, hi = es->nr;
	struct elfsym *s;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (es->syms[mid].addr <= vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return NULL;
	s = &es->syms[lo - 1];
	if (s->size && vaddr - s->addr >= s->size)
		return NULL;
	if (ret_symoff)
		*ret_symoff = vaddr - s->addr;
	if (!s->demangle_tried) {
		s->demangle_tried = true;
		s->demangled = demangle(s->name);
	}
	return s->demangled ? s->demangled : s->name;
}
