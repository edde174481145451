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
#include "log.h"

#define DEBUG_DIR "/usr/lib/debug"

struct elfsym {
	uint64_t addr;
	uint64_t size;
	uint32_t name_off;   /* into es->names */
	bool demangle_tried;
	char *demangled;     /* malloc'ed, or NULL when not mangled */
};

struct load_seg {
	uint64_t offset, vaddr, filesz, memsz;
};

struct elfsyms {
	struct elfsym *syms;
	size_t nr;
	char *names;
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

struct raw_vec {
	struct raw_sym *v;
	size_t nr, cap;
};

static void elf_init_once(void)
{
	static bool done;

	if (!done) {
		(void)elf_version(EV_CURRENT);
		done = true;
	}
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

static void hex_encode(const unsigned char *in, size_t len, char *out, size_t size)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len && 2 * i + 2 < size; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * i] = '\0';
}

/* Looks for NT_GNU_BUILD_ID in one note blob. */
static bool note_build_id(Elf_Data *data, char *buf, size_t size)
{
	size_t off = 0, name_off, desc_off;
	GElf_Nhdr nhdr;

	while (data && off < data->d_size &&
	       (off = gelf_getnote(data, off, &nhdr, &name_off, &desc_off)) > 0) {
		if (nhdr.n_type == NT_GNU_BUILD_ID && nhdr.n_namesz == sizeof("GNU") &&
		    !memcmp((char *)data->d_buf + name_off, "GNU", sizeof("GNU")) && nhdr.n_descsz &&
		    nhdr.n_descsz <= (ELFSYMS_BUILD_ID_MAX - 1) / 2) {
			hex_encode((unsigned char *)data->d_buf + desc_off, nhdr.n_descsz, buf, size);
			return true;
		}
	}
	return false;
}

/* Build-id from SHT_NOTE sections (present in debug files too), else from PT_NOTE segments. */
static int elf_build_id(Elf *e, char *buf, size_t size)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr shdr;
	size_t nph = 0;

	while ((scn = elf_nextscn(e, scn))) {
		if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != SHT_NOTE)
			continue;
		if (note_build_id(elf_getdata(scn, NULL), buf, size))
			return 0;
	}
	if (elf_getphdrnum(e, &nph))
		return -ENOENT;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_NOTE)
			continue;
		if (note_build_id(elf_getdata_rawchunk(e, (int64_t)ph.p_offset, ph.p_filesz, ELF_T_NHDR),
				  buf, size))
			return 0;
	}
	return -ENOENT;
}

static Elf_Scn *find_section(Elf *e, Elf64_Word type, const char *name)
{
	Elf_Scn *scn = NULL;
	size_t shstrndx;
	GElf_Shdr shdr;

	if (name && elf_getshdrstrndx(e, &shstrndx))
		return NULL;
	while ((scn = elf_nextscn(e, scn))) {
		const char *n;

		if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != type)
			continue;
		if (!name)
			return scn;
		n = elf_strptr(e, shstrndx, shdr.sh_name);
		if (n && !strcmp(n, name))
			return scn;
	}
	return NULL;
}

/* True if e has a .symtab with content (a debug file or an unstripped binary). */
static bool has_symtab(Elf *e)
{
	Elf_Scn *scn = find_section(e, SHT_SYMTAB, NULL);
	GElf_Shdr shdr;

	return scn && gelf_getshdr(scn, &shdr) && shdr.sh_size > 0;
}

/* Appends the function symbols of every section of type (SHT_SYMTAB or SHT_DYNSYM). */
static int collect_syms(Elf *e, Elf64_Word type, struct raw_vec *vec)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr shdr;
	int err;

	while ((scn = elf_nextscn(e, scn))) {
		Elf_Data *data;
		size_t n;

		if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != type || !shdr.sh_entsize)
			continue;
		data = elf_getdata(scn, NULL);
		if (!data)
			continue;
		n = shdr.sh_size / shdr.sh_entsize;
		for (size_t i = 0; i < n; i++) {
			struct raw_sym rs;
			const char *name;
			GElf_Sym sym;
			int st_type, bind;

			if (!gelf_getsym(data, (int)i, &sym))
				break;
			st_type = GELF_ST_TYPE(sym.st_info);
			if (st_type != STT_FUNC && st_type != STT_GNU_IFUNC)
				continue;
			if (sym.st_shndx == SHN_UNDEF || !sym.st_value)
				continue;
			name = elf_strptr(e, shdr.sh_link, sym.st_name);
			if (!name || !*name)
				continue;
			bind = GELF_ST_BIND(sym.st_info);
			rs.addr = sym.st_value;
			rs.size = sym.st_size;
			rs.name = name;
			/* "memcpy@@GLIBC_2.14": the version is not part of the function's name */
			rs.name_len = strcspn(name, "@");
			rs.rank = bind == STB_WEAK ? 1 : bind == STB_LOCAL ? 2 : 0;
			rs.underscores = (uint32_t)strspn(name, "_");
			rs.seq = (uint32_t)vec->nr;
			err = raw_push(vec, &rs);
			if (err)
				return err;
		}
	}
	return 0;
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

