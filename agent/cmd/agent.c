/* agent: `ember agent [options]`.
 *
 * One CPU collector for the whole host. Targets are the processes matching --service (found by
 * an initial /proc scan, then from exec, fork and cgroup-move events within the poll period),
 * or every process (BPF adds them at their first sample) named after its executable. Every
 * second the counts are drained, symbolized while the processes are alive, and merged into one
 * stack aggregator per service; every --interval the aggregators become pprof uploads (limits
 * enforced, the coldest stacks folded into "[other]") handed to the push queue or the local
 * directory. Uploads never block sampling: the push sink has its own thread. */
#include "agent.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc_collector.h"
#include "allocprof.h"
#include "cpu_collector.h"
#include "cpuprof.h"
#include "fileio.h"
#include "gpu_receiver.h"
#include "gpuprof.h"
#include "localsink.h"
#include "log.h"
#include "metrics.h"
#include "options.h"
#include "preflight.h"
#include "procmaps.h"
#include "series.h"
#include "proctable.h"
#include "spawn.h"
#include "profile_types.h"
#include "push.h"
#include "stackagg.h"
#include "symbolizer.h"
#include "targets.h"
#include "upload.h"
#include "refresh.h"
#include "unwmode.h"
#include "util.h"

#define NS 1000000000LL
#define DRAIN_PERIOD_NS (1 * NS)
/* Pyroscope's limits (PYROSCOPE.md §4): 16000 samples per profile, and a 2 MiB ingestion burst
 * per series counted on the uncompressed profile plus its labels: keep a margin for labels. */
#define PROFILE_MAX_SAMPLES 16000
#define PROFILE_MAX_BYTES (2 * 1024 * 1024 - 64 * 1024)
#define MAX_SERVICES 4096
#define PUSH_STOP_DEADLINE_S 8.0

struct service_slot {
	char *name;
	struct stackagg *agg;     /* CPU, this interval */
	struct stackagg *mem_agg; /* memory (4 values), this interval */
	struct stackagg *gpu_agg; /* GPU (gpu_time, launches), this interval */
};

struct agent {
	struct ember_config cfg;
	/* `ember run`: the command it started, profiled as one service until it exits */
	bool run_mode;
	pid_t child;
	int child_status;
	struct targets *targets;
	bool auto_services; /* no --service: every process, named after its executable */
	struct service_slot *svc;
	size_t nsvc;
	struct symbolizer *sym;
	struct unwmode *unw; /* --unwind auto: the per-process choice; NULL otherwise */
	struct cpu_collector *cc;
	struct alloc_collector *ac; /* --profiles alloc: uprobes (agent) or preload (run) */
	struct gpu_receiver *gpu;   /* --profiles gpu: samples from libember_cupti.so */
	bool want_cpu;
	struct push *push;
	struct localsink *local;
	struct metrics *metrics;
	struct series_labels labels; /* hostname + the user's labels, sorted by name */
	int64_t period;
	int64_t interval_start_real;
	struct proctable procs; /* tracked processes */
	/* map re-reads due after exec */
	struct refresh_sched refresh;
	/* metrics, written by the main thread, read by the metrics thread */
	_Atomic uint64_t m_samples, m_lost[EMBER_STAT_MAX], m_procs, m_misses, m_folded;
	_Atomic uint64_t m_local_written, m_local_errors, m_dropped_empty, m_gpu_unselected;
	_Atomic uint64_t m_dwarf_unwound, m_dwarf_truncated, m_dwarf_skipped_budget, m_dwarf_dropped;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* --- services ------------------------------------------------------------------------- */

static int service_index(struct agent *a, const char *name)
{
	struct service_slot *ns;

	for (size_t i = 0; i < a->nsvc; i++)
		if (!strcmp(a->svc[i].name, name))
			return (int)i;
	if (a->nsvc >= MAX_SERVICES)
		return -ENOSPC;
	ns = realloc(a->svc, (a->nsvc + 1) * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	a->svc = ns;
	a->svc[a->nsvc] = (struct service_slot){ .name = strdup(name) };
	if (!a->svc[a->nsvc].name)
		return -ENOMEM;
	return (int)a->nsvc++;
}

/* Service of an auto-selected process: its executable's basename, made a valid Pyroscope
 * service name ([A-Za-z0-9_.-/]). */
static int auto_service(struct agent *a, pid_t pid, const char *comm)
{
	char path[64], exe[PATH_MAX], name[128];
	const char *base = comm && *comm ? comm : "unknown";
	ssize_t n;
	size_t i;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		if (n > 10 && !strcmp(exe + n - 10, " (deleted)"))
			exe[n - 10] = '\0';
		base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
	}
	for (i = 0; base[i] && i < sizeof(name) - 1; i++)
		name[i] = (isalnum((unsigned char)base[i]) || strchr("_.-", base[i])) ? base[i] : '_';
	name[i] = '\0';
	if (!i)
		snprintf(name, sizeof(name), "unknown");
	return service_index(a, name);
}

/* --- processes ------------------------------------------------------------------------ */

static struct proc_entry *proc_get(struct agent *a, pid_t pid)
{
	return proctable_get(&a->procs, pid);
}

static struct proc_entry *proc_put(struct agent *a, pid_t pid, uint64_t cookie, uint32_t service)
{
	struct proc_entry *e = proctable_put(&a->procs, pid, cookie, service);

