/* pipeline: targets -> collectors -> unwind -> symbolize -> aggregate, one loop for every
 * command (pipeline.h). */
#include "pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "allocprof.h"
#include "cpu_collector.h"
#include "cpuprof.h"
#include "cgmeta.h"
#include "discovery.h"
#include "gpu_receiver.h"
#include "gpuprof.h"
#include "log.h"
#include "metrics.h"
#include "preflight.h"
#include "procmaps.h"
#include "proctable.h"
#include "pyresolve.h"
#include "pystack.h"
#include "refresh.h"
#include "services.h"
#include "spawn.h"
#include "symbolizer.h"
#include "targets.h"
#include "unwmode.h"
#include "util.h"

#define NS 1000000000LL
#define DRAIN_PERIOD_NS (1 * NS) /* also how fast --unwind auto can switch a process */
#define CHILD_KILL_AFTER_NS (8 * NS)

enum { FAM_CPU, FAM_ALLOC, FAM_GPU, FAM_OFFCPU, FAM_COUNT };

/* The symbolizer's counters the self-metrics show (struct symbolizer_stats fields). */
enum {
	SYMSTAT_PERFMAP_FILE, SYMSTAT_PERFMAP_OWNER, SYMSTAT_DEBUG_FILE, SYMSTAT_DEBUG_OWNER,
	SYMSTAT_ELF_SECTION, SYMSTAT_ELF_SKIPPED, SYMSTAT_PERFMAP_SKIPPED, SYMSTAT_ELF_SKIPPED_BYTES,
	SYMSTAT_PERFMAP_SKIPPED_BYTES, SYMSTAT_ELF_HELD, SYMSTAT_PERFMAP_HELD, SYMSTAT_ELF_HELD_BYTES,
	SYMSTAT_PERFMAP_HELD_BYTES, SYMSTAT_PERFMAP_READ,
	/* the Python resolver's (struct pyresolve_stats) */
	SYMSTAT_PY_PROCS, SYMSTAT_PY_REFUSED, SYMSTAT_PY_RESOLVED, SYMSTAT_PY_STALE,
	SYMSTAT_PY_UNREADABLE, SYMSTAT_COUNT
};
static const char *const family_names[FAM_COUNT] = { "cpu", "alloc", "gpu", "offcpu" };
static const size_t family_values[FAM_COUNT] = { 1, 4, 2, 2 };

/* This interval's stacks of one service, per family; indexed by service id. */
struct service_aggs {
	struct stackagg *agg[FAM_COUNT];
};

struct pipeline {
	struct pipeline_opts o;
	const struct ember_config *cfg;
	struct targets *targets;
	struct services *services;
	struct service_aggs *svc; /* [svc_cap], by service id */
	size_t svc_cap;
	struct proctable procs;
	struct refresh_sched refresh;
	struct symbolizer *sym;
	struct pyresolve *py; /* Python processes (NULL with EMBER_PYTHON=off, a benchmark knob) */
	struct unwmode *unw; /* --unwind auto; NULL otherwise */
	struct cpu_collector *cc;
	struct alloc_collector *ac;
	struct gpu_receiver *gpu;
	struct discovery *disc;  /* container/pod metadata; NULL when nothing asks for it */
	uint64_t disc_gen;       /* its generation when last acted on */
	int64_t disc_checked;    /* CLOCK_MONOTONIC of the last look at pending processes */
	/* Processes named after their executables while their container's metadata was being
	 * looked up: named again once it arrives (bounded; the oldest give way). */
	struct pending { pid_t pid; int64_t since; } *pending;
	size_t npending;
	struct metrics *metrics;
	bool want_cpu;
	bool want_offcpu;
	int64_t period;
	int64_t interval_start_real;
	unsigned selected;
	/* PIPELINE_COMMAND */
	pid_t child;
	int child_status;
	/* self-metrics: written by the loop, read by the metrics thread */
	_Atomic uint64_t m_samples, m_procs, m_misses, m_gpu_unselected, m_gpu_stale, m_services_full;
	_Atomic uint64_t m_services_retired, m_services, m_setuid_dropped;
	_Atomic int64_t m_loop_mono, m_interval_mono; /* liveness: last loop turn, last interval */
	int64_t services_full_logged;
	void (*sink_metrics)(void *ctx, struct metrics_writer *w);
	void *sink_ctx;
	const struct pipeline_hooks *hooks;
	int64_t stop_mono; /* when the loop ended */
	/* the symbolizer's budgets and refusals, copied at each drain for the metrics thread */
	_Atomic uint64_t m_sym[SYMSTAT_COUNT];
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* SIGCHLD only interrupts the wait: the command's exit is collected by child_done(). */
static void on_child(int sig)
{
	(void)sig;
}

/* --- services ------------------------------------------------------------------------- */

/* The aggregators of ids below services_capacity() exist (NULL until a sample comes). */
static int grow_aggs(struct pipeline *pl)
{
	size_t cap = services_capacity(pl->services);
	struct service_aggs *ns;

	if (cap <= pl->svc_cap)
		return 0;
	ns = realloc(pl->svc, cap * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	memset(ns + pl->svc_cap, 0, (cap - pl->svc_cap) * sizeof(*ns));
	pl->svc = ns;
	pl->svc_cap = cap;
	return 0;
}

static int service_index(struct pipeline *pl, const char *name)
{
	int64_t now = util_now_ns(CLOCK_MONOTONIC);
	int id = services_get(pl->services, name, now);

	if (id == -ENOSPC) {
		atomic_store_explicit(&pl->m_services_full, services_refused(pl->services),
				      memory_order_relaxed);
		if (now - pl->services_full_logged > 60 * NS) {
			log_warn("%s: the service table is full (%d services with samples in the last "
				 "%d minutes): '%s' is not profiled (counted in "
				 "ember_services_refused_total)", pl->o.name, SERVICES_MAX,
				 (int)(SERVICES_IDLE_NS / (60 * NS)), name);
			pl->services_full_logged = now;
		}
		return id;
	}
	if (id >= 0 && grow_aggs(pl))
		return -ENOMEM;
	return id;
}

struct retire_ctx {
	struct pipeline *pl;
	bool *used;
};

/* A service is in use while a tracked process belongs to it or it holds stacks. */
static bool service_in_use(void *ctx, uint32_t id)
{
	struct retire_ctx *r = ctx;

	if (r->used[id])
		return true;
	for (int fam = 0; fam < FAM_COUNT; fam++)
		if (r->pl->svc[id].agg[fam])
			return true;
	return false;
}

/* Every process mode: services named after executables come and go with their processes (a
 * host that runs thousands of short-lived programs would otherwise fill the table for good).
 * A service with no samples for SERVICES_IDLE_NS and no tracked process is retired; its id is
 * reused. Selected services (--service) and a command's service stay. */
static void retire_idle_services(struct pipeline *pl)
{
	size_t cap = services_capacity(pl->services);
	struct retire_ctx r = { .pl = pl };

	if (pl->o.policy != PIPELINE_EVERY_PROCESS || pl->o.one_service || !cap)
		return;
	r.used = calloc(cap, sizeof(*r.used));
	if (!r.used)
		return;
	for (size_t i = 0; i < pl->procs.cap; i++)
		if (pl->procs.e[i].pid && pl->procs.e[i].service < cap)
			r.used[pl->procs.e[i].service] = true;
	if (services_retire(pl->services, util_now_ns(CLOCK_MONOTONIC), SERVICES_IDLE_NS,
			    service_in_use, &r))
		log_debug("%s: services without samples for %d minutes retired", pl->o.name,
			  (int)(SERVICES_IDLE_NS / (60 * NS)));
	atomic_store_explicit(&pl->m_services_retired, services_retired(pl->services),
			      memory_order_relaxed);
	free(r.used);
}

/* PIPELINE_EVERY_PROCESS: the service of a process is its executable's name. */
#define PENDING_MAX 4096
#define PENDING_NS (600 * NS) /* a container the APIs do not know by then keeps its name */

static void add_pending(struct pipeline *pl, pid_t pid)
{
	for (size_t i = 0; i < pl->npending; i++)
		if (pl->pending[i].pid == pid)
			return;
	if (!pl->pending && !(pl->pending = calloc(PENDING_MAX, sizeof(*pl->pending))))
		return;
	if (pl->npending == PENDING_MAX) {
		memmove(pl->pending, pl->pending + 1, (PENDING_MAX - 1) * sizeof(*pl->pending));
		pl->npending--;
	}
	pl->pending[pl->npending++] = (struct pending){ pid, util_now_ns(CLOCK_MONOTONIC) };
}

/* The metadata labels of a service, as services_get_labeled() keys them. */
static void labels_string(const struct discovery_meta *m, char *buf, size_t n)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < m->nlabels && o < n; i++)
		o += (size_t)snprintf(buf + o, n - o, "%s=%s\n", m->labels[i].name, m->labels[i].value);
}

