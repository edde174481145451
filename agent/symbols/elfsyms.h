/* elfsyms: the function symbols of one ELF file, its GNU build-id and its PT_LOAD table.
 *
 * Symbols come from .symtab and .dynsym; a file without .symtab gets the .symtab of its separate
 * debug file, found through .gnu_debuglink (next to the file, in .debug/, under /usr/lib/debug)
 * or /usr/lib/debug/.build-id/xx/yyyy.debug, checked against the build-id (or the debuglink CRC
 * when there is no build-id). The table is copied out of libelf (each distinct name once, within
 * the budgets below): the file is closed after load. Files are read with pread (ELF_C_READ),
 * never mapped, so a file truncated under us fails to load instead of raising SIGBUS.
 * Names are demangled lazily on first lookup. Not thread-safe (lookups cache demangled names). */
#ifndef EMBER_ELFSYMS_H
#define EMBER_ELFSYMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct elfsyms;

/* Budgets, sized from real programs: libLLVM-14.so.1 has 45k .dynsym entries (3 MB of names),
 * libstdc++ 6k, libc 3k; a full .symtab of libLLVM or libtorch holds some 100k-1M functions
 * (tens of MB of mangled names), a debug build of Chromium ~2M. Per table: ELFSYMS_MAX_RAW
 * function symbols read (aliases included), ELFSYMS_MAX_SCAN_BYTES of distinct names scanned
 * (a name is scanned once however many symbols share it), ELFSYMS_MAX_ENTRIES addresses kept, names cut at
 * ELFSYMS_MAX_NAME bytes, ELFSYMS_MAX_NAME_BYTES of distinct names and never more than twice the
 * file's string tables (names made of overlapping pieces of one string are an attack, not a
 * program: no amplification beyond 2x of what the file holds); all tables together at most
 * ELFSYMS_GLOBAL_ENTRIES and ELFSYMS_GLOBAL_NAME_BYTES. Symbols left out are counted. */
#define ELFSYMS_MAX_RAW 4000000u
#define ELFSYMS_MAX_ENTRIES 2000000u
#define ELFSYMS_MAX_NAME 16384u
#define ELFSYMS_MAX_NAME_BYTES (128u << 20)
#define ELFSYMS_MAX_SCAN_BYTES (512ull << 20) /* name bytes scanned per load (CPU bound) */
#define ELFSYMS_GLOBAL_ENTRIES 16000000ull
#define ELFSYMS_GLOBAL_NAME_BYTES (1ull << 30)

/* Process-wide, since start (atomics). */
struct elfsyms_counters {
	uint64_t entries;         /* symbols held now by all tables */
	uint64_t name_bytes;      /* distinct name bytes held now */
	uint64_t entries_skipped; /* symbols left out by a budget */
	uint64_t bytes_skipped;   /* their name bytes */
};
void elfsyms_get_counters(struct elfsyms_counters *ret);

/* Enough for a hex build-id of up to 64 bytes and its NUL. */
#define ELFSYMS_BUILD_ID_MAX 129

/* Loads the ELF file open on fd (the fd stays the caller's). path is the file's path as its
 * process sees it (used to find debug files, may be NULL); root is prefixed to every debug file
 * path tried first (e.g. "/proc/PID/root", or NULL), the host's paths are tried after it.
 * Returns 0, -ENOEXEC if fd is not an ELF file, or -errno. */
int elfsyms_load_fd(int fd, const char *path, const char *root, struct elfsyms **ret_es);
/* Same for an ELF image in memory (the vDSO); the image is copied. */
int elfsyms_load_mem(const void *image, size_t size, struct elfsyms **ret_es);
void elfsyms_free(struct elfsyms *es);

/* Reads only the GNU build-id of the ELF file on fd as lowercase hex into buf (at least
 * ELFSYMS_BUILD_ID_MAX bytes). Returns 0, -ENOENT if it has none, -ENOEXEC, or -errno. */
int elfsyms_read_build_id(int fd, char *buf, size_t size);

/* The build-id in hex, or NULL if the file has none. Valid until elfsyms_free(). */
const char *elfsyms_build_id(const struct elfsyms *es);
/* Path of the separate debug file whose .symtab was used, or NULL. */
const char *elfsyms_debug_path(const struct elfsyms *es);
size_t elfsyms_count(const struct elfsyms *es);

/* Converts a file offset to the ELF virtual address through the PT_LOAD segment holding it.
 * Returns false if no segment maps that offset. */
bool elfsyms_off_to_vaddr(const struct elfsyms *es, uint64_t off, uint64_t *ret_vaddr);

/* Name of the function holding vaddr, demangled, or NULL. A symbol holds [value, value + size);
 * a sizeless one extends to the next symbol. At one address a global symbol wins over a weak
 * one, a weak one over a local one, then the name with fewer leading underscores, then the
 * first in table order (.symtab before .dynsym).
 * *ret_symoff (may be NULL) gets vaddr minus the symbol's value. Valid until elfsyms_free(). */
const char *elfsyms_lookup(struct elfsyms *es, uint64_t vaddr, uint64_t *ret_symoff);

#endif
