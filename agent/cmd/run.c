/* run: `ember run [options] -- CMD ARGS...` and `ember run [options] --pid N`.
 *
 * The pipeline (pipeline.h) over one command: CMD is started held before exec, selected, then
 * released, so its first instruction is profiled; its children follow. The command's
 * environment carries the instrumentation: LD_PRELOAD=libember_alloc.so for --profiles alloc
 * (the in-process sampler, so no uprobe taxes every malloc) and CUDA_INJECTION64_PATH=
 * libember_cupti.so for --profiles gpu. Profiles go where the agent's go (sink.h), every
 * --interval and when the command exits.
 *
 * With --pid, the sidecar of a process already running (what the Python package's
 * ember.watch() starts on its own process): that process and its children, named after its
 * executable, until it exits. Its environment is its own: allocations are sampled with uprobes,
 * and GPU profiles come when it loaded libember_cupti.so itself (watch() sets that up). */
#include "run.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "allocprof.h"
#include "log.h"
#include "options.h"
#include "pipeline.h"
#include "procmaps.h"
#include "services.h"
#include "sink.h"

#define PUSH_STOP_DEADLINE_S 8.0

/* --pid: the process whose exit ends the run. */
struct watched {
	pid_t pid;
	bool exited;
};

static void on_exited(void *ctx, pid_t pid)
{
	struct watched *w = ctx;

	if (pid == w->pid)
		w->exited = true;
}

static bool watched_done(void *ctx, int64_t now)
{
	struct watched *w = ctx;
	char state = 0;
	int err;

	(void)now;
	if (!w->pid)
		return false;
	if (w->exited)
		return true;
	/* Exited, without the sampler to say so: gone, or a zombie its parent has not reaped. */
	err = procmaps_state(w->pid, &state);
	return err == -ESRCH || (!err && (state == 'Z' || state == 'X'));
}

/* The command, and what it execs, inherit libember_alloc.so and its sampling interval. */
static int setup_alloc_env(const struct ember_config *cfg)
{
	const char *old = getenv("LD_PRELOAD");
	char lib[PATH_MAX], sb[32], *pre;

	if (allocprof_preload_path(lib, sizeof(lib))) {
		fprintf(stderr, "ember: cannot find libember_alloc.so next to ember "
				"(set EMBER_ALLOC_PRELOAD)\n");
		return 2;
	}
	if (asprintf(&pre, "%s%s%s", lib, old && *old ? ":" : "", old ? old : "") < 0)
		return 1;
	setenv("LD_PRELOAD", pre, 1);
	free(pre);
	snprintf(sb, sizeof(sb), "%ld", cfg->alloc_sample_bytes);
	setenv("EMBER_ALLOC_SAMPLE_BYTES", sb, 1);
	return 0;
}

/* The command loads libember_cupti.so (CUDA_INJECTION64_PATH) and finds the socket. */
static int setup_gpu_env(const struct ember_config *cfg)
{
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
		options_invalid("profiles", "gpu needs libember_cupti.so (not found next to ember nor "
				"in /usr/lib/ember; set EMBER_CUPTI_LIB; it is built only where the CUDA "
				"toolkit with CUPTI is installed)");
		return 2;
	}
	if (old && *old && strcmp(old, lib))
		log_warn("run: CUDA_INJECTION64_PATH was %s; replacing it with %s", old, lib);
	setenv("CUDA_INJECTION64_PATH", lib, 1);
	setenv("EMBER_GPU_SOCKET", cfg->gpu_socket, 1);
	setenv("EMBER_GPU_GRAPH_TRACE", cfg->gpu_graph_trace, 1);
	return 0;
}

/* The hooks of a --pid run: the sink's profile hook, and the end when the process exits. */
struct pid_run {
	struct watched w;
	struct sink *sink;
};

static void pid_profile(void *ctx, const struct pipeline_profile *p)
{
	sink_profile(((struct pid_run *)ctx)->sink, p);
}

static void pid_exited(void *ctx, pid_t pid)
{
	on_exited(&((struct pid_run *)ctx)->w, pid);
}

static bool pid_done(void *ctx, int64_t now)
{
	return watched_done(&((struct pid_run *)ctx)->w, now);
}

int run_main(int argc, char **argv)
{
	struct ember_config cfg = { 0 };
	struct pipeline_opts o = { .cfg = &cfg, .name = "run", .policy = PIPELINE_COMMAND };
	struct pipeline_hooks h = { .profile = sink_profile };
	struct pid_run pr = { 0 };
	struct pipeline *pl = NULL;
	struct sink *sink = NULL;
	char service[128], exe[PATH_MAX], pidsel[192], *pidsel_v = pidsel;
	struct strlist pid_services = { .v = &pidsel_v, .n = 1 };
	int status;

	status = options_command_start(CMD_RUN, "run",
				       "ember run [options] -- CMD ARGS... | ember run [options] --pid N",
				       argc, argv, &cfg);
	if (status >= 0)
		return status;
	if (cfg.pid) {
		char link[64];
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/%ld/exe", cfg.pid);
		n = readlink(link, exe, sizeof(exe) - 1);
		if (n <= 0) {
			options_invalid("pid", "no process %ld%s", cfg.pid,
					errno == EACCES ? " that this user may read" : "");
			status = 2;
			goto out;
		}
		exe[n] = '\0';
		/* The service `ember run --pid` reports: the process's executable's basename. */
		services_name_from_path(exe, service, sizeof(service), "process");
		snprintf(pidsel, sizeof(pidsel), "%s=pid:%ld", service, cfg.pid);
		o.policy = PIPELINE_SELECTORS;
		o.services = &pid_services;
		o.alloc_mode = ALLOC_MODE_UPROBE;
		pr.w.pid = (pid_t)cfg.pid;
		h = (struct pipeline_hooks){ .profile = pid_profile, .done = pid_done,
					     .exited = pid_exited, .ctx = &pr };
	} else {
		/* The service `ember run` reports: the command's basename. */
		services_name_from_path(cfg.cmd_argv[0], service, sizeof(service), "command");
		o.command_service = service;
		o.alloc_mode = ALLOC_MODE_PRELOAD;
	}
	o.interval_s = cfg.interval;
	o.gpu_only_without_bpf = true; /* --profiles gpu alone needs no privileges */
	status = pipeline_new(&o, &pl);
	if (!status)
		status = sink_new(&cfg, &sink);
	if (!status && !cfg.pid && (cfg.profiles & PROFILE_ALLOC))
		status = setup_alloc_env(&cfg);
	if (!status && !cfg.pid && (cfg.profiles & PROFILE_GPU))
		status = setup_gpu_env(&cfg);
	if (!status)
		status = pipeline_serve_metrics(pl, sink_write_metrics, sink);
	if (!status)
		status = pipeline_start(pl, cfg.pid ? NULL : cfg.cmd_argv);
	if (status)
		goto out;
	if (cfg.pid && pipeline_targets_selected(pl) == 0) {
		options_invalid("pid", "no process %ld", cfg.pid);
		status = 2;
		goto out;
	}
	if (cfg.pid)
		pr.sink = sink;
	else
		h.ctx = sink;
	log_info("run: profiling %s at %ld Hz, %s every %.0f s", service, cfg.sample_rate,
		 sink_describe(sink), cfg.interval);
	if (pipeline_run(pl, &h) == 0)
		status = cfg.pid ? 0 : pipeline_command_status(pl);
	else
		status = 1;
	sink_stop(sink, PUSH_STOP_DEADLINE_S - pipeline_stopping_for(pl));
out:
	pipeline_free(pl);
	sink_free(sink);
	options_free(&cfg);
	return status;
}
