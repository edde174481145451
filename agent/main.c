/* ember: command dispatch. `ember agent|record|run [options]`, `ember version`,
 * `ember help [COMMAND]`. */
#include <stdio.h>
#include <string.h>

#include "options.h"
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
		   "  help     help on a command: ember help record\n");
}

int main(int argc, char **argv)
{
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
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "agent") || !strcmp(argv[1], "run")) {
		fprintf(stderr, "ember: '%s' is not available in this build yet\n", argv[1]);
		return 2;
	}
	fprintf(stderr, "ember: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
