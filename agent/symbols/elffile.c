/* elffile: see elffile.h. */
#include "elffile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "fileio.h"
#include "log.h"

#define DEBUG_DIR "/usr/lib/debug"

static struct elffile_counters counters;

static void count(uint64_t *c)
{
	__atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

void elffile_get_counters(struct elffile_counters *ret)
{
	ret->debug_refused_owner = __atomic_load_n(&counters.debug_refused_owner, __ATOMIC_RELAXED);
	ret->debug_refused_files = __atomic_load_n(&counters.debug_refused_files, __ATOMIC_RELAXED);
	ret->sections_refused = __atomic_load_n(&counters.sections_refused, __ATOMIC_RELAXED);
}

void elffile_init(void)
{
	static bool done;

	if (!done) {
		(void)elf_version(EV_CURRENT);
		done = true;
	}
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
		    nhdr.n_descsz <= (ELFFILE_BUILD_ID_MAX - 1) / 2) {
			hex_encode((unsigned char *)data->d_buf + desc_off, nhdr.n_descsz, buf, size);
			return true;
		}
	}
	return false;
}

int elffile_build_id(Elf *e, char *buf, size_t size)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr shdr;
	size_t nph = 0;

	while ((scn = elf_nextscn(e, scn))) {
		if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != SHT_NOTE)
			continue;
		if (shdr.sh_size > ELFFILE_MAX_NOTE_BYTES) {
			count(&counters.sections_refused);
			continue;
		}
		if (note_build_id(elf_getdata(scn, NULL), buf, size))
			return 0;
	}
	if (elf_getphdrnum(e, &nph))
		return -ENOENT;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_NOTE)
			continue;
		if (ph.p_filesz > ELFFILE_MAX_NOTE_BYTES) {
			count(&counters.sections_refused);
			continue;
		}
		if (note_build_id(elf_getdata_rawchunk(e, (int64_t)ph.p_offset, ph.p_filesz, ELF_T_NHDR),
				  buf, size))
			return 0;
	}
	return -ENOENT;
}

Elf_Scn *elffile_section(Elf *e, Elf64_Word type, const char *name)
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

bool elffile_has_symtab(Elf *e)
{
	Elf_Scn *scn = elffile_section(e, SHT_SYMTAB, NULL);
	GElf_Shdr shdr;

	return scn && gelf_getshdr(scn, &shdr) && shdr.sh_size > 0;
}

/* Walks one symbol table section, its data already read. */
static int for_each_in_table(Elf *e, Elf_Data *data, const GElf_Shdr *sh, unsigned int flags,
			     elffile_sym_fn cb, void *ctx)
{
	size_t n;

	n = sh->sh_size / sh->sh_entsize;
	if (n > data->d_size / sh->sh_entsize)
		n = data->d_size / sh->sh_entsize;
	if (n > ELFFILE_MAX_SYMBOLS) {
		log_debug("elffile: symbol table of %zu entries, reading the first %u", n,
			  ELFFILE_MAX_SYMBOLS);
		n = ELFFILE_MAX_SYMBOLS;
	}
	for (size_t i = 0; i < n; i++) {
		struct elffile_sym es;
		GElf_Sym sym;
		int type, bind, ret;

		if (!gelf_getsym(data, (int)i, &sym))
			break;
		type = GELF_ST_TYPE(sym.st_info);
		bind = GELF_ST_BIND(sym.st_info);
		if (type != STT_FUNC && !(type == STT_GNU_IFUNC && (flags & ELFFILE_SYM_IFUNC)))
			continue;
		if (sym.st_shndx == SHN_UNDEF || !sym.st_value)
			continue;
		if (bind == STB_LOCAL && (flags & ELFFILE_SYM_NO_LOCAL))
			continue;
		es.name = elf_strptr(e, sh->sh_link, sym.st_name);
		if (!es.name || !*es.name)
			continue;
		es.value = sym.st_value;
		es.size = sym.st_size;
		es.shndx = sym.st_shndx;
		es.type = (uint8_t)type;
		es.bind = (uint8_t)bind;
		es.table = sh->sh_type;
		ret = cb(&es, ctx);
		if (ret)
			return ret;
	}
	return 0;
}

/* libelf reads a whole section when its data is first asked for: a symbol table and its
 * string table are read only within the budgets (a sparse file claims any size for free). */