/* A process's service by its container, pod or unit (discovery), else its executable. A
 * container whose metadata is still being looked up is named after the executable for now
 * and remembered, to be named again when the answer comes. */
static int auto_service_of(struct pipeline *pl, pid_t pid, const char *comm,
			   const struct cgmeta *cg)
{
	char path[64], exe[PATH_MAX], name[128];
	const char *base = comm && *comm ? comm : "unknown";
	struct discovery_meta meta;
	ssize_t n;

	if (cg) {
		if (discovery_resolve(pl->disc, cg, &meta) == 1) {
			char labels[DISCOVERY_MAX_LABELS * (DISCOVERY_NAME_MAX + 24)];
			int64_t now = util_now_ns(CLOCK_MONOTONIC);
			int id;

			labels_string(&meta, labels, sizeof(labels));
			id = services_get_labeled(pl->services, meta.service, labels, now);
			if (id == -ENOSPC)
				return service_index(pl, meta.service); /* logs and counts */
			if (id >= 0 && grow_aggs(pl))
				return -ENOMEM;
			return id;
		}
		if (cg->container_id[0] && discovery_pending(pl->disc, cg->container_id))
			add_pending(pl, pid);
	}

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		if (n > 10 && !strcmp(exe + n - 10, " (deleted)"))
			exe[n - 10] = '\0';
		base = exe;
	}
	services_name_from_path(base, name, sizeof(name), "unknown");
	return service_index(pl, name);
}

static int auto_service(struct pipeline *pl, pid_t pid, const char *comm)
{
	struct cgmeta cg;

	return auto_service_of(pl, pid, comm, cgmeta_read(pid, &cg) == 0 ? &cg : NULL);
}

/* --- processes ------------------------------------------------------------------------ */

static struct proc_entry *proc_get(struct pipeline *pl, pid_t pid)
{
	return proctable_get(&pl->procs, pid);
}

static void proc_put(struct pipeline *pl, pid_t pid, uint64_t cookie, uint32_t service)
{
	(void)proctable_put(&pl->procs, pid, cookie, service);
	atomic_store_explicit(&pl->m_procs, pl->procs.n, memory_order_relaxed);
}

/* After exec, fork or dlopen: attach the allocator probes to libraries not seen yet. */
static void alloc_rescan(struct pipeline *pl, pid_t pid)
{
	struct proc_entry *p;
	uint64_t start;

	if (!pl->ac || procmaps_start_time(pid, &start))
		return;
	p = proc_get(pl, pid);
	if (p && p->cookie == start && !p->exited)
		(void)alloc_collector_add_target(pl->ac, pid, start);
}

/* Every process, preload mode: a process that execs with libember_alloc.so in its LD_PRELOAD
 * gets the probes armed on that file now, before ld.so maps it, so even a short-lived process's
 * first allocations are seen. */
static void preload_check(struct pipeline *pl, pid_t pid)
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
		if (*begin != '/' || end - begin >= PATH_MAX || procmaps_start_time(pid, &start))
			return;
		snprintf(lib, sizeof(lib), "%.*s", (int)(end - begin), begin);
		id = auto_service(pl, pid, NULL);
		if (id >= 0)
			proc_put(pl, pid, start, (uint32_t)id);
		/* The path is the process's to choose: resolved in its root, opened the safe way. */
		(void)alloc_collector_attach_in_root(pl->ac, pid, start, lib);
		return;
	}
}

/* After a capture of pid's maps: a Python process is described to the samplers, whose
 * samples then carry its Python frames. */
static void describe_python(struct pipeline *pl, pid_t pid)
{
	const struct pyresolve_proc *info;
	struct ember_py_proc pp;

	if (!pl->py || pyresolve_process(pl->py, pid, &info) || pystack_describe(info, &pp))
		return;
	(void)cpu_collector_set_python(pl->cc, pid, &pp);
	if (pl->ac)
		(void)alloc_collector_set_python(pl->ac, pid, &pp);
}

static void refresh_process(struct pipeline *pl, pid_t pid)
{
	(void)symbolizer_refresh(pl->sym, pid);
	describe_python(pl, pid);
}

static void on_alloc_first_sample(void *ctx, pid_t pid)
{
	refresh_process(ctx, pid);
}

static void run_due_refreshes(struct pipeline *pl)
{
	int64_t now = util_now_ns(CLOCK_MONOTONIC);
	pid_t pid;

	while ((pid = refresh_take_due(&pl->refresh, now))) {
		refresh_process(pl, pid);
		alloc_rescan(pl, pid);
	}
}

/* Re-reads pid's maps after a change, now or on the schedule; at once if it is full. */
static void schedule_refresh(struct pipeline *pl, pid_t pid, int64_t delay_ns)
{
	if (!refresh_schedule(&pl->refresh, pid, delay_ns))
		refresh_process(pl, pid);
}

/* Selects pid for service. Returns 0 or -errno. */
static int add_target(struct pipeline *pl, pid_t pid, uint32_t service)
{
	uint64_t start;
	int err;

	if (pid == getpid())
		return -EINVAL;
	err = procmaps_start_time(pid, &start);
	if (err)
		return err;
	err = cpu_collector_add_target(pl->cc, pid, service, start);
	if (err)
		return err;
	pl->selected++;
	proc_put(pl, pid, start, service);
	/* Capture maps now: a process idle at first may exit right after its first samples. */
	(void)symbolizer_track(pl->sym, pid);
	if (pl->ac)
		(void)alloc_collector_add_target(pl->ac, pid, start);
	describe_python(pl, pid);
	log_debug("%s: pid %d selected for service %s", pl->o.name, (int)pid,
		  services_name(pl->services, pl->o.one_service ? 0 : service));
	return 0;
}

static void on_scan_match(void *ctx, pid_t pid, uint32_t service)
{
	(void)add_target(ctx, pid, service);
}

/* After an exec: does pid run with other rights than its real ids (a setuid or setgid
 * program)? Unreadable means gone: not ours to decide. */
static bool gained_privileges(pid_t pid)
{
	char path[64], line[256];
	unsigned long r, e, sv, fs;
	bool gained = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if ((sscanf(line, "Uid: %lu %lu %lu %lu", &r, &e, &sv, &fs) == 4 ||
		     sscanf(line, "Gid: %lu %lu %lu %lu", &r, &e, &sv, &fs) == 4) && r != e)
			gained = true;
	fclose(f);
	return gained;
}