/* Sorts, keeps one symbol per address and copies the names out of libelf. */
static int build_table(struct elfsyms *es, struct raw_vec *vec)
{
	size_t names_len = 0, out = 0, pos = 0;

	if (!vec->nr)
		return 0;
	qsort(vec->v, vec->nr, sizeof(*vec->v), raw_cmp);
	for (size_t i = 0; i < vec->nr; i++) {
		if (out && vec->v[out - 1].addr == vec->v[i].addr) {
			/* an alias: keep the preferred name, but the known size */
			if (vec->v[i].size > vec->v[out - 1].size)
				vec->v[out - 1].size = vec->v[i].size;
			continue;
		}
		vec->v[out++] = vec->v[i];
		names_len += vec->v[i].name_len + 1;
	}
	if (names_len > UINT32_MAX)
		return -E2BIG;
	es->syms = calloc(out, sizeof(*es->syms));
	es->names = malloc(names_len);
	if (!es->syms || !es->names)
		return -ENOMEM;
	for (size_t i = 0; i < out; i++) {
		struct elfsym *s = &es->syms[i];

		s->addr = vec->v[i].addr;
		s->size = vec->v[i].size;
		s->name_off = (uint32_t)pos;
		memcpy(es->names + pos, vec->v[i].name, vec->v[i].name_len);
		es->names[pos + vec->v[i].name_len] = '\0';
		pos += vec->v[i].name_len + 1;
	}
	es->nr = out;
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

/* CRC-32 as .gnu_debuglink stores it (the zlib polynomial, reflected). */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
	static uint32_t table[256];
	static bool ready;

	if (!ready) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;

			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
		ready = true;
	}
	crc = ~crc;
	while (n--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static int file_crc32(int fd, uint32_t *ret_crc)
{
	unsigned char buf[65536];
	uint32_t crc = 0;
	off_t off = 0;
	ssize_t n;

	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		crc = crc32_update(crc, buf, (size_t)n);
		off += n;
	}
	if (n < 0)
		return -errno;
	*ret_crc = crc;
	return 0;
}

/* A candidate debug file, open and checked. */
struct debug_file {
	int fd;
	Elf *elf;
	char *path;
};

struct debug_want {
	const char *build_id; /* required match when non-empty */
	bool check_crc;
	uint32_t crc;
	dev_t self_dev;       /* the stripped file itself: never its own debug file */
	ino_t self_ino;
};

static int try_debug_file(const char *path, const struct debug_want *want, struct debug_file *ret)
{
	char bid[ELFSYMS_BUILD_ID_MAX] = "";
	struct stat st;
	uint32_t crc;
	Elf *e = NULL;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    (st.st_dev == want->self_dev && st.st_ino == want->self_ino))
		goto reject;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF || !has_symtab(e))
		goto reject;
	if (want->build_id[0]) {
		if (elf_build_id(e, bid, sizeof(bid)) || strcmp(bid, want->build_id)) {
			log_debug("elfsyms: %s: build-id mismatch", path);
			goto reject;
		}
	} else if (want->check_crc) {
		if (file_crc32(fd, &crc) || crc != want->crc) {
			log_debug("elfsyms: %s: debuglink CRC mismatch", path);
			goto reject;
		}
	}
	ret->fd = fd;
	ret->elf = e;
	ret->path = strdup(path);
	if (!ret->path) {
		elf_end(e);
		close(fd);
		return -ENOMEM;
	}
	return 0;
reject:
	if (e)
		elf_end(e);
	close(fd);
	return -ENOENT;
}

/* Tries root + rel, then rel on the host when root is set. */
static int try_debug_rooted(const char *root, const char *rel, const struct debug_want *want,
			    struct debug_file *ret)
{
	char path[PATH_MAX];

	if (root && *root) {
		if (snprintf(path, sizeof(path), "%s%s", root, rel) < (int)sizeof(path) &&
		    !try_debug_file(path, want, ret))
			return 0;
	}
	return try_debug_file(rel, want, ret);
}