	atomic_store_explicit(&a->m_procs, a->procs.n, memory_order_relaxed);
	return e;
}

static void proc_del(struct agent *a, pid_t pid)
{
	proctable_del(&a->procs, pid);
	atomic_store_explicit(&a->m_procs, a->procs.n, memory_order_relaxed);
}

/* After exec, fork or dlopen: attach the allocator probes to libraries not seen yet. */
static void alloc_rescan(struct agent *a, pid_t pid)
{
	struct proc_entry *p;
	uint64_t start;

	if (!a->ac || procmaps_start_time(pid, &start))
		return;
	p = proc_get(a, pid);
	if (p && p->cookie == start && !p->exited)
		(void)alloc_collector_add_target(a->ac, pid, start);
}

/* Agent without --service, preload mode: a process that execs with libember_alloc.so in its
 * LD_PRELOAD gets the probes armed on that file now, before ld.so maps it, so even a short-lived
 * process's first allocations are seen. */
static void preload_check(struct agent *a, pid_t pid)
{
	char path[64], env[32768], lib[PATH_MAX];
	uint64_t start;
	ssize_t n;
	int fd, id;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, env, sizeof(env) - 1);
	close(fd);
	if (n <= 0)
		return;
	env[n] = '\0';
	for (char *v = env; v < env + n; v += strlen(v) + 1) {
		char *hit, *begin, *end;

		if (strncmp(v, "LD_PRELOAD=", 11) || !(hit = strstr(v, "libember_alloc.so")))
			continue;
		/* The entry holding it, in a list separated by ':' or spaces. */
		for (begin = hit; begin > v + 11 && begin[-1] != ':' && begin[-1] != ' '; begin--)
			;
		end = hit + strcspn(hit, ": ");
		if (*begin != '/' || procmaps_start_time(pid, &start))
			return;
		snprintf(lib, sizeof(lib), "/proc/%d/root%.*s", (int)pid, (int)(end - begin), begin);
		id = auto_service(a, pid, NULL);
		if (id >= 0)
			(void)proc_put(a, pid, start, (uint32_t)id);
		(void)alloc_collector_attach_path(a->ac, pid, start, lib);
		return;
	}
}

static void on_alloc_first_sample(void *ctx, pid_t pid)
{
	struct agent *a = ctx;

	(void)symbolizer_refresh(a->sym, pid);
}

static void run_due_refreshes(struct agent *a)
{
	int64_t now = util_now_ns(CLOCK_MONOTONIC);
	pid_t pid;

	while ((pid = refresh_take_due(&a->refresh, now))) {
		(void)symbolizer_refresh(a->sym, pid);
		alloc_rescan(a, pid);
	}
}

/* Re-reads pid's maps after a change, now or on the schedule; at once if it is full. */
static void schedule_refresh(struct agent *a, pid_t pid, int64_t delay_ns)
{
	if (!refresh_schedule(&a->refresh, pid, delay_ns))
		(void)symbolizer_refresh(a->sym, pid);
}

/* Selects pid for service (explicit services). */
static void add_target(struct agent *a, pid_t pid, uint32_t service)
{
	uint64_t start;

	if (pid == getpid() || procmaps_start_time(pid, &start))
		return;
	if (cpu_collector_add_target(a->cc, pid, service, start))
		return;
	(void)proc_put(a, pid, start, service);
	(void)symbolizer_track(a->sym, pid);
	if (a->ac)
		(void)alloc_collector_add_target(a->ac, pid, start);
	log_debug("agent: pid %d selected for service %s", (int)pid, a->svc[service].name);
}

static void on_scan_match(void *ctx, pid_t pid, uint32_t service)
{
	add_target(ctx, pid, service);
}

static void on_event(void *ctx, const struct ember_event *e)
{
	struct agent *a = ctx;
	pid_t pid = (pid_t)e->tgid;
	struct proc_entry *p;
	int id;

	switch (e->type) {
	case EMBER_EVENT_FIRST_SAMPLE:
		/* After exec the first sample comes with ld.so's work done or under way. */
		(void)symbolizer_refresh(a->sym, pid);
		if (a->unw)
			cpuprof_unwmode_first_sample(a->unw, a->cc, pid);
		if (a->auto_services) {
			id = auto_service(a, pid, e->comm);
			if (id >= 0)
				(void)proc_put(a, pid, e->cookie, (uint32_t)id);
			/* Preload mode: attaches when the process maps libember_alloc.so. */
			if (a->ac)
				(void)alloc_collector_add_target(a->ac, pid, e->cookie);
		}
		break;
	case EMBER_EVENT_MMAP:
		schedule_refresh(a, pid, 0);
		break;
	case EMBER_EVENT_EXEC:
		if (e->cookie) {
			/* A target ran exec: maps change; with explicit services it may no longer
			 * belong to one (a worker exec'ing a shell). */
			if (!refresh_after_exec(&a->refresh, pid))
				(void)symbolizer_refresh(a->sym, pid);
			if (!a->auto_services && !a->run_mode) {
				id = targets_match(a->targets, pid);
				if (id < 0) {
					(void)cpu_collector_remove_target(a->cc, pid);
					p = proc_get(a, pid);
					if (p)
						p->exited = true;
				} else if ((uint32_t)id != e->service_id) {
					add_target(a, pid, (uint32_t)id);
				}
			}
			break;
		}
		if (a->auto_services && a->ac) {
			preload_check(a, pid);
			break;
		}
		/* Not a target yet: does it match now? */
		__attribute__((fallthrough));
	case EMBER_EVENT_CGROUP:
		if (a->auto_services || a->run_mode)
			break;
		id = targets_match(a->targets, pid);
		if (id >= 0 && (!e->cookie || (uint32_t)id != e->service_id))
			add_target(a, pid, (uint32_t)id);
		break;
	case EMBER_EVENT_FORK:
		(void)proc_put(a, pid, e->cookie, e->service_id);
		if (a->ac)
			(void)alloc_collector_add_target(a->ac, pid, e->cookie);
		break;
	case EMBER_EVENT_EXIT:
		p = proc_get(a, pid);
		if (p && p->cookie == e->cookie)
			p->exited = true; /* forgotten after the next drain has used its maps */
		break;
	}
}