static void on_event(void *ctx, const struct ember_event *e)
{
	struct pipeline *pl = ctx;
	pid_t pid = (pid_t)e->tgid;
	struct proc_entry *p;
	int id;

	switch (e->type) {
	case EMBER_EVENT_FIRST_SAMPLE:
		/* After exec the first sample comes with ld.so's work done or under way: its
		 * libraries are there to read, and to probe. */
		refresh_process(pl, pid);
		if (pl->unw)
			cpuprof_unwmode_first_sample(pl->unw, pl->cc, pid);
		if (pl->o.policy != PIPELINE_EVERY_PROCESS) {
			alloc_rescan(pl, pid);
		} else {
			id = pl->o.one_service ? 0 : auto_service(pl, pid, e->comm);
			if (id >= 0)
				proc_put(pl, pid, e->cookie, (uint32_t)id);
			/* Preload mode: attaches when the process maps libember_alloc.so. */
			if (pl->ac && pl->o.alloc_mode == ALLOC_MODE_PRELOAD)
				(void)alloc_collector_add_target(pl->ac, pid, e->cookie);
		}
		break;
	case EMBER_EVENT_MMAP:
		schedule_refresh(pl, pid, 0);
		break;
	case EMBER_EVENT_EXEC:
		if (e->cookie) {
			/* A target ran exec: maps change; selected by a selector, it may no longer
			 * belong to one (a worker exec'ing a shell). */
			if (!refresh_after_exec(&pl->refresh, pid))
				refresh_process(pl, pid);
			if (pl->o.policy == PIPELINE_SELECTORS && gained_privileges(pid)) {
				/* A setuid or setgid program: it is no longer the selected service's code
				 * running with that service's rights (see README, Security). */
				(void)cpu_collector_remove_target(pl->cc, pid);
				p = proc_get(pl, pid);
				if (p)
					p->exited = true;
				atomic_fetch_add_explicit(&pl->m_setuid_dropped, 1, memory_order_relaxed);
				log_debug("%s: pid %d exec'd a setuid/setgid program: no longer profiled",
					  pl->o.name, (int)pid);
				break;
			}
			if (pl->o.policy == PIPELINE_SELECTORS) {
				id = targets_match(pl->targets, pid);
				if (id < 0) {
					(void)cpu_collector_remove_target(pl->cc, pid);
					p = proc_get(pl, pid);
					if (p)
						p->exited = true;
				} else if ((uint32_t)id != e->service_id) {
					(void)add_target(pl, pid, (uint32_t)id);
				}
			}
			break;
		}
		if (pl->o.policy == PIPELINE_EVERY_PROCESS && pl->ac && pl->o.alloc_mode == ALLOC_MODE_PRELOAD) {
			preload_check(pl, pid);
			break;
		}
		/* Not a target yet: does it match now? */
		__attribute__((fallthrough));
	case EMBER_EVENT_CGROUP:
		if (pl->o.policy != PIPELINE_SELECTORS)
			break;
		id = targets_match(pl->targets, pid);
		if (id >= 0 && (!e->cookie || (uint32_t)id != e->service_id) &&
		    add_target(pl, pid, (uint32_t)id) == 0 && e->type == EMBER_EVENT_EXEC) {
			/* Selected at its exec: ld.so maps the libraries during the next
			 * milliseconds, where the kernel may not report them (no mmap hook). */
			if (!refresh_after_exec(&pl->refresh, pid))
				refresh_process(pl, pid);
		}
		break;
	case EMBER_EVENT_FORK:
		pl->selected++;
		proc_put(pl, pid, e->cookie, e->service_id);
		if (pl->ac)
			(void)alloc_collector_add_target(pl->ac, pid, e->cookie);
		break;
	case EMBER_EVENT_EXIT:
		p = proc_get(pl, pid);
		if (p && p->cookie == e->cookie)
			p->exited = true; /* forgotten after the next drain has used its maps */
		if (pl->hooks && pl->hooks->exited)
			pl->hooks->exited(pl->hooks->ctx, pid);
		break;
	}
}

/* --- aggregation ---------------------------------------------------------------------- */

static struct stackagg *slot_agg(struct pipeline *pl, int id, int fam)
{
	struct service_aggs *svc;

	if (pl->o.one_service)
		id = 0;
	if (id < 0 || (size_t)id >= pl->svc_cap || !services_name(pl->services, (uint32_t)id))
		return NULL;
	svc = &pl->svc[id];
	if (!svc->agg[fam] && stackagg_new(family_values[fam], &svc->agg[fam]))
		return NULL;
	services_touch(pl->services, (uint32_t)id, util_now_ns(CLOCK_MONOTONIC));
	return svc->agg[fam];
}

static void on_stack(void *ctx, const struct cpu_stack *s)
{
	struct pipeline *pl = ctx;
	struct sym_frame frames[CPUPROF_MAX_FRAMES];
	int64_t value = (int64_t)s->count * pl->period;
	/* off-CPU: blocked time and switches */
	int64_t off[2] = { (int64_t)s->offcpu_ns, (int64_t)s->count };
	struct stackagg *agg;
	struct proc_entry *p;
	size_t n;
	int id;

	if (pl->o.policy == PIPELINE_EVERY_PROCESS && !pl->o.one_service) {
		p = proc_get(pl, (pid_t)s->key->tgid);
		if (p && p->cookie == s->key->cookie) {
			id = (int)p->service;
		} else {
			/* Its FIRST_SAMPLE event was lost or not handled yet. */
			id = auto_service(pl, (pid_t)s->key->tgid, NULL);
			if (id >= 0 && !p)
				proc_put(pl, (pid_t)s->key->tgid, s->key->cookie, (uint32_t)id);
		}
	} else {
		id = (int)s->key->service_id;
	}
	agg = slot_agg(pl, id, s->offcpu ? FAM_OFFCPU : FAM_CPU);
	if (!agg)
		return;
	n = cpuprof_frames(pl->sym, pl->py, s, frames);
	if (s->offcpu) {
		if (stackagg_add(agg, frames, n, off))
			log_warn("%s: out of memory, dropping a stack", pl->o.name);
		return;
	}
	if (pl->unw)
		cpuprof_unwmode_observe(pl->unw, pl->cc, s, frames, n);
	if (stackagg_add(agg, frames, n, &value) == 0)
		atomic_fetch_add_explicit(&pl->m_samples, s->count, memory_order_relaxed);
	else
		log_warn("%s: out of memory, dropping a stack", pl->o.name);
}

/* Resolves (and so caches) the code objects of an allocation sample's Python frames now,
 * while the process is alive to read them. */
static void warm_python(void *ctx, pid_t tgid, const struct ember_py_frame *py, size_t npy)
{
	struct pipeline *pl = ctx;
	struct pyresolve_frame rf;

	for (size_t i = 0; i < npy; i++)
		if (!(py[i].code & EMBER_PYF_MARKER))
			(void)pyresolve_frame(pl->py, tgid, &py[i], &rf);
}

/* Drops exited processes once their last samples are symbolized. */
static void forget_exited(struct pipeline *pl)
{
	pid_t pid;

	while ((pid = proctable_take_exited(&pl->procs))) {
		symbolizer_forget(pl->sym, pid);
		cpu_collector_forget(pl->cc, pid);
		if (pl->unw)
			unwmode_forget(pl->unw, pid);
		if (pl->ac)
			(void)alloc_collector_remove_target(pl->ac, pid);
	}
	atomic_store_explicit(&pl->m_procs, pl->procs.n, memory_order_relaxed);
}

static void on_alloc_stack(void *ctx, const struct alloc_stack *s)
{
	struct pipeline *pl = ctx;
	struct sym_frame frames[ALLOCPROF_MAX_FRAMES];
	struct proc_entry *p = proc_get(pl, (pid_t)s->tgid);
	struct stackagg *agg;
	size_t n;

	if (!p || p->cookie != s->cookie || !(agg = slot_agg(pl, (int)p->service, FAM_ALLOC)))
		return;
	n = allocprof_frames(pl->sym, pl->py, s, frames);
	(void)stackagg_add(agg, frames, n, s->values);
}

/* Without the sampler there are no fork events: a process is a target's descendant when one
 * of its ancestors (up to 32 levels) is tracked. That ancestor's entry, or NULL. */
static struct proc_entry *tracked_ancestor(struct pipeline *pl, pid_t pid)
{
	for (int depth = 0; depth < 32; depth++) {
		struct proc_entry *p;

		if (procmaps_parent(pid, &pid) || pid <= 1)
			return NULL;
		p = proc_get(pl, pid);
		if (p && !p->exited)
			return p;
	}
	return NULL;
}

/* A GPU sample from libember_cupti.so in process s->pid: the service that process belongs to
 * (a command's; its selected service, or its executable's). Samples of processes no service
 * selects are counted and dropped. */
