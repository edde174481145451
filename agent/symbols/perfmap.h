/* perfmap: symbols of JIT code from a perf map file, /tmp/perf-PID.map, as written by CPython
 * 3.12+ perf trampolines (PYTHONPERFSUPPORT=1, -X perf: "py::<qualname>:<file>"), the JVM's
 * perf-map-agent, V8 --perf-basic-prof, LuaJIT and others: one "START SIZE name" line per
 * symbol, START and SIZE in hex (with or without 0x).
 *
 * The symbols are kept sorted by address; a lookup that misses re-reads the file if it grew
 * (writers only append; size and mtime tell, and a map that stopped changing is looked at at
 * most once a second) and re-parses it from the start if it shrank or was replaced. Later
 * lines win over earlier ones for the same start address. Names are owned by the perfmap and
 * stay valid until the next reload or perfmap_free(). One perfmap is not thread-safe; the
 * budgets and counters shared by all of them are.
 *
 * The file is the process's to write, so it is read as hostile: opened without blocking and
 * without following a link (fileio_open_untrusted()), resolved inside the process's root, a
 * regular file owned by the process's effective uid (the uid its writes are made with: a
 * setuid-root process's map must be root's), read within the budgets below, what is refused
 * counted. */
#ifndef EMBER_PERFMAP_H
#define EMBER_PERFMAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct perfmap;

/* Budgets: see perfmap.c. */
#define PERFMAP_MAX_ENTRIES 500000u              /* lines kept, per map */
#define PERFMAP_MAX_NAME_BYTES (32u << 20)       /* name bytes kept, per map */
#define PERFMAP_MAX_READ (64ull << 20)           /* bytes read over a map's life */
#define PERFMAP_MAX_LINE 8192u                   /* longer lines are skipped */
#define PERFMAP_MAX_NAME 4096u                   /* longer names are cut */
#define PERFMAP_GLOBAL_ENTRIES 2000000u          /* lines kept by all maps */
#define PERFMAP_GLOBAL_NAME_BYTES (128u << 20)   /* name bytes kept by all maps */
#define PERFMAP_GLOBAL_READ_PER_SEC (128ull << 20) /* bytes read per second, all maps */

/* Process-wide, since start. */
struct perfmap_counters {
	uint64_t entries;         /* lines held now by all maps */
	uint64_t name_bytes;      /* name bytes held now */
	uint64_t refused_files;   /* opens refused: not a regular file, a link, an escape... */
	uint64_t refused_owner;   /* maps not owned by their process's effective uid (once each) */
	uint64_t entries_skipped; /* lines dropped by an entry or byte budget */
	uint64_t bytes_skipped;   /* bytes not parsed: over-long lines, the read budget */
	uint64_t bytes_read;      /* bytes read from perf maps */
};
void perfmap_get_counters(struct perfmap_counters *ret);

/* Opens path (it need not exist yet: lookups then miss until it appears), not following a
 * link, any owner (for tests and tools). Returns 0 or -errno. */
int perfmap_open(const char *path, struct perfmap **ret_pm);
/* The map of pid: /tmp/perf-NSPID.map resolved inside /proc/PID/root (RESOLVE_IN_ROOT), where
 * NSPID is the pid inside the process's own pid namespace (NSpid in /proc/PID/status); only
 * a regular file owned by the process's effective uid (Uid in /proc/PID/status, read again at
 * every open) is read. 0 or -errno. */
int perfmap_open_pid(pid_t pid, struct perfmap **ret_pm);
void perfmap_free(struct perfmap *pm);

/* Re-reads the file if it changed. Returns 1 if symbols were added, 0 if nothing changed,
 * -errno on a read error (the symbols already read are kept). */
int perfmap_refresh(struct perfmap *pm);

/* The symbol holding addr, or NULL. *ret_start (optional) receives the symbol's start. */
const char *perfmap_lookup(struct perfmap *pm, uint64_t addr, uint64_t *ret_start);

size_t perfmap_count(const struct perfmap *pm);

#endif
