/* metrics: Ember's self-metrics over HTTP in the Prometheus text format (version 0.0.4), at
 * --metrics-addr. GET /metrics answers the metrics, GET / a pointer to /metrics, anything else
 * 404 (405 for a method other than GET). One background thread serves every connection with
 * poll() and non-blocking sockets, with a limit on connections, request size and the time a
 * client may take, so a slow or hostile client never blocks the agent.
 *
 * The values come from the agent through a callback that runs ON THE METRICS THREAD at each
 * scrape: it must only read atomics or take the agent's own lock, never block for long, and
 * report through the metrics_counter/gauge/summary helpers below. The module adds the process
 * metrics itself (ember_agent_cpu_seconds_total, ember_agent_resident_memory_bytes,
 * ember_agent_start_time_seconds).
 *
 * The names the agent exposes (one place to keep them consistent):
 *   ember_samples_total                         counter  CPU samples aggregated
 *   ember_samples_lost_total{reason=...}        counter  samples dropped, e.g. reason="stack_collision",
 *                                                        "ringbuf_full", "map_full"
 *   ember_processes_tracked                     gauge    processes currently profiled
 *   ember_profiles_sent_total                   counter  profiles accepted by the sink
 *   ember_profiles_failed_total                 counter  failed upload attempts
 *   ember_profiles_dropped_total{reason=...}    counter  profiles given up, e.g. reason="queue_full",
 *                                                        "retries_exhausted", "rejected"
 *   ember_upload_queue_bytes                    gauge    bytes waiting in the upload queue
 *   ember_upload_latency_seconds                summary  _sum and _count of upload durations
 *   ember_symbolization_misses_total            counter  frames left without a symbol
 *   ember_metrics_connections_dropped_total{reason=busy|evicted|no_fds|timeout}
 *                                               counter  connections to /metrics closed unanswered
 */
#ifndef EMBER_METRICS_H
#define EMBER_METRICS_H

#include <stdint.h>

struct metrics;
struct metrics_writer;

/* Connections served at once. One more takes the slot of the oldest connection that has not
 * sent its request in METRICS_EVICT_GRACE_MS (a slow client: a scraper sends at once); when
 * every connection is younger, it gets one of METRICS_SPARE_CONNS spare slots, where it is
 * answered 503 unless its request comes within METRICS_EVICT_GRACE_MS (the oldest such
 * connection makes way for a newer one when the spares are full too). */
#define METRICS_MAX_CONNS 64
#define METRICS_SPARE_CONNS 8
#define METRICS_EVICT_GRACE_MS 250
/* Out of descriptors (EMFILE), accepting pauses this long instead of spinning. */
#define METRICS_ACCEPT_BACKOFF_MS 1000
/* Largest request head (request line + headers); larger is answered 431. */
#define METRICS_MAX_REQUEST 8192
/* Time a client has to send its request, and again to read the answer, in ms. */
#define METRICS_TIMEOUT_MS 2000
/* Largest /metrics body; lines past it are left out (and logged at debug). */
#define METRICS_MAX_BODY (4u << 20)

enum metrics_conn_drop {
	METRICS_DROP_BUSY = 0,   /* every slot busy and young: answered 503 */
	METRICS_DROP_EVICTED,    /* made way for a new connection: no request after the grace */
	METRICS_DROP_NO_FDS,     /* accept() failed with EMFILE/ENFILE: accepted and closed */
	METRICS_DROP_TIMEOUT,    /* request or answer not done in METRICS_TIMEOUT_MS */
	METRICS_DROP_MAX
};

/* Called at each scrape, on the metrics thread (see above). */
typedef void (*metrics_collect_fn)(void *ctx, struct metrics_writer *w);

/* Helpers for the callback. name must match [a-zA-Z_:][a-zA-Z0-9_:]*; help is free text.
 * labels is NULL or a NULL-terminated array of name, value pairs, e.g.
 *   (const char *[]){ "reason", "stack_collision", NULL }
 * with label names matching [a-zA-Z_][a-zA-Z0-9_]*; values are escaped as the format requires.
 * The # HELP and # TYPE lines are written once per name: call for all label sets of one name
 * in a row. An invalid name or label name leaves the line out (logged at debug). */
void metrics_counter(struct metrics_writer *w, const char *name, const char *help,
		     const char *const *labels, double value);
void metrics_gauge(struct metrics_writer *w, const char *name, const char *help,
		   const char *const *labels, double value);
/* A summary without quantiles: name_sum and name_count. */
void metrics_summary(struct metrics_writer *w, const char *name, const char *help,
		     const char *const *labels, double sum, uint64_t count);

/* Binds addr ("HOST:PORT", "[V6ADDR]:PORT", or ":PORT" for 127.0.0.1; port 0 picks a free
 * one) and starts the thread. fn may be NULL (process metrics only); ctx is passed to it.
 * Returns 0, -EINVAL for an address that does not parse or resolve, or -errno from socket,
 * bind or listen (-EADDRINUSE, -EACCES...). */
int metrics_start(const char *addr, metrics_collect_fn fn, void *ctx, struct metrics **ret_metrics);

/* The bound TCP port (useful after port 0), or -errno. */
int metrics_port(const struct metrics *m);

/* Stops and joins the thread, closes every connection and frees m. Accepts NULL. After it
 * returns the callback is no longer running and will not be called again. */
void metrics_stop(struct metrics *m);

#endif