static void on_gpu_sample(void *ctx, const struct gpu_sample *s)
{
	struct pipeline *pl = ctx;
	struct sym_frame frames[GPUPROF_MAX_FRAMES];
	struct proc_entry *p = proc_get(pl, s->pid);
	struct stackagg *agg;
	uint64_t now_start;
	int64_t values[2];
	size_t n;
	int id;

	bool known = p && s->start_time && p->cookie == s->start_time;

	/* The sample belongs to the process that sent it, identified by pid and start time
	 * (read at accept). A process we track under that identity (still running, or exited
	 * with its last samples to come) is it; otherwise the pid's current holder must still
	 * be the sender. A client that exited is not whichever process holds its pid now: its
	 * samples are dropped and counted, never given to another service. */
	if (!known && (!s->start_time || procmaps_start_time(s->pid, &now_start) ||
		       now_start != s->start_time)) {
		atomic_fetch_add_explicit(&pl->m_gpu_stale, 1, memory_order_relaxed);
		return;
	}
	if (!known && !pl->cc && pl->o.policy != PIPELINE_EVERY_PROCESS) {
		struct proc_entry *a = tracked_ancestor(pl, s->pid);

		if (a) {
			/* a child of a target: it joins the target's service, as a fork would */
			proc_put(pl, s->pid, s->start_time, a->service);
			p = proc_get(pl, s->pid);
			known = p && p->cookie == s->start_time;
		}
	}
	if (pl->o.policy == PIPELINE_COMMAND)
		id = known ? 0 : -1;
	else if (known)
		id = (int)p->service;
	else if (pl->o.policy == PIPELINE_EVERY_PROCESS)
		id = auto_service(pl, s->pid, NULL);
	else
		id = targets_match(pl->targets, s->pid);
	agg = id >= 0 ? slot_agg(pl, id, FAM_GPU) : NULL;
	if (!agg) {
		atomic_fetch_add_explicit(&pl->m_gpu_unselected, 1, memory_order_relaxed);
		return;
	}
	n = gpuprof_frames(pl->sym, pl->py, s, frames);
	gpuprof_values(s, values);
	(void)stackagg_add(agg, frames, n, values);
}

static void drain(struct pipeline *pl)
{
	struct pyresolve_stats ps = { 0 };
	struct symbolizer_stats ss;

	(void)cpu_collector_drain(pl->cc, on_stack, pl);
	/* Allocation samples are symbolized at the interval's end: keep exited processes' maps
	 * until then. */
	if (!pl->ac)
		forget_exited(pl);
	symbolizer_get_stats(pl->sym, &ss);
	if (pl->py)
		pyresolve_get_stats(pl->py, &ps);
	atomic_store_explicit(&pl->m_misses, ss.misses, memory_order_relaxed);
	{
		const uint64_t v[SYMSTAT_COUNT] = {
			[SYMSTAT_PERFMAP_FILE] = ss.perfmap_refused_files,
			[SYMSTAT_PERFMAP_OWNER] = ss.perfmap_refused_owner,
			[SYMSTAT_DEBUG_FILE] = ss.debug_refused_files,
			[SYMSTAT_DEBUG_OWNER] = ss.debug_refused_owner,
			[SYMSTAT_ELF_SECTION] = ss.elf_sections_refused,
			[SYMSTAT_ELF_SKIPPED] = ss.elf_symbols_skipped,
			[SYMSTAT_PERFMAP_SKIPPED] = ss.perfmap_entries_skipped,
			[SYMSTAT_ELF_SKIPPED_BYTES] = ss.elf_name_bytes_skipped,
			[SYMSTAT_PERFMAP_SKIPPED_BYTES] = ss.perfmap_bytes_skipped,
			[SYMSTAT_ELF_HELD] = ss.elf_symbols,
			[SYMSTAT_PERFMAP_HELD] = ss.perfmap_entries,
			[SYMSTAT_ELF_HELD_BYTES] = ss.elf_name_bytes,
			[SYMSTAT_PERFMAP_HELD_BYTES] = ss.perfmap_name_bytes,
			[SYMSTAT_PERFMAP_READ] = ss.perfmap_bytes_read,
			[SYMSTAT_PY_PROCS] = ps.processes,
			[SYMSTAT_PY_REFUSED] = ps.refused,
			[SYMSTAT_PY_RESOLVED] = ps.resolved,
			[SYMSTAT_PY_STALE] = ps.stale,
			[SYMSTAT_PY_UNREADABLE] = ps.unreadable,
		};

		for (size_t i = 0; i < SYMSTAT_COUNT; i++)
			atomic_store_explicit(&pl->m_sym[i], v[i], memory_order_relaxed);
	}
}

/* The symbolizer's refusals and budgets (copied by drain()). */
static void write_symbol_metrics(struct pipeline *pl, struct metrics_writer *w)
{
	static const struct {
		int stat;
		const char *name, *help, *label, *value;
		bool gauge;
	} m[] = {
		{ SYMSTAT_PERFMAP_FILE, "ember_symbols_refused_total", "Files the symbolizer refused, by reason", "reason", "perfmap_file", false },
		{ SYMSTAT_PERFMAP_OWNER, "ember_symbols_refused_total", NULL, "reason", "perfmap_owner", false },
		{ SYMSTAT_DEBUG_FILE, "ember_symbols_refused_total", NULL, "reason", "debug_file", false },
		{ SYMSTAT_DEBUG_OWNER, "ember_symbols_refused_total", NULL, "reason", "debug_owner", false },
		{ SYMSTAT_ELF_SECTION, "ember_symbols_refused_total", NULL, "reason", "elf_section", false },
		{ SYMSTAT_ELF_SKIPPED, "ember_symbols_skipped_total", "Symbols left out by a table budget", "table", "elf", false },
		{ SYMSTAT_PERFMAP_SKIPPED, "ember_symbols_skipped_total", NULL, "table", "perfmap", false },
		{ SYMSTAT_ELF_SKIPPED_BYTES, "ember_symbols_skipped_bytes_total", "Symbol name bytes left out by a budget", "table", "elf", false },
		{ SYMSTAT_PERFMAP_SKIPPED_BYTES, "ember_symbols_skipped_bytes_total", NULL, "table", "perfmap", false },
		{ SYMSTAT_ELF_HELD, "ember_symbols_held", "Symbols held by all tables", "table", "elf", true },
		{ SYMSTAT_PERFMAP_HELD, "ember_symbols_held", NULL, "table", "perfmap", true },
		{ SYMSTAT_ELF_HELD_BYTES, "ember_symbols_held_bytes", "Distinct symbol name bytes held", "table", "elf", true },
		{ SYMSTAT_PERFMAP_HELD_BYTES, "ember_symbols_held_bytes", NULL, "table", "perfmap", true },
		{ SYMSTAT_PERFMAP_READ, "ember_perfmap_read_bytes_total", "Perf map bytes read", NULL, NULL, false },
		{ SYMSTAT_PY_PROCS, "ember_python_processes", "Python processes whose frames are read now", NULL, NULL, true },
		{ SYMSTAT_PY_REFUSED, "ember_python_interpreters_refused_total", "Python processes left with native stacks: a debug, free-threaded or unknown build", NULL, NULL, false },
		{ SYMSTAT_PY_RESOLVED, "ember_python_code_objects_total", "Python code objects read, and frames whose code object was rejected, by outcome (stale: the address holds another object now)", "outcome", "resolved", false },
		{ SYMSTAT_PY_STALE, "ember_python_code_objects_total", NULL, "outcome", "stale", false },
		{ SYMSTAT_PY_UNREADABLE, "ember_python_code_objects_total", NULL, "outcome", "unreadable", false },
	};
	const char *help = NULL;

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		const char *labels[] = { m[i].label, m[i].value, NULL };
		double v = (double)atomic_load_explicit(&pl->m_sym[m[i].stat], memory_order_relaxed);

		help = m[i].help ? m[i].help : help;
		if (m[i].gauge)
			metrics_gauge(w, m[i].name, help, m[i].label ? labels : NULL, v);
		else
			metrics_counter(w, m[i].name, help, m[i].label ? labels : NULL, v);
	}
}