/* --- aggregation ---------------------------------------------------------------------- */

static void on_stack(void *ctx, const struct cpu_stack *s)
{
	struct agent *a = ctx;
	struct sym_frame frames[CPUPROF_MAX_FRAMES];
	struct proc_entry *p;
	struct service_slot *svc;
	int64_t value = (int64_t)s->count * a->period;
	size_t n;
	int id;

	if (a->auto_services) {
		p = proc_get(a, (pid_t)s->key->tgid);
		if (p && p->cookie == s->key->cookie) {
			id = (int)p->service;
		} else {
			/* Its FIRST_SAMPLE event was lost or not handled yet. */
			id = auto_service(a, (pid_t)s->key->tgid, NULL);
			if (id >= 0 && !p)
				(void)proc_put(a, (pid_t)s->key->tgid, s->key->cookie, (uint32_t)id);
		}
	} else {
		id = (int)s->key->service_id;
	}
	if (id < 0 || (size_t)id >= a->nsvc)
		return;
	svc = &a->svc[id];
	if (!svc->agg && stackagg_new(1, &svc->agg))
		return;
	n = cpuprof_frames(a->sym, s, frames);
	if (a->unw)
		cpuprof_unwmode_observe(a->unw, a->cc, s, frames, n);
	if (stackagg_add(svc->agg, frames, n, &value) == 0)
		atomic_fetch_add_explicit(&a->m_samples, s->count, memory_order_relaxed);
}

/* Drops exited processes once their last samples are symbolized. */
static void forget_exited(struct agent *a)
{
	for (size_t i = 0; i < a->procs.cap; i++) {
		if (a->procs.e[i].pid && a->procs.e[i].exited) {
			pid_t pid = a->procs.e[i].pid;

			symbolizer_forget(a->sym, pid);
			cpu_collector_forget(a->cc, pid);
			if (a->unw)
				unwmode_forget(a->unw, pid);
			if (a->ac)
				(void)alloc_collector_remove_target(a->ac, pid);
			proc_del(a, pid);
			i--; /* the slot may have received a shifted entry */
		}
	}
}

static void on_alloc_stack(void *ctx, const struct alloc_stack *s)
{
	struct agent *a = ctx;
	struct sym_frame frames[ALLOCPROF_MAX_FRAMES];
	struct proc_entry *p = proc_get(a, (pid_t)s->tgid);
	struct service_slot *svc;
	size_t n;

	if (!p || p->cookie != s->cookie || p->service >= a->nsvc)
		return;
	svc = &a->svc[p->service];
	if (!svc->mem_agg && stackagg_new(4, &svc->mem_agg))
		return;
	n = allocprof_frames(a->sym, s, frames);
	(void)stackagg_add(svc->mem_agg, frames, n, s->values);
}

/* A GPU sample from libember_cupti.so in process s->pid: the service that process belongs to
 * (`run`: the command's; agent: its selected service, or its executable's). Samples of
 * processes no service selects are counted and dropped. */
static void on_gpu_sample(void *ctx, const struct gpu_sample *s)
{
	struct agent *a = ctx;
	struct sym_frame frames[GPUPROF_MAX_FRAMES];
	struct proc_entry *p = proc_get(a, s->pid);
	struct service_slot *svc;
	int64_t values[2];
	size_t n;
	int id;

	if (a->run_mode)
		id = 0;
	else if (p && (!s->start_time || p->cookie == s->start_time))
		id = (int)p->service;
	else if (a->auto_services)
		id = auto_service(a, s->pid, NULL);
	else
		id = targets_match(a->targets, s->pid);
	if (id < 0 || (size_t)id >= a->nsvc) {
		atomic_fetch_add_explicit(&a->m_gpu_unselected, 1, memory_order_relaxed);
		return;
	}
	svc = &a->svc[id];
	if (!svc->gpu_agg && stackagg_new(2, &svc->gpu_agg))
		return;
	n = gpuprof_frames(a->sym, s, frames);
	gpuprof_values(s, values);
	(void)stackagg_add(svc->gpu_agg, frames, n, values);
}

static void drain(struct agent *a)
{
	__u64 st[EMBER_STAT_MAX];
	struct symbolizer_stats ss;

	(void)cpu_collector_drain(a->cc, on_stack, a);
	/* Allocation samples are symbolized at the interval's end: keep exited processes' maps
	 * until then. */
	if (!a->ac)
		forget_exited(a);
	if (cpu_collector_read_stats(a->cc, st) == 0)
		for (size_t i = 0; i < EMBER_STAT_MAX; i++)
			atomic_store_explicit(&a->m_lost[i], st[i], memory_order_relaxed);
	symbolizer_get_stats(a->sym, &ss);
	atomic_store_explicit(&a->m_misses, ss.misses, memory_order_relaxed);
	{
		struct cpu_dwarf_stats ds;

		cpu_collector_dwarf_stats(a->cc, &ds);
		atomic_store_explicit(&a->m_dwarf_unwound, ds.unwound, memory_order_relaxed);
		atomic_store_explicit(&a->m_dwarf_truncated, ds.truncated, memory_order_relaxed);
		atomic_store_explicit(&a->m_dwarf_skipped_budget, ds.skipped_budget, memory_order_relaxed);
		atomic_store_explicit(&a->m_dwarf_dropped, ds.dropped_pending, memory_order_relaxed);
	}
}

