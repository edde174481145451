/* cpu_collector: the CPU sampler. Owns the cpu BPF object: one software cpu-clock perf event
 * per online CPU running ember_cpu_sample, the targets map, double-buffered count and stack
 * maps, per-CPU loss counters and the process-event ring buffer.
 *
 * Lifecycle: cpu_collector_open() loads and attaches the tracepoints; add targets; then
 * cpu_collector_start() opens the perf events. cpu_collector_poll() delivers process events;
 * cpu_collector_drain() hands over every stack counted since the previous drain.
 * Not thread-safe: one thread drives a collector. Every function but open, start, poll and
 * epoll_fd accepts a NULL collector (a GPU-only run has no sampler) and does nothing. */
#ifndef EMBER_CPU_COLLECTOR_H
#define EMBER_CPU_COLLECTOR_H

#include <linux/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ember.h"

struct cpu_collector;
struct proccache;

struct cpu_collector_opts {
	unsigned sample_rate;     /* Hz per CPU */
	bool select_all;          /* every process is a target (no --service) */
	bool follow_children;     /* children of targets become targets */
	bool report_execs;        /* EXEC events for every process, for selector matching */
	bool report_cgroups;      /* CGROUP events when processes move between cgroups */
	unsigned max_targets;     /* 0: default (16384) */
	unsigned stack_entries;   /* per buffer; 0: default (16384) */
	unsigned count_entries;   /* per buffer; 0: default (16384) */
	/* DWARF mode (--unwind dwarf|auto): targets flagged EMBER_TARGET_DWARF, or all of them
	 * with dwarf_all, send register + stack snapshots unwound here with libunwind. */
	bool dwarf_all;
	bool dwarf_first;         /* --unwind auto: new targets and new images start in DWARF mode
				   * until cpu_collector_set_dwarf() picks */
	unsigned stack_size;      /* snapshot bytes, 512..65536; 0: what each thread uses */
	bool offcpu;              /* off-CPU blocks of the targets' threads too */
	bool offcpu_preempted;    /* ... preemption included */
	unsigned offcpu_min_ns;   /* blocks shorter than this are sampled, weighted */
	unsigned unwind_budget;   /* snapshots unwound per process per second; 0: 4 x sample_rate */
	struct proccache *cache;  /* the symbolizer's (symbolizer_cache()), shared by the unwinder
				   * so each file is opened once; NULL: the unwinder keeps its own */
};

/* Opens, loads and attaches the tracepoints. Returns 0 or a negative errno; -EPERM means
 * missing privileges, -ENOSYS a kernel without the needed BPF support. */
int cpu_collector_open(const struct cpu_collector_opts *opts, struct cpu_collector **ret_c);
void cpu_collector_free(struct cpu_collector *c);

/* Opens one cpu-clock perf event per online CPU and attaches the sampler.
 * Returns 0, -ENODEV (no perf events) or -errno. */
int cpu_collector_start(struct cpu_collector *c);

/* Selects a process. cookie is its start time in clock ticks (/proc/PID/stat field 22). */
int cpu_collector_add_target(struct cpu_collector *c, pid_t tgid, __u32 service_id, __u64 cookie);
int cpu_collector_remove_target(struct cpu_collector *c, pid_t tgid);

typedef void (*cpu_event_fn)(void *ctx, const struct ember_event *e);
/* Waits up to timeout_ms for process events and calls fn for each (and for any event that
 * cpu_collector_drain() finds later). Returns the number of events, 0 on timeout, or -errno
 * (-EINTR when interrupted by a signal). */
int cpu_collector_poll(struct cpu_collector *c, int timeout_ms, cpu_event_fn fn, void *ctx);
/* A descriptor that polls readable when process events or snapshots wait (to wait on it
 * together with other sources, then call cpu_collector_poll with timeout 0). */
int cpu_collector_epoll_fd(struct cpu_collector *c);

/* One counted stack. Stacks are leaf first; ustack is NULL/0 when the user stack was lost
 * (key->user_stack_id < 0), kstack NULL/0 for a sample taken in user mode. */
