/* alloc_collector: allocation sampling. Owns the alloc BPF object: the byte-interval sampler,
 * the bounded live map of sampled allocations, the sample ring buffer and the loss counters.
 *
 * Two modes. ALLOC_MODE_UPROBE needs no restart: for each selected process it finds every
 * mapped library that defines malloc (glibc, jemalloc, tcmalloc, a static binary) and attaches,
 * with a pid filter so other processes never trap, to malloc, calloc, realloc, free,
 * posix_memalign, aligned_alloc, memalign, valloc and pvalloc where present. Sampling is decided
 * at entry in BPF; with session uprobes (kernel >= 6.13) only sampled calls pay for a return
 * probe. free is not probed at its first instruction when that one would be single-stepped
 * (glibc's `test %rdi,%rdi`: ~22 us per call here): x86insn_uprobe_offset() walks over
 * leading instructions that only set flags to the first one the kernel emulates (push, jcc,
 * jmp, call, nop), where the arguments are still intact; unknown code falls back to the entry.
 * ALLOC_MODE_PRELOAD attaches to the USDT probes of libember_alloc.so (LD_PRELOAD), which
 * samples in-process and reports sampled allocations and their frees only.
 *
 * Lifecycle: open (loads BPF) → add targets (again after exec or dlopen: new libraries are
 * attached, known ones kept) → poll often (consumes samples) → drain once per interval.
 * Not thread-safe: one thread drives a collector. */
#ifndef EMBER_ALLOC_COLLECTOR_H
#define EMBER_ALLOC_COLLECTOR_H

#include <linux/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ember.h"

struct alloc_collector;

enum alloc_mode {
	ALLOC_MODE_UPROBE = 0,
	ALLOC_MODE_PRELOAD,
};

struct alloc_collector_opts {
	enum alloc_mode mode;
	__u64 sample_bytes;    /* mean sampling interval in bytes; 0: 512 KiB */
	unsigned live_entries; /* live map capacity; 0: 65536 (16 B key + 16 B value each) */
	bool free_at_entry;    /* uprobe mode: probe free at its first instruction (benchmarks) */
	bool no_session;       /* uprobe mode: use entry + uretprobe pairs even if sessions work */
};

/* Loads the BPF object. Returns 0 or -errno (-EPERM: missing privileges). */
int alloc_collector_open(const struct alloc_collector_opts *opts, struct alloc_collector **ret_c);
void alloc_collector_free(struct alloc_collector *c);

/* "session", "classic" (uprobe mode without sessions) or "preload". */
const char *alloc_collector_mode_name(const struct alloc_collector *c);

/* Selects a process, or re-scans it (after exec or dlopen): attaches to every allocator library
 * (uprobe mode) or to libember_alloc.so (preload mode) it maps that is not attached yet.
 * cookie is its start time in clock ticks. Returns the number of new attachments (0 when
 * nothing new), -ENOENT when it maps no allocator (preload: the library is not loaded yet),
 * -ESRCH when it is gone, or -errno. */
int alloc_collector_add_target(struct alloc_collector *c, pid_t tgid, __u64 cookie);
/* Preload mode: attaches to libember_alloc.so at path for every process that maps it, now or
 * later, so that no process's first allocations wait for the agent to notice it. Events of
 * processes no target names still carry their pid and start time. Per-process attachments to
 * the same file are skipped from then on (they would count each sample twice). 0 or -errno. */
int alloc_collector_attach_everyone(struct alloc_collector *c, const char *path);
/* A descriptor that polls readable when sampled allocations wait in the ring buffer. */
int alloc_collector_epoll_fd(struct alloc_collector *c);
/* Attaches to the file at path (a host path) for pid even if pid does not map it yet, e.g.
 * libember_alloc.so for a command about to exec with it preloaded: the probes arm when the
 * process maps the file. Returns 1, 0 if already attached, or -errno. */
int alloc_collector_attach_path(struct alloc_collector *c, pid_t tgid, __u64 cookie,
				const char *path);
/* The same for a path as process tgid sees it (an LD_PRELOAD entry it execs with), resolved
 * inside its root: an absolute symlink in a container stays in the container, and a FIFO,
 * device or non-regular file is refused (-EINVAL) without being opened. */
