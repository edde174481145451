/* gpu_receiver: the agent's end of the GPU hand-off (cupti/ember_gpu_proto.h). Listens on a
 * Unix stream socket, accepts many libember_cupti.so clients from its own thread (poll, never
 * blocking on a client), validates every message strictly (a malformed client is disconnected
 * and counted), and keeps the entries received until gpu_receiver_drain() hands them out.
 *
 * The pid of a sample is the peer's SO_PEERCRED pid (in the agent's pid namespace, whatever the
 * client claims), and its start time is read by the agent from /proc at accept. Kernel names are
 * demangled here (libstdc++'s __cxa_demangle, as the symbolizer does) into the sample's leaf
 * frame name. Pending entries are bounded (count and bytes); excess is counted as dropped.
 * Thread-safe: the receiver thread and one draining thread. */
#ifndef EMBER_GPU_RECEIVER_H
#define EMBER_GPU_RECEIVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ember_gpu_proto.h"

struct gpu_receiver;

struct gpu_sample {
	pid_t pid;                   /* peer pid (SO_PEERCRED) */
	uint64_t start_time;         /* its start time, clock ticks (/proc/PID/stat 22); 0 unknown */
	uint16_t op;                 /* enum ember_gpu_op */
	uint32_t flags;              /* EMBER_GPU_ENTRY_* */
	const char *name;            /* as sent: kernel symbol (mangled), copy kind, ... */
	const char *leaf;            /* "[cuda kernel] <demangled>", "[cuda memcpy HtoD]",
				      * "[cuda memset]", "[cuda graph] graph N" */
	const uint64_t *pcs;         /* launch stack, return addresses, innermost first */
	size_t npcs;
	const uint64_t *capture_pcs; /* graph node creation stack, or NULL */
	size_t ncapture;
	int64_t gpu_ns;              /* summed GPU time */
	int64_t launches;            /* records */
	uint64_t start_ns, end_ns;   /* the library's interval (CLOCK_REALTIME) */
};

struct gpu_receiver_stats {
	uint64_t clients;            /* connected now */
	uint64_t accepted;           /* connections accepted since start */
	uint64_t rejected;           /* clients disconnected for a malformed message, or over limit */
	uint64_t batches;            /* BATCH messages accepted */
	uint64_t entries;            /* entries accepted */
	uint64_t dropped;            /* entries dropped: pending store full */
	/* Library counters summed over every client seen (enum ember_gpu_counter). */
	uint64_t lib[EMBER_GPU_CTR_COUNT];
};

/* Binds path (creating its directory, mode 0755, if missing), makes the socket mode 0666 so
 * that services under any uid can connect, and starts the receiver thread. An existing socket
 * that nobody answers is replaced; one that answers gives -EADDRINUSE. Returns 0 or -errno. */
int gpu_receiver_start(const char *path, struct gpu_receiver **ret_r);
/* Stops the thread, closes every client, removes the socket file. NULL-safe. */
void gpu_receiver_stop(struct gpu_receiver *r);

/* Hands every pending sample to fn (strings and arrays valid during the call), oldest first,
 * and forgets them. Returns the number of samples. */
size_t gpu_receiver_drain(struct gpu_receiver *r,
			  void (*fn)(void *ctx, const struct gpu_sample *s), void *ctx);

void gpu_receiver_get_stats(struct gpu_receiver *r, struct gpu_receiver_stats *ret_stats);

/* Writes the receiver's self-metrics (ember_gpu_clients, ember_gpu_entries_total,
 * ember_gpu_dropped_total by reason, the last series written being ember_gpu_dropped_total so
 * that a caller can add reasons of its own right after). Thread-safe. */
struct metrics_writer;
void gpu_receiver_write_metrics(struct gpu_receiver *r, struct metrics_writer *w);

/* Bounds (defaults: 1024 clients, 200000 pending entries, 64 MiB pending); apply to what
 * arrives next. Thread-safe. */
void gpu_receiver_set_limits(struct gpu_receiver *r, size_t max_clients, size_t max_pending,
			     size_t max_pending_bytes);

#endif
