/* record: `ember record [options] [-o FILE.pb.gz] [--flamegraph FILE.svg] [--duration SEC]
 * [--pid N | --service NAME=SELECTOR... | -- CMD ARGS...]`.
 *
 * Selects the target processes (with no selection: every process), loads the CPU sampler,
 * captures each target's maps at its first sample, drains the counts every few seconds so the
 * stack maps never fill, and on the end condition (duration, target exit, SIGINT/SIGTERM)
 * writes the pprof and the flame graph. */
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "allocprof.h"
#include "cpu_collector.h"
#include "cpuprof.h"
#include "fileio.h"
#include "log.h"
#include "options.h"
#include "preflight.h"
#include "procmaps.h"
#include "spawn.h"
#include "profile_types.h"
#include "stackagg.h"
#include "symbolizer.h"
#include "targets.h"
#include "refresh.h"
#include "unwmode.h"
#include "util.h"

#define DRAIN_EVERY_NS (1 * 1000000000LL) /* also how fast --unwind auto can switch a process */

struct recorder {
	struct ember_config cfg;
	struct targets *targets;
	struct symbolizer *sym;
	struct unwmode *unw; /* --unwind auto: the per-process choice; NULL otherwise */
	struct cpu_collector *cc;
	struct stackagg *agg;
	int64_t period;      /* ns per sample: 1e9 / rate */
	uint64_t hits;
	char comment[512];   /* what was lost, for the pprof */
	/* --profiles alloc (allocprof.h): uprobe mode, or preload mode under `ember run`. */
	struct allocprof *ap;
	bool want_cpu;
	pid_t child;     /* -- CMD, or 0 */
	pid_t watch_pid; /* --pid, or 0 */
	bool watch_exited;
	unsigned ntargets;
	/* Map re-reads due: after exec (ld.so maps libraries during the next milliseconds) and
	 * after executable mmaps (where the kernel reports them). */
	struct refresh_sched refresh;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static int add_target(struct recorder *r, pid_t pid, uint32_t service_id)
{
	uint64_t start;
	int err;

