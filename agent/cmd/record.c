/* record: `ember record [options] [-o FILE.pb.gz] [--flamegraph FILE.svg] [--duration SEC]
 * [--pid N | --service NAME=SELECTOR... | -- CMD ARGS...]`.
 *
 * The pipeline (pipeline.h) with one profile for the whole recording: the targets are --pid,
 * the --service selectors, the command, or with no selection every process. Counts are drained
 * every second (symbolized while the targets run); at the end (duration, target exit,
 * SIGINT/SIGTERM) the pprof and the flame graph are written. */
#include "record.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "log.h"
#include "options.h"
#include "pipeline.h"
#include "preflight.h"
#include "util.h"

struct recorder {
	struct ember_config cfg;
	struct pipeline *pl;
	char title[256];
	bool want_cpu;
	pid_t watch_pid; /* --pid, or 0 */
	bool watch_exited;
	int64_t start_mono, deadline, last_progress;
	bool tty;
	int status; /* of the writes at the end */
	bool wrote_cpu;
};

/* A family other than CPU goes to -o when it is the only one asked, else next to it as
 * NAME.<family>.pb.gz (and NAME.<family>.svg): NAME.alloc.pb.gz, NAME.offcpu.pb.gz. */
static char *family_path(const char *path, const char *family, bool alone, const char *ext)
{
	size_t n = strlen(path), cut = n;
	char *out;

	if (alone)
		return strdup(path);
	if (n > 6 && !strcmp(path + n - 6, ".pb.gz"))
		cut = n - 6;
	else if (n > 4 && !strcmp(path + n - 4, ".svg"))
		cut = n - 4;
	out = malloc(cut + strlen(family) + strlen(ext) + 3);
	if (out)
		sprintf(out, "%.*s.%s%s", (int)cut, path, family, ext);
	return out;
}

static int write_files(const struct ember_config *cfg, const char *pb, const char *svg,
		       const struct stackagg_result *res)
{
	mode_t file_mode, dir_mode;
	int err;

	options_output_modes(cfg, &file_mode, &dir_mode);
	err = fileio_write_atomic_mode(pb, res->pprof_gz, res->pprof_len, file_mode);

	if (err) {
		fprintf(stderr, "ember: cannot write output file '%s': %s\n", pb, strerror(-err));
		return err;
	}
	if (svg && (err = fileio_write_atomic_mode(svg, res->svg, res->svg_len, file_mode)))
		fprintf(stderr, "ember: cannot write flame graph '%s': %s\n", svg, strerror(-err));
	return err;
}

/* The recording's profiles (pipeline_hooks.profile): one per family, at the end. */
static void on_profile(void *ctx, const struct pipeline_profile *p)
{
	struct recorder *r = ctx;
	struct stackagg_profile d = *p->desc;
	struct stackagg_result res = { 0 };
	struct flamegraph_view fg;
	const char *fam = p->fam->family;
	bool cpu = !strcmp(fam, "cpu"), offcpu = !strcmp(fam, "offcpu");
	unsigned bit = offcpu ? PROFILE_OFFCPU : PROFILE_ALLOC;
	bool alone = r->cfg.profiles == bit;
	const char *what = cpu ? "CPU" : offcpu ? "off-CPU" : "memory";
	char *pb, *svg, t[300];
	int err;

	if (strcmp(fam, "alloc") && !cpu && !offcpu)
		return;
	pb = cpu ? strdup(r->cfg.out_file) : family_path(r->cfg.out_file, fam, alone, ".pb.gz");
	svg = !r->cfg.flamegraph ? NULL :
	      cpu ? strdup(r->cfg.flamegraph) : family_path(r->cfg.flamegraph, fam, alone, ".svg");
	snprintf(t, sizeof(t), "%s: %s", offcpu ? "Off-CPU" : "Allocations", r->title);
	flamegraph_view_of(fam, d.period, cpu ? r->title : t, &fg);
	err = pb && (!r->cfg.flamegraph || svg) ? stackagg_build(p->agg, &d, svg ? &fg : NULL, &res) :
						 -ENOMEM;
	if (err)
		fprintf(stderr, "ember: cannot encode the %s profile: %s\n", what, strerror(-err));
	else
		err = write_files(&r->cfg, pb, svg, &res);
	if (err)
		r->status = 1;
	else if (cpu)
		r->wrote_cpu = true;
	else if (!r->cfg.quiet && offcpu)
		fprintf(stderr, "ember: off-CPU profile written to %s\n", pb);
	else if (!r->cfg.quiet)
		fprintf(stderr, "ember: memory profile (%s mode) written to %s\n",
			pipeline_alloc_mode(r->pl), pb);
	stackagg_result_fini(&res);
	free(pb);
	free(svg);
}

static void on_exited(void *ctx, pid_t pid)
{
	struct recorder *r = ctx;

	if (pid == r->watch_pid)
		r->watch_exited = true;
}

static bool done(void *ctx, int64_t now)
{
	struct recorder *r = ctx;

	if (r->watch_pid && (r->watch_exited || (kill(r->watch_pid, 0) && errno == ESRCH)))
		return true;
	return r->deadline && now >= r->deadline;
}

