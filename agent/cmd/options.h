/* options: one table of every option (name, type, bounds, default, which commands take it),
 * shared by the command line, the environment (EMBER_<OPTION>) and the config file (--config),
 * so all three validate the same way. Precedence: flags > environment > file > default.
 * A bad value is refused with one line naming the option (exit status 2 at the caller).
 * Not thread-safe; parse once at start. */
#ifndef EMBER_OPTIONS_H
#define EMBER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "strlist.h"

enum ember_command {
	CMD_RECORD = 1 << 0,
	CMD_AGENT = 1 << 1,
	CMD_RUN = 1 << 2,
};

struct ember_config {
	/* shared */
	char *config_file;
	char *server;
	char *protocol;          /* push | ingest */
	struct strlist services; /* NAME=SELECTOR */
	char *profiles;          /* comma list of cpu,alloc,gpu */
	long sample_rate;        /* Hz */
	double interval;         /* seconds */
	char *unwind;            /* auto | fp | dwarf */
	long stack_size;         /* DWARF snapshot bytes */
	struct strlist labels;   /* KEY=VALUE */
	char *output;            /* local sink directory */
	long output_max_mb;      /* local sink bound */
	char *ca_file;           /* TLS CA bundle for --server */
	char *tenant_id;
	char *basic_auth_user;
	char *basic_auth_password_file;
	char *bearer_token_file;
	char *metrics_addr;
	char *log_level;
	char *gpu_socket;        /* agent <-> libember_cupti.so Unix socket */
	char *gpu_graph_trace;   /* node | graph (run: passed to the library) */
	long alloc_sample_bytes;  /* mean allocation sampling interval */
	/* record */
	long pid;                /* --pid, 0 when unset */
	char *out_file;          /* -o */
	char *flamegraph;        /* --flamegraph */
	double duration;         /* seconds, 0 = until the target exits or SIGINT */
	bool quiet;
	/* the command after "--" (points into argv, not owned) */
	char **cmd_argv;
	int cmd_argc;
};

/* Parses argv (after the command word) plus environment and config file into cfg.
 * On error prints one line naming the problem to stderr and returns -EINVAL.
 * Returns 1 when --help was given (help printed), 0 otherwise. */
int options_parse(enum ember_command cmd, int argc, char **argv, struct ember_config *cfg);
void options_free(struct ember_config *cfg);
/* Prints the options of cmd with their defaults. */
void options_print_help(enum ember_command cmd, const char *usage);

#endif
