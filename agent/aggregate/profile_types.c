#include "profile_types.h"

#include <string.h>

/* DESIGN.md "Profiles and labels"; the IDs Pyroscope derives are
 * <__name__>:<type>:<unit>:<period type>:<period unit> (PYROSCOPE.md §3). */
const struct profile_family profile_families[] = {
	{ "cpu", "process_cpu", { { "cpu", "nanoseconds" } }, 1, { "cpu", "nanoseconds" }, 0 },
	{ "alloc", "memory",
	  { { "alloc_objects", "count" }, { "alloc_space", "bytes" }, { "inuse_objects", "count" },
	    { "inuse_space", "bytes" } },
	  4, { "space", "bytes" }, 1 },
	{ "gpu", "gpu", { { "gpu_time", "nanoseconds" }, { "launches", "count" } }, 2,
	  { "gpu_time", "nanoseconds" }, 0 },
	{ "offcpu", "off_cpu", { { "off_cpu", "nanoseconds" }, { "switches", "count" } }, 2,
	  { "off_cpu", "nanoseconds" }, 0 },
};
const size_t profile_families_count = sizeof(profile_families) / sizeof(profile_families[0]);

const struct profile_family *profile_family_find(const char *family)
{
	for (size_t i = 0; i < profile_families_count; i++)
		if (!strcmp(profile_families[i].family, family))
			return &profile_families[i];
	return NULL;
}