	err = procmaps_start_time(pid, &start);
	if (err)
		return err;
	err = cpu_collector_add_target(r->cc, pid, service_id, start);
	if (err)
		return err;
	r->ntargets++;
	if (r->ap)
		(void)alloc_collector_add_target(allocprof_collector(r->ap), pid, start);
	/* Capture maps now: a process idle at first may exit right after its first samples. */
	(void)symbolizer_track(r->sym, pid);
	log_debug("record: target pid %d (service %u)", (int)pid, service_id);
	return 0;
}

static void on_scan_match(void *ctx, pid_t pid, uint32_t service_id)
{
	struct recorder *r = ctx;

	if (pid == getpid())
		return;
	(void)add_target(r, pid, service_id);
}

/* Schedules a re-read of pid's maps delay_ns from now (coalesced with one already due). */
/* First allocation sample of a process: capture its maps while it runs. */
static void on_alloc_first_sample(void *ctx, pid_t pid)
{
	struct recorder *r = ctx;

	(void)symbolizer_refresh(r->sym, pid);
}

/* After exec or dlopen: attach the allocator probes to libraries not seen yet. */
static void alloc_rescan(struct recorder *r, pid_t pid)
{
	uint64_t start;

	if (r->ap && procmaps_start_time(pid, &start) == 0)
		(void)alloc_collector_add_target(allocprof_collector(r->ap), pid, start);
}

static void run_due_refreshes(struct recorder *r)
{
	int64_t now = util_now_ns(CLOCK_MONOTONIC);
	pid_t pid;

	while ((pid = refresh_take_due(&r->refresh, now))) {
		(void)symbolizer_refresh(r->sym, pid);
		alloc_rescan(r, pid);
	}
}

/* Re-reads pid's maps after a change, now or on the schedule; at once if it is full. */
static void schedule_refresh(struct recorder *r, pid_t pid, int64_t delay_ns)
{
	if (!refresh_schedule(&r->refresh, pid, delay_ns))
		(void)symbolizer_refresh(r->sym, pid);
}

static void on_event(void *ctx, const struct ember_event *e)
{
	struct recorder *r = ctx;
	pid_t pid = (pid_t)e->tgid;
	int id;

	switch (e->type) {
	case EMBER_EVENT_FIRST_SAMPLE:
		/* After exec the first sample comes with ld.so's work done or under way. */
		(void)symbolizer_refresh(r->sym, pid);
		if (r->unw)
			cpuprof_unwmode_first_sample(r->unw, r->cc, pid);
		break;
	case EMBER_EVENT_MMAP:
		schedule_refresh(r, pid, 0);
		break;
	case EMBER_EVENT_EXEC:
		if (e->cookie) {
			if (!refresh_after_exec(&r->refresh, pid))
				(void)symbolizer_refresh(r->sym, pid);
			break;
		}
		/* Not a target yet: does the new image match a selector? */
		id = targets_match(r->targets, pid);
		if (id >= 0)
			(void)add_target(r, pid, (uint32_t)id);
		break;
	case EMBER_EVENT_FORK:
		r->ntargets++;
		alloc_rescan(r, pid);
		break;
	case EMBER_EVENT_EXIT:
		if (pid == r->watch_pid)
			r->watch_exited = true;
		break;
	}
}

static void on_stack(void *ctx, const struct cpu_stack *s)
{
	struct recorder *r = ctx;
	struct sym_frame frames[CPUPROF_MAX_FRAMES];
	size_t n = cpuprof_frames(r->sym, s, frames);
	int64_t value = (int64_t)s->count * r->period;

	if (r->unw)
		cpuprof_unwmode_observe(r->unw, r->cc, s, frames, n);

	if (stackagg_add(r->agg, frames, n, &value)) {
		log_warn("record: out of memory, dropping a stack");
		return;
	}
	r->hits += s->count;
}

static int write_outputs(struct recorder *r, const char *title, int64_t start, int64_t duration)
{
	const struct profile_family *fam = profile_family_find("cpu");
	const struct pprof_value_type type = { fam->types[0][0], fam->types[0][1] };
	const struct pprof_value_type period_type = { fam->period[0], fam->period[1] };
	struct stackagg_profile p = {
		.types = &type,
		.period_type = &period_type,
		.period = r->period,
		.time_nanos = start,
		.duration_nanos = duration,
		.comment = r->comment[0] ? r->comment : NULL,
		.fg_title = r->cfg.flamegraph ? title : NULL,
		.fg_unit = "samples",
		.fg_divisor = r->period,
	};
	struct stackagg_result res = { 0 };
	int err;

	err = stackagg_build(r->agg, &p, &res);
	if (err) {
		fprintf(stderr, "ember: cannot encode the profile: %s\n", strerror(-err));
		return err;
	}
	err = fileio_write_atomic(r->cfg.out_file, res.pprof_gz, res.pprof_len);
	if (err) {
		fprintf(stderr, "ember: cannot write output file '%s': %s\n", r->cfg.out_file, strerror(-err));
	} else if (r->cfg.flamegraph) {
		err = fileio_write_atomic(r->cfg.flamegraph, res.svg, res.svg_len);
		if (err)
			fprintf(stderr, "ember: cannot write flame graph '%s': %s\n", r->cfg.flamegraph,
				strerror(-err));
	}
	stackagg_result_fini(&res);
	return err;
}

/* The memory profile goes to -o when it is the only family, else next to it as
 * NAME.alloc.pb.gz (and NAME.alloc.svg). */
static char *alloc_path(const char *path, bool alone, const char *ext)
{
	size_t n = strlen(path), cut = n;
	char *out;

	if (alone)
		return strdup(path);
	if (n > 6 && !strcmp(path + n - 6, ".pb.gz"))
		cut = n - 6;
	else if (n > 4 && !strcmp(path + n - 4, ".svg"))
		cut = n - 4;
	out = malloc(cut + strlen(ext) + 8);
	if (out)
		sprintf(out, "%.*s.alloc%s", (int)cut, path, ext);
	return out;
}

static int write_alloc_outputs(struct recorder *r, const char *title, int64_t start, int64_t duration)
{
	struct stackagg_result res = { 0 };
	char *pb = alloc_path(r->cfg.out_file, !r->want_cpu, ".pb.gz");
	char *svg = r->cfg.flamegraph ? alloc_path(r->cfg.flamegraph, !r->want_cpu, ".svg") : NULL;
	char t[300];
	int err;

	snprintf(t, sizeof(t), "Allocations: %s", title);
	err = allocprof_drain(r->ap, r->sym);
	if (!err)
		err = allocprof_build(r->ap, start, duration, svg ? t : NULL, &res);
	if (err) {
		fprintf(stderr, "ember: cannot encode the memory profile: %s\n", strerror(-err));
		goto out;
	}
	err = pb ? fileio_write_atomic(pb, res.pprof_gz, res.pprof_len) : -ENOMEM;
	if (err)
		fprintf(stderr, "ember: cannot write output file '%s': %s\n", pb ? pb : "", strerror(-err));
	else if (svg && (err = fileio_write_atomic(svg, res.svg, res.svg_len)))
		fprintf(stderr, "ember: cannot write flame graph '%s': %s\n", svg, strerror(-err));
	if (!err && !r->cfg.quiet)
		fprintf(stderr, "ember: memory profile (%s mode) written to %s\n",
			alloc_collector_mode_name(allocprof_collector(r->ap)), pb);
out:
	stackagg_result_fini(&res);
	free(pb);
	free(svg);
	return err;
}

static void print_usage_error_hint(void)
{
	fprintf(stderr, "ember: see 'ember help record'\n");
}

/* Creates the last directory of path if missing (as `make run` writes into ./ember-profiles/).
 * Prints one line naming `what` on failure. */
static int ensure_parent_dir(const char *path, const char *what)
{
	char *copy = strdup(path), *slash;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	slash = strrchr(copy, '/');
	if (slash && slash != copy) {
		*slash = '\0';
		if (mkdir(copy, 0755) && errno != EEXIST) {
			err = -errno;
			fprintf(stderr, "ember: cannot write %s '%s': %s: %s\n", what, path, copy,
				strerror(-err));
		}
	}
	free(copy);
	return err;
}

static void report_losses(struct recorder *r, const __u64 *st)
{
	__u64 ulost = st[EMBER_STAT_USTACK_COLLISION] + st[EMBER_STAT_USTACK_FAULT] +
		      st[EMBER_STAT_USTACK_ERROR];
	__u64 klost = st[EMBER_STAT_KSTACK_COLLISION] + st[EMBER_STAT_KSTACK_FAULT] +
		      st[EMBER_STAT_KSTACK_ERROR];
	char buf[512];

	snprintf(buf, sizeof(buf),
		 "ember: samples %llu; user stacks lost %llu (collision %llu, fault %llu, other %llu); "
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
	snprintf(r->comment, sizeof(r->comment), "%s", buf + strlen("ember: "));
	if (ulost || klost || st[EMBER_STAT_COUNTS_FULL] || st[EMBER_STAT_EVENTS_LOST])
		log_warn("%s", buf + strlen("ember: "));
	else
		log_debug("%s", buf + strlen("ember: "));
}

int record_main(int argc, char **argv)
{
	struct recorder r = { 0 };
	struct cpu_collector_opts copts = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };
	char title[256];
	int go_fd = -1, err_fd = -1, err, status = 1;
	int64_t start_real, start_mono, last_drain, last_progress, deadline = 0;
	bool tty = isatty(STDERR_FILENO);
	enum log_level level;
	__u64 st[EMBER_STAT_MAX] = { 0 };

	err = options_parse(CMD_RECORD, argc, argv, &r.cfg);
	if (err == 1) {
		options_print_help(CMD_RECORD,
				   "ember record [options] [-o FILE.pb.gz] [--flamegraph FILE.svg] "
				   "[--duration SEC] [--pid N | --service NAME=SELECTOR... | -- CMD ARGS...]");
		options_free(&r.cfg);
		return 0;
	}
	if (err) {
		print_usage_error_hint();
		options_free(&r.cfg);
		return 2;
	}
	if (log_parse_level(r.cfg.log_level, &level) == 0)
		log_set_level(level);
	if ((r.cfg.pid != 0) + (r.cfg.services.n != 0) + (r.cfg.cmd_argc != 0) > 1) {
		fprintf(stderr, "ember: give only one of --pid, --service and -- CMD\n");
		status = 2;
		goto out;
	}
	if (r.cfg.cmd_argv && r.cfg.cmd_argc == 0) {
		fprintf(stderr, "ember: no command after --\n");
		status = 2;
		goto out;
	}
	if (strcmp(r.cfg.profiles, "cpu") && strcmp(r.cfg.profiles, "alloc") &&
	    strcmp(r.cfg.profiles, "cpu,alloc") && strcmp(r.cfg.profiles, "alloc,cpu")) {
		fprintf(stderr, "ember: invalid value for --profiles: record takes cpu and alloc; for gpu use ember run --profiles gpu\n");
		status = 2;
		goto out;
	}
	r.want_cpu = strstr(r.cfg.profiles, "cpu") != NULL;
	if (strstr(r.cfg.profiles, "alloc")) {
		struct alloc_collector_opts aopts = {
			.mode = ALLOC_MODE_UPROBE,
			.sample_bytes = (__u64)r.cfg.alloc_sample_bytes,
		};

		err = allocprof_new(&aopts, &r.ap);
		if (err) {
			fprintf(stderr, "ember: cannot load the BPF allocation sampler: %s\n", strerror(-err));
			status = 2;
			goto out;
		}
		alloc_collector_on_first_sample(allocprof_collector(r.ap), on_alloc_first_sample, &r);
	}
	if (r.cfg.pid && kill((pid_t)r.cfg.pid, 0) && errno == ESRCH) {
		fprintf(stderr, "ember: invalid value for --pid: no process %ld\n", r.cfg.pid);
		status = 2;
		goto out;
	}
	if (preflight_check()) {
		status = 2;
		goto out;
	}
	if (ensure_parent_dir(r.cfg.out_file, "output file") || preflight_writable(r.cfg.out_file, "output file")) {
		status = 2;
		goto out;
	}
	if (r.cfg.flamegraph &&
	    (ensure_parent_dir(r.cfg.flamegraph, "flame graph") || preflight_writable(r.cfg.flamegraph, "flame graph"))) {
		status = 2;
		goto out;
	}

	if (r.cfg.pid) {
		char sel[64];
		char *v = sel;
		struct strlist l = { .v = &v, .n = 1 };

		snprintf(sel, sizeof(sel), "pid%ld=pid:%ld", r.cfg.pid, r.cfg.pid);
		err = targets_new(&l, &r.targets);
		r.watch_pid = (pid_t)r.cfg.pid;
	} else {
		err = targets_new(&r.cfg.services, &r.targets);
	}
	if (err) {
		fprintf(stderr, "ember: cannot set up targets: %s\n", strerror(-err));
		goto out;
	}

	if (r.cfg.cmd_argc) {
		err = spawn_stopped(r.cfg.cmd_argv, &r.child, &go_fd, &err_fd);
		if (err) {
			fprintf(stderr, "ember: cannot start '%s': %s\n", r.cfg.cmd_argv[0], strerror(-err));
			status = 2;
			goto out;
		}
	}

	err = symbolizer_new(&r.sym);
	if (err) {
		fprintf(stderr, "ember: cannot create the symbolizer: %s\n", strerror(-err));
		goto out;
	}
	if (r.want_cpu)
		(void)symbolizer_load_kernel(r.sym);
	if (r.child)
		snprintf(title, sizeof(title), "CPU: %s", r.cfg.cmd_argv[0]);
	else if (r.watch_pid)
		snprintf(title, sizeof(title), "CPU: pid %d", (int)r.watch_pid);
	else if (r.cfg.services.n)
		snprintf(title, sizeof(title), "CPU: %s%s", targets_service_name(r.targets, 0),
			 r.cfg.services.n > 1 ? " and others" : "");
	else
		snprintf(title, sizeof(title), "CPU: all processes");
	r.period = 1000000000LL / r.cfg.sample_rate;
	err = stackagg_new(1, &r.agg);
	if (err)
		goto out;

	copts.sample_rate = (unsigned)r.cfg.sample_rate;
	copts.dwarf_all = !strcmp(r.cfg.unwind, "dwarf");
	copts.dwarf_first = !strcmp(r.cfg.unwind, "auto");
	copts.stack_size = (unsigned)r.cfg.stack_size;
	copts.cache = symbolizer_cache(r.sym);
	if (!strcmp(r.cfg.unwind, "auto") && unwmode_new(&r.unw)) {
		status = 1;
		goto out;
	}
	copts.select_all = !r.child && !r.watch_pid && r.cfg.services.n == 0;
	copts.follow_children = true;
	copts.report_execs = targets_need_execs(r.targets);
	err = cpu_collector_open(&copts, &r.cc);
	if (err) {
		if (err == -EPERM)
			fprintf(stderr, "ember: the kernel refused to load the BPF sampler (EPERM): "
					"needs root, or CAP_BPF and CAP_PERFMON\n");
		else
			fprintf(stderr, "ember: cannot load the BPF sampler: %s\n", strerror(-err));
		status = 2;
		goto out;
	}

	if (r.child) {
		err = add_target(&r, r.child, 0);
		if (!err)
			err = spawn_release(r.child, go_fd, err_fd);
		go_fd = err_fd = -1;
		if (err) {
			fprintf(stderr, "ember: cannot start '%s': %s\n", r.cfg.cmd_argv[0], strerror(-err));
			r.child = 0;
			status = 2;
			goto out;
		}
	} else if (r.watch_pid) {
		err = add_target(&r, r.watch_pid, 0);
		if (err) {
			fprintf(stderr, "ember: invalid value for --pid: no process %d\n", (int)r.watch_pid);
			status = 2;
			goto out;
		}
	} else if (r.cfg.services.n) {
		(void)targets_scan(r.targets, on_scan_match, &r);
		if (r.ntargets == 0)
			log_info("no process matches the selected services yet; waiting for one to start");
	}

	err = r.want_cpu ? cpu_collector_start(r.cc) : 0;
	if (err) {
		if (err == -ENODEV)
			fprintf(stderr, "ember: the kernel has no usable cpu-clock perf event "
					"(CONFIG_PERF_EVENTS)\n");
		else
			fprintf(stderr, "ember: cannot open perf events: %s\n", strerror(-err));
		status = 2;
		goto out;
	}

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL); /* wakes the poll; the flag is re-checked below */
	stop_requested = 0;
	start_real = util_now_ns(CLOCK_REALTIME);
	start_mono = last_drain = last_progress = util_now_ns(CLOCK_MONOTONIC);
	if (r.cfg.duration > 0)
		deadline = start_mono + (int64_t)(r.cfg.duration * 1e9);

