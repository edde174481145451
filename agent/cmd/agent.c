/* agent: `ember agent [options]`.
 *
 * The pipeline (pipeline.h) over the whole host: the processes --service selects, or every
 * process, named after its executable. Every --interval each (service, family) aggregator
 * becomes a pprof upload (limits enforced, the coldest stacks folded into "[other]") handed to
 * the push queue or the local directory (sink.h). Uploads never block sampling: the push sink
 * has its own thread. */
#include "agent.h"

#include <stdio.h>

#include "log.h"
#include "options.h"
#include "pipeline.h"
#include "sink.h"

/* A service manager gives 10 s between SIGTERM and SIGKILL. */
#define PUSH_STOP_DEADLINE_S 8.0

int agent_main(int argc, char **argv)
{
	struct ember_config cfg = { 0 };
	struct pipeline_opts o = { .cfg = &cfg, .name = "agent" };
	struct pipeline_hooks h = { .profile = sink_profile };
	struct pipeline *pl = NULL;
	struct sink *sink = NULL;
	int status;

	status = options_command_start(CMD_AGENT, "agent", "ember agent [options]", argc, argv, &cfg);
	if (status >= 0)
		return status;
	o.policy = cfg.services.n ? PIPELINE_SELECTORS : PIPELINE_EVERY_PROCESS;
	o.services = &cfg.services;
	/* Every process: the in-process sampler (uprobes on every process of a host would tax
	 * every malloc on it); selected services: uprobes, no restart. */
	o.alloc_mode = cfg.services.n ? ALLOC_MODE_UPROBE : ALLOC_MODE_PRELOAD;
	o.interval_s = cfg.interval;
	status = pipeline_new(&o, &pl);
	if (!status)
		status = sink_new(&cfg, &sink);
	if (!status)
		status = pipeline_serve_metrics(pl, sink_write_metrics, sink);
	if (!status)
		status = pipeline_start(pl, NULL);
	if (status)
		goto out;
	h.ctx = sink;
	log_info("agent: profiling %s at %ld Hz, %s every %.0f s",
		 cfg.services.n ? "the selected services" : "every process", cfg.sample_rate,
		 sink_describe(sink), cfg.interval);
	status = pipeline_run(pl, &h);
	/* Shutdown: the last partial interval is sent, within the 10 s a service manager gives. */
	sink_stop(sink, PUSH_STOP_DEADLINE_S - pipeline_stopping_for(pl));
out:
	pipeline_free(pl);
	sink_free(sink);
	options_free(&cfg);
	return status;
}
