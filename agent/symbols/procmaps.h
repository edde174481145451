/* procmaps: reads /proc/PID/maps and the process start time.
 *
 * procmaps_read() returns the mappings in address order (the kernel's order), with paths copied
 * and " (deleted)" removed (flagged instead). The caller frees the array with procmaps_free().
 * Thread-safe: no shared state. */
#ifndef EMBER_PROCMAPS_H
#define EMBER_PROCMAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct procmaps_entry {
	uint64_t start, end; /* runtime range [start, end) */
	uint64_t pgoff;      /* file offset of start */
	uint64_t inode;      /* 0 for anonymous mappings */
	uint32_t dev_major, dev_minor;
	bool exec;           /* 'x' permission */
	bool deleted;        /* the path ended in " (deleted)" */
	char *path;          /* file path, "[vdso]", "[stack]", ... or "" when anonymous */
};

/* Returns 0, -ESRCH if the process is gone, or -errno. On success *ret_maps may be NULL when
 * *ret_nr is 0. */
int procmaps_read(pid_t pid, struct procmaps_entry **ret_maps, size_t *ret_nr);
void procmaps_free(struct procmaps_entry *maps, size_t nr);

/* Start time of pid in clock ticks since boot (/proc/PID/stat field 22). 0 or -ESRCH/-errno. */
int procmaps_start_time(pid_t pid, uint64_t *ret_start);
/* The process's state letter (/proc/PID/stat field 3: 'R', 'S', ... 'Z' for a zombie). 0 or
 * -errno. */
int procmaps_state(pid_t pid, char *ret_state);
/* The parent's pid (/proc/PID/stat field 4). 0 or -errno. */
int procmaps_parent(pid_t pid, pid_t *ret_ppid);

/* Opens the file behind mapping e of pid: /proc/PID/map_files (the very file mapped, even
 * deleted; needs CAP_SYS_ADMIN), /proc/PID/root/PATH (other mount namespaces), /proc/PID/exe
 * (the main binary, even deleted), then PATH when pid shares our mount namespace. Every way
 * but the first is checked against the mapped inode, so a replaced file is never misread.
 * Returns an O_CLOEXEC fd or -ENOENT. */
int procmaps_open_file(pid_t pid, const struct procmaps_entry *e);

/* Our own vDSO image (the same for every process of this kernel and ABI): its address and
 * size. Returns 0 or -ENOENT. */
int procmaps_self_vdso(uint64_t *ret_start, size_t *ret_size);

#endif
