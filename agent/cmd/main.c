/* ember: command dispatch. `ember agent|record|run [options]`, `ember version`,
 * `ember help [COMMAND]`. */
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "agent.h"
#include "run.h"
#include "options.h"
#include "profile_types.h"
#include "record.h"

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.0.0"
#endif

static void usage(FILE *f)
{
	fprintf(f, "usage: ember COMMAND [options]\n\n"
		   "commands:\n"
		   "  record   sample CPU stacks of processes into a pprof file and an SVG flame graph\n"
		   "  agent    profile selected services continuously and push to Pyroscope\n"
		   "  run      start a command with instrumentation and profile it\n"
		   "  version  print the version\n"
		   "  help     help on a command: ember help record; ember help profiles lists the\n"
		   "           profile type IDs Ember sends\n");
}

int main(int argc, char **argv)
{
	/* Ember holds credentials (push) and other processes' stacks: no core dumps, no ptrace by
	 * the user that started it. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* Descriptors: the hard limit (systemd's soft default of 1,024 is shared with every GPU
	 * client; the receiver takes at most a quarter of what it finds). */
	{
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "record"))
		return record_main(argc - 2, argv + 2);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("ember %s\n", EMBER_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		if (argc > 2 && !strcmp(argv[2], "record")) {
			char *help[] = { "--help" };

			return record_main(1, help);
		}
		if (argc > 2 && !strcmp(argv[2], "agent")) {
			char *help[] = { "--help" };

			return agent_main(1, help);
		}
		if (argc > 2 && !strcmp(argv[2], "run")) {
			char *help[] = { "--help" };

			return run_main(1, help);
		}
		if (argc > 2 && !strcmp(argv[2], "profiles")) {
			/* One profile type ID per line, as Pyroscope and Grafana name them. */
			for (size_t i = 0; i < profile_families_count; i++) {
				const struct profile_family *f = &profile_families[i];

				for (size_t t = 0; t < f->ntypes; t++)
					printf("%s:%s:%s:%s:%s\t%s\n", f->name, f->types[t][0], f->types[t][1],
					       f->period[0], f->period[1], f->family);
			}
			return 0;
		}
		if (argc > 2 && strcmp(argv[2], "help") && strcmp(argv[2], "version")) {
			fprintf(stderr, "ember: help: unknown command '%s' (commands: record, agent, run, "
					"version, help; help profiles lists the profile types)\n", argv[2]);
			return 2;
		}
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "agent"))
		return agent_main(argc - 2, argv + 2);
	if (!strcmp(argv[1], "run"))
		return run_main(argc - 2, argv + 2);
	fprintf(stderr, "ember: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
