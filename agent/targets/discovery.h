/* discovery: container and pod metadata from the Docker Engine API and the Kubernetes API, so
 * that processes are named the way their owners name them (DESIGN.md, default service names).
 *
 * Each source runs on its own thread with libcurl and json-c, and fills one table: container id
 * (64 lowercase hex digits) -> service name and metadata labels.
 *   - Docker, over its Unix socket: the running containers listed at start and again every
 *     30 s, and an inspect of any id asked for and not known (a container started since): the
 *     service is the com.docker.compose.service label, else the container's name; labels
 *     container and compose_project.
 *   - Kubernetes: the pods of this node (fieldSelector spec.nodeName), listed (paginated) and
 *     then watched; a 410 Gone, an error or a closed watch relists. The service is the pod's
 *     pyroscope.io/service_name annotation, else NAMESPACE/CONTAINER; labels namespace, pod,
 *     container, node. TLS verified against the given CA; the bearer token is read again at
 *     every request (it rotates) and never logged.
 * Kubernetes wins over Docker for an id both know. Sampling never waits: discovery_lookup()
 * answers from the table at once and queues an unknown id for the Docker source. An API that
 * is absent, down, slow (5 s per request at most), or answers garbage costs one warning per
 * outage and a retry with exponential backoff (1 s to 60 s); lookups answer "unknown"
 * meanwhile. Bounded: DISCOVERY_MAX_ENTRIES ids, DISCOVERY_MAX_BODY bytes per answer, bounded
 * strings; what does not fit is counted. Values are sanitized (DESIGN.md, labels), never
 * dropped. Thread-safe. */
#ifndef EMBER_DISCOVERY_H
#define EMBER_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cgmeta.h"

#define DISCOVERY_MAX_ENTRIES 65536
#define DISCOVERY_MAX_BODY (64u << 20)  /* one HTTP answer (a page of pods, a list) */
#define DISCOVERY_MAX_EVENT (1u << 20)  /* one watch event line */
#define DISCOVERY_NAME_MAX 256          /* service names and label values, bytes with NUL */
#define DISCOVERY_MAX_LABELS 4

struct discovery_label {
	const char *name;                    /* static: "namespace", "pod", "container", ... */
	char value[DISCOVERY_NAME_MAX];
};

/* What a process is, by its cgroups and the APIs. */
struct discovery_meta {
	char service[DISCOVERY_NAME_MAX];
	size_t nlabels;
	struct discovery_label labels[DISCOVERY_MAX_LABELS];
};

struct discovery_opts {
	const char *docker_socket;   /* NULL: none */
	const char *kube_api;        /* https://HOST:PORT, NULL: none */
	const char *kube_token_file;
	const char *kube_ca_file;
	const char *node_name;
};

/* Lookups by source and outcome (ember_discovery_lookups_total{source,outcome}). */
enum discovery_source { DISC_DOCKER, DISC_KUBE, DISC_SYSTEMD, DISC_SOURCE_COUNT };
enum discovery_outcome {
	DISC_FOUND,       /* a process named from the source's metadata */
	DISC_NOT_FOUND,   /* the source answered: no such container */
	DISC_ERROR,       /* the request failed (down, slow, garbage, refused) */
	DISC_OUTCOME_COUNT
};

struct discovery_stats {
	uint64_t lookups[DISC_SOURCE_COUNT][DISC_OUTCOME_COUNT];
	uint64_t requests[DISC_SOURCE_COUNT];  /* HTTP requests made */
	uint64_t relists;                      /* Kubernetes lists after the first */
	uint64_t entries;                      /* ids known now */
	uint64_t table_full;                   /* ids not kept: the table was full */
	bool up[DISC_SOURCE_COUNT];            /* the source's last request succeeded */
};

struct discovery;

/* Starts the sources that o names (none: a discovery that only knows systemd units). 0 or
 * -errno (threads, memory). Never fails because an API is unreachable. */
int discovery_start(const struct discovery_opts *o, struct discovery **ret);
/* Stops the threads (interrupting requests in flight) and frees. NULL-safe. */
void discovery_stop(struct discovery *d);

/* How to name the process with these cgroups: 1 (ret filled: a container with metadata, or a
 * systemd unit), 0 (nothing known: the executable's name; an unknown container id is queued
 * for a lookup and discovery_generation() moves when it is answered). d may be NULL. */
int discovery_resolve(struct discovery *d, const struct cgmeta *cg, struct discovery_meta *ret);
/* Moves whenever the table changes: callers re-resolve what was unknown. */
uint64_t discovery_generation(struct discovery *d);
/* True while an answer about a container id may still come: a Docker lookup queued, under way
 * or failed (asked again after the backoff, at the next discovery_resolve()), or (with
 * Kubernetes on) an id no pod of this node has shown yet. */
bool discovery_pending(struct discovery *d, const char *container_id);

void discovery_get_stats(struct discovery *d, struct discovery_stats *ret);
const char *discovery_source_name(enum discovery_source s);
const char *discovery_outcome_name(enum discovery_outcome o);

/* Sanitizing (also used by the sources): a service name keeps [A-Za-z0-9_.-/] and turns the
 * rest into '_'; a label value keeps printable ASCII and valid UTF-8 and turns control bytes,
 * invalid sequences and the characters of /ingest's name syntax ({},=) into '_'. Both cut at DISCOVERY_NAME_MAX - 1 bytes (at a character
 * boundary). An empty result is "_". */
void discovery_sanitize_service(const char *in, size_t len, char *out);
void discovery_sanitize_value(const char *in, size_t len, char *out);

#endif