	for (;;) {
		int64_t now;
		int due = refresh_wait_ms(&r.refresh, util_now_ns(CLOCK_MONOTONIC));
		int n = cpu_collector_poll(r.cc, due >= 0 && due < 100 ? due : 100, on_event, &r);

		if (n < 0 && n != -EINTR) {
			log_warn("record: event poll failed: %s", strerror(-n));
			break;
		}
		run_due_refreshes(&r);
		if (r.ap)
			(void)alloc_collector_poll(allocprof_collector(r.ap), 0);
		if (r.child) {
			int wst;
			pid_t w = waitpid(r.child, &wst, WNOHANG);

			if (w == r.child) {
				log_debug("record: command exited (status 0x%x)", wst);
				r.child = 0;
				break;
			}
		}
		if (stop_requested && !r.child)
			break;
		if (stop_requested && r.child) {
			/* Ctrl-C reached the command too (same process group); collect it. */
			stop_requested = 0;
		}
		if (r.watch_pid && (r.watch_exited || (kill(r.watch_pid, 0) && errno == ESRCH)))
			break;
		now = util_now_ns(CLOCK_MONOTONIC);
		if (deadline && now >= deadline)
			break;
		if (now - last_drain >= DRAIN_EVERY_NS) {
			(void)cpu_collector_drain(r.cc, on_stack, &r);
			last_drain = now;
		}
		if (!r.cfg.quiet && now - last_progress >= (tty ? 1000000000LL : 10000000000LL)) {
			(void)cpu_collector_read_stats(r.cc, st);
			fprintf(stderr, tty ? "\rember: %.0f s, %llu samples " : "ember: %.0f s, %llu samples\n",
				(double)(now - start_mono) / 1e9, (unsigned long long)st[EMBER_STAT_SAMPLES]);
			last_progress = now;
		}
		if (stop_requested)
			break;
	}
	if (!r.cfg.quiet && tty)
		fprintf(stderr, "\n");

