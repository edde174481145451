/* elffile: what the symbolizer and the unwinder both read from ELF files, with libelf: the
 * GNU build-id, sections by name (decompressed when SHF_COMPRESSED), and the separate debug
 * file of a stripped file (.gnu_debuglink, checked by CRC, or /usr/lib/debug/.build-id,
 * checked by build-id), looked up under a process's root first, and the one walk over the
 * function symbols of .symtab/.dynsym (symbols, frame-pointer detection, allocator probes). */
#ifndef EMBER_ELFFILE_H
#define EMBER_ELFFILE_H

#include <gelf.h>
#include <libelf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Room for the longest build-id accepted (64 bytes) in hex, and the NUL. */
#define ELFFILE_BUILD_ID_MAX 129

/* elf_version() once, before any other libelf call. */
void elffile_init(void);

/* The GNU build-id as lowercase hex, from SHT_NOTE sections (debug files have them too), else
 * PT_NOTE segments. 0 or -ENOENT. */
int elffile_build_id(Elf *e, char *buf, size_t size);

/* The first section of type (and name, unless NULL), or NULL. */
Elf_Scn *elffile_section(Elf *e, Elf64_Word type, const char *name);

/* True if e has a .symtab with content (a debug file or an unstripped binary). */
bool elffile_has_symtab(Elf *e);

/* The contents of the SHT_PROGBITS section `name`, zlib-decompressed if SHF_COMPRESSED (then
 * at most max bytes, and *ret_owned is true: the caller frees *ret_buf). 0, -ENOENT, -ENOTSUP
 * (another compression, or larger than max), -EINVAL or -ENOMEM. */
int elffile_section_bytes(Elf *e, const char *name, size_t max, const uint8_t **ret_buf,
			  size_t *ret_len, bool *ret_owned);

/* What elffile_for_each_symbol() walks and reports. It always skips undefined symbols
 * (SHN_UNDEF), symbols at address 0 and nameless ones. */
enum elffile_sym_flags {
	ELFFILE_SYM_SYMTAB = 1u << 0,  /* walk the SHT_SYMTAB sections */
	ELFFILE_SYM_DYNSYM = 1u << 1,  /* walk the SHT_DYNSYM sections */
	ELFFILE_SYM_IFUNC = 1u << 2,   /* report STT_GNU_IFUNC as well as STT_FUNC */
	ELFFILE_SYM_NO_LOCAL = 1u << 3, /* skip STB_LOCAL symbols */
};

/* Longest symbol table walked, in entries: more than any real binary has (a debug build of
 * Chromium is ~2M), so a corrupt or hostile sh_size cannot make a walk run for minutes. */
#define ELFFILE_MAX_SYMBOLS (1u << 24)

/* Budgets on what libelf is asked to read (it reads a whole section at once): more than real
 * programs need (libLLVM-14's .dynsym is 1 MB and .dynstr 3 MB; a debug build of Chromium's
 * .symtab ~100 MB), so that a sparse or hostile file cannot make the agent read or hold GBs. */
#define ELFFILE_MAX_SYMTAB_BYTES (192ull << 20) /* one .symtab/.dynsym section */
#define ELFFILE_MAX_STRTAB_BYTES (256ull << 20) /* its string table */
#define ELFFILE_MAX_NOTE_BYTES (1ull << 20)     /* one note section or segment */
#define ELFFILE_MAX_CRC_BYTES (1ull << 30)      /* a debug file checked by CRC (read whole) */

/* Process-wide, since start (atomics). */
struct elffile_counters {
	uint64_t debug_refused_owner; /* debug files owned by neither root nor the file's owner */
	uint64_t debug_refused_files; /* debug candidates that were not regular files, links... */
	uint64_t sections_refused;    /* symbol, string or note sections over the budgets */
};
void elffile_get_counters(struct elffile_counters *ret);

/* One function symbol. name points into e's data: valid until elf_end(e). */
struct elffile_sym {
	const char *name;    /* with any "@VERSION" suffix, as stored */
	uint64_t value;      /* st_value: the virtual address in an executable or DSO */
	uint64_t size;       /* st_size, bytes (0 when unknown) */
	uint32_t shndx;      /* st_shndx: the section it lies in (or SHN_ABS...) */
	uint8_t type;        /* STT_FUNC or STT_GNU_IFUNC */
	uint8_t bind;        /* STB_GLOBAL, STB_WEAK, STB_LOCAL... */
	Elf64_Word table;    /* SHT_SYMTAB or SHT_DYNSYM */
};

/* Returns 0 to continue, anything else to stop the walk (which then returns it). */
typedef int (*elffile_sym_fn)(const struct elffile_sym *sym, void *ctx);

/* Calls cb for each function symbol of the tables chosen by flags (enum elffile_sym_flags), in
 * section order, then table order; at most ELFFILE_MAX_SYMBOLS entries of each table are read.
 * Returns 0 (also when e has none of those tables) or the callback's non-zero return. */
int elffile_for_each_symbol(Elf *e, unsigned int flags, elffile_sym_fn cb, void *ctx);

/* A separate debug file, open. */
struct elffile_debug {
	int fd;
	Elf *elf;
	char *path;
};

/* Finds the separate debug file of e (its .gnu_debuglink candidates next to path, in .debug/
 * and under /usr/lib/debug, as gdb and perf order them; then the build-id path), each tried
 * inside root (e.g. "/proc/PID/root", may be NULL; resolved with RESOLVE_IN_ROOT) first, then
 * on the host. path is the file's path as its process sees it; (self_dev, self_ino) identify
 * the file itself, never its own debug file. Candidates are opened with
 * fileio_open_untrusted() (a FIFO or device is never opened) and read with ELF_C_READ; one
 * owned by neither root nor the owner of the file at path (when path still names that file)
 * is refused and counted. 0 (ret filled; close with elffile_debug_close) or -ENOENT. */
int elffile_find_debug(Elf *e, dev_t self_dev, ino_t self_ino, const char *path, const char *root,
		       const char *build_id, struct elffile_debug *ret);
void elffile_debug_close(struct elffile_debug *d);

#endif