static bool table_fits(Elf *e, const GElf_Shdr *sh)
{
	Elf_Scn *strscn;
	GElf_Shdr strsh;

	if (sh->sh_size > ELFFILE_MAX_SYMTAB_BYTES)
		return false;
	strscn = elf_getscn(e, sh->sh_link);
	return strscn && gelf_getshdr(strscn, &strsh) && strsh.sh_size <= ELFFILE_MAX_STRTAB_BYTES;
}

int elffile_for_each_symbol(Elf *e, unsigned int flags, elffile_sym_fn cb, void *ctx)
{
	Elf_Scn *scn = NULL;

	while ((scn = elf_nextscn(e, scn))) {
		Elf_Data *data;
		GElf_Shdr sh;
		int ret;

		if (!gelf_getshdr(scn, &sh))
			continue;
		if (!((sh.sh_type == SHT_SYMTAB && (flags & ELFFILE_SYM_SYMTAB)) ||
		      (sh.sh_type == SHT_DYNSYM && (flags & ELFFILE_SYM_DYNSYM))))
			continue;
		if (!sh.sh_entsize)
			continue;
		if (!table_fits(e, &sh)) {
			count(&counters.sections_refused);
			log_debug("elffile: symbol table of %llu bytes over the budget, skipped",
				  (unsigned long long)sh.sh_size);
			continue;
		}
		data = elf_getdata(scn, NULL);
		if (!data)
			continue;
		ret = for_each_in_table(e, data, &sh, flags, cb, ctx);
		if (ret)
			return ret;
	}
	return 0;
}

int elffile_section_bytes(Elf *e, const char *name, size_t max, const uint8_t **ret_buf,
			  size_t *ret_len, bool *ret_owned)
{
	Elf_Scn *scn = elffile_section(e, SHT_PROGBITS, name);
	GElf_Shdr sh;
	GElf_Chdr ch;
	Elf_Data *raw;
	uLongf dlen;
	uint8_t *out;
	size_t hdr;

	if (!scn || !gelf_getshdr(scn, &sh) || !(raw = elf_rawdata(scn, NULL)) || !raw->d_buf)
		return -ENOENT;
	if (!(sh.sh_flags & SHF_COMPRESSED)) {
		*ret_buf = raw->d_buf;
		*ret_len = raw->d_size;
		*ret_owned = false;
		return 0;
	}
	if (!gelf_getchdr(scn, &ch))
		return -EINVAL;
	if (ch.ch_type != ELFCOMPRESS_ZLIB || ch.ch_size > max)
		return -ENOTSUP;
	hdr = gelf_fsize(e, ELF_T_CHDR, 1, EV_CURRENT);
	if (!hdr || raw->d_size < hdr)
		return -EINVAL;
	out = malloc(ch.ch_size ? ch.ch_size : 1);
	if (!out)
		return -ENOMEM;
	dlen = ch.ch_size;
	if (uncompress(out, &dlen, (const Bytef *)raw->d_buf + hdr, raw->d_size - hdr) != Z_OK ||
	    dlen != ch.ch_size) {
		free(out);
		return -EINVAL;
	}
	*ret_buf = out;
	*ret_len = dlen;
	*ret_owned = true;
	return 0;
}

/* CRC-32 of the whole file, as .gnu_debuglink stores it (zlib's crc32). */
static int file_crc32(int fd, uint32_t *ret_crc)
{
	unsigned char buf[65536];
	uLong crc = crc32(0L, Z_NULL, 0);
	off_t off = 0;
	ssize_t n;

	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		crc = crc32(crc, buf, (uInt)n);
		off += n;
	}
	if (n < 0)
		return -errno;
	*ret_crc = (uint32_t)crc;
	return 0;
}

struct debug_want {
	const char *build_id; /* required match when non-empty */
	bool check_crc;
	uint32_t crc;
	dev_t self_dev;       /* the stripped file itself: never its own debug file */
	ino_t self_ino;
	bool self_uid_known;  /* the stripped file's owner, when it could be confirmed */
	uid_t self_uid;
};

/* Tries one candidate, path resolved in dirfd (a process's root, RESOLVE_IN_ROOT) or on the
 * host (dirfd AT_FDCWD). It is opened without blocking (a FIFO or a device is refused before
 * any open of it, fileio_open_untrusted()) and read with ELF_C_READ (pread, no mmap: a
 * truncation makes a read fail, never a SIGBUS). It must be owned by root or by the owner of
 * the file it describes: a user's debug file names only that user's own files. */