/* The pprof header of family fam for the interval [from, until). */
static void describe(struct pipeline *pl, int fam, int64_t from, int64_t until,
		     struct pprof_value_type types[4], struct pprof_value_type *period_type,
		     struct stackagg_profile *p, char *comment, size_t comment_size)
{
	const struct profile_family *f = profile_family_find(family_names[fam]);

	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < f->ntypes; i++)
		types[i] = (struct pprof_value_type){ f->types[i][0], f->types[i][1] };
	*period_type = (struct pprof_value_type){ f->period[0], f->period[1] };
	p->types = types;
	p->period_type = period_type;
	p->time_nanos = from;
	p->duration_nanos = until - from;
	switch (fam) {
	case FAM_CPU:
		p->period = pl->period;
		if (pl->o.one_service) {
			pipeline_loss_report(pl, comment, comment_size);
			p->comment = comment;
		}
		break;
	case FAM_ALLOC:
		p->period = (int64_t)alloc_collector_interval(pl->ac);
		allocprof_comment(pl->ac, comment, comment_size);
		p->comment = comment;
		break;
	default:
		p->period = 1;
	}
}

static bool family_on(const struct pipeline *pl, int fam)
{
	switch (fam) {
	case FAM_CPU:
		return pl->want_cpu;
	case FAM_ALLOC:
		return pl->ac != NULL;
	case FAM_OFFCPU:
		return pl->want_offcpu;
	default:
		return pl->gpu != NULL;
	}
}

static void flush_interval(struct pipeline *pl)
{
	int64_t until = util_now_ns(CLOCK_REALTIME);
	struct pprof_value_type types[4], period_type;
	struct stackagg_profile desc;
	char comment[512];

	if (pl->gpu)
		(void)gpu_receiver_drain(pl->gpu, on_gpu_sample, pl);
	if (pl->ac) {
		/* Allocations of the interval and the live set at its end, then the processes that
		 * exited can go. */
		(void)alloc_collector_drain(pl->ac, on_alloc_stack, pl);
		forget_exited(pl);
	}
	for (size_t i = 0; i < pl->svc_cap; i++) {
		if (!services_name(pl->services, (uint32_t)i))
			continue;
		for (int fam = 0; fam < FAM_COUNT; fam++) {
			struct stackagg **agg = &pl->svc[i].agg[fam];
			struct pipeline_profile prof;

			/* One profile for the whole run (record): each family asked for is written,
			 * empty or not; otherwise only what has samples. */
			if (pl->o.one_service && i == 0 && family_on(pl, fam) && !*agg)
				(void)stackagg_new(family_values[fam], agg);
			if (!*agg || (stackagg_count(*agg) == 0 && !pl->o.one_service))
				continue;
			describe(pl, fam, pl->interval_start_real, until, types, &period_type, &desc,
				 comment, sizeof(comment));
			prof = (struct pipeline_profile){
				.service = services_name(pl->services, (uint32_t)i),
				.labels = services_labels(pl->services, (uint32_t)i),
				.fam = profile_family_find(family_names[fam]),
				.agg = *agg,
				.desc = &desc,
				.until = until,
			};
			if (pl->hooks && pl->hooks->profile)
				pl->hooks->profile(pl->hooks->ctx, &prof);
			stackagg_free(*agg);
			*agg = NULL;
		}
	}
	pl->interval_start_real = until;
	atomic_store_explicit(&pl->m_interval_mono, util_now_ns(CLOCK_MONOTONIC), memory_order_relaxed);
	retire_idle_services(pl);
	atomic_store_explicit(&pl->m_services, services_count(pl->services), memory_order_relaxed);
}

/* --- self-metrics --------------------------------------------------------------------- */

static void write_discovery_metrics(struct pipeline *pl, struct metrics_writer *w)
{
	struct discovery_stats st;

	if (!pl->disc)
		return;
	discovery_get_stats(pl->disc, &st);
	for (int s = 0; s < DISC_SOURCE_COUNT; s++)
		for (int o = 0; o < DISC_OUTCOME_COUNT; o++)
			metrics_counter(w, "ember_discovery_lookups_total",
					"Processes named from container, pod or unit metadata, and "
					"Docker lookups, by source and outcome",
					(const char *[]){ "source", discovery_source_name(s), "outcome",
							  discovery_outcome_name(o), NULL },
					(double)st.lookups[s][o]);
	for (int s = 0; s < DISC_SYSTEMD; s++)
		metrics_counter(w, "ember_discovery_requests_total",
				"Requests to the Docker and Kubernetes APIs",
				(const char *[]){ "source", discovery_source_name(s), NULL },
				(double)st.requests[s]);
	for (int s = 0; s < DISC_SYSTEMD; s++)
		metrics_gauge(w, "ember_discovery_up", "1 when the API's last request succeeded",
			      (const char *[]){ "source", discovery_source_name(s), NULL },
			      st.up[s] ? 1 : 0);
	metrics_gauge(w, "ember_discovery_containers", "Container ids with known metadata", NULL,
		      (double)st.entries);
	metrics_counter(w, "ember_discovery_relists_total",
			"Kubernetes pod lists after the first (410 Gone, errors)", NULL,
			(double)st.relists);
	metrics_counter(w, "ember_discovery_table_full_total",
			"Container ids not kept: the metadata table was full", NULL,
			(double)st.table_full);
}

static void collect_metrics(void *ctx, struct metrics_writer *w)
{
	struct pipeline *pl = ctx;
	int64_t now = util_now_ns(CLOCK_MONOTONIC);
	int64_t loop = atomic_load_explicit(&pl->m_loop_mono, memory_order_relaxed);
	int64_t interval = atomic_load_explicit(&pl->m_interval_mono, memory_order_relaxed);

	/* Liveness: a loop that hangs leaves these growing while the rest stays frozen. */
	metrics_gauge(w, "ember_loop_age_seconds",
		      "Seconds since the main loop last completed a turn (it turns at least every "
		      "second; more means it is stuck)", NULL, loop ? (double)(now - loop) / 1e9 : 0);
	metrics_gauge(w, "ember_interval_age_seconds",
		      "Seconds since the last interval's profiles were handed to the sink", NULL,
		      interval ? (double)(now - interval) / 1e9 : 0);

	metrics_counter(w, "ember_samples_total", "CPU samples aggregated into profiles", NULL,
			(double)atomic_load_explicit(&pl->m_samples, memory_order_relaxed));
	cpu_collector_write_metrics(pl->cc, w);
	metrics_gauge(w, "ember_processes_tracked", "Processes currently profiled", NULL,
		      (double)atomic_load_explicit(&pl->m_procs, memory_order_relaxed));
	metrics_gauge(w, "ember_services", "Services with a slot (each a series per family)", NULL,
		      (double)atomic_load_explicit(&pl->m_services, memory_order_relaxed));
	metrics_counter(w, "ember_services_retired_total",
			"Services named after executables retired after minutes without samples", NULL,
			(double)atomic_load_explicit(&pl->m_services_retired, memory_order_relaxed));
	metrics_counter(w, "ember_services_refused_total",
			"Samples left unprofiled because the service table was full", NULL,
			(double)atomic_load_explicit(&pl->m_services_full, memory_order_relaxed));
	write_discovery_metrics(pl, w);
	metrics_counter(w, "ember_targets_dropped_total",
			"Selected processes no longer profiled, by reason", (const char *[]){ "reason",
			"setuid_exec", NULL },
			(double)atomic_load_explicit(&pl->m_setuid_dropped, memory_order_relaxed));
	metrics_counter(w, "ember_symbolization_misses_total",
			"Frames that got module+offset or [unknown] instead of a symbol", NULL,
			(double)atomic_load_explicit(&pl->m_misses, memory_order_relaxed));
	write_symbol_metrics(pl, w);
	if (pl->ac)
		alloc_collector_write_metrics(pl->ac, w);
	if (pl->gpu) {
		gpu_receiver_write_metrics(pl->gpu, w);
		metrics_counter(w, "ember_gpu_dropped_total", "GPU entries dropped, by reason",
				(const char *[]){ "reason", "unselected_process", NULL },
				(double)atomic_load_explicit(&pl->m_gpu_unselected, memory_order_relaxed));
		metrics_counter(w, "ember_gpu_dropped_total", "GPU entries dropped, by reason",
				(const char *[]){ "reason", "exited_process", NULL },
				(double)atomic_load_explicit(&pl->m_gpu_stale, memory_order_relaxed));
	}
	if (pl->sink_metrics)
		pl->sink_metrics(pl->sink_ctx, w);
}