struct cpu_stack {
	const struct ember_cpu_key *key;
	const __u64 *ustack;
	size_t ustack_len;
	const __u64 *kstack;
	size_t kstack_len;
	__u64 count;              /* CPU: samples; off-CPU: switches (blocks) */
	bool offcpu;              /* an off-CPU stack: offcpu_ns is its blocked time */
	__u64 offcpu_ns;
	bool dwarf;               /* the user stack was unwound from a snapshot */
	bool truncated;           /* DWARF: the unwind stopped before the thread's root */
	/* Python frames of the sampled thread (innermost first) and the walk's outcome; py_status
	 * is 0 for a sample without a walk (not a Python process, or not described yet). */
	const struct ember_py_frame *py;
	size_t npy;
	__u32 py_status;          /* enum ember_py_status */
};
typedef void (*cpu_stack_fn)(void *ctx, const struct cpu_stack *s);
/* Switches the sampler to the other buffer pair and hands every stack of the previous one to
 * fn, then empties it. Returns the number of stacks or -errno. */
int cpu_collector_drain(struct cpu_collector *c, cpu_stack_fn fn, void *ctx);

/* Switches a target between frame-pointer stacks and DWARF snapshots (--unwind auto).
 * Returns 0, -ENOENT when it is not a target, or -errno. */
int cpu_collector_set_dwarf(struct cpu_collector *c, pid_t tgid, bool dwarf);

/* Describes a Python process to the sampler (its py_procs entry, and the target's
 * EMBER_TARGET_PYTHON flag): from its next sample on, samples carry its Python frames. An exec
 * clears the flag (the new image is described again). 0, -ENOENT (not a target) or -errno. */
int cpu_collector_set_python(struct cpu_collector *c, pid_t tgid, const struct ember_py_proc *pp);

/* Consumes the rings (events go to the last poll's callback), then shows the Python frames of
 * each stack that arrived since the last call (or drain), so the caller can resolve their code objects while the process lives
 * (stacks are symbolized at the next drain, when it may be gone). */
typedef void (*cpu_python_fn)(void *ctx, pid_t tgid, const struct ember_py_frame *py, size_t npy);
void cpu_collector_visit_python(struct cpu_collector *c, cpu_python_fn fn, void *ctx);

/* The process is gone: the unwinder lets go of it. (A change of its maps needs no call here:
 * the unwinder shares the symbolizer's per-process cache, which symbolizer_refresh() marks.) */
void cpu_collector_forget(struct cpu_collector *c, pid_t tgid);

/* DWARF-mode counters, cumulative. */
struct cpu_dwarf_stats {
	__u64 snapshots;        /* received */
	__u64 unwound;          /* unwound into a stack */
	__u64 truncated;        /* ... that ended before the thread's root ("[truncated]") */
	__u64 skipped_budget;   /* not unwound: the process was over its per-second budget */
	__u64 dropped_pending;  /* unwound but dropped: too many stacks waiting for a drain */
	__u64 bytes;            /* stack bytes received */
	__u64 unwind_ns;        /* time spent unwinding */
	__u64 py[EMBER_PY_STATUS_MAX]; /* samples with a Python walk, by enum ember_py_status */
	__u64 py_malformed;     /* records whose Python part did not fit their size: dropped */
	__u64 offcpu_unmatched; /* off-CPU ends without their start */
	__u64 offcpu_evicted;   /* off-CPU starts given up for another thread's */
};
void cpu_collector_dwarf_stats(struct cpu_collector *c, struct cpu_dwarf_stats *ret);

/* Writes the collector's self-metrics: ember_samples_lost_total by reason (every counter of
 * enum ember_cpu_stat), ember_samples_filtered_total, ember_dwarf_stacks_total by outcome,
 * ember_dwarf_snapshots_short_total, ember_unwind_refused_total by reason. Safe on the metrics
 * thread. */
struct metrics_writer;
void cpu_collector_write_metrics(struct cpu_collector *c, struct metrics_writer *w);

/* Sums the per-CPU counters into out[EMBER_STAT_MAX]. Returns 0 or -errno. */
int cpu_collector_read_stats(struct cpu_collector *c, __u64 out[EMBER_STAT_MAX]);

/* Run count and total run time of the sampler program, when kernel.bpf_stats_enabled=1
 * (otherwise both stay 0). Returns 0 or -errno. */
int cpu_collector_prog_stats(struct cpu_collector *c, __u64 *ret_run_cnt, __u64 *ret_run_time_ns);

#endif
