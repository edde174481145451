/* ember_gpu_proto: the wire protocol between libember_cupti.so (inside a CUDA application) and
 * the agent's gpu_receiver, over a Unix stream socket (default /run/ember/gpu.sock).
 *
 * One connection per process. Every message is a 16-byte header followed by `length` payload
 * bytes. All integers are fixed-width little-endian (both ends are x86_64/aarch64 Linux; the
 * header refuses to compile on a big-endian host); structs have explicit padding and their
 * sizes are asserted. The library writes, the agent only reads: there is no reply, so the
 * application never waits on the agent.
 *
 *   HELLO     first message, exactly once: who is speaking (informational; the agent trusts
 *             SO_PEERCRED for the pid and reads the start time itself from /proc).
 *   BATCH     one aggregation interval: entries of (op, name, launch PCs, capture PCs, and
 *             from version 2 the launch's and the capture's Python frames) with summed GPU
 *             nanoseconds and launch counts.
 *   COUNTERS  cumulative counters since the library started (what was lost, and why).
 *
 * A receiver refuses (disconnects) a message with a wrong magic or version, an unknown type, a
 * length above EMBER_GPU_MAX_MSG, or a payload whose entries do not fill it exactly.
 *
 * Versions: 1, native launch stacks; 2 (this library), the same messages with Python frames
 * after an entry's PCs, counted in the four bytes that version 1 keeps zero. A receiver accepts
 * both, message by message; a version 1 entry with those bytes set is malformed. */
#ifndef EMBER_GPU_PROTO_H
#define EMBER_GPU_PROTO_H

#include <stdint.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ember_gpu_proto: the wire format is little-endian; add byte swapping for this host"
#endif

#define EMBER_GPU_MAGIC      0x50474d45u /* "EMGP" as bytes on the wire */
#define EMBER_GPU_VERSION    2         /* what the library sends */
#define EMBER_GPU_VERSION_MIN 1        /* the oldest a receiver accepts */
#define EMBER_GPU_MAX_MSG    (1u << 20)  /* payload bytes; the library splits larger batches */
#define EMBER_GPU_MAX_FRAMES 128         /* per stack (launch or capture) */
#define EMBER_GPU_MAX_PY_FRAMES 128      /* Python frames per stack, version 2 */
#define EMBER_GPU_MAX_NAME   4096        /* bytes of an op name, no NUL on the wire */
#define EMBER_GPU_DEFAULT_SOCKET "/run/ember/gpu.sock"

enum ember_gpu_msg_type {
	EMBER_GPU_MSG_HELLO = 1,
	EMBER_GPU_MSG_BATCH = 2,
	EMBER_GPU_MSG_COUNTERS = 3,
};

struct ember_gpu_hdr {
	uint32_t magic;    /* EMBER_GPU_MAGIC */
	uint16_t version;  /* EMBER_GPU_VERSION */
	uint16_t type;     /* enum ember_gpu_msg_type */
	uint32_t length;   /* payload bytes after this header, <= EMBER_GPU_MAX_MSG */
	uint32_t reserved; /* 0 */
};
_Static_assert(sizeof(struct ember_gpu_hdr) == 16, "ember_gpu_hdr layout");

struct ember_gpu_hello {
	uint32_t pid;            /* getpid() in the application's pid namespace */
	uint32_t cupti_version;  /* cuptiGetVersion(), e.g. 130001 */
	uint64_t start_ticks;    /* /proc/self/stat field 22 (clock ticks since boot) */
	uint64_t init_realtime_ns; /* CLOCK_REALTIME when the library initialised */
	uint32_t flags;          /* EMBER_GPU_HELLO_* */
	uint32_t reserved;
	char comm[16];           /* /proc/self/comm, NUL-padded */
};
_Static_assert(sizeof(struct ember_gpu_hello) == 48, "ember_gpu_hello layout");

#define EMBER_GPU_HELLO_GRAPH_TRACE 0x1u /* graph mode: one record per graph launch */
#define EMBER_GPU_HELLO_PYTHON      0x2u /* version 2: the library reads Python frames here */

struct ember_gpu_batch {
	uint64_t start_ns;  /* interval start, CLOCK_REALTIME ns (CUPTI's timebase) */
	uint64_t end_ns;    /* interval end */
	uint32_t nentries;  /* ember_gpu_entry records that follow */
	uint32_t reserved;
};
_Static_assert(sizeof(struct ember_gpu_batch) == 24, "ember_gpu_batch layout");

enum ember_gpu_op {
	EMBER_GPU_OP_KERNEL = 1, /* name: kernel symbol as CUPTI gives it (usually mangled) */
	EMBER_GPU_OP_MEMCPY = 2, /* name: copy kind, "HtoD", "DtoH", "DtoD", "PtoP", ... */
	EMBER_GPU_OP_MEMSET = 3, /* name: empty */
	EMBER_GPU_OP_GRAPH = 4,  /* graph mode; name: "graph <graphId>" */
};