/* --- start-up ------------------------------------------------------------------------- */

static int open_alloc(struct pipeline *pl)
{
	struct alloc_collector_opts o = {
		.mode = pl->o.alloc_mode,
		.sample_bytes = (__u64)pl->cfg->alloc_sample_bytes,
	};
	int err = alloc_collector_open(&o, &pl->ac);

	if (err) {
		fprintf(stderr, "ember: cannot load the BPF allocation sampler: %s\n", strerror(-err));
		return 2;
	}
	alloc_collector_on_first_sample(pl->ac, on_alloc_first_sample, pl);
	if (pl->o.policy == PIPELINE_EVERY_PROCESS && pl->o.alloc_mode == ALLOC_MODE_PRELOAD) {
		char lib[PATH_MAX];

		/* Our own copy of the library, the one a service on this host preloads: its probes
		 * are armed for every process before any maps it. Copies elsewhere (inside a
		 * container image) are attached per process when one execs with them. */
		err = allocprof_preload_path(lib, sizeof(lib));
		if (!err)
			err = alloc_collector_attach_everyone(pl->ac, lib);
		if (err)
			log_warn("alloc: cannot arm libember_alloc.so for every process (%s); "
				 "processes that preload it are attached when they start",
				 strerror(-err));
	}
	return 0;
}

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

static bool readable_file(const char *path)
{
	struct stat st;

	return !stat(path, &st) && S_ISREG(st.st_mode) && !access(path, R_OK);
}

/* Container and pod metadata, where names come from it: every process (default names), or
 * docker:/k8s: selectors. 0, or 2 after a line naming a bad option. */
static int setup_discovery(struct pipeline *pl, const struct ember_config *cfg)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
	const char *node = cfg->node_name ? cfg->node_name : getenv("NODE_NAME");
	struct discovery_opts o = { 0 };
	char api[300];
	struct stat st;
	int err;

	if (!(pl->o.policy == PIPELINE_EVERY_PROCESS && !pl->o.one_service) &&
	    !(pl->o.policy == PIPELINE_SELECTORS && targets_need_metadata(pl->targets)))
		return 0;
	if (cfg->docker_socket)
		o.docker_socket = cfg->docker_socket; /* the daemon may start later: it is retried */
	else if (!stat("/var/run/docker.sock", &st) && S_ISSOCK(st.st_mode))
		o.docker_socket = "/var/run/docker.sock";
	if (cfg->kube_api) {
		o.kube_api = cfg->kube_api;
		o.kube_token_file = cfg->kube_token_file ? cfg->kube_token_file : SA_DIR "/token";
		o.kube_ca_file = cfg->kube_ca_file ? cfg->kube_ca_file : SA_DIR "/ca.crt";
		if (!node || !*node) {
			options_invalid("kube-api", "needs --node-name (or NODE_NAME): only this node's "
					"pods are watched");
			return 2;
		}
		if (!readable_file(o.kube_token_file)) {
			options_invalid("kube-token-file", "'%s' is not a readable file", o.kube_token_file);
			return 2;
		}
		if (!readable_file(o.kube_ca_file)) {
			options_invalid("kube-ca-file", "'%s' is not a readable file", o.kube_ca_file);
			return 2;
		}
	} else if (host && *host && port && *port && readable_file(SA_DIR "/token")) {
		/* In a pod: the in-cluster service account. */
		snprintf(api, sizeof(api), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s",
			 host, port);
		if (!node || !*node) {
			log_warn("%s: in a Kubernetes pod without NODE_NAME (set it from the downward "
				 "API, spec.nodeName): pods are not named", pl->o.name);
		} else {
			o.kube_api = api;
			o.kube_token_file = cfg->kube_token_file ? cfg->kube_token_file : SA_DIR "/token";
			o.kube_ca_file = cfg->kube_ca_file ? cfg->kube_ca_file : SA_DIR "/ca.crt";
		}
	}
	o.node_name = node;
	err = discovery_start(&o, &pl->disc);
	if (err) {
		fprintf(stderr, "ember: cannot start container discovery: %s\n", strerror(-err));
		return 1;
	}
	if (o.docker_socket)
		log_info("%s: naming containers from the Docker API at %s", pl->o.name, o.docker_socket);
	if (o.kube_api)
		log_info("%s: naming pods of node %s from the Kubernetes API at %s", pl->o.name, node,
			 o.kube_api);
	targets_set_discovery(pl->targets, pl->disc);
	return 0;
}

int pipeline_new(const struct pipeline_opts *opts, struct pipeline **ret_pl)
{
	const struct ember_config *cfg = opts->cfg;
	struct cpu_collector_opts copts = { 0 };
	struct pipeline *pl;
	int err, status = 1;

	bool no_bpf = opts->gpu_only_without_bpf && cfg->profiles == PROFILE_GPU;

	/* Privileges and kernel features first, for every command and family: one line naming
	 * what is missing rather than a libbpf error from whichever collector loads first. */
	if (!no_bpf && preflight_check())
		return 2;
	pl = calloc(1, sizeof(*pl));
	if (!pl)
		return 1;
	pl->o = *opts;
	pl->cfg = cfg;
	pl->child_status = -1;
	pl->want_cpu = (cfg->profiles & PROFILE_CPU) != 0;
	pl->want_offcpu = (cfg->profiles & PROFILE_OFFCPU) != 0;
	pl->period = NS / cfg->sample_rate;

	err = services_new(SERVICES_MAX, &pl->services);
	if (err)
		goto fail;
	err = targets_new(opts->policy == PIPELINE_SELECTORS ? opts->services : &(struct strlist){ 0 },
			  &pl->targets);
	if (err) {
		fprintf(stderr, "ember: cannot set up targets: %s\n", strerror(-err));
		goto fail;
	}
	status = setup_discovery(pl, cfg);
	if (status)
		goto fail;
	status = 1;
	if (opts->policy == PIPELINE_COMMAND || opts->one_service) {
		if (service_index(pl, opts->command_service ? opts->command_service : "all") != 0)
			goto fail;
	} else {
		for (size_t i = 0; i < targets_count(pl->targets); i++)
			if (service_index(pl, targets_service_name(pl->targets, (uint32_t)i)) != (int)i) {
				options_invalid("service", "'%s' is given twice",
						targets_service_name(pl->targets, (uint32_t)i));
				status = 2;
				goto fail;
			}
	}
	err = symbolizer_new(&pl->sym);
	if (err) {
		fprintf(stderr, "ember: cannot create the symbolizer: %s\n", strerror(-err));
		goto fail;
	}
	{
		const char *knob = getenv("EMBER_PYTHON");

		if (!(knob && !strcmp(knob, "off")) && pyresolve_new(symbolizer_cache(pl->sym), &pl->py))
			goto fail;
	}
	if (opts->kernel_symbols_at_start && pl->want_cpu)
		(void)symbolizer_load_kernel(pl->sym);
	if (cfg->unwind == UNWIND_AUTO && unwmode_new(&pl->unw))
		goto fail;

	copts.sample_rate = (unsigned)cfg->sample_rate;
	copts.dwarf_all = cfg->unwind == UNWIND_DWARF;
	copts.dwarf_first = cfg->unwind == UNWIND_AUTO;
	copts.stack_size = (unsigned)cfg->stack_size;
	copts.offcpu = pl->want_offcpu;
	copts.offcpu_preempted = cfg->offcpu_preempted;
	copts.offcpu_min_ns = (unsigned)(cfg->offcpu_min_us * 1000);
	copts.cache = symbolizer_cache(pl->sym); /* one capture of each process and file for both */
	copts.select_all = opts->policy == PIPELINE_EVERY_PROCESS;
	copts.follow_children = opts->policy != PIPELINE_EVERY_PROCESS;
	copts.report_execs = opts->policy == PIPELINE_SELECTORS ? targets_need_execs(pl->targets) :
			     opts->policy == PIPELINE_EVERY_PROCESS && (cfg->profiles & PROFILE_ALLOC);
	copts.report_cgroups = opts->policy == PIPELINE_SELECTORS && targets_need_cgroups(pl->targets);
	err = no_bpf ? 0 : cpu_collector_open(&copts, &pl->cc);
	if (err) {
		if (err == -EPERM)
			fprintf(stderr, "ember: the kernel refused to load the BPF sampler (EPERM): "
					"needs root, or CAP_BPF and CAP_PERFMON\n");
		else
			fprintf(stderr, "ember: cannot load the BPF sampler: %s\n", strerror(-err));
		status = 2;
		goto fail;
	}
	if ((cfg->profiles & PROFILE_ALLOC) && (status = open_alloc(pl)))
		goto fail;
	status = 1;
	if ((cfg->profiles & PROFILE_GPU)) {
		err = gpu_receiver_start(cfg->gpu_socket, &pl->gpu);
		if (err) {
			options_invalid("gpu-socket", "cannot listen on %s: %s", cfg->gpu_socket,
					strerror(-err));
			status = 2;
			goto fail;
		}
	}
	*ret_pl = pl;
	return 0;
fail:
	pipeline_free(pl);
	return status;
}

