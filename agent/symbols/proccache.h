/* proccache: one cache of processes and modules, shared by the symbolizer and the unwinder.
 *
 * A process is keyed by (pid, start time) and holds one capture of /proc/PID/maps (every
 * mapping, in address order; paths interned for the life of the entry). A module is one mapped
 * file, keyed by file identity (device, inode, size, mtime). The build-id is read as a hint for
 * finding debug files, never used as a key: any file can claim any build-id. A module is made
 * at the first capture that maps its file executable: the file is opened once and handed to
 * every loader registered on the cache, which copies what it needs (pread, bounded); then the
 * fd is closed. No view of a file is kept: its owner may truncate it, and a mapping, shared or
 * private, would then fault (SIGBUS) at the next read. Consumers keep what they derive in
 * slots: per module the symbol table and the unwind tables, per process the unwinder's address
 * space and the symbolizer's perf map, and an interpreter slot (Python) for each.
 *
 * One refresh policy for everybody: maps are captured at a process's first use, re-read at the
 * next use after proccache_mark_stale() (exec and mmap events) or at once with
 * proccache_recapture(), and at most once a second when an address falls outside every mapping.
 * A capture is kept, even once the process is gone, until every holder has released it (exit
 * seen), so short-lived processes are still symbolized.
 *
 * Reference counted (the symbolizer creates one, the unwinder takes a reference). Not
 * thread-safe. */
#ifndef EMBER_PROCCACHE_H
#define EMBER_PROCCACHE_H

#include <libelf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "elffile.h"

struct proccache;
struct strset;

/* What a consumer keeps in a module or a process; free (may be NULL) releases data when the
 * module or the process entry goes. tried: the consumer already attempted to fill it. */
struct proccache_slot {
	void *data;
	void (*free)(void *data);
	bool tried;
};

enum proccache_slot_id {
	PROCCACHE_SLOT_SYMBOLS,  /* module: struct elfsyms (symbolizer); process: its perf map */
	PROCCACHE_SLOT_UNWIND,   /* module: unwind tables; process: libunwind address space */
	PROCCACHE_SLOT_INTERP,   /* interpreter state (Python), for the next consumer */
	PROCCACHE_SLOT_MAX,
};

/* Who holds a process entry: it is dropped once nobody does. */
enum proccache_holder {
	PROCCACHE_HOLD_SYMBOLIZER = 1u << 0,
	PROCCACHE_HOLD_UNWINDER = 1u << 1,
};

struct proccache_module {
	/* identity */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	bool vdso;                           /* our copy of the vDSO: no identity, no file */
	char build_id[ELFFILE_BUILD_ID_MAX]; /* lowercase hex, "" when none; a hint only */
	char *path;                          /* path as the first process saw it */
	char *root;                          /* "/proc/PID/root" of that process */
	/* our copy of the vDSO (malloc'd); NULL for files, which are never mapped */
	uint8_t *image;
	size_t image_size;
	Elf *elf;                            /* see proccache_module_elf() */
	bool elf_tried;
	struct proccache_slot slots[PROCCACHE_SLOT_MAX];
	/* private */
	unsigned int refs;                   /* processes that hold it */
};

struct proccache_map {
	uint64_t start, end; /* [start, end) */
	uint64_t pgoff;      /* file offset of start */
	const char *path;    /* as in the maps, interned in the process; "" when anonymous */
	bool exec;
	bool vdso;
	/* the module of the file, for every mapping of a file mapped executable somewhere in the
	 * process (the unwinder needs the read-only segments too); NULL otherwise or unreadable */
	struct proccache_module *mod;
};