/* The debuglink name and CRC, if e has a .gnu_debuglink. */
static bool read_debuglink(Elf *e, const char **ret_name, uint32_t *ret_crc)
{
	Elf_Scn *scn = find_section(e, SHT_PROGBITS, ".gnu_debuglink");
	Elf_Data *data;
	size_t len, crc_off;
	uint32_t crc;

	if (!scn || !(data = elf_getdata(scn, NULL)) || !data->d_size)
		return false;
	len = strnlen(data->d_buf, data->d_size);
	crc_off = (len + 4) & ~(size_t)3;
	if (!len || len == data->d_size || crc_off + 4 > data->d_size)
		return false;
	memcpy(&crc, (char *)data->d_buf + crc_off, 4);
	/* the CRC is stored in the file's byte order */
	if ((elf_getident(e, NULL)[EI_DATA] == ELFDATA2MSB) != (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__))
		crc = __builtin_bswap32(crc);
	*ret_name = data->d_buf;
	*ret_crc = crc;
	return true;
}

/* Finds the separate debug file of e: debuglink candidates first (as gdb and perf order them),
 * then the build-id path. */
static int find_debug_file(Elf *e, int fd, const char *path, const char *root,
			   const char *build_id, struct debug_file *ret)
{
	struct debug_want want = { .build_id = build_id };
	const char *link;
	char rel[PATH_MAX];
	struct stat st;

	if (fstat(fd, &st) == 0) {
		want.self_dev = st.st_dev;
		want.self_ino = st.st_ino;
	}
	if (path && path[0] == '/' && read_debuglink(e, &link, &want.crc) && !strchr(link, '/')) {
		const char *slash = strrchr(path, '/');
		int dlen = (int)(slash - path);
		int n;

		want.check_crc = true;
		for (int i = 0; i < 3; i++) {
			if (i == 0)
				n = snprintf(rel, sizeof(rel), "%.*s/%s", dlen, path, link);
			else if (i == 1)
				n = snprintf(rel, sizeof(rel), "%.*s/.debug/%s", dlen, path, link);
			else
				n = snprintf(rel, sizeof(rel), DEBUG_DIR "%.*s/%s", dlen, path, link);
			if (n < (int)sizeof(rel) && !try_debug_rooted(root, rel, &want, ret))
				return 0;
		}
	}
	if (build_id[0] && strlen(build_id) > 2) {
		snprintf(rel, sizeof(rel), DEBUG_DIR "/.build-id/%.2s/%s.debug", build_id, build_id + 2);
		if (!try_debug_rooted(root, rel, &want, ret))
			return 0;
	}
	return -ENOENT;
}

static int load_elf(Elf *e, int fd, const char *path, const char *root, struct elfsyms *es)
{
	struct debug_file dbg = { .fd = -1 };
	struct raw_vec vec = {};
	int err;

	if (elf_kind(e) != ELF_K_ELF) {
		log_debug("elfsyms: %s: not an ELF file", path ? path : "(memory)");
		return -ENOEXEC;
	}
	if (elf_build_id(e, es->build_id, sizeof(es->build_id)))
		es->build_id[0] = '\0';
	err = load_segments(es, e);
	if (err)
		return err;
	if (has_symtab(e)) {
		err = collect_syms(e, SHT_SYMTAB, &vec);
	} else if (fd >= 0 && !find_debug_file(e, fd, path, root, es->build_id, &dbg)) {
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
	if (dbg.elf)
		elf_end(dbg.elf);
	if (dbg.fd >= 0)
		close(dbg.fd);
	free(dbg.path);
	return err;
}

int elfsyms_load_fd(int fd, const char *path, const char *root, struct elfsyms **ret_es)
{
	struct elfsyms *es;
	Elf *e;
	int err;

	elf_init_once();
	es = calloc(1, sizeof(*es));
	if (!es)
		return -ENOMEM;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
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

	elf_init_once();
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
	free(es->syms);
	free(es->names);
	free(es->segs);
	free(es->debug_path);
	free(es->image);
	free(es);
}

int elfsyms_read_build_id(int fd, char *buf, size_t size)
{
	Elf *e;
	int err;

	elf_init_once();
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e)
		return elf_err("elf_begin");
	if (elf_kind(e) != ELF_K_ELF)
		err = -ENOEXEC;
	else
		err = elf_build_id(e, buf, size);
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
		s->demangled = demangle(es->names + s->name_off);
	}
	return s->demangled ? s->demangled : es->names + s->name_off;
}