/* Starts the self-metrics endpoint; sink_fn adds the sink's series. */
int pipeline_serve_metrics(struct pipeline *pl, void (*sink_fn)(void *ctx, struct metrics_writer *w),
			   void *sink_ctx)
{
	int err;

	pl->sink_metrics = sink_fn;
	pl->sink_ctx = sink_ctx;
	if (!pl->cfg->metrics_addr)
		return 0;
	err = metrics_start(pl->cfg->metrics_addr, collect_metrics, pl, &pl->metrics);
	if (err) {
		options_invalid("metrics-addr", "cannot listen on %s: %s", pl->cfg->metrics_addr,
				strerror(-err));
		return 2;
	}
	return 0;
}

/* The preloaded library is mapped only after exec: attach to its file for the command now, so
 * its first sampled allocations are seen too. */
static void arm_preload(struct pipeline *pl, pid_t pid)
{
	char lib[PATH_MAX];
	uint64_t start;

	if (allocprof_preload_path(lib, sizeof(lib)) == 0 && procmaps_start_time(pid, &start) == 0)
		(void)alloc_collector_attach_path(pl->ac, pid, start, lib);
}

int pipeline_start(struct pipeline *pl, char **argv)
{
	int go_fd = -1, err_fd = -1, err;

	if (pl->o.policy == PIPELINE_COMMAND) {
		err = spawn_stopped(argv, &pl->child, &go_fd, &err_fd);
		if (!err) {
			err = add_target(pl, pl->child, 0);
			if (!err && pl->ac && pl->o.alloc_mode == ALLOC_MODE_PRELOAD)
				arm_preload(pl, pl->child);
			if (err) {
				close(go_fd); /* the child sees EOF and exits without running CMD */
				close(err_fd);
				spawn_terminate(pl->child);
			} else {
				err = spawn_release(pl->child, go_fd, err_fd);
			}
			if (err)
				pl->child = 0;
		}
		if (err) {
			fprintf(stderr, "ember: cannot start '%s': %s\n", argv[0], strerror(-err));
			return 2;
		}
	} else if (pl->o.policy == PIPELINE_SELECTORS) {
		(void)targets_scan(pl->targets, on_scan_match, pl);
	}
	err = pl->want_cpu ? cpu_collector_start(pl->cc) : 0;
	if (err) {
		if (err == -ENODEV)
			fprintf(stderr, "ember: the kernel has no usable cpu-clock perf event "
					"(CONFIG_PERF_EVENTS)\n");
		else
			fprintf(stderr, "ember: cannot open perf events: %s\n", strerror(-err));
		return 2;
	}
	return 0;
}

/* Collects the command's exit; true once it has exited. */
static bool child_done(struct pipeline *pl)
{
	int st;

	if (!pl->child)
		return true;
	if (waitpid(pl->child, &st, WNOHANG) != pl->child)
		return false;
	pl->child_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	log_debug("%s: command exited (status 0x%x)", pl->o.name, st);
	pl->child = 0;
	return true;
}

/* One wait for whichever comes first: a process event, a sampled allocation, a due refresh,
 * the next drain, the command's exit (checked every 100 ms), 100 ms with Python processes. */
static int wait_events(struct pipeline *pl, int64_t next_drain)
{
	int64_t now = util_now_ns(CLOCK_MONOTONIC), wait = next_drain - now;
	int due = refresh_wait_ms(&pl->refresh, now), ms;

	if (pl->o.policy == PIPELINE_COMMAND && wait > 100 * 1000000LL)
		wait = 100 * 1000000LL;
	if (pl->py && wait > 100 * 1000000LL) {
		/* Python processes: their samples' code objects are read within 100 ms. */
		struct pyresolve_stats ps;

		pyresolve_get_stats(pl->py, &ps);
		if (ps.processes)
			wait = 100 * 1000000LL;
	}
	if (due >= 0 && wait > due * 1000000LL)
		wait = due * 1000000LL;
	ms = wait > 0 ? (int)(wait / 1000000) + 1 : 0;
	if (!pl->cc) {
		/* No sampler (GPU only): the receiver has its own thread; just wait. */
		(void)poll(NULL, 0, ms);
		return 0;
	}
	if (pl->ac) {
		/* Sampled allocations wake the loop too: a short-lived process's maps are read
		 * while it still runs. */
		struct pollfd pf[2] = {
			{ .fd = cpu_collector_epoll_fd(pl->cc), .events = POLLIN },
			{ .fd = alloc_collector_epoll_fd(pl->ac), .events = POLLIN },
		};

		if (poll(pf, 2, ms) < 0 && errno != EINTR)
			log_warn("%s: poll: %s", pl->o.name, strerror(errno));
		ms = 0;
	}
	return cpu_collector_poll(pl->cc, ms, on_event, pl);
}

/* The metadata table moved: processes that waited for theirs are named again (every process),
 * and selectors that look at metadata see the processes that match now (selected). */
static void discovery_changed(struct pipeline *pl)
{
	uint64_t gen = discovery_generation(pl->disc);
	int64_t now = util_now_ns(CLOCK_MONOTONIC);
	size_t keep = 0;

	/* On news, and once a second while processes wait (a failed lookup is asked again
	 * after its backoff, by the auto_service() below). */
	if (!pl->disc || (gen == pl->disc_gen && (!pl->npending || now - pl->disc_checked < NS)))
		return;
	pl->disc_gen = gen;
	pl->disc_checked = now;
	if (pl->o.policy == PIPELINE_SELECTORS) {
		if (targets_need_metadata(pl->targets))
			(void)targets_scan(pl->targets, on_scan_match, pl);
		return;
	}
	for (size_t i = 0; i < pl->npending; i++) {
		pid_t pid = pl->pending[i].pid;
		struct proc_entry *p = proc_get(pl, pid);
		struct cgmeta cg;
		int id;

		if (cgmeta_read(pid, &cg) || !cg.container_id[0])
			continue; /* gone */
		if (util_now_ns(CLOCK_MONOTONIC) - pl->pending[i].since >= PENDING_NS)
			continue; /* no answer in time: it keeps its executable's name */
		id = auto_service_of(pl, pid, NULL, &cg); /* asks again what failed, after its backoff */
		if (discovery_pending(pl->disc, cg.container_id))
			pl->pending[keep++] = pl->pending[i];
		if (id >= 0 && p && !p->exited && p->service != (uint32_t)id) {
			log_debug("%s: pid %d named '%s' from its container's metadata", pl->o.name,
				  (int)pid, services_name(pl->services, (uint32_t)id));
			p->service = (uint32_t)id;
		}
	}
	pl->npending = keep;
}

