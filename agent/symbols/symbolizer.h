/* symbolizer: turns (pid, PC) and kernel PCs into function names.
 *
 * Kernel PCs come from /proc/kallsyms. User PCs go through the process's mappings, captured from
 * /proc/PID/maps by symbolizer_track() while the process is alive, and the mapped ELF files read
 * with libelf (.symtab, then .dynsym, then separate debug files via .gnu_debuglink or
 * /usr/lib/debug/.build-id). Files are opened through /proc/PID/map_files or /proc/PID/root, so
 * deleted or replaced binaries and other mount namespaces work, and a tracked process can still
 * be symbolized after it exits. Captures and modules live in a proccache (see proccache.h) that
 * the symbolizer creates and the unwinder may share: symbol tables are cached per file (device,
 * inode, size, mtime) and shared by processes; each file is opened once for both.
 * An address that cannot be named yields "module+0xoffset" (offset in the file), never nothing.
 * Processes are keyed by (pid, start time): a reused pid never sees another process's maps.
 * Not thread-safe. Strings in a sym_info stay valid until symbolizer_forget() of that pid, or
 * symbolizer_free(). */
#ifndef EMBER_SYMBOLIZER_H
#define EMBER_SYMBOLIZER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct proccache;
struct symbolizer;

struct sym_info {
	const char *name;     /* demangled function name, or "module+0xoffset"; never NULL */
	const char *module;   /* path as the process saw it, "[vdso]", "[kernel.kallsyms]" or "[unknown]" */
	const char *build_id; /* lowercase hex GNU build-id of the module, or NULL */
	uint64_t map_start;   /* runtime range of the mapping that holds the PC (0 if none) */
	uint64_t map_end;
	uint64_t map_pgoff;   /* file offset of map_start */
	bool known;           /* name came from a symbol table */
};

struct symbolizer_stats {
	uint64_t lookups;     /* user + kernel lookups */
	uint64_t misses;      /* lookups that produced "module+0xoffset" or "[unknown]" */
	uint64_t processes;   /* processes currently tracked */
	uint64_t modules;     /* ELF modules cached */
	uint64_t module_opens; /* files opened into a new module (shared with the unwinder) */
	/* What the budgets and checks on hostile files refused (process-wide, since start,
	 * monotonic) and what the symbol tables hold now (gauges). */
	uint64_t elf_symbols;            /* gauge: ELF symbols held by all tables */
	uint64_t elf_name_bytes;         /* gauge: their distinct name bytes */
	uint64_t elf_symbols_skipped;    /* ELF symbols left out by a table budget */
	uint64_t elf_name_bytes_skipped; /* their name bytes */
	uint64_t elf_sections_refused;   /* symbol/string/note sections over the size budgets */
	uint64_t debug_refused_owner;    /* debug files owned by neither root nor the file's owner */
	uint64_t debug_refused_files;    /* debug candidates not regular files (FIFOs, devices...) */
	uint64_t perfmap_entries;        /* gauge: perf map lines held by all processes */
	uint64_t perfmap_name_bytes;     /* gauge: their name bytes */
	uint64_t perfmap_refused_files;  /* perf maps refused: not regular, a link, an escape */
	uint64_t perfmap_refused_owner;  /* perf maps not owned by their process's effective uid */
	uint64_t perfmap_entries_skipped; /* perf map lines left out by an entry or byte budget */
	uint64_t perfmap_bytes_skipped;  /* perf map bytes not parsed (long lines, read budget) */
	uint64_t perfmap_bytes_read;     /* perf map bytes read */
};

int symbolizer_new(struct symbolizer **ret_sym);
void symbolizer_free(struct symbolizer *s);

/* Captures the mappings of pid now (and opens its mapped files) unless that very process, same
 * start time, is already tracked. Returns 0, -ESRCH if the process is gone, or -errno. */
int symbolizer_track(struct symbolizer *s, pid_t pid);
/* Re-reads the mappings of pid (after exec, dlopen, or an address outside known mappings).
 * Keeps the old capture if the process is gone. Returns 0 or -errno. */
int symbolizer_refresh(struct symbolizer *s, pid_t pid);
/* Drops pid's captured mappings (module caches stay). */
void symbolizer_forget(struct symbolizer *s, pid_t pid);

/* Start time (clock ticks) of the capture held for pid. Returns 0, or -ENOENT when pid is not
 * tracked. Callers compare it with a sample's own start time so a reused pid is never
 * symbolized with another process's maps. */
int symbolizer_start_time(struct symbolizer *s, pid_t pid, uint64_t *ret_ticks);

/* Does the capture held for pid belong to the process that started at start_time (a BPF target
 * cookie)? Reads /proc only when no capture is held or the held one started at another time
 * (the pid may have been reused by a process not tracked yet). The per-sample check of the
 * frame builders. */
bool symbolizer_holds(struct symbolizer *s, pid_t pid, uint64_t start_time);

/* Symbolizes a user PC of pid. For return addresses (every frame but the leaf) pass pc - 1 so
 * that a call at the very end of a function is attributed to the caller. Tracks pid first if
 * needed; an address outside every known mapping triggers one refresh. Always fills ret
 * (at worst name "[unknown]"); returns 0, or -ESRCH when pid was never tracked and is gone. */
int symbolizer_user(struct symbolizer *s, pid_t pid, uint64_t pc, struct sym_info *ret);

/* Symbolizes a kernel PC. Always fills ret; returns 0 or -ENOENT when kallsyms is unreadable. */
int symbolizer_kernel(struct symbolizer *s, uint64_t pc, struct sym_info *ret);

/* Reads /proc/kallsyms now rather than at the first kernel frame (tens of milliseconds of
 * the kernel's time, ~5 MB): `record` calls it at start, so that cost is paid with the rest
 * of start-up instead of in the middle of a recording. The agent does not: a host of pure
 * user-space loops may never need it. Idempotent; 0 or -errno. */
int symbolizer_load_kernel(struct symbolizer *s);

/* The process and module cache this symbolizer fills, to hand to unwinder_new_shared() (which
 * takes its own reference). Valid until symbolizer_free() unless referenced. */
struct proccache *symbolizer_cache(struct symbolizer *s);

void symbolizer_get_stats(const struct symbolizer *s, struct symbolizer_stats *ret_stats);

#endif