/* Where the launch stack came from. */
#define EMBER_GPU_ENTRY_NO_STACK  0x1u /* no launch stack known: "[no launch stack]" */
#define EMBER_GPU_ENTRY_UNSAMPLED 0x2u /* launch not sampled by the rate limit: "[unsampled launch]" */
#define EMBER_GPU_ENTRY_GRAPH     0x4u /* executed as a node of a graph launch */

/* Entry: header, then name_len bytes padded with zeros to a multiple of 8, then nframes u64
 * launch PCs, then ncapture u64 capture PCs (graph node creation stack), then (version 2) npy
 * launch and ncapture_py capture Python frames, 16 bytes each as bpf/ember.h's struct
 * ember_py_frame (code object address | EMBER_PYF_* flags, validation key, instruction),
 * innermost first: read in the launching thread (cupti/pycap.h) exactly as the agent's BPF walk
 * reads a sampled one. PCs are return addresses, innermost first; the receiver symbolizes
 * pc - 1. */
struct ember_gpu_entry {
	uint16_t op;         /* enum ember_gpu_op */
	uint16_t name_len;   /* <= EMBER_GPU_MAX_NAME */
	uint16_t nframes;    /* <= EMBER_GPU_MAX_FRAMES */
	uint16_t ncapture;   /* <= EMBER_GPU_MAX_FRAMES */
	uint32_t flags;      /* EMBER_GPU_ENTRY_* */
	uint8_t npy;         /* version 2: launch Python frames, <= EMBER_GPU_MAX_PY_FRAMES */
	uint8_t ncapture_py; /* version 2: capture Python frames, <= EMBER_GPU_MAX_PY_FRAMES */
	uint8_t py_status;   /* version 2: enum ember_py_status of the launch walk, 0: none */
	uint8_t capture_py_status; /* version 2: the same for the capture stack */
	uint64_t gpu_time_ns; /* sum of end - start over the records */
	uint64_t launches;    /* records (kernel executions, copies, sets, graph launches) */
};
_Static_assert(sizeof(struct ember_gpu_entry) == 32, "ember_gpu_entry layout");

#define EMBER_GPU_PY_FRAME_SIZE 16 /* sizeof(struct ember_py_frame) */

static inline uint32_t ember_gpu_pad8(uint32_t n)
{
	return (n + 7u) & ~7u;
}

/* Counters: ncounters u64 values follow, in enum order; a receiver reads the ones it knows
 * and ignores the rest, so the list can grow. All are cumulative since library start. */
struct ember_gpu_counters {
	uint32_t ncounters;
	uint32_t reserved;
};
_Static_assert(sizeof(struct ember_gpu_counters) == 8, "ember_gpu_counters layout");

enum ember_gpu_counter {
	EMBER_GPU_CTR_API_CALLS,         /* outermost launch/copy/set API calls seen */
	EMBER_GPU_CTR_STACKS_CAPTURED,   /* stacks walked */
	EMBER_GPU_CTR_UNSAMPLED,         /* calls not walked because of the rate limit */
	EMBER_GPU_CTR_UNW_FALLBACKS,     /* frame-pointer walks that fell back to unw_backtrace */
	EMBER_GPU_CTR_RECORDS,           /* activity records joined */
	EMBER_GPU_CTR_ZERO_TS,           /* records with start == end == 0 (no GPU time) */
	EMBER_GPU_CTR_CUPTI_DROPPED,     /* cuptiActivityGetNumDroppedRecords */
	EMBER_GPU_CTR_BUFFERS_REFUSED,   /* buffer requests refused (pool limit) */
	EMBER_GPU_CTR_NO_STACK,          /* records whose correlation id had no stack */
	EMBER_GPU_CTR_CORR_EVICTED,      /* correlation entries overwritten before use */
	EMBER_GPU_CTR_STACK_TABLE_FULL,  /* stacks not interned: table full */
	EMBER_GPU_CTR_AGG_FULL,          /* records dropped: aggregation table full */
	EMBER_GPU_CTR_HANDOFF_DROPPED,   /* messages dropped: no agent and the buffer was full */
	EMBER_GPU_CTR_HANDOFF_DROPPED_BYTES,
	EMBER_GPU_CTR_OTHER_RECORDS,     /* records of kinds we do not join */
	EMBER_GPU_CTR_PY_STACKS,         /* version 2: walks that read Python frames */
	EMBER_GPU_CTR_PY_NO_TSTATE,      /* walks in a Python process, on a thread without frames */
	EMBER_GPU_CTR_COUNT
};

#endif
