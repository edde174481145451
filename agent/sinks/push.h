/* push: the sink that sends uploads to Grafana Pyroscope or an Alloy pyroscope.receive_http,
 * over Connect (POST /push.v1.PusherService/Push, a protobuf-c PushRequest) or the legacy
 * POST /ingest?format=pprof, with libcurl.
 *
 * push_submit() only enqueues: it takes ownership of the upload and never blocks on the
 * network. One background thread sends the queue oldest first, retrying connection errors,
 * 408, 429 and 5xx with exponential backoff and jitter; other 4xx are dropped. The queue is
 * bounded in bytes (the oldest are dropped) and by age (Pyroscope refuses profiles older than
 * 1 h). All functions are thread-safe except push_free(), which must be the last call. */
#ifndef EMBER_PUSH_H
#define EMBER_PUSH_H

#include <stddef.h>
#include <stdint.h>

#include "upload.h"

struct push;

enum push_protocol {
	PUSH_PROTO_PUSH = 0, /* Connect push.v1.PusherService/Push, application/proto */
	PUSH_PROTO_INGEST,   /* /ingest?name=...&format=pprof, gzipped pprof as the body */
};

/* Every string is copied by push_new(); zero values select the defaults. */
struct push_opts {
	const char *server;         /* base URL, http:// or https://, e.g. http://pyroscope:4040 */
	enum push_protocol protocol;
	const char *tenant_id;      /* X-Scope-OrgID, or NULL */
	const char *basic_user;     /* HTTP basic auth user, or NULL */
	const char *basic_password; /* its password (read by the caller); never logged */
	const char *bearer_token;   /* Authorization: Bearer, or NULL; never logged */
	const char *bearer_token_file; /* read at push_new() when bearer_token is NULL */
	const char *ca_file;        /* PEM bundle to verify the server with, or NULL for the system's */
	size_t queue_max_bytes;     /* bound on queued upload bytes; default 64 MiB */
	double timeout_s;           /* per request; default 10 */
	double backoff_min_s;       /* first retry delay; default 0.5 */
	double backoff_max_s;       /* cap on the retry delay; default 30 */
	int64_t max_age_ns;         /* drop uploads whose from_ns is older; default 55 min */
	const char *spy_name;       /* /ingest spyName (label pyroscope_spy); default "ember" */
};

enum push_drop_reason {
	PUSH_DROP_QUEUE_FULL = 0, /* evicted, oldest first, to keep the queue under its bound */
	PUSH_DROP_TOO_OLD,        /* from_ns older than max_age_ns */
	PUSH_DROP_REJECTED,       /* a 4xx other than 408 and 429: the server will never take it */
	PUSH_DROP_SHUTDOWN,       /* still queued when push_stop()'s deadline passed */
	PUSH_DROP_REDIRECT,       /* a 3xx: redirects are not followed */
	PUSH_DROP_MAX
};

/* Why a request got no HTTP answer (ember_upload_errors_total{kind}). */
enum push_error_kind {
	PUSH_ERR_TLS = 0,  /* handshake, certificate, verification */
	PUSH_ERR_DNS,      /* the host did not resolve */
	PUSH_ERR_CONNECT,  /* refused, unreachable, reset */
	PUSH_ERR_TIMEOUT,  /* connect or request over its time */
	PUSH_ERR_PROTOCOL, /* not HTTP, nothing answered, headers over 64 KiB */
	PUSH_ERR_OTHER,
	PUSH_ERR_MAX
};

struct push_stats {
	uint64_t sent;                      /* uploads the server accepted (2xx) */
	uint64_t failed;                    /* requests answered with an HTTP error status */
	uint64_t conn_errors;               /* requests that got no HTTP answer: sum of errors[] */
	uint64_t errors[PUSH_ERR_MAX];      /* the same, by kind */
	uint64_t body_truncated;            /* answers whose body was cut at the kept 4 KiB */
	uint64_t retries;                   /* attempts after the first, over all uploads */
	uint64_t dropped[PUSH_DROP_MAX];    /* uploads dropped, by reason */
	uint64_t queue_bytes;               /* bytes queued now (upload_size), in flight included */
	uint64_t queue_len;                 /* uploads queued now, in flight included */
	uint64_t latency_count;             /* successful requests timed */
	double latency_sum_s;               /* their total time, seconds */
	double latency_max_s;               /* the slowest of them */
	char last_error[256];               /* the last failure in words, "" if none */
};

/* Validates opts (scheme, one auth method, a readable bearer_token_file), sets up libcurl and
 * starts the sender thread. Returns 0, -EINVAL (bad option), -ENOENT/-EACCES (token file),
 * -ENOMEM or -EAGAIN (thread). The error is logged at debug; the caller reports it. */
int push_new(const struct push_opts *opts, struct push **ret_push);

/* Queues u for sending and takes ownership of it in every case. Never blocks on I/O.
 * Returns 0 when queued or dropped by policy (too old, larger than the whole queue; counted in
 * the stats), -EINVAL for an upload without pprof data or __name__, -ESHUTDOWN after
 * push_stop(). */
int push_submit(struct push *p, struct upload *u);

/* Lets the sender deliver what it can for up to timeout_s seconds from now (retries included,
 * each request cut short at the deadline), then stops it and drops what is left (counted as
 * PUSH_DROP_SHUTDOWN). Returns when the thread has exited. Later calls do nothing. */
void push_stop(struct push *p, double timeout_s);

/* Stops the sender at once if it still runs (push_stop(p, 0)) and frees everything.
 * Accepts NULL. */
void push_free(struct push *p);

void push_get_stats(struct push *p, struct push_stats *ret_stats);

const char *push_drop_reason_name(enum push_drop_reason r);
const char *push_error_kind_name(enum push_error_kind k);

/* Writes url into buf (n bytes, always NUL-terminated when n > 0) with any user:password@ of
 * its authority replaced by three asterisks and '@' (http: + // + u:p@host becomes
 * http: + // + ***@host): for every log line that shows a server URL. Returns the length of
 * the whole result (snprintf's convention). */
size_t push_redact_url(const char *url, char *buf, size_t n);

/* Writes the push client's self-metrics (ember_profiles_sent_total, _failed_total,
 * _dropped_total by reason, ember_upload_errors_total by kind,
 * ember_upload_responses_truncated_total, ember_upload_queue_bytes,
 * ember_upload_latency_seconds).
 * Thread-safe. */
struct metrics_writer;
void push_write_metrics(struct push *p, struct metrics_writer *w);

#endif