/* Encodes one aggregator as a profile of family fam and hands it to the sink. */
static void submit_profile(struct agent *a, struct service_slot *svc, struct stackagg **agg,
			   const struct profile_family *fam, const struct stackagg_profile *p,
			   int64_t until)
{
	struct stackagg_result res = { 0 };
	struct upload *u = NULL;
	int err;

	if (!*agg || stackagg_count(*agg) == 0)
		return;
	err = stackagg_build(*agg, p, &res);
	stackagg_free(*agg);
	*agg = NULL;
	if (err) {
		log_warn("agent: cannot encode the %s %s profile: %s", svc->name, fam->family, strerror(-err));
		return;
	}
	if (res.folded) {
		atomic_fetch_add_explicit(&a->m_folded, res.folded, memory_order_relaxed);
		log_debug("agent: %s: %zu cold stacks folded into [other]", svc->name, res.folded);
	}
	err = series_make_upload(&a->labels, svc->name, fam, &res, a->interval_start_real, until, &u);
	stackagg_result_fini(&res);
	if (err)
		return;
	if (a->push) {
		(void)push_submit(a->push, u); /* takes ownership */
		return;
	}
	err = localsink_write(a->local, u);
	if (err) {
		atomic_fetch_add_explicit(&a->m_local_errors, 1, memory_order_relaxed);
		log_warn("agent: cannot write the %s profile under %s: %s", svc->name, a->cfg.output,
			 strerror(-err));
	} else {
		atomic_fetch_add_explicit(&a->m_local_written, 1, memory_order_relaxed);
	}
	upload_free(u);
}

static void flush_interval(struct agent *a)
{
	const struct profile_family *cpu = profile_family_find("cpu");
	const struct profile_family *mem = profile_family_find("alloc");
	const struct pprof_value_type cpu_type = { cpu->types[0][0], cpu->types[0][1] };
	const struct pprof_value_type cpu_period = { cpu->period[0], cpu->period[1] };
	struct pprof_value_type mem_types[4], mem_period;
	const struct profile_family *gpu = profile_family_find("gpu");
	const struct pprof_value_type gpu_types[2] = { { gpu->types[0][0], gpu->types[0][1] },
						      { gpu->types[1][0], gpu->types[1][1] } };
	const struct pprof_value_type gpu_period = { gpu->period[0], gpu->period[1] };
	int64_t until = util_now_ns(CLOCK_REALTIME);
	char title[300], comment[512];

	if (a->gpu)
		(void)gpu_receiver_drain(a->gpu, on_gpu_sample, a);
	if (a->ac) {
		/* Allocations of the interval and the live set at its end, then the processes that
		 * exited can go. */
		(void)alloc_collector_drain(a->ac, on_alloc_stack, a);
		forget_exited(a);
	}
	for (size_t i = 0; i < a->nsvc; i++) {
		struct service_slot *svc = &a->svc[i];
		struct stackagg_profile p = {
			.types = &cpu_type,
			.period_type = &cpu_period,
			.period = a->period,
			.time_nanos = a->interval_start_real,
			.duration_nanos = until - a->interval_start_real,
			.max_samples = PROFILE_MAX_SAMPLES,
			.max_bytes = PROFILE_MAX_BYTES,
			.fg_title = a->local ? title : NULL,
			.fg_unit = "samples",
			.fg_divisor = a->period,
		};

		snprintf(title, sizeof(title), "CPU: %s", svc->name);
		submit_profile(a, svc, &svc->agg, cpu, &p, until);
		if (a->gpu) {
			p.types = gpu_types;
			p.period_type = &gpu_period;
			p.period = 1;
			p.fg_unit = "ns";
			p.fg_value = 0;
			p.fg_divisor = 1;
			snprintf(title, sizeof(title), "GPU time: %s", svc->name);
			submit_profile(a, svc, &svc->gpu_agg, gpu, &p, until);
		}
		if (!a->ac)
			continue;
		allocprof_describe(a->ac, mem_types, &mem_period, &p, comment, sizeof(comment));
		snprintf(title, sizeof(title), "Allocated bytes: %s", svc->name);
		p.fg_unit = "bytes";
		p.fg_value = 1; /* alloc_space */
		p.fg_divisor = 1;
		submit_profile(a, svc, &svc->mem_agg, mem, &p, until);
	}
	a->interval_start_real = until;
}

/* --- self-metrics --------------------------------------------------------------------- */

