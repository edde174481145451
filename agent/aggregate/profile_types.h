/* profile_types: the profile families Ember emits, as Pyroscope sees them. The single source of
 * truth for the profile builders and for `ember help profiles`, which the deploy consistency
 * test reads to check the dashboards. */
#ifndef EMBER_PROFILE_TYPES_H
#define EMBER_PROFILE_TYPES_H

#include <stddef.h>

struct profile_family {
	const char *family;       /* --profiles name: "cpu", "alloc", "gpu" */
	const char *name;         /* __name__ */
	const char *types[4][2];  /* sample types (type, unit); unused entries NULL */
	size_t ntypes;
	const char *period[2];    /* period type (type, unit) */
	int delta_false;          /* series carries __delta__=false */
};

extern const struct profile_family profile_families[];
extern const size_t profile_families_count;

/* The family named `family` ("cpu", ...), or NULL. */
const struct profile_family *profile_family_find(const char *family);

#endif