static void tick(void *ctx, int64_t now)
{
	struct recorder *r = ctx;

	if (r->cfg.quiet || now - r->last_progress < (r->tty ? 1000000000LL : 10000000000LL))
		return;
	fprintf(stderr, r->tty ? "\rember: %.0f s, %llu samples " : "ember: %.0f s, %llu samples\n",
		(double)(now - r->start_mono) / 1e9,
		(unsigned long long)pipeline_samples_seen(r->pl));
	r->last_progress = now;
}

/* Creates the directories above path if missing (`record -o a/b/x.pb.gz` creates a/b, as
 * `agent --output` does), then checks the file can be written. Prints one line naming `what`
 * on failure. */
static int prepare_output(const struct ember_config *cfg, const char *path, const char *what)
{
	mode_t file_mode, dir_mode;
	int err;

	options_output_modes(cfg, &file_mode, &dir_mode);
	err = fileio_mkdir_parents(path, dir_mode);

	if (err) {
		fprintf(stderr, "ember: cannot write %s '%s': %s\n", what, path, strerror(-err));
		return err;
	}
	return preflight_writable(path, what);
}

int record_main(int argc, char **argv)
{
	struct recorder r = { .tty = isatty(STDERR_FILENO) };
	struct pipeline_opts o = { .cfg = &r.cfg, .name = "record", .one_service = true,
				   .alloc_mode = ALLOC_MODE_UPROBE, .kernel_symbols_at_start = true,
				   .child_term_grace_ns = 2000000000LL };
	struct pipeline_hooks h = { .profile = on_profile, .done = done, .tick = tick,
				    .exited = on_exited, .ctx = &r };
	char pidsel[64], *pidsel_v = pidsel;
	struct strlist pid_services = { .v = &pidsel_v, .n = 1 };
	int status;

	status = options_command_start(CMD_RECORD, "record",
				       "ember record [options] [-o FILE.pb.gz] [--flamegraph FILE.svg] "
				       "[--duration SEC] [--pid N | --service NAME=SELECTOR... | -- CMD ARGS...]",
				       argc, argv, &r.cfg);
	if (status >= 0)
		return status;
	status = 2;
	r.want_cpu = (r.cfg.profiles & PROFILE_CPU) != 0;
	if (r.cfg.pid && kill((pid_t)r.cfg.pid, 0) && errno == ESRCH) {
		options_invalid("pid", "no process %ld", r.cfg.pid);
		goto out;
	}

	if (r.cfg.cmd_argc) {
		o.policy = PIPELINE_COMMAND;
		snprintf(r.title, sizeof(r.title), "CPU: %s", r.cfg.cmd_argv[0]);
	} else if (r.cfg.pid) {
		o.policy = PIPELINE_SELECTORS;
		snprintf(pidsel, sizeof(pidsel), "pid%ld=pid:%ld", r.cfg.pid, r.cfg.pid);
		o.services = &pid_services;
		r.watch_pid = (pid_t)r.cfg.pid;
		snprintf(r.title, sizeof(r.title), "CPU: pid %d", (int)r.watch_pid);
	} else if (r.cfg.services.n) {
		const char *first = r.cfg.services.v[0];

		o.policy = PIPELINE_SELECTORS;
		o.services = &r.cfg.services;
		snprintf(r.title, sizeof(r.title), "CPU: %.*s%s", (int)strcspn(first, "="), first,
			 r.cfg.services.n > 1 ? " and others" : "");
	} else {
		o.policy = PIPELINE_EVERY_PROCESS;
		snprintf(r.title, sizeof(r.title), "CPU: all processes");
	}
	o.command_service = r.title;
	status = pipeline_new(&o, &r.pl);
	if (status)
		goto out;
	status = 2;
	if (prepare_output(&r.cfg, r.cfg.out_file, "output file") ||
	    (r.cfg.flamegraph && prepare_output(&r.cfg, r.cfg.flamegraph, "flame graph")))
		goto out;
	status = pipeline_start(r.pl, r.cfg.cmd_argv);
	if (status)
		goto out;
	if (r.watch_pid && pipeline_targets_selected(r.pl) == 0) {
		options_invalid("pid", "no process %d", (int)r.watch_pid);
		status = 2;
		goto out;
	}
	if (r.cfg.services.n && pipeline_targets_selected(r.pl) == 0)
		log_info("no process matches the selected services yet; waiting for one to start");

	r.start_mono = r.last_progress = util_now_ns(CLOCK_MONOTONIC);
	if (r.cfg.duration > 0)
		r.deadline = r.start_mono + (int64_t)(r.cfg.duration * 1e9);
	status = pipeline_run(r.pl, &h);
	if (!r.cfg.quiet && r.tty)
		fprintf(stderr, "\n");
	pipeline_log_costs(r.pl);
	if (status || r.status) {
		status = 1;
		goto out;
	}
	if (r.want_cpu && pipeline_cpu_samples(r.pl) == 0)
		log_warn("no samples were collected (the targets used no CPU)");
	if (r.want_cpu && !r.cfg.quiet)
		fprintf(stderr, "ember: %llu samples written to %s%s%s\n",
			(unsigned long long)pipeline_cpu_samples(r.pl), r.cfg.out_file,
			r.cfg.flamegraph ? " and " : "", r.cfg.flamegraph ? r.cfg.flamegraph : "");
	status = 0;
out:
	pipeline_free(r.pl);
	options_free(&r.cfg);
	return status;
}
