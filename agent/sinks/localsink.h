/* localsink: the sink of `ember agent` when no --server is given. Each upload becomes
 * DIR/<service>/<family>-<UTC start>.pb.gz (plus -N before .pb.gz when a second upload lands
 * on the same second) and, when it carries one, DIR/<service>/<family>.svg (the latest flame
 * graph, replaced each time). Files appear atomically (temp file + fsync + rename). The
 * *.pb.gz files Ember wrote under DIR are bounded by max_bytes: the oldest go first. An
 * in-memory index, built by one scan at start, keeps the bound without rescanning the tree.
 * Not thread-safe: one thread owns a localsink. */
#ifndef EMBER_LOCALSINK_H
#define EMBER_LOCALSINK_H

#include <stdint.h>
#include <sys/types.h>

#include "upload.h"

struct localsink;

/* Most .pb.gz files the index tracks; past it the oldest are deleted as for the byte bound. */
#define LOCALSINK_MAX_FILES 100000
/* Default of --output-max-mb. */
#define LOCALSINK_DEFAULT_MAX_MB 512

struct localsink_stats {
	uint64_t files_written;  /* .pb.gz files written (the .svg files are not counted) */
	uint64_t bytes_written;  /* bytes of those files */
	uint64_t files_deleted;  /* .pb.gz files deleted to keep the bound */
	uint64_t write_errors;   /* localsink_write() calls that failed, and failed deletions */
	uint64_t files_on_disk;  /* .pb.gz files the index holds now */
	uint64_t bytes_on_disk;  /* and their total size */
};

/* Files are written with file_mode (profiles hold every process's stacks: 0600 by default at the
 * caller), directories it makes with x added where r is given (0700). Creates dir (and its
 * parents) if needed, checks that a file can be created in it,
 * scans it for the .pb.gz files of a previous run and applies the bound to them.
 * Returns 0, or -errno: -ENOTDIR, -EACCES, -EROFS... when dir cannot be created or written,
 * -EINVAL for an empty dir or max_bytes == 0. Logs the failing step at debug; the caller
 * prints the error with the path. */
int localsink_new(const char *dir, uint64_t max_bytes, mode_t file_mode, struct localsink **ret_sink);

/* Writes one upload; does not take ownership of it. Returns 0 or -errno (-EFBIG for a
 * profile larger than the whole bound, -EINVAL for a missing profile or negative time);
 * a failure is counted in write_errors and leaves no partial file behind. */
int localsink_write(struct localsink *sink, const struct upload *upload);

void localsink_get_stats(const struct localsink *sink, struct localsink_stats *ret_stats);

/* Accepts NULL. Leaves the files in place. */
void localsink_free(struct localsink *sink);

#endif
