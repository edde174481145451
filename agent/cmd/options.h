/* options: one table of every option (name, type, bounds, default, which commands take it),
 * shared by the command line, the environment (EMBER_<OPTION>) and the config file (--config),
 * so all three validate the same way. Precedence: flags > environment > file > default.
 * Words (--unwind, --protocol, --profiles) are parsed once, into enums and a bit set.
 * A bad value is refused with one line naming the option (exit status 2 at the caller).
 * Not thread-safe; parse once at start. */
#ifndef EMBER_OPTIONS_H
#define EMBER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "strlist.h"

enum ember_command {
	CMD_RECORD = 1 << 0,
	CMD_AGENT = 1 << 1,
	CMD_RUN = 1 << 2,
};

/* --unwind: how user stacks are unwound. */
enum ember_unwind {
	UNWIND_AUTO,  /* frame pointers where a process has them, DWARF where not (unwmode.h) */
	UNWIND_FP,    /* frame pointers only */
	UNWIND_DWARF, /* a stack snapshot per sample, unwound with .eh_frame/.debug_frame */
};

/* --protocol: how profiles reach --server. */
enum ember_protocol {
	PROTOCOL_PUSH,   /* /push.v1.PusherService/Push */
	PROTOCOL_INGEST, /* /ingest */
};

/* --profiles: bits of ember_config.profiles, in the table's order of words. */
enum ember_profile {
	PROFILE_CPU = 1u << 0,
	PROFILE_ALLOC = 1u << 1,
	PROFILE_GPU = 1u << 2,
	PROFILE_OFFCPU = 1u << 3, /* blocked time (sched_switch / finish_task_switch) */
};

struct ember_config {
	/* shared */
	char *config_file;
	char *server;
	enum ember_protocol protocol;
	struct strlist services; /* NAME=SELECTOR */
	unsigned profiles;       /* PROFILE_* bits, never 0 */
	long sample_rate;        /* Hz */
	double interval;         /* seconds */
	enum ember_unwind unwind;
	long stack_size;         /* DWARF snapshot bytes; 0: what each thread uses */
	long offcpu_min_us;      /* off-CPU: blocks shorter are sampled */
	bool offcpu_preempted;   /* off-CPU: count preemption too */
	struct strlist labels;   /* KEY=VALUE */
	char *output;            /* local sink directory */
	long output_max_mb;      /* local sink bound */
	char *output_mode;       /* octal permissions of what is written (options_output_modes) */
	char *ca_file;           /* TLS CA bundle for --server */
	char *tenant_id;
	char *basic_auth_user;
	char *basic_auth_password_file;
	char *bearer_token_file;
	char *metrics_addr;
	char *log_level;         /* error | warn | info | debug */
	char *gpu_socket;        /* agent <-> libember_cupti.so Unix socket */
	char *docker_socket;     /* Docker Engine API; NULL: /var/run/docker.sock if it exists */
	char *kube_api;          /* Kubernetes API; NULL: in-cluster if in a pod */
	char *kube_token_file;
	char *kube_ca_file;
	char *node_name;
	char *gpu_graph_trace;   /* node | graph (run: passed to the library) */
	long alloc_sample_bytes;  /* mean allocation sampling interval */
	/* record */
	long pid;                /* --pid, 0 when unset */
	char *out_file;          /* -o */
	char *flamegraph;        /* --flamegraph */
	double duration;         /* seconds, 0 = until the target exits or SIGINT */
	bool quiet;
	/* the command after "--" (points into argv, not owned); cmd_argv is NULL without "--" */
	char **cmd_argv;
	int cmd_argc;
};

/* Parses argv (after the command word) plus environment and config file into cfg, then
 * checks the command's cross-option rules (options_validate).
 * On error prints one line naming the problem to stderr and returns -EINVAL (or -ENOMEM).
 * Returns 1 when --help was given (nothing printed: the caller prints options_print_help),
 * 0 otherwise. cfg is always safe to options_free. */
int options_parse(enum ember_command cmd, int argc, char **argv, struct ember_config *cfg);
/* The rules between options of one command (only one target for record, a command for run,
 * none for agent, the profiles record can take). Prints one line and returns -EINVAL on the
 * first broken rule, 0 when cfg is consistent. Called by options_parse. */
int options_validate(enum ember_command cmd, const struct ember_config *cfg);
/* Prints "ember: invalid value for --OPT: REASON" (one line, to stderr); opt is the option's
 * name without dashes, fmt a printf format for the reason. The one writer of that message, for
 * the table and for the commands' start-up checks (a missing file, a port in use). */
void options_invalid(const char *opt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void options_free(struct ember_config *cfg);

/* What every command does first: parse (options_parse), print the help for --help (usage is
 * its first line), point to `ember help NAME` after an error, and apply --log-level. Returns
 * -1 when the command goes on, else the exit status to return (0 after help, 2 after an error;
 * cfg is then freed). */
int options_command_start(enum ember_command cmd, const char *name, const char *usage, int argc,
			  char **argv, struct ember_config *cfg);
/* --output-mode as modes: files, and directories (x added where r is given). */
void options_output_modes(const struct ember_config *cfg, mode_t *ret_file, mode_t *ret_dir);
/* Prints the options of cmd with their defaults, wrapped at 100 columns, then its examples. */
void options_print_help(enum ember_command cmd, const char *usage);

#endif
