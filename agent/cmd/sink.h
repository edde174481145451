/* sink: where `ember agent` and `ember run` deliver each interval's profiles: the push client
 * (--server: Pyroscope or Alloy) or the local directory (--output), with the series labels
 * (hostname, EMBER_TAG_*, --label) and the server's limits applied. Not thread-safe, except
 * sink_write_metrics, which the metrics thread calls. */
#ifndef EMBER_SINK_H
#define EMBER_SINK_H

#include "options.h"
#include "pipeline.h"

struct sink;
struct metrics_writer;

/* Reads the secrets the options name, creates the push client or the local directory. Prints
 * one line naming the option and returns 2 on failure, else 0 with *ret set. */
int sink_new(const struct ember_config *cfg, struct sink **ret);
/* A pipeline_hooks.profile callback: encodes p under Pyroscope's limits and delivers it. */
void sink_profile(void *sink, const struct pipeline_profile *p);
/* The sink's self-metrics (profiles sent, failed, dropped, queue, latency, folded stacks). */
void sink_write_metrics(void *sink, struct metrics_writer *w);
/* What the destination is, for the start-up log line. */
const char *sink_describe(const struct sink *s);
/* Lets the push client deliver what is queued for up to timeout_s, then stops it. */
void sink_stop(struct sink *s, double timeout_s);
void sink_free(struct sink *s);

#endif