struct proccache_proc {
	pid_t pid;
	uint64_t start_time;      /* clock ticks since boot */
	bool gone;                /* seen gone at a re-read: the capture is kept */
	bool placeholder;         /* maps could not be read: no mappings, tried again at track */
	bool stale;               /* re-read at the next proccache_get() */
	uint64_t gen;             /* bumped at every capture: derived data must be rebuilt */
	struct proccache_map *maps;
	size_t nr_maps;
	struct proccache_slot slots[PROCCACHE_SLOT_MAX];
	unsigned int holders;     /* enum proccache_holder bits */
	/* private */
	uint64_t last_refresh_ns;
	struct proccache_module **mods;
	size_t nr_mods, cap_mods;
	struct strset *strs;
};

struct proccache_stats {
	uint64_t processes;    /* entries held now */
	uint64_t modules;      /* modules cached now (the vDSO included) */
	uint64_t module_opens; /* files opened and mapped into a new module, since creation */
	uint64_t captures;     /* /proc/PID/maps reads */
};

/* Called with every new module, the file open on fd (fd is -1 for the vDSO: use m->image):
 * the symbolizer loads its symbol table here, so the file is opened once for everybody.
 * root is "/proc/PID/root" of the process that mapped it. Errors are the loader's to keep. */
typedef void (*proccache_load_fn)(void *ctx, struct proccache_module *m, int fd, const char *root);

int proccache_new(struct proccache **ret_pc);
struct proccache *proccache_ref(struct proccache *pc);
/* Drops a reference; the last one frees everything. Accepts NULL. */
void proccache_unref(struct proccache *pc);

/* Registers the loader of slot (one per slot); it runs for modules made from now on. */
void proccache_set_loader(struct proccache *pc, enum proccache_slot_id slot, proccache_load_fn fn,
			  void *ctx);

/* The entry of pid, whatever its start time, or NULL. No syscall, no re-read. */
struct proccache_proc *proccache_find(struct proccache *pc, pid_t pid);

/* The entry of (pid, start_time), made and captured now if needed, marked held by holder.
 * start_time 0: read it now (a gone process is then served from an existing capture). An
 * entry of pid with another start time is dropped for everybody (the pid was reused). A stale
 * entry is re-read (keeping the old maps on failure). With placeholder, a process whose maps
 * cannot be read gets an entry without mappings all the same (and the error is returned);
 * with retry, such a placeholder is read again. Returns 0, -ESRCH (gone and never captured),
 * -ENOMEM or -errno; *ret_p is set when an entry exists. */
int proccache_get(struct proccache *pc, pid_t pid, uint64_t start_time, unsigned int holder,
		  bool placeholder, bool retry, struct proccache_proc **ret_p);

/* Re-reads p's maps now; on failure the old capture stays (-ESRCH also marks p gone). */
int proccache_recapture(struct proccache *pc, struct proccache_proc *p);
/* An address outside every mapping: is a re-read of p due? At most once a second, never once
 * p was seen gone. */
bool proccache_miss_due(const struct proccache_proc *p);
/* Exec or mmap seen: pid's maps are re-read at their next use. */
void proccache_mark_stale(struct proccache *pc, pid_t pid);
/* holder lets go of pid's entry; the entry (its capture, strings, slots) goes when nobody
 * holds it. Modules stay cached. */
void proccache_release(struct proccache *pc, pid_t pid, unsigned int holder);

/* The i-th entry (in pid order), for scans; NULL past the end. */
struct proccache_proc *proccache_proc_at(struct proccache *pc, size_t i);

/* The mapping holding addr, or NULL. */
const struct proccache_map *proccache_map_find(const struct proccache_proc *p, uint64_t addr);

/* A copy of str that lives as long as p's entry, or NULL (no memory, or the process holds
 * too many strings already). */
const char *proccache_intern(struct proccache_proc *p, const char *str);

/* libelf over m's image (the vDSO's), made at the first call; NULL for files (they have no
 * image: read them in a loader) and when m is not an ELF file. */
Elf *proccache_module_elf(struct proccache_module *m);

/* Sets a slot, freeing what it held. */
void proccache_slot_set(struct proccache_slot *s, void *data, void (*free_fn)(void *));

void proccache_get_stats(const struct proccache *pc, struct proccache_stats *ret_stats);

#endif