static void collect_metrics(void *ctx, struct metrics_writer *w)
{
	static const struct {
		enum ember_cpu_stat stat;
		const char *reason;
	} lost[] = {
		{ EMBER_STAT_USTACK_COLLISION, "user_stack_collision" },
		{ EMBER_STAT_USTACK_FAULT, "user_stack_fault" },
		{ EMBER_STAT_USTACK_ERROR, "user_stack_error" },
		{ EMBER_STAT_KSTACK_COLLISION, "kernel_stack_collision" },
		{ EMBER_STAT_KSTACK_FAULT, "kernel_stack_fault" },
		{ EMBER_STAT_KSTACK_ERROR, "kernel_stack_error" },
		{ EMBER_STAT_COUNTS_FULL, "counts_map_full" },
		{ EMBER_STAT_EVENTS_LOST, "process_events_ringbuf_full" },
		{ EMBER_STAT_SNAPSHOT_LOST, "stack_snapshot_ringbuf_full" },
		{ EMBER_STAT_SNAPSHOT_FAULT, "stack_snapshot_unreadable" },
	};
	struct agent *a = ctx;

	metrics_counter(w, "ember_samples_total", "CPU samples aggregated into profiles", NULL,
			(double)atomic_load_explicit(&a->m_samples, memory_order_relaxed));
	for (size_t i = 0; i < sizeof(lost) / sizeof(lost[0]); i++)
		metrics_counter(w, "ember_samples_lost_total",
				"Samples or stacks lost, by reason (stack lost: the sample is kept "
				"under a [lost user stack] frame)",
				(const char *[]){ "reason", lost[i].reason, NULL },
				(double)atomic_load_explicit(&a->m_lost[lost[i].stat], memory_order_relaxed));
	metrics_counter(w, "ember_dwarf_stacks_total", "DWARF-unwound stacks, by outcome",
			(const char *[]){ "outcome", "complete", NULL },
			(double)(atomic_load_explicit(&a->m_dwarf_unwound, memory_order_relaxed) -
				 atomic_load_explicit(&a->m_dwarf_truncated, memory_order_relaxed)));
	metrics_counter(w, "ember_dwarf_stacks_total", "DWARF-unwound stacks, by outcome",
			(const char *[]){ "outcome", "truncated", NULL },
			(double)atomic_load_explicit(&a->m_dwarf_truncated, memory_order_relaxed));
	metrics_counter(w, "ember_dwarf_stacks_total", "DWARF-unwound stacks, by outcome",
			(const char *[]){ "outcome", "skipped_over_budget", NULL },
			(double)atomic_load_explicit(&a->m_dwarf_skipped_budget, memory_order_relaxed));
	metrics_counter(w, "ember_dwarf_stacks_total", "DWARF-unwound stacks, by outcome",
			(const char *[]){ "outcome", "dropped_backlog", NULL },
			(double)atomic_load_explicit(&a->m_dwarf_dropped, memory_order_relaxed));
	metrics_gauge(w, "ember_processes_tracked", "Processes currently profiled", NULL,
		      (double)atomic_load_explicit(&a->m_procs, memory_order_relaxed));
	metrics_counter(w, "ember_symbolization_misses_total",
			"Frames that got module+offset or [unknown] instead of a symbol", NULL,
			(double)atomic_load_explicit(&a->m_misses, memory_order_relaxed));
	metrics_counter(w, "ember_stacks_folded_total",
			"Cold stacks folded into [other] to respect the server's limits", NULL,
			(double)atomic_load_explicit(&a->m_folded, memory_order_relaxed));
	if (a->gpu) {
		struct gpu_receiver_stats gs;

		gpu_receiver_get_stats(a->gpu, &gs);
		metrics_gauge(w, "ember_gpu_clients", "CUDA processes connected with libember_cupti.so",
			      NULL, (double)gs.clients);
		metrics_counter(w, "ember_gpu_entries_total", "GPU sample entries received", NULL,
				(double)gs.entries);
		metrics_counter(w, "ember_gpu_dropped_total", "GPU entries dropped, by reason",
				(const char *[]){ "reason", "agent_queue_full", NULL }, (double)gs.dropped);
		metrics_counter(w, "ember_gpu_dropped_total", "GPU entries dropped, by reason",
				(const char *[]){ "reason", "client_rejected", NULL }, (double)gs.rejected);
		metrics_counter(w, "ember_gpu_dropped_total", "GPU entries dropped, by reason",
				(const char *[]){ "reason", "unselected_process", NULL },
				(double)atomic_load_explicit(&a->m_gpu_unselected, memory_order_relaxed));
	}
	if (a->push) {
		struct push_stats ps;

		push_get_stats(a->push, &ps);
		metrics_counter(w, "ember_profiles_sent_total", "Profiles accepted by the server", NULL,
				(double)ps.sent);
		metrics_counter(w, "ember_profiles_failed_total", "Failed upload attempts", NULL,
				(double)ps.failed);
		for (int r = 0; r < PUSH_DROP_MAX; r++)
			metrics_counter(w, "ember_profiles_dropped_total", "Profiles given up, by reason",
					(const char *[]){ "reason", push_drop_reason_name(r), NULL },
					(double)ps.dropped[r]);
		metrics_gauge(w, "ember_upload_queue_bytes", "Bytes waiting in the upload queue", NULL,
			      (double)ps.queue_bytes);
		metrics_summary(w, "ember_upload_latency_seconds", "Duration of successful uploads", NULL,
				ps.latency_sum_s, ps.latency_count);
	} else {
		metrics_counter(w, "ember_profiles_sent_total", "Profiles written to the local directory",
				NULL, (double)atomic_load_explicit(&a->m_local_written, memory_order_relaxed));
		metrics_counter(w, "ember_profiles_failed_total", "Profiles that could not be written",
				NULL, (double)atomic_load_explicit(&a->m_local_errors, memory_order_relaxed));
		metrics_gauge(w, "ember_upload_queue_bytes", "Bytes waiting in the upload queue", NULL, 0);
	}
}

/* --- start-up ------------------------------------------------------------------------- */

