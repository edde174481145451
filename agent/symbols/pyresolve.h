/* pyresolve: CPython processes seen from outside. Finds the interpreter of a process (the
 * executable or a mapped library that holds _PyRuntime, through the shared per-process cache,
 * so containers work through /proc/PID/root) and turns sampled frames (code object address,
 * validation key, instruction) into qualified name, file, line and first line.
 *
 * Code objects are read from the process's memory with process_vm_readv (bounded reads, every
 * object checked by pycode), cached per process by address and used again only when the
 * sample's validation key (ember_py_code_key(), computed by BPF at sample time) matches the
 * cached one; a mismatch re-reads the object, and a fresh read whose key still differs is
 * rejected as stale (the address now holds another object). The cache is bounded per process
 * (entries and line-table bytes) and lives in the process's INTERP slot of the shared cache, so
 * it goes with the process.
 *
 * Reusable by any consumer of code object addresses (CPU and allocation stacks, GPU launch
 * stacks). Not thread-safe: one per proccache, on the thread that owns the cache. */
#ifndef EMBER_PYRESOLVE_H
#define EMBER_PYRESOLVE_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/types.h>
#include <sys/types.h>

#include "ember.h"
#include "proccache.h"
#include "pyoffsets.h"

struct pyresolve;

/* What the interpreter of a Python process is: for the BPF description and the merge. */
struct pyresolve_proc {
	struct pyoffsets off;
	uint64_t runtime;          /* _PyRuntime in the process */
	const char *module;        /* the ELF that holds it, as mapped */
};

/* One resolved frame. Strings live as long as the process's cache entry. */
struct pyresolve_frame {
	const char *name;          /* co_qualname (co_name on 3.10) */
	const char *filename;      /* co_filename */
	int64_t line;              /* current line, 0 when the instruction has none */
	int64_t start_line;        /* co_firstlineno, 0 when unknown */
	bool hidden;               /* an interpreter helper frame: never shown (3.12 trampoline,
				    * 3.13 _Py_InitCleanup) */
};

struct pyresolve_stats {
	uint64_t processes;        /* Python processes described, now in the cache */
	uint64_t refused;          /* interpreters refused (debug, free-threaded, unknown) */
	uint64_t resolved;         /* code objects read and cached */
	uint64_t stale;            /* frames rejected: the address holds another object now */
	uint64_t unreadable;       /* frames whose code object could not be read or checked */
	uint64_t cache_hits;       /* frames answered from the cache */
};

/* Registers the module loader on pc (before the cache makes modules to be found). */
int pyresolve_new(struct proccache *pc, struct pyresolve **ret);
void pyresolve_free(struct pyresolve *r);

/* The interpreter of pid (which must be in the cache: captured by the symbolizer). 0 (*ret
 * valid until the process's entry goes or is captured again), -ENOENT (not a Python process),
 * -ENOTSUP (a build we refuse: logged once at debug level and counted), -ESRCH (not in the
 * cache). */
int pyresolve_process(struct pyresolve *r, pid_t pid, const struct pyresolve_proc **ret);

/* Resolves one sampled frame of pid (f->code without EMBER_PYF_MARKER). 0 (ret filled),
 * -ESTALE (the key does not match the object there now), -EFAULT or -EINVAL (unreadable, not a
 * code object), -ENOENT (pid is not a described Python process), -ENOMEM. */
int pyresolve_frame(struct pyresolve *r, pid_t pid, const struct ember_py_frame *f,
		    struct pyresolve_frame *ret);

void pyresolve_get_stats(const struct pyresolve *r, struct pyresolve_stats *ret);

#endif
