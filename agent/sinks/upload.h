/* upload: one profile of one series for one interval, as handed from aggregation to a sink
 * (push to Pyroscope/Alloy, or the local directory). Owns all its memory; upload_free()
 * releases it. Immutable once submitted to a sink. */
#ifndef EMBER_UPLOAD_H
#define EMBER_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

struct upload_label {
	char *name;
	char *value;
};

struct upload {
	char *service;               /* service_name, also the local sink's directory name */
	char *family;                /* "cpu", "alloc" or "gpu": local sink file prefix */
	struct upload_label *labels; /* series labels: __name__, service_name, hostname, user
				      * labels, and __delta__=false for memory; sorted by name */
	size_t nlabels;
	uint8_t *pprof_gz;           /* gzipped pprof */
	size_t pprof_len;
	uint8_t *svg;                /* flame graph of the same data, or NULL (local sink only) */
	size_t svg_len;
	int64_t from_ns;             /* interval start, CLOCK_REALTIME ns */
	int64_t until_ns;            /* interval end */
};

void upload_free(struct upload *u);

/* Bytes an upload holds in memory (for queue bounds). */
size_t upload_size(const struct upload *u);

/* Value of label `name`, or NULL. */
const char *upload_label(const struct upload *u, const char *name);

#endif