int alloc_collector_attach_in_root(struct alloc_collector *c, pid_t tgid, __u64 cookie,
				   const char *path);
/* Detaches from pid; its live allocations are dropped at the next drain. */
int alloc_collector_remove_target(struct alloc_collector *c, pid_t tgid);

/* fn(ctx, pid) is called from alloc_collector_poll() at the first sample of a process after it
 * was selected or re-scanned, while it most likely still runs: the moment to capture its maps
 * for symbolization (a short-lived process may be gone by the next drain). */
typedef void (*alloc_first_fn)(void *ctx, pid_t pid);
void alloc_collector_on_first_sample(struct alloc_collector *c, alloc_first_fn fn, void *ctx);

/* Consumes sampled allocations for up to timeout_ms. Call at least once a second (the ring
 * buffer holds ~3,500 samples). Returns the number consumed or -errno. */
int alloc_collector_poll(struct alloc_collector *c, int timeout_ms);

/* One stack with its memory values (estimates of the true totals: each sample of size s taken
 * at mean interval T weighs 1 / (1 - exp(-s / T))). */
struct alloc_stack {
	__u32 tgid;
	__u64 cookie;      /* start time of the process when selected */
	const __u64 *ips;  /* user stack, innermost first: return addresses (uprobe mode), or the
			    * probe site in libember_alloc.so then return addresses (preload) */
	size_t nips;       /* 0: the stack was lost */
	bool preload;      /* leading frames belong to libember_alloc.so */
	const struct ember_py_frame *py; /* Python frames of the allocating thread, or NULL */
	size_t npy;
	__u32 py_status;   /* enum ember_py_status; 0: no walk */
	int64_t values[4]; /* alloc_objects, alloc_space, inuse_objects, inuse_space */
};
typedef void (*alloc_stack_fn)(void *ctx, const struct alloc_stack *s);

/* Describes a Python process (its py_procs entry): its sampled allocations then carry the
 * allocating thread's Python frames. 0 or -errno. */
int alloc_collector_set_python(struct alloc_collector *c, pid_t tgid, const struct ember_py_proc *pp);

/* Shows the Python frames of each sample that arrived since the last call (or drain), so the
 * caller can resolve their code objects while the process is alive: samples are symbolized
 * at the interval's end, when it may be gone. */
typedef void (*alloc_python_fn)(void *ctx, pid_t tgid, const struct ember_py_frame *py, size_t npy);
void alloc_collector_visit_python(struct alloc_collector *c, alloc_python_fn fn, void *ctx);

/* Ends an interval: consumes pending samples, then calls fn once per allocation sampled since
 * the previous drain (alloc_* values set, inuse_* zero) and once per sampled allocation live
 * now (inuse_* set, alloc_* zero); callers aggregate by stack. Returns the number of calls or
 * -errno. */
int alloc_collector_drain(struct alloc_collector *c, alloc_stack_fn fn, void *ctx);

/* Mean sampling interval in bytes (the pprof period). */
__u64 alloc_collector_interval(const struct alloc_collector *c);

/* Sums the per-CPU counters into out[EMBER_ASTAT_MAX]. Returns 0 or -errno. */
int alloc_collector_read_stats(struct alloc_collector *c, __u64 out[EMBER_ASTAT_MAX]);
/* True when some sampled allocation could not be tracked (live map or library table full,
 * samples lost): the in-use values are then a lower bound. */
bool alloc_collector_live_incomplete(struct alloc_collector *c);

/* Writes the collector's self-metrics: ember_alloc_samples_total, ember_alloc_lost_total by
 * reason (every loss counter of enum ember_alloc_stat). Safe on the metrics thread. */
struct metrics_writer;
void alloc_collector_write_metrics(struct alloc_collector *c, struct metrics_writer *w);

/* Run count and run time of the allocator programs (kernel.bpf_stats_enabled=1). */
int alloc_collector_prog_stats(struct alloc_collector *c, __u64 *ret_run_cnt, __u64 *ret_run_time_ns);

/* The estimate weight of one sample: 1 / (1 - exp(-size / interval)). */
double alloc_collector_weight(__u64 size, __u64 interval);

#endif
