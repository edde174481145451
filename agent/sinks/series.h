/* series: the labels of the series the agent sends and the uploads that carry them.
 *
 * Every series has __name__ (the family's), service_name, hostname, the EMBER_TAG_<KEY>=VALUE
 * environment labels (key lowercased) and the --label KEY=VALUE labels (which win over a tag of
 * the same key), and __delta__=false for the memory family: at most 30 in all, Pyroscope's
 * limit, checked once at start. Not thread-safe. */
#ifndef EMBER_SERIES_H
#define EMBER_SERIES_H

#include <stddef.h>
#include <stdint.h>

#include "strlist.h"
#include "profile_types.h"
#include "stackagg.h"
#include "upload.h"

#define MAX_SERIES_LABELS 30
/* Room kept for a container's, pod's or unit's metadata labels (namespace, pod, container,
 * node; container, compose_project; unit). */
#define SERIES_META_LABELS 4

/* hostname and the user's labels, sorted by name */
struct series_labels {
	struct upload_label *l;
	size_t n;
};

/* Collects hostname, the environment's tags and user_labels (validated by options). Prints one
 * line and returns -EINVAL for a bad tag or too many labels; -ENOMEM. */
int series_labels_init(struct series_labels *sl, const struct strlist *user_labels);
void series_labels_fini(struct series_labels *sl);

/* An upload of res (its buffers are moved into the upload) for service in family fam, covering
 * [from, until), with the service's metadata labels meta ("name=value\n"..., or NULL; a user
 * label of the same name wins). Labels sorted by name. Returns 0 or -ENOMEM. */
int series_make_upload(const struct series_labels *sl, const char *service, const char *meta,
		       const struct profile_family *fam, struct stackagg_result *res, int64_t from,
		       int64_t until, struct upload **ret);

#endif
