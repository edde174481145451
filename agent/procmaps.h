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

#endif
