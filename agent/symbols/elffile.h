/* elffile: what the symbolizer and the unwinder both read from ELF files, with libelf: the
 * GNU build-id, sections by name (decompressed when SHF_COMPRESSED), and the separate debug
 * file of a stripped file (.gnu_debuglink, checked by CRC, or /usr/lib/debug/.build-id,
 * checked by build-id), looked up under a process's root first. */
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

/* A separate debug file, open. */
struct elffile_debug {
	int fd;
	Elf *elf;
	char *path;
};

/* Finds the separate debug file of e (its .gnu_debuglink candidates next to path, in .debug/
 * and under /usr/lib/debug, as gdb and perf order them; then the build-id path), each tried
 * under root (e.g. "/proc/PID/root", may be NULL) first, then on the host. path is the file's
 * path as its process sees it; (self_dev, self_ino) identify the file itself, never its own
 * debug file. 0 (ret filled; close with elffile_debug_close) or -ENOENT. */
int elffile_find_debug(Elf *e, dev_t self_dev, ino_t self_ino, const char *path, const char *root,
		       const char *build_id, struct elffile_debug *ret);
void elffile_debug_close(struct elffile_debug *d);

#endif