static int setup_sink(struct agent *a)
{
	struct push_opts po = { 0 };
	char *password = NULL, *token = NULL;
	int err;

	if (!a->cfg.server) {
		err = localsink_new(a->cfg.output, (uint64_t)a->cfg.output_max_mb * 1024 * 1024, &a->local);
		if (err)
			fprintf(stderr, "ember: invalid value for --output: cannot write to %s: %s\n",
				a->cfg.output, strerror(-err));
		return err;
	}
	if (a->cfg.basic_auth_user) {
		const char *env = getenv("EMBER_BASIC_AUTH_PASSWORD");

		if (a->cfg.basic_auth_password_file) {
			err = fileio_read_secret(a->cfg.basic_auth_password_file, 4096, &password);
			if (err) {
				fprintf(stderr, "ember: invalid value for --basic-auth-password-file: %s: %s\n",
					a->cfg.basic_auth_password_file, strerror(-err));
				return err;
			}
		} else if (env) {
			password = strdup(env);
			if (!password)
				return -ENOMEM;
		} else {
			fprintf(stderr, "ember: invalid value for --basic-auth-user: no password: set "
					"EMBER_BASIC_AUTH_PASSWORD or --basic-auth-password-file\n");
			return -EINVAL;
		}
	}
	/* The secret stays out of the environment of anything we start and of /proc/PID/environ
	 * readers that come later. */
	unsetenv("EMBER_BASIC_AUTH_PASSWORD");
	if (a->cfg.bearer_token_file) {
		err = fileio_read_secret(a->cfg.bearer_token_file, 16384, &token);
		if (err) {
			fprintf(stderr, "ember: invalid value for --bearer-token-file: %s: %s\n",
				a->cfg.bearer_token_file, strerror(-err));
			free(password);
			return err;
		}
	}
	if (a->cfg.ca_file && access(a->cfg.ca_file, R_OK)) {
		fprintf(stderr, "ember: invalid value for --ca-file: %s: %s\n", a->cfg.ca_file,
			strerror(errno));
		free(password);
		free(token);
		return -EINVAL;
	}
	po.server = a->cfg.server;
	po.protocol = !strcmp(a->cfg.protocol, "ingest") ? PUSH_PROTO_INGEST : PUSH_PROTO_PUSH;
	po.tenant_id = a->cfg.tenant_id;
	po.basic_user = a->cfg.basic_auth_user;
	po.basic_password = password;
	po.bearer_token = token;
	po.ca_file = a->cfg.ca_file;
	err = push_new(&po, &a->push);
	if (password) {
		memset(password, 0, strlen(password));
		free(password);
	}
	if (token) {
		memset(token, 0, strlen(token));
		free(token);
	}
	if (err)
		fprintf(stderr, "ember: invalid value for --server: %s: %s\n", a->cfg.server,
			strerror(-err));
	return err;
}

/* --profiles alloc: uprobes on the allocators of the selected services (agent with --service),
 * or the in-process sampler libember_alloc.so, whose USDT probes fire only for sampled
 * allocations (preload mode): preloaded into the command by `ember run`, or by the user into
 * the services an agent without --service profiles (uprobes on every process of a host would
 * tax every malloc on it). */
static int setup_alloc(struct agent *a)
{
	struct alloc_collector_opts o = {
		.mode = a->auto_services || a->run_mode ? ALLOC_MODE_PRELOAD : ALLOC_MODE_UPROBE,
		.sample_bytes = (__u64)a->cfg.alloc_sample_bytes,
	};
	int err;

	if (a->run_mode) {
		const char *old = getenv("LD_PRELOAD");
		char lib[PATH_MAX], sb[32], *pre;

		if (allocprof_preload_path(lib, sizeof(lib))) {
			fprintf(stderr, "ember: cannot find libember_alloc.so next to ember "
					"(set EMBER_ALLOC_PRELOAD)\n");
			return -ENOENT;
		}
		/* The command, and what it execs, inherit these. */
		if (asprintf(&pre, "%s%s%s", lib, old && *old ? ":" : "", old ? old : "") < 0)
			return -ENOMEM;
		setenv("LD_PRELOAD", pre, 1);
		free(pre);
		snprintf(sb, sizeof(sb), "%ld", a->cfg.alloc_sample_bytes);
		setenv("EMBER_ALLOC_SAMPLE_BYTES", sb, 1);
	}
	err = alloc_collector_open(&o, &a->ac);
	if (err) {
		fprintf(stderr, "ember: cannot load the BPF allocation sampler: %s\n", strerror(-err));
		return err;
	}
	alloc_collector_on_first_sample(a->ac, on_alloc_first_sample, a);
	if (a->auto_services) {
		char lib[PATH_MAX];

		/* Our own copy of the library, the one a service on this host preloads: its probes
		 * are armed for every process before any maps it. Copies elsewhere (inside a
		 * container image) are attached per process when one execs with them. */
		err = allocprof_preload_path(lib, sizeof(lib));
		if (!err)
			err = alloc_collector_attach_everyone(a->ac, lib);
		if (err)
			log_warn("alloc: cannot arm libember_alloc.so for every process (%s); "
				 "processes that preload it are attached when they start",
				 strerror(-err));
	}
	return 0;
}

/* --profiles gpu: listen for libember_cupti.so clients; `ember run` also sets the command up to
 * load the library (CUDA_INJECTION64_PATH) and to find the socket. */
static int setup_gpu(struct agent *a)
{
	int err;

	if (a->run_mode) {
		const char *env = getenv("EMBER_CUPTI_LIB"), *old = getenv("CUDA_INJECTION64_PATH");
		char exe[PATH_MAX], lib[PATH_MAX + 32];
		ssize_t n;

		if (env && *env) {
			snprintf(lib, sizeof(lib), "%s", env);
		} else {
			n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
			exe[n > 0 ? n : 0] = '\0';
			if (strrchr(exe, '/'))
				*strrchr(exe, '/') = '\0';
			snprintf(lib, sizeof(lib), "%.*s/libember_cupti.so", PATH_MAX - 1, exe);
			if (access(lib, R_OK))
				snprintf(lib, sizeof(lib), "/usr/lib/ember/libember_cupti.so");
		}
		if (access(lib, R_OK)) {
			fprintf(stderr, "ember: invalid value for --profiles: gpu needs libember_cupti.so "
					"(not found next to ember nor in /usr/lib/ember; set EMBER_CUPTI_LIB; "
					"it is built only where the CUDA toolkit with CUPTI is installed)\n");
			return -ENOENT;
		}
		if (old && *old && strcmp(old, lib))
			log_warn("run: CUDA_INJECTION64_PATH was %s; replacing it with %s", old, lib);
		setenv("CUDA_INJECTION64_PATH", lib, 1);
		setenv("EMBER_GPU_SOCKET", a->cfg.gpu_socket, 1);
		setenv("EMBER_GPU_GRAPH_TRACE", a->cfg.gpu_graph_trace, 1);
	}
	err = gpu_receiver_start(a->cfg.gpu_socket, &a->gpu);
	if (err)
		fprintf(stderr, "ember: invalid value for --gpu-socket: cannot listen on %s: %s\n",
			a->cfg.gpu_socket, strerror(-err));
	return err;
}

