/* pprof: builds one perftools.profiles.Profile (pprof/profile.proto, encoded with protobuf-c).
 *
 * A builder owns deduplicated string, function, location and mapping tables. Callers add
 * mappings, then samples as leaf-first arrays of frames; identical stacks are merged by adding
 * their values. pprof_encode() packs (optionally gzipped) bytes that satisfy Pyroscope's checks:
 * string_table[0] == "", no zero ids, one value per sample type.
 * Not thread-safe: one builder per profile, used by one thread. Strings passed in are copied. */
#ifndef EMBER_PPROF_H
#define EMBER_PPROF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pprof_builder;

struct pprof_value_type {
	const char *type; /* e.g. "cpu" */
	const char *unit; /* e.g. "nanoseconds" */
};

struct pprof_mapping_desc {
	uint64_t start;       /* runtime start address */
	uint64_t limit;       /* runtime end address (exclusive) */
	uint64_t file_offset; /* offset in the file of `start` */
	const char *file;     /* path as the process saw it, or "[kernel.kallsyms]", "[vdso]" */
	const char *build_id; /* lowercase hex GNU build-id, or NULL */
};

/* A native frame has an address and a mapping; a source frame (Python) has neither, but a
 * filename and line. Frames are one Function per (function, filename, start_line) and one
 * Location per (mapping_id, address, Function, line). */
struct pprof_frame {
	const char *function; /* never NULL: a symbol, or "module+0xoffset" when unknown */
	uint64_t address;     /* runtime PC (0 for synthetic and source frames) */
	uint32_t mapping_id;  /* from pprof_add_mapping(), 0 for none */
	const char *filename; /* source file (Function.filename), NULL for none */
	int64_t line;         /* source line (Line.line), 0 when unknown */
	int64_t start_line;   /* first line of the function (Function.start_line), 0 when unknown */
};

/* Creates a builder for `ntypes` sample types (copied). period_type may be NULL.
 * Returns 0 or -ENOMEM/-EINVAL (also for a sample type name with '-', which Pyroscope rejects). */
int pprof_builder_new(const struct pprof_value_type *types, size_t ntypes,
		      const struct pprof_value_type *period_type, int64_t period,
		      struct pprof_builder **ret_builder);
void pprof_builder_free(struct pprof_builder *b);

/* Start of the collection window and its length (Profile.time_nanos / duration_nanos). */
void pprof_set_time(struct pprof_builder *b, int64_t time_nanos, int64_t duration_nanos);
/* Adds a Profile.comment string. Returns 0 or -ENOMEM. */
int pprof_add_comment(struct pprof_builder *b, const char *comment);

/* Returns the mapping's id (>= 1), deduplicated by (file, build_id, start, limit, offset);
 * 0 on allocation failure. */
uint32_t pprof_add_mapping(struct pprof_builder *b, const struct pprof_mapping_desc *m);

/* Adds a sample: frames[0] is the leaf, frames[nframes-1] the root; values has one entry per
 * sample type. A stack identical to an earlier one is merged into it (values added).
 * Returns 0, -EINVAL (no frames, a NULL function, a mapping_id never returned by
 * pprof_add_mapping) or -ENOMEM. Function names and filenames that are not valid UTF-8 are
 * stored with '?' for each invalid byte, since Pyroscope rejects a profile holding invalid
 * UTF-8. */
int pprof_add_sample(struct pprof_builder *b, const struct pprof_frame *frames, size_t nframes,
		     const int64_t *values);

/* Number of distinct samples so far. */
size_t pprof_sample_count(const struct pprof_builder *b);

/* Serializes the profile. With gzip, the result is a gzip stream of the encoded message.
 * *ret_buf is malloc'd and owned by the caller. Returns 0, -ENOMEM or -EIO (zlib). */
int pprof_encode(struct pprof_builder *b, bool gzip, uint8_t **ret_buf, size_t *ret_len);

#endif
