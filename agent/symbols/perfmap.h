/* perfmap: symbols of JIT code from a perf map file, /tmp/perf-PID.map, as written by CPython
 * 3.12+ perf trampolines (PYTHONPERFSUPPORT=1, -X perf: "py::<qualname>:<file>"), the JVM's
 * perf-map-agent, V8 --perf-basic-prof, LuaJIT and others: one "START SIZE name" line per
 * symbol, START and SIZE in hex (with or without 0x).
 *
 * The symbols are kept sorted by address; a lookup that misses re-reads the file if it grew
 * (writers only append) and re-parses it from the start if it shrank or was replaced. Later
 * lines win over earlier ones for the same start address. Names are owned by the perfmap and
 * stay valid until the next reload or perfmap_free(). Not thread-safe. */
#ifndef EMBER_PERFMAP_H
#define EMBER_PERFMAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct perfmap;

/* Opens path (it need not exist yet: lookups then miss until it appears). Returns 0 or -errno. */
int perfmap_open(const char *path, struct perfmap **ret_pm);
/* The map of pid as seen from the agent: /proc/PID/root/tmp/perf-NSPID.map, where NSPID is the
 * pid inside the process's own pid namespace (NSpid in /proc/PID/status). 0 or -errno. */
int perfmap_open_pid(pid_t pid, struct perfmap **ret_pm);
void perfmap_free(struct perfmap *pm);

/* Re-reads the file if it changed. Returns 1 if symbols were added, 0 if nothing changed,
 * -errno on a read error (the symbols already read are kept). */
int perfmap_refresh(struct perfmap *pm);

/* The symbol holding addr, or NULL. *ret_start (optional) receives the symbol's start. */
const char *perfmap_lookup(struct perfmap *pm, uint64_t addr, uint64_t *ret_start);

size_t perfmap_count(const struct perfmap *pm);

#endif
