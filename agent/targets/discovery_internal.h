/* discovery_internal: what discovery.c shares with its sources (docker.c, kube.c): the table,
 * the HTTP helper and the thread loop's pieces. Private to agent/targets. */
#ifndef EMBER_DISCOVERY_INTERNAL_H
#define EMBER_DISCOVERY_INTERNAL_H

#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>

#include "discovery.h"

/* Per-request bound: a slow API is an API that is down. */
#define DISC_TIMEOUT_MS 5000
#define DISC_BACKOFF_MIN_NS (1000000000LL)
#define DISC_BACKOFF_MAX_NS (60 * 1000000000LL)
/* Docker: a container that is not there is asked again after this long. */
#define DISC_ABSENT_NS (60 * 1000000000LL)
#define DISC_QUEUE 256

enum disc_state {
	DISC_KNOWN = 1,    /* meta valid */
	DISC_ABSENT,       /* Docker said 404: not asked again until `until` */
	DISC_QUEUED,       /* waiting for a Docker inspect */
	DISC_FAILED,       /* the inspect failed: asked again after `until` */
};

struct disc_entry {
	char id[CGMETA_ID_LEN + 1];
	uint8_t source;            /* enum discovery_source of the metadata */
	uint8_t state;             /* enum disc_state */
	uint32_t epoch;            /* the list that last saw it (per source) */
	int64_t until;             /* CLOCK_MONOTONIC ns (ABSENT, FAILED) */
	char *service;             /* KNOWN: malloc'd, sanitized */
	char *labels;              /* KNOWN: "name\0value\0..." malloc'd, nlabels pairs */
	uint8_t nlabels;
	uint32_t labels_len;
};

struct discovery {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	atomic_bool stop;
	struct disc_entry **slots; /* open addressing, NULL: free; cap power of two */
	size_t cap, n;
	char queue[DISC_QUEUE][CGMETA_ID_LEN + 1];
	size_t qhead, qlen;
	atomic_uint_fast64_t gen;
	struct discovery_stats st;
	uint32_t epoch[DISC_SOURCE_COUNT];

	char *docker_socket;
	char *kube_api, *kube_token_file, *kube_ca_file, *node_name;
	pthread_t threads[2];
	int nthreads;
};

/* ---- table (call with d->lock held) ---- */

struct disc_entry *disc_find(struct discovery *d, const char *id);
/* The entry of id, created (state 0) if missing; NULL when the table is full (counted). */
struct disc_entry *disc_get(struct discovery *d, const char *id);
/* Sets a KNOWN entry's metadata (copies); false on memory exhaustion. Bumps the generation. */
bool disc_set_meta(struct discovery *d, struct disc_entry *e, enum discovery_source src,
		   const struct discovery_meta *m);
void disc_remove(struct discovery *d, const char *id);
/* Removes every KNOWN entry of src whose epoch is not epoch (a list did not see it). */
void disc_sweep(struct discovery *d, enum discovery_source src, uint32_t epoch);

/* ---- HTTP ---- */

struct disc_http {
	CURL *curl;
	struct discovery *d;
	enum discovery_source src;
	char *body;
	size_t len, cap, max;
	/* Streaming: called for each complete line; a negative return ends the transfer. */
	int (*on_line)(void *ctx, const char *line, size_t len);
	void *line_ctx;
	bool overflow;
	char errbuf[CURL_ERROR_SIZE];
	const char *unix_socket;   /* of the last request, for messages */
	int64_t backoff;           /* current retry delay, 0 when up */
	bool warned;               /* one warning per outage */
};

int disc_http_init(struct disc_http *h, struct discovery *d, enum discovery_source src);
void disc_http_fini(struct disc_http *h);
/* GET url. unix_socket for Docker, else NULL; auth_header ("Authorization: Bearer ...") or
 * NULL; ca_file for TLS or NULL; timeout_ms 0 for no total bound (watches: the stop flag and a
 * low-speed bound still end it). Returns the HTTP status (body in h->body, NUL-terminated) or
 * -errno: -ETIMEDOUT, -ECONNREFUSED (cannot connect), -EMSGSIZE (body over h->max), -EIO. */
long disc_http_get(struct disc_http *h, const char *url, const char *unix_socket,
		   const char *auth_header, const char *ca_file, long timeout_ms);
/* Records the outcome of a request for the outage logic: ok false starts or extends the
 * backoff and warns once (what, the error); ok true after an outage says it recovered. */
void disc_http_outcome(struct disc_http *h, bool ok, const char *what, long status);
/* Sleeps until stop, a wake-up, or ns have passed. Returns true when stopping. */
bool disc_wait(struct discovery *d, int64_t ns);

/* ---- JSON helpers: NULL or 0 when absent or of another type ---- */

const char *disc_json_str(json_object *o, const char *key);
json_object *disc_json_obj(json_object *o, const char *key);
json_object *disc_json_arr(json_object *o, const char *key);
/* Parses len bytes as one JSON value; NULL if it is not JSON. */
json_object *disc_json_parse(const char *s, size_t len);

/* ---- sources: the parsers of their answers (fuzzed), and the thread bodies ---- */

/* GET /containers/json: every container listed is put with epoch, those of older epochs
 * removed. False if body is not a list. */
bool disc_docker_parse_list(struct discovery *d, const char *body, size_t len, uint32_t epoch);
/* GET /containers/{id}/json: 1 put, -1 not an inspect of id. */
int disc_docker_parse_inspect(struct discovery *d, const char *id, const char *body,
			      size_t len, uint32_t epoch);
/* A page of a pod list (event false: the number of pods, -1 if not a PodList) or one watch
 * event line (event true: 0 applied, 410 Gone, -1 not an event). */
int disc_kube_parse(struct discovery *d, const char *body, size_t len, bool event);
void *disc_docker_main(void *arg);
void *disc_kube_main(void *arg);

#endif