int pipeline_run(struct pipeline *pl, const struct pipeline_hooks *hooks)
{
	struct sigaction sa = { .sa_handler = on_signal };
	int64_t interval_ns = (int64_t)(pl->o.interval_s * 1e9);
	int64_t next_drain, interval_end, stop_at = 0, term_sent = 0;
	int status = 0;

	pl->hooks = hooks;
	stop_requested = 0;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (pl->o.policy == PIPELINE_COMMAND) {
		struct sigaction sc = { .sa_handler = on_child, .sa_flags = SA_NOCLDSTOP };

		sigaction(SIGCHLD, &sc, NULL); /* wakes the poll; the command is collected below */
	}
	signal(SIGPIPE, SIG_IGN);
	stop_requested = 0;
	pl->interval_start_real = util_now_ns(CLOCK_REALTIME);
	atomic_store_explicit(&pl->m_interval_mono, util_now_ns(CLOCK_MONOTONIC), memory_order_relaxed);
	atomic_store_explicit(&pl->m_loop_mono, util_now_ns(CLOCK_MONOTONIC), memory_order_relaxed);
	next_drain = util_now_ns(CLOCK_MONOTONIC) + DRAIN_PERIOD_NS;
	interval_end = interval_ns > 0 ? util_now_ns(CLOCK_MONOTONIC) + interval_ns : INT64_MAX;
	for (;;) {
		int64_t now = util_now_ns(CLOCK_MONOTONIC);
		int n;

		if (pl->o.policy == PIPELINE_COMMAND) {
			/* The command's end ends the run; a signal to us is passed on to it. */
			if (child_done(pl))
				break;
			if (stop_requested && !stop_at)
				stop_at = now;
			if (stop_at && !term_sent && now - stop_at >= pl->o.child_term_grace_ns) {
				kill(pl->child, SIGTERM);
				term_sent = now;
			} else if (term_sent && now - term_sent > CHILD_KILL_AFTER_NS) {
				kill(pl->child, SIGKILL);
			}
			stop_requested = 0;
		} else if (stop_requested) {
			break;
		}
		if (hooks && hooks->done && hooks->done(hooks->ctx, now))
			break;
		n = wait_events(pl, next_drain);
		if (n < 0 && n != -EINTR) {
			log_error("%s: event poll failed: %s", pl->o.name, strerror(-n));
			status = 1;
			break;
		}
		run_due_refreshes(pl);
		discovery_changed(pl);
		if (pl->ac)
			(void)alloc_collector_poll(pl->ac, 0);
		if (pl->py) {
			/* Code objects are read while their processes live: a process may exit
			 * before the next drain symbolizes its samples. */
			cpu_collector_visit_python(pl->cc, warm_python, pl);
			if (pl->ac)
				alloc_collector_visit_python(pl->ac, warm_python, pl);
		}
		now = util_now_ns(CLOCK_MONOTONIC);
		if (now >= next_drain) {
			drain(pl);
			next_drain = now + DRAIN_PERIOD_NS;
		}
		if (now >= interval_end) {
			flush_interval(pl);
			interval_end += interval_ns;
			if (interval_end < now)
				interval_end = now + interval_ns;
		}
		if (hooks && hooks->tick)
			hooks->tick(hooks->ctx, now);
		atomic_store_explicit(&pl->m_loop_mono, now, memory_order_relaxed);
	}
	/* Two drains: the second takes what raced into the other buffer during the first. Then
	 * the last, partial interval. */
	pl->stop_mono = util_now_ns(CLOCK_MONOTONIC);
	if (interval_ns > 0)
		log_info("%s: stopping; sending the last partial interval", pl->o.name);
	drain(pl);
	drain(pl);
	flush_interval(pl);
	return status;
}

void pipeline_free(struct pipeline *pl)
{
	if (!pl)
		return;
	metrics_stop(pl->metrics); /* its thread reads the collectors */
	if (pl->child > 0)
		spawn_terminate(pl->child); /* e.g. --duration ended a recording of a command */
	cpu_collector_free(pl->cc);
	alloc_collector_free(pl->ac);
	gpu_receiver_stop(pl->gpu);
	pyresolve_free(pl->py);
	symbolizer_free(pl->sym);
	unwmode_free(pl->unw);
	targets_free(pl->targets);
	discovery_stop(pl->disc);
	free(pl->pending);
	for (size_t i = 0; i < pl->svc_cap; i++)
		for (int fam = 0; fam < FAM_COUNT; fam++)
			stackagg_free(pl->svc[i].agg[fam]);
	free(pl->svc);
	services_free(pl->services);
	proctable_fini(&pl->procs);
	free(pl);
}

double pipeline_stopping_for(const struct pipeline *pl)
{
	return (double)(util_now_ns(CLOCK_MONOTONIC) - pl->stop_mono) / 1e9;
}

int pipeline_command_status(const struct pipeline *pl)
{
	return pl->child_status;
}

unsigned pipeline_targets_selected(const struct pipeline *pl)
{
	return pl->selected;
}

uint64_t pipeline_samples_seen(struct pipeline *pl)
{
	__u64 st[EMBER_STAT_MAX] = { 0 };

	(void)cpu_collector_read_stats(pl->cc, st);
	return st[EMBER_STAT_SAMPLES];
}

uint64_t pipeline_cpu_samples(const struct pipeline *pl)
{
	return atomic_load_explicit(&pl->m_samples, memory_order_relaxed);
}

const char *pipeline_alloc_mode(const struct pipeline *pl)
{
	return pl->ac ? alloc_collector_mode_name(pl->ac) : NULL;
}

void pipeline_loss_report(struct pipeline *pl, char *buf, size_t size)
{
	__u64 st[EMBER_STAT_MAX] = { 0 };
	__u64 ulost, klost;

	(void)cpu_collector_read_stats(pl->cc, st);
	ulost = st[EMBER_STAT_USTACK_COLLISION] + st[EMBER_STAT_USTACK_FAULT] + st[EMBER_STAT_USTACK_ERROR];
	klost = st[EMBER_STAT_KSTACK_COLLISION] + st[EMBER_STAT_KSTACK_FAULT] + st[EMBER_STAT_KSTACK_ERROR];
	snprintf(buf, size,
		 "samples %llu; user stacks lost %llu (collision %llu, fault %llu, other %llu); "
		 "kernel stacks lost %llu (collision %llu, fault %llu, other %llu); "
		 "samples lost (map full) %llu; process events lost %llu",
		 (unsigned long long)st[EMBER_STAT_SAMPLES], (unsigned long long)ulost,
		 (unsigned long long)st[EMBER_STAT_USTACK_COLLISION],
		 (unsigned long long)st[EMBER_STAT_USTACK_FAULT],
		 (unsigned long long)st[EMBER_STAT_USTACK_ERROR], (unsigned long long)klost,
		 (unsigned long long)st[EMBER_STAT_KSTACK_COLLISION],
		 (unsigned long long)st[EMBER_STAT_KSTACK_FAULT],
		 (unsigned long long)st[EMBER_STAT_KSTACK_ERROR],
		 (unsigned long long)st[EMBER_STAT_COUNTS_FULL],
		 (unsigned long long)st[EMBER_STAT_EVENTS_LOST]);
	if (ulost || klost || st[EMBER_STAT_COUNTS_FULL] || st[EMBER_STAT_EVENTS_LOST])
		log_warn("%s", buf);
	else
		log_debug("%s", buf);
}

void pipeline_log_costs(struct pipeline *pl)
{
	struct cpu_dwarf_stats ds;
	__u64 runs = 0, run_ns = 0;
	struct rusage ru;

	cpu_collector_dwarf_stats(pl->cc, &ds);
	if (ds.snapshots)
		log_debug("dwarf: %llu snapshots, %llu unwound, %llu truncated, %llu over budget, "
			  "%.0f stack bytes per snapshot, %.1f us per unwind",
			  (unsigned long long)ds.snapshots, (unsigned long long)ds.unwound,
			  (unsigned long long)ds.truncated, (unsigned long long)ds.skipped_budget,
			  (double)ds.bytes / (double)ds.snapshots,
			  ds.unwound ? (double)ds.unwind_ns / (double)ds.unwound / 1e3 : 0.0);
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		log_debug("cpu: ember used %.6f s of CPU (user + system)",
			  (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	if (cpu_collector_prog_stats(pl->cc, &runs, &run_ns) == 0 && runs)
		log_debug("bpf: sampler ran %llu times, %llu ns in total, %.0f ns per run",
			  (unsigned long long)runs, (unsigned long long)run_ns,
			  (double)run_ns / (double)runs);
}
