/* handoff: the library's side of ember_gpu_proto.h, a Unix stream socket client that never
 * blocks the application. Messages are built whole, then queued in one bounded buffer (4 MiB
 * by default); handoff_pump() connects when needed (at most once a second), sends HELLO first
 * on every connection, and writes what the socket takes with MSG_DONTWAIT. A message that does
 * not fit, or that was cut by a lost connection, is dropped and counted. With no agent
 * listening the buffer fills and further messages are dropped and counted.
 * Not thread-safe: one thread (the library's flush thread, or atexit) drives it. */
#ifndef EMBER_CUPTI_HANDOFF_H
#define EMBER_CUPTI_HANDOFF_H

#include <stddef.h>
#include <stdint.h>

#include "ember_gpu_proto.h"

struct handoff;
struct join_entry;

/* path: the agent's socket. max_queue: bytes kept while the agent is away. */
int handoff_new(const char *path, size_t max_queue, const struct ember_gpu_hello *hello,
		struct handoff **ret_h);
void handoff_free(struct handoff *h);

/* Batch building: begin, add entries (split into several BATCH messages when one would pass
 * EMBER_GPU_MAX_MSG), end. Entries are truncated to the protocol's bounds. */
void handoff_batch_begin(struct handoff *h, uint64_t start_ns, uint64_t end_ns);
int handoff_batch_add(struct handoff *h, const struct join_entry *e);
void handoff_batch_end(struct handoff *h);
/* Queues a COUNTERS message with the library's counters. */
void handoff_counters(struct handoff *h);

/* Connects if needed (not more often than every retry_ns) and writes what it can without
 * blocking. Returns 1 when the queue is empty, 0 when data is pending, -errno when not
 * connected. */
int handoff_pump(struct handoff *h, uint64_t now_ns);
/* Pumps until the queue is empty or timeout_ms passed (exit path only). */
void handoff_drain(struct handoff *h, int timeout_ms);
size_t handoff_queued(const struct handoff *h);
int handoff_connected(const struct handoff *h);

#endif