/* The preloaded library is mapped only after exec: attach to its file for the command now, so
 * its first sampled allocations are seen too. */
static void arm_preload(struct agent *a, pid_t pid)
{
	char lib[PATH_MAX];
	uint64_t start;

	if (allocprof_preload_path(lib, sizeof(lib)) == 0 && procmaps_start_time(pid, &start) == 0)
		(void)alloc_collector_attach_path(a->ac, pid, start, lib);
}

static void agent_free(struct agent *a)
{
	metrics_stop(a->metrics);
	push_free(a->push);
	localsink_free(a->local);
	cpu_collector_free(a->cc);
	alloc_collector_free(a->ac);
	gpu_receiver_stop(a->gpu);
	symbolizer_free(a->sym);
	unwmode_free(a->unw);
	targets_free(a->targets);
	for (size_t i = 0; i < a->nsvc; i++) {
		free(a->svc[i].name);
		stackagg_free(a->svc[i].agg);
		stackagg_free(a->svc[i].mem_agg);
		stackagg_free(a->svc[i].gpu_agg);
	}
	free(a->svc);
	series_labels_fini(&a->labels);
	proctable_fini(&a->procs);
	options_free(&a->cfg);
	free(a);
}

/* Is family (cpu, alloc, gpu) in the comma-separated list? */
static bool has_family(const char *list, const char *family)
{
	size_t n = strlen(family);

	for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, family, n) && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

/* Name of the service `ember run` reports: the command's basename, as a service name. */
static void command_service_name(const char *cmd, char *buf, size_t n)
{
	const char *base = strrchr(cmd, '/') ? strrchr(cmd, '/') + 1 : cmd;
	size_t i;

	for (i = 0; base[i] && i + 1 < n; i++)
		buf[i] = (isalnum((unsigned char)base[i]) || strchr("_.-", base[i])) ? base[i] : '_';
	buf[i] = '\0';
	if (!i)
		snprintf(buf, n, "command");
}

/* Collects the command's exit; true once it has exited. */
static bool child_done(struct agent *a)
{
	int st;

	if (!a->child)
		return true;
	if (waitpid(a->child, &st, WNOHANG) != a->child)
		return false;
	a->child_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	a->child = 0;
	return true;
}

