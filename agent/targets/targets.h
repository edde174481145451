/* targets: services (NAME=SELECTOR) and which processes belong to them.
 *
 * A process belongs to the first service whose selector matches: pid:N (the process),
 * comm:NAME (its comm), exe:PATH-or-glob (its executable, fnmatch), cgroup:PATH (cgroup v2 path,
 * descendants included), container:ID-prefix (a Docker/containerd/CRI-O id in its cgroup path),
 * docker:NAME-or-glob (its container's Compose service or name), k8s:NAMESPACE/CONTAINER-or-glob
 * (its pod's namespace and container name) or unit:NAME-or-glob (its systemd unit, with or
 * without ".service"); the last three through discovery (targets_set_discovery): a process
 * whose metadata is not known yet does not match, and matches once it is.
 * With no services, every process matches a service named after its executable.
 * Reads /proc; not thread-safe. */
#ifndef EMBER_TARGETS_H
#define EMBER_TARGETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "strlist.h"

struct targets;

/* Parses the --service values (already validated by options). Returns 0 or -errno. */
int targets_new(const struct strlist *services, struct targets **ret_t);
void targets_free(struct targets *t);

size_t targets_count(const struct targets *t);
/* Name of service id (0-based); NULL if out of range. */
const char *targets_service_name(const struct targets *t, uint32_t id);
/* True when some selector needs to look at new processes (comm, exe, cgroup, container). */
bool targets_need_execs(const struct targets *t);

/* True when some selector looks at cgroups (cgroup, container): moves must be reported. */
bool targets_need_cgroups(const struct targets *t);

/* True when some selector needs container or pod metadata (docker:, k8s:). */
bool targets_need_metadata(const struct targets *t);
struct discovery;
/* The metadata source of docker:, k8s: and unit: selectors; NULL: units only. */
void targets_set_discovery(struct targets *t, struct discovery *d);

/* Returns the service id that pid belongs to, or -ENOENT (no match) / -ESRCH (gone). */
int targets_match(const struct targets *t, pid_t pid);

/* Does cgroup v2 path name a container whose id starts with prefix (lowercase hex)? The
 * 64-hex-digit id is a whole path component, alone or after "docker-", "cri-containerd-",
 * "crio-" and the like, optionally followed by ".scope". */
bool targets_cgroup_has_container(const char *path, const char *prefix);

typedef void (*targets_visit_fn)(void *ctx, pid_t pid, uint32_t service_id);
/* Calls fn for every live process that matches a service. Returns the number of matches. */
int targets_scan(const struct targets *t, targets_visit_fn fn, void *ctx);

#endif
