/* services: the table of services a pipeline aggregates for. Each has a name and the time of
 * its last sample; ids are dense and stable while a service lives, and a retired service's id
 * is reused. Bounded: at most max services; a name that does not fit is refused and counted,
 * never silently lost. A service idle for idle_ns that its owner says is unused can be retired
 * (services named after executables come and go with their processes: thousands of
 * short-lived programs must not fill the table for good). Not thread-safe. */
#ifndef EMBER_SERVICES_H
#define EMBER_SERVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The agent's bound, and how long a service without samples is kept. */
#define SERVICES_MAX 4096
#define SERVICES_IDLE_NS (5 * 60 * 1000000000LL)

struct services;

int services_new(size_t max, struct services **ret);
void services_free(struct services *t);

/* The id of name, added if new; either way marked used at now. Returns the id, -ENOSPC when
 * the table is full (counted in services_refused), -EINVAL for an empty name, or -ENOMEM. */
int services_get(struct services *t, const char *name, int64_t now);
/* The same for a service that carries metadata labels (a container's or a pod's):
 * "name=value\n" lines, sorted by name; a service is its name and its labels, so two
 * Compose projects' "web" services are two services. */
int services_get_labeled(struct services *t, const char *name, const char *labels, int64_t now);
/* A sample of id at now. */
void services_touch(struct services *t, uint32_t id, int64_t now);
/* The name of id, or NULL for a free id (never used, or retired). */
const char *services_name(const struct services *t, uint32_t id);
/* The labels of id as given to services_get_labeled(), or NULL. */
const char *services_labels(const struct services *t, uint32_t id);
/* Ids are below this; it grows as services are added. */
size_t services_capacity(const struct services *t);
size_t services_count(const struct services *t);

/* Retires every service without a sample since now - idle_ns for which in_use(ctx, id) is
 * false. Returns how many were retired (also counted in services_retired). */
size_t services_retire(struct services *t, int64_t now, int64_t idle_ns,
		       bool (*in_use)(void *ctx, uint32_t id), void *ctx);

/* A service name from a file or command path: its basename with anything outside
 * [A-Za-z0-9_.-] replaced by '_'; fallback when that leaves nothing. */
void services_name_from_path(const char *path, char *buf, size_t n, const char *fallback);

uint64_t services_refused(const struct services *t);
uint64_t services_retired(const struct services *t);

#endif