static int try_debug_file(int dirfd, const char *path, const struct debug_want *want,
			  struct elffile_debug *ret)
{
	unsigned flags = dirfd == AT_FDCWD ? 0 : FILEIO_UNTRUSTED_IN_ROOT;
	char bid[ELFFILE_BUILD_ID_MAX] = "";
	struct stat st;
	uint32_t crc;
	Elf *e = NULL;
	int fd;

	fd = fileio_open_untrusted(dirfd, path, flags, 0, &st);
	if (fd < 0) {
		if (fd != -ENOENT && fd != -ENOTDIR)
			count(&counters.debug_refused_files);
		return fd;
	}
	if (st.st_dev == want->self_dev && st.st_ino == want->self_ino)
		goto reject;
	if (st.st_uid != 0 && !(want->self_uid_known && st.st_uid == want->self_uid)) {
		log_debug("elffile: %s: owned by uid %u, not by root or the file's owner", path,
			  (unsigned)st.st_uid);
		count(&counters.debug_refused_owner);
		goto reject;
	}
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF || !elffile_has_symtab(e))
		goto reject;
	if (want->build_id[0]) {
		if (elffile_build_id(e, bid, sizeof(bid)) || strcmp(bid, want->build_id)) {
			log_debug("elffile: %s: build-id mismatch", path);
			goto reject;
		}
	} else if (want->check_crc) {
		if ((uint64_t)st.st_size > ELFFILE_MAX_CRC_BYTES || file_crc32(fd, &crc) ||
		    crc != want->crc) {
			log_debug("elffile: %s: debuglink CRC mismatch", path);
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

/* Tries rel inside root (RESOLVE_IN_ROOT: a container's absolute links stay in it), then rel
 * on the host when root is set. */
static int try_debug_rooted(int rootfd, const char *rel, const struct debug_want *want,
			    struct elffile_debug *ret)
{
	if (rootfd >= 0 && !try_debug_file(rootfd, rel, want, ret))
		return 0;
	return try_debug_file(AT_FDCWD, rel, want, ret);
}

/* The debuglink name and CRC, if e has a .gnu_debuglink. */
static bool read_debuglink(Elf *e, const char **ret_name, uint32_t *ret_crc)
{
	Elf_Scn *scn = elffile_section(e, SHT_PROGBITS, ".gnu_debuglink");
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

int elffile_find_debug(Elf *e, dev_t self_dev, ino_t self_ino, const char *path, const char *root,
		       const char *build_id, struct elffile_debug *ret)
{
	struct debug_want want = { .build_id = build_id, .self_dev = self_dev, .self_ino = self_ino };
	const char *link;
	char rel[PATH_MAX];
	struct stat st;
	int rootfd = -1, err = -ENOENT;

	if (root && *root && strcmp(root, "/"))
		rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	/* the owner of the file itself, if its path still names it */
	if (path && path[0] == '/' &&
	    !fstatat(rootfd >= 0 ? rootfd : AT_FDCWD, rootfd >= 0 ? path + 1 : path, &st, 0) &&
	    st.st_dev == self_dev && st.st_ino == self_ino) {
		want.self_uid_known = true;
		want.self_uid = st.st_uid;
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
			if (n < (int)sizeof(rel) && !try_debug_rooted(rootfd, rel, &want, ret)) {
				err = 0;
				goto out;
			}
		}
	}
	if (build_id[0] && strlen(build_id) > 2) {
		/* The host's build-id tree first: root-owned files a container cannot plant, and
		 * the same build-id is the same binary. A container's own tree only after. */
		snprintf(rel, sizeof(rel), DEBUG_DIR "/.build-id/%.2s/%s.debug", build_id, build_id + 2);
		if (!try_debug_file(AT_FDCWD, rel, &want, ret) ||
		    (rootfd >= 0 && !try_debug_file(rootfd, rel, &want, ret)))
			err = 0;
	}
out:
	if (rootfd >= 0)
		close(rootfd);
	return err;
}

void elffile_debug_close(struct elffile_debug *d)
{
	if (d->elf)
		elf_end(d->elf);
	if (d->fd >= 0)
		close(d->fd);
	free(d->path);
	d->elf = NULL;
	d->fd = -1;
	d->path = NULL;
}