	/* Two drains: the second takes what raced into the other buffer during the first. */
	(void)cpu_collector_drain(r.cc, on_stack, &r);
	(void)cpu_collector_drain(r.cc, on_stack, &r);
	(void)cpu_collector_read_stats(r.cc, st);
	report_losses(&r, st);
	{
		__u64 runs = 0, run_ns = 0;

		struct cpu_dwarf_stats ds;

		cpu_collector_dwarf_stats(r.cc, &ds);
		if (ds.snapshots)
			log_debug("dwarf: %llu snapshots, %llu unwound, %llu truncated, %llu over budget, "
				  "%.0f stack bytes per snapshot, %.1f us per unwind",
				  (unsigned long long)ds.snapshots, (unsigned long long)ds.unwound,
				  (unsigned long long)ds.truncated, (unsigned long long)ds.skipped_budget,
				  (double)ds.bytes / (double)ds.snapshots,
				  ds.unwound ? (double)ds.unwind_ns / (double)ds.unwound / 1e3 : 0.0);
		struct rusage ru;

		if (getrusage(RUSAGE_SELF, &ru) == 0)
			log_debug("cpu: ember used %.6f s of CPU (user + system)",
				  (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
				  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
		if (cpu_collector_prog_stats(r.cc, &runs, &run_ns) == 0 && runs)
			log_debug("bpf: sampler ran %llu times, %llu ns in total, %.0f ns per run",
				  (unsigned long long)runs, (unsigned long long)run_ns,
				  (double)run_ns / (double)runs);
	}

	if (r.ap) {
		err = write_alloc_outputs(&r, title, start_real, util_now_ns(CLOCK_MONOTONIC) - start_mono);
		if (err)
			goto out;
		if (!r.want_cpu) {
			status = 0;
			goto out;
		}
	}
	err = write_outputs(&r, title, start_real, util_now_ns(CLOCK_MONOTONIC) - start_mono);
	if (err)
		goto out;
	if (r.hits == 0)
		log_warn("no samples were collected (the targets used no CPU)");
	if (!r.cfg.quiet)
		fprintf(stderr, "ember: %llu samples written to %s%s%s\n", (unsigned long long)r.hits,
			r.cfg.out_file, r.cfg.flamegraph ? " and " : "",
			r.cfg.flamegraph ? r.cfg.flamegraph : "");
	status = 0;

out:
	if (go_fd >= 0)
		close(go_fd); /* the child sees EOF and exits without running CMD */
	if (err_fd >= 0)
		close(err_fd);
	if (r.child > 0) {
		/* --duration ended the recording: the command's lifetime was the recording's. */
		spawn_terminate(r.child);
	}
	allocprof_free(r.ap);
	cpu_collector_free(r.cc);
	stackagg_free(r.agg);
	symbolizer_free(r.sym);
	unwmode_free(r.unw);
	targets_free(r.targets);
	options_free(&r.cfg);
	return status;
}
