/* gpu_receiver: the agent's end of the GPU hand-off (cupti/ember_gpu_proto.h). Listens on a
 * Unix stream socket, accepts many libember_cupti.so clients from its own thread (poll, never
 * blocking on a client), validates every message strictly (a malformed client is disconnected
 * and counted), and keeps the entries received until gpu_receiver_drain() hands them out.
 *
 * The pid of a sample is the peer's SO_PEERCRED pid (in the agent's pid namespace, whatever the
 * client claims), and its start time is read by the agent from /proc at accept. Kernel names are
 * demangled here (libstdc++'s __cxa_demangle, as the symbolizer does) into the sample's leaf
 * frame name. Pending entries are bounded (count and bytes); excess is counted as dropped.
 *
 * Anyone may connect, so every client is bounded: connections per uid (SO_PEERCRED) and in
 * all (never more than a quarter of RLIMIT_NOFILE), bytes of partial messages per uid and in
 * all (an idle client holds no buffer), a time for HELLO, for silence and for completing a
 * message once started; out of descriptors, the receiver accepts-and-closes with a reserved
 * descriptor and pauses accepting instead of spinning. What is refused is counted by reason.
 * An entry claiming more than an hour of GPU time is dropped and counted (absurd_value).
 * Thread-safe: the receiver thread and one draining thread. */
#ifndef EMBER_GPU_RECEIVER_H
#define EMBER_GPU_RECEIVER_H

#include <linux/types.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ember.h"
#include "ember_gpu_proto.h"

struct gpu_receiver;

/* Defaults. A CUDA process is one client; the library reports every flush (1 s by default,
 * 60 s at most), so two minutes of silence is a dead or hostile client. A message, once
 * started, is sent in full within one flush; 30 s is plenty on a Unix socket. */
#define GPU_RECV_MAX_CLIENTS         1024
#define GPU_RECV_MAX_UID_CLIENTS     64
#define GPU_RECV_MAX_UID_BYTES       (8u << 20)  /* 8 messages of the largest size in flight */
#define GPU_RECV_MAX_RX_BYTES        (64u << 20)
#define GPU_RECV_HELLO_TIMEOUT_MS    10000
#define GPU_RECV_IDLE_TIMEOUT_MS     120000
#define GPU_RECV_PARTIAL_TIMEOUT_MS  30000

/* Why a client was refused at accept or disconnected (ember_gpu_clients_refused_total). */
enum gpu_refuse_reason {
	GPU_REFUSE_UID_LIMIT = 0,  /* its uid has max_uid_clients connected */
	GPU_REFUSE_TOTAL_LIMIT,    /* max_clients connected */
	GPU_REFUSE_UID_BYTES,      /* its uid's partial messages would exceed max_uid_bytes */
	GPU_REFUSE_TOTAL_BYTES,    /* all partial messages would exceed max_rx_bytes */
	GPU_REFUSE_TIMEOUT,        /* no HELLO, silent, or a message not completed in time */
	GPU_REFUSE_OVERSIZED,      /* a length prefix over EMBER_GPU_MAX_MSG */
	GPU_REFUSE_MALFORMED,      /* any other protocol violation */
	GPU_REFUSE_NO_FDS,         /* accept() failed with EMFILE/ENFILE: accepted and closed */
	GPU_REFUSE_NO_IDENTITY,    /* no SO_PEERCRED pid, or its start time could not be read */
	GPU_REFUSE_MAX
};

const char *gpu_refuse_reason_name(enum gpu_refuse_reason why);

struct gpu_sample {
	pid_t pid;                   /* peer pid (SO_PEERCRED) */
	uint64_t start_time;         /* its start time, clock ticks (/proc/PID/stat 22), read at
				      * accept; never 0 (a client without one is refused). A
				      * consumer compares it with the pid's current start time
				      * to refuse samples of a pid that has been reused. */
	uint16_t op;                 /* enum ember_gpu_op */
	uint32_t flags;              /* EMBER_GPU_ENTRY_* */
	const char *name;            /* as sent: kernel symbol (mangled), copy kind, ... */
	const char *leaf;            /* "[cuda kernel] <demangled>", "[cuda memcpy HtoD]",
				      * "[cuda memset]", "[cuda graph] graph N" */
	const uint64_t *pcs;         /* launch stack, return addresses, innermost first */
	size_t npcs;
	const uint64_t *capture_pcs; /* graph node creation stack, or NULL */
	size_t ncapture;
	/* Protocol version 2: the Python frames read at the launch and at the node's creation
	 * (as sent: unchecked until resolved), innermost first, and the walks' statuses (enum
	 * ember_py_status; 0: no walk). */
	const struct ember_py_frame *py, *capture_py;
	size_t npy, ncapture_py;
	uint32_t py_status, capture_py_status;
	int64_t gpu_ns;              /* summed GPU time */
	int64_t launches;            /* records */
	uint64_t start_ns, end_ns;   /* the library's interval (CLOCK_REALTIME) */
};

struct gpu_receiver_stats {
	uint64_t clients;            /* connected now */
	uint64_t accepted;           /* connections accepted since start */
	uint64_t rejected;           /* clients refused or disconnected: the sum of refused[] */
	uint64_t refused[GPU_REFUSE_MAX];
	uint64_t batches;            /* BATCH messages accepted */
	uint64_t entries;            /* entries accepted */
	uint64_t dropped;            /* entries dropped: pending store full */
	uint64_t absurd;             /* entries dropped: GPU time over an hour, or launches < 0 */
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
 * ember_gpu_clients_refused_total by reason, ember_gpu_dropped_total by reason, the last series written being ember_gpu_dropped_total so
 * that a caller can add reasons of its own right after). Thread-safe. */
struct metrics_writer;
void gpu_receiver_write_metrics(struct gpu_receiver *r, struct metrics_writer *w);

/* Bounds (defaults: 1024 clients, 200000 pending entries, 64 MiB pending); apply to what
 * arrives next. Thread-safe. */
void gpu_receiver_set_limits(struct gpu_receiver *r, size_t max_clients, size_t max_pending,
			     size_t max_pending_bytes);
/* Per-client bounds (defaults GPU_RECV_MAX_UID_CLIENTS, _UID_BYTES, _RX_BYTES). Thread-safe. */
void gpu_receiver_set_client_limits(struct gpu_receiver *r, size_t max_uid_clients,
				    size_t max_uid_bytes, size_t max_rx_bytes);
/* Timeouts in ms (defaults GPU_RECV_*_TIMEOUT_MS; 0 disables one): HELLO after accept, any byte
 * since the last, the rest of a message after its first byte. Thread-safe; applied from the
 * thread's next wake-up. */
void gpu_receiver_set_timeouts(struct gpu_receiver *r, int64_t hello_ms, int64_t idle_ms,
			       int64_t partial_ms);

#endif