static int agent_common(enum ember_command cmd, int argc, char **argv)
{
	struct agent *a = calloc(1, sizeof(*a));
	int go_fd = -1, err_fd = -1;
	int64_t term_sent = 0;
	struct cpu_collector_opts copts = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };
	int64_t next_drain, interval_end, deadline;
	enum log_level level;
	int err, status = 2;

	if (!a)
		return 1;
	a->run_mode = cmd == CMD_RUN;
	err = options_parse(cmd, argc, argv, &a->cfg);
	if (err == 1) {
		options_print_help(cmd, a->run_mode ? "ember run [options] -- CMD ARGS..." : "ember agent [options]");
		status = 0;
		goto out;
	}
	if (err) {
		fprintf(stderr, "ember: see 'ember help %s'\n", a->run_mode ? "run" : "agent");
		goto out;
	}
	if (log_parse_level(a->cfg.log_level, &level) == 0)
		log_set_level(level);
	if (!a->run_mode && (a->cfg.cmd_argc || a->cfg.cmd_argv)) {
		fprintf(stderr, "ember: agent takes no command; use `ember run -- CMD`\n");
		goto out;
	}
	if (a->run_mode && a->cfg.cmd_argc == 0) {
		fprintf(stderr, "ember: run needs a command: ember run [options] -- CMD ARGS...\n");
		goto out;
	}
	if (a->run_mode && a->cfg.services.n) {
		fprintf(stderr, "ember: invalid value for --service: run profiles the command it starts; "
				"use `ember agent` to select services\n");
		goto out;
	}
	a->want_cpu = has_family(a->cfg.profiles, "cpu");


	if (series_labels_init(&a->labels, &a->cfg.labels) || preflight_check())
		goto out;
	err = targets_new(&a->cfg.services, &a->targets);
	if (err) {
		fprintf(stderr, "ember: cannot set up targets: %s\n", strerror(-err));
		goto out;
	}
	a->auto_services = a->cfg.services.n == 0 && !a->run_mode;
	if (a->run_mode) {
		char name[128];

		command_service_name(a->cfg.cmd_argv[0], name, sizeof(name));
		if (service_index(a, name) != 0)
			goto out;
	}
	for (size_t i = 0; i < targets_count(a->targets); i++)
		if (service_index(a, targets_service_name(a->targets, (uint32_t)i)) != (int)i) {
			fprintf(stderr, "ember: invalid value for --service: '%s' is given twice\n",
				targets_service_name(a->targets, (uint32_t)i));
			goto out;
		}
	if (setup_sink(a))
		goto out;
	if (a->cfg.metrics_addr) {
		err = metrics_start(a->cfg.metrics_addr, collect_metrics, a, &a->metrics);
		if (err) {
			fprintf(stderr, "ember: invalid value for --metrics-addr: cannot listen on %s: %s\n",
				a->cfg.metrics_addr, strerror(-err));
			goto out;
		}
	}
	err = symbolizer_new(&a->sym);
	if (err) {
		fprintf(stderr, "ember: cannot create the symbolizer: %s\n", strerror(-err));
		status = 1;
		goto out;
	}
	a->period = NS / a->cfg.sample_rate;
	copts.sample_rate = (unsigned)a->cfg.sample_rate;
	copts.dwarf_all = !strcmp(a->cfg.unwind, "dwarf");
	copts.dwarf_first = !strcmp(a->cfg.unwind, "auto");
	copts.stack_size = (unsigned)a->cfg.stack_size;
	copts.cache = symbolizer_cache(a->sym);
	if (!strcmp(a->cfg.unwind, "auto") && unwmode_new(&a->unw)) {
		status = 1;
		goto out;
	}
	copts.select_all = a->auto_services;
	copts.follow_children = !a->auto_services; /* run: the command's children too */
	copts.report_execs = (!a->auto_services && targets_need_execs(a->targets)) ||
			     (a->auto_services && has_family(a->cfg.profiles, "alloc"));
	copts.report_cgroups = !a->auto_services && targets_need_cgroups(a->targets);
	err = cpu_collector_open(&copts, &a->cc);
	if (err) {
		fprintf(stderr, "ember: cannot load the BPF sampler: %s\n", strerror(-err));
		goto out;
	}
	if (has_family(a->cfg.profiles, "alloc") && setup_alloc(a))
		goto out;
	if (has_family(a->cfg.profiles, "gpu") && setup_gpu(a))
		goto out;
	if (a->run_mode) {
		err = spawn_stopped(a->cfg.cmd_argv, &a->child, &go_fd, &err_fd);
		if (!err) {
			add_target(a, a->child, 0);
			if (a->ac)
				arm_preload(a, a->child);
			err = spawn_release(a->child, go_fd, err_fd);
			go_fd = err_fd = -1;
			if (err)
				a->child = 0;
		}
		if (err) {
			fprintf(stderr, "ember: cannot start '%s': %s\n", a->cfg.cmd_argv[0], strerror(-err));
			goto out;
		}
	} else if (!a->auto_services) {
		(void)targets_scan(a->targets, on_scan_match, a);
	}
	err = a->want_cpu ? cpu_collector_start(a->cc) : 0;
	if (err) {
		fprintf(stderr, "ember: cannot open perf events: %s\n", strerror(-err));
		goto out;
	}

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	log_info("%s: profiling %s at %ld Hz, %s every %.0f s", a->run_mode ? "run" : "agent",
		 a->run_mode ? a->svc[0].name : a->auto_services ? "every process" : "the selected services",
		 a->cfg.sample_rate, a->push ? a->cfg.server : a->cfg.output, a->cfg.interval);
	a->interval_start_real = util_now_ns(CLOCK_REALTIME);
	next_drain = util_now_ns(CLOCK_MONOTONIC) + DRAIN_PERIOD_NS;
	interval_end = util_now_ns(CLOCK_MONOTONIC) + (int64_t)(a->cfg.interval * 1e9);
	for (;;) {
		int64_t now = util_now_ns(CLOCK_MONOTONIC);

		if (a->run_mode) {
			/* The command's end ends the run; a signal to us is passed on to it first. */
			if (child_done(a))
				break;
			if (stop_requested && !term_sent) {
				kill(a->child, SIGTERM);
				term_sent = now;
			} else if (term_sent && now - term_sent > 8 * NS) {
				kill(a->child, SIGKILL);
			}
		} else if (stop_requested) {
			break;
		}
		int64_t wait = next_drain - now;
		int due = refresh_wait_ms(&a->refresh, now);
		int n;

		if (a->run_mode && wait > 100 * 1000000LL)
			wait = 100 * 1000000LL; /* notice the command's exit promptly */
		if (due >= 0 && wait > due * 1000000LL)
			wait = due * 1000000LL;
		if (a->ac) {
			/* Sampled allocations wake the loop too: a short-lived process's maps are
			 * read while it still runs. */
			struct pollfd pf[2] = {
				{ .fd = cpu_collector_epoll_fd(a->cc), .events = POLLIN },
				{ .fd = alloc_collector_epoll_fd(a->ac), .events = POLLIN },
			};

			if (poll(pf, 2, wait > 0 ? (int)(wait / 1000000) + 1 : 0) < 0 && errno != EINTR)
				log_warn("agent: poll: %s", strerror(errno));
			n = cpu_collector_poll(a->cc, 0, on_event, a);
		} else {
			n = cpu_collector_poll(a->cc, wait > 0 ? (int)(wait / 1000000) + 1 : 0, on_event, a);
		}
		if (n < 0 && n != -EINTR) {
			log_error("agent: event poll failed: %s", strerror(-n));
			break;
		}
		run_due_refreshes(a);
		if (a->ac)
			(void)alloc_collector_poll(a->ac, 0);
		now = util_now_ns(CLOCK_MONOTONIC);
		if (now >= next_drain) {
			drain(a);
			next_drain = now + DRAIN_PERIOD_NS;
		}
		if (now >= interval_end) {
			flush_interval(a);
			interval_end += (int64_t)(a->cfg.interval * 1e9);
			if (interval_end < now)
				interval_end = now + (int64_t)(a->cfg.interval * 1e9);
		}
	}
	/* Shutdown: the last partial interval is sent, within the 10 s a service manager gives. */
	deadline = util_now_ns(CLOCK_MONOTONIC);
	log_info("%s: stopping; sending the last partial interval", a->run_mode ? "run" : "agent");
	drain(a);
	drain(a);
	flush_interval(a);
	if (a->push)
		push_stop(a->push, PUSH_STOP_DEADLINE_S - (double)(util_now_ns(CLOCK_MONOTONIC) - deadline) / 1e9);
	status = a->run_mode ? a->child_status : 0;
out:
	if (go_fd >= 0)
		close(go_fd);
	if (err_fd >= 0)
		close(err_fd);
	if (a->child > 0)
		spawn_terminate(a->child);
	agent_free(a);
	return status;
}

int agent_main(int argc, char **argv)
{
	return agent_common(CMD_AGENT, argc, argv);
}

int run_main(int argc, char **argv)
{
	return agent_common(CMD_RUN, argc, argv);
}
