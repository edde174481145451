/* pipeline: the core that `ember record`, `ember agent` and `ember run` share.
 *
 * One pipeline owns, for one command: the targets and the services they feed, the table of
 * profiled processes, the CPU and allocation collectors, the GPU receiver, the symbolizer, the
 * --unwind auto policy, the maps-refresh schedule, the self-metrics endpoint, the loop and the
 * shutdown. A command only says how processes become targets (its policy) and where each
 * interval's profiles go (its sink callback):
 *
 *   PIPELINE_SELECTORS     the processes that --service selectors match, found by a /proc scan
 *                          at start, then from exec, fork and cgroup-move events; a target that
 *                          execs into something no selector matches is dropped
 *   PIPELINE_EVERY_PROCESS every process, added by BPF at its first sample and named after its
 *                          executable
 *   PIPELINE_COMMAND       the command the pipeline starts (and its children), one service
 *
 * Every second the collectors are drained into one aggregator per (service, family), symbolized
 * while the processes still run; every interval (or only at the end, interval 0) each
 * aggregator with samples is handed to the sink callback and emptied. Exits, forks and execs
 * are followed; an exited process is forgotten once its last samples are symbolized.
 * Not thread-safe: one thread runs a pipeline (the metrics endpoint reads atomics only). */
#ifndef EMBER_PIPELINE_H
#define EMBER_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "alloc_collector.h"
#include "options.h"
#include "profile_types.h"
#include "stackagg.h"

enum pipeline_policy {
	PIPELINE_SELECTORS,
	PIPELINE_EVERY_PROCESS,
	PIPELINE_COMMAND,
};

/* One aggregated profile of one interval, handed to the sink. agg and desc stay the
 * pipeline's (agg is emptied after the call); the sink builds what it needs from them. */
struct pipeline_profile {
	const char *service;
	const char *labels;                  /* metadata labels, "name=value\n"..., or NULL */
	const struct profile_family *fam;
	struct stackagg *agg;
	const struct stackagg_profile *desc; /* types, period, times, comment; no limits */
	int64_t until;                       /* CLOCK_REALTIME end of the interval */
};

struct pipeline_hooks {
	/* Each interval's profiles, one call per (service, family) with samples. */
	void (*profile)(void *ctx, const struct pipeline_profile *p);
	/* Optional, called once per loop turn: true ends the run (record's --duration, --pid). */
	bool (*done)(void *ctx, int64_t now_mono);
	/* Optional, once per loop turn (record's progress line). */
	void (*tick)(void *ctx, int64_t now_mono);
	/* Optional, a process event, after the pipeline handled it (record watches --pid exit). */
	void (*exited)(void *ctx, pid_t pid);
	void *ctx;
};

struct pipeline_opts {
	const struct ember_config *cfg;
	const char *name;            /* "record", "agent", "run": log prefix */
	enum pipeline_policy policy;
	const struct strlist *services; /* PIPELINE_SELECTORS: NAME=SELECTOR (cfg's or record's) */
	const char *command_service; /* PIPELINE_COMMAND: the service name */
	bool one_service;            /* every sample in service 0 (record: one profile) */
	enum alloc_mode alloc_mode;  /* --profiles alloc */
	bool kernel_symbols_at_start; /* read kallsyms at start, not at the first kernel frame */
	double interval_s;           /* 0: only at the end */
	/* PIPELINE_COMMAND: on SIGINT/SIGTERM the command gets SIGTERM after this grace (it may
	 * have had the terminal's Ctrl-C already), SIGKILL 8 s later. */
	int64_t child_term_grace_ns;
	/* With only GPU profiles asked for: run without BPF (no sampler, no process events; the
	 * command's exit or a --pid's is watched directly), so an ordinary user can collect what
	 * libember_cupti.so sends. */
	bool gpu_only_without_bpf;
};

struct pipeline;

/* Opens everything the options ask for: preflight (privileges, BTF) first, then the
 * collectors, the receiver, the metrics endpoint. Prints one line naming what failed and
 * returns the exit status for it (2: bad input or missing privileges, 1: runtime failure), or
 * 0 with *ret_pl set. */
int pipeline_new(const struct pipeline_opts *opts, struct pipeline **ret_pl);
void pipeline_free(struct pipeline *pl);

/* Starts the self-metrics endpoint at --metrics-addr (nothing without it). Every module writes
 * its own series; sink_fn (may be NULL) adds the sink's, on the metrics thread. Returns 0, or 2
 * after printing one line. */
struct metrics_writer;
int pipeline_serve_metrics(struct pipeline *pl, void (*sink_fn)(void *ctx, struct metrics_writer *w),
			   void *sink_ctx);

/* Selects the initial targets: the selector scan, or starts argv (PIPELINE_COMMAND), held
 * before exec until it is a target. Returns 0, or an exit status after printing one line. */
int pipeline_start(struct pipeline *pl, char **argv);

/* Runs until a signal, the command's exit or hooks->done, then drains what is left and hands
 * the last (partial) interval to the sink. Returns 0, or 1 when the loop failed. */
int pipeline_run(struct pipeline *pl, const struct pipeline_hooks *hooks);

/* After pipeline_run: seconds since the loop ended (the shutdown's budget so far). */
double pipeline_stopping_for(const struct pipeline *pl);
/* After pipeline_run: the command's exit status (128 + signal when killed), or -1. */
int pipeline_command_status(const struct pipeline *pl);
/* Number of processes selected so far (record: "waiting for one to start"). */
unsigned pipeline_targets_selected(const struct pipeline *pl);
/* Samples the BPF sampler took of the targets so far (record's progress line). */
uint64_t pipeline_samples_seen(struct pipeline *pl);
/* CPU samples aggregated so far. */
uint64_t pipeline_cpu_samples(const struct pipeline *pl);
/* The CPU collector's lost-sample summary ("samples N; user stacks lost ..."), for a pprof
 * comment; logged at warn when something was lost. */
void pipeline_loss_report(struct pipeline *pl, char *buf, size_t size);
/* Debug lines on the DWARF unwinder, the sampler program and our CPU time (record's end). */
void pipeline_log_costs(struct pipeline *pl);
/* The allocation collector's mode name ("uprobe", "preload"), or NULL without one. */
const char *pipeline_alloc_mode(const struct pipeline *pl);

#endif
