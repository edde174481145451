#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

enum opt_type {
	T_STR,    /* char *; with words: one of them, kept as the string */
	T_LIST,   /* struct strlist, repeatable */
	T_LONG,   /* long within min-max */
	T_DOUBLE, /* double within min-max */
	T_BOOL,   /* bool; a flag needs no value */
	T_ENUM,   /* an enum: the index of its word */
	T_SET,    /* unsigned: bit 1 << index of each word of a comma-separated list */
	T_PRESET, /* a flag that sets option `target` to `value` (-v: --log-level debug) */
	T_REFUSE, /* a habit from perf answered with a pointer: help, then --target's words */
};

/* Where a value came from; a higher source replaces a lower one (lists included). */
enum opt_source { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };

/* One allowed word of a T_STR, T_ENUM or T_SET option. cmds: the commands that take it; the
 * parser accepts every word so that options_validate can point the others elsewhere. */
struct opt_word {
	const char *word;
	unsigned cmds;
};

struct opt_def {
	const char *name;
	char short_name;
	enum opt_type type;
	unsigned cmds;    /* the commands that use it: they parse it, list it and read EMBER_<NAME> */
	unsigned refused; /* commands that parse it only for options_validate to refuse it */
	size_t off;
	const char *def;
	double min, max;  /* T_LONG / T_DOUBLE bounds */
	const char *metavar; /* NULL with words: the words, joined by | */
	const char *help;
	/* Extra check of one value; writes a reason into err and returns false when invalid. */
	bool (*check)(const char *val, char *err, size_t errlen);
	const struct opt_word *words; /* ends with a NULL word */
	const char *target, *value;   /* T_PRESET, T_REFUSE */
};

#define ALL (CMD_RECORD | CMD_AGENT | CMD_RUN)
#define F(field) offsetof(struct ember_config, field)
#define HELP_WIDTH 100
#define HELP_COL 39 /* where the help text of an option starts */

/* Enums are stored through an int (their words' index). */
_Static_assert(sizeof(enum ember_unwind) == sizeof(int), "enum ember_unwind is not an int");
_Static_assert(sizeof(enum ember_protocol) == sizeof(int), "enum ember_protocol is not an int");

static bool check_service(const char *v, char *err, size_t n);
static bool check_label(const char *v, char *err, size_t n);
static bool check_server(const char *v, char *err, size_t n);
static bool check_metrics_addr(const char *v, char *err, size_t n);
static bool check_nonempty(const char *v, char *err, size_t n);
static bool check_kube_api(const char *v, char *err, size_t n);
static bool check_mode(const char *v, char *err, size_t n);

/* In the order of the enum values (and of the PROFILE_* bits). */
static const struct opt_word protocol_words[] = { { "push", ALL }, { "ingest", ALL }, { NULL, 0 } };
static const struct opt_word unwind_words[] = {
	{ "auto", ALL }, { "fp", ALL }, { "dwarf", ALL }, { NULL, 0 }
};
static const struct opt_word profile_words[] = {
	{ "cpu", ALL }, { "alloc", ALL }, { "gpu", CMD_AGENT | CMD_RUN }, { "offcpu", ALL },
	{ NULL, 0 }
};
static const struct opt_word log_level_words[] = {
	{ "error", ALL }, { "warn", ALL }, { "info", ALL }, { "debug", ALL }, { NULL, 0 }
};
static const struct opt_word graph_trace_words[] = { { "node", ALL }, { "graph", ALL }, { NULL, 0 } };

_Static_assert(UNWIND_DWARF == 2 && PROTOCOL_INGEST == 1, "words out of the enums' order");
_Static_assert(PROFILE_CPU == 1u << 0 && PROFILE_ALLOC == 1u << 1 && PROFILE_GPU == 1u << 2 &&
		       PROFILE_OFFCPU == 1u << 3,
	       "profile_words out of the PROFILE_* bits' order");

static const struct opt_def opts[] = {
	{ .name = "config", .type = T_STR, .cmds = ALL, .off = F(config_file), .metavar = "FILE",
	  .help = "read options from FILE (lines of `name = value`)", .check = check_nonempty },
	{ .name = "server", .type = T_STR, .cmds = CMD_AGENT | CMD_RUN, .off = F(server),
	  .metavar = "URL", .help = "Pyroscope or Alloy receive_http base URL (none: local sink)",
	  .check = check_server },
	{ .name = "protocol", .type = T_ENUM, .cmds = CMD_AGENT | CMD_RUN, .off = F(protocol),
	  .def = "push", .help = "/push.v1.PusherService/Push or /ingest", .words = protocol_words },
	{ .name = "service", .type = T_LIST, .cmds = CMD_RECORD | CMD_AGENT, .refused = CMD_RUN,
	  .off = F(services), .metavar = "NAME=SELECTOR",
	  .help = "select processes (repeatable); SELECTOR is pid:N, comm:NAME, exe:PATH-or-glob, "
		  "cgroup:PATH, container:ID-prefix, docker:NAME-or-glob (Compose service or "
		  "container name), k8s:NAMESPACE/CONTAINER-or-glob or unit:NAME-or-glob (systemd)",
	  .check = check_service },
	{ .name = "profiles", .type = T_SET, .cmds = ALL, .off = F(profiles), .def = "cpu",
	  .metavar = "LIST", .help = "profile families, any of", .words = profile_words },
	{ .name = "alloc-sample-bytes", .type = T_LONG, .cmds = ALL, .off = F(alloc_sample_bytes),
	  .def = "524288", .min = 1, .max = 1073741824, .metavar = "BYTES",
	  .help = "mean allocation sampling interval in bytes (exponentially distributed)" },
	{ .name = "sample-rate", .short_name = 'F', .type = T_LONG, .cmds = ALL, .off = F(sample_rate),
	  .def = "97", .min = 1, .max = 1000, .metavar = "HZ",
	  .help = "CPU samples per second per CPU" },
	{ .name = "interval", .type = T_DOUBLE, .cmds = CMD_AGENT | CMD_RUN, .off = F(interval),
	  .def = "15", .min = 1, .max = 3600, .metavar = "SEC",
	  .help = "aggregation and upload interval" },
	{ .name = "unwind", .type = T_ENUM, .cmds = ALL, .off = F(unwind), .def = "auto",
	  .help = "user-stack unwinding", .words = unwind_words },
	{ .name = "offcpu-min-us", .type = T_LONG, .cmds = ALL, .off = F(offcpu_min_us),
	  .def = "100", .min = 0, .max = 1000000, .metavar = "US",
	  .help = "off-CPU: blocks shorter than this are sampled (in proportion to their length, "
		  "weighted so totals stay unbiased); 0 records every block" },
	{ .name = "offcpu-preempted", .type = T_BOOL, .cmds = ALL, .off = F(offcpu_preempted),
	  .help = "off-CPU: also count time a thread waited for a CPU after preemption (default: "
		  "blocked time only)" },
	{ .name = "stack-size", .type = T_LONG, .cmds = ALL, .off = F(stack_size), .def = "0",
	  .min = 0, .max = 65536, .metavar = "BYTES",
	  .help = "user stack copied per sample for DWARF unwinding: 0, what each thread uses "
		  "(from its stack pointer to its stack's end, up to 65536), or 512-65536 to pin "
		  "the size" },
	{ .name = "label", .type = T_LIST, .cmds = CMD_AGENT | CMD_RUN, .off = F(labels),
	  .metavar = "KEY=VALUE",
	  .help = "extra series label (repeatable); also EMBER_TAG_<KEY>=VALUE", .check = check_label },
	{ .name = "output", .type = T_STR, .cmds = CMD_AGENT | CMD_RUN, .off = F(output),
	  .def = "./ember-profiles", .metavar = "DIR",
	  .help = "local sink directory (used when no --server)", .check = check_nonempty },
	{ .name = "output-max-mb", .type = T_LONG, .cmds = CMD_AGENT | CMD_RUN, .off = F(output_max_mb),
	  .def = "512", .min = 1, .max = 1048576, .metavar = "MB",
	  .help = "bound on the local sink directory; oldest profiles are deleted first" },
	{ .name = "output-mode", .type = T_STR, .cmds = ALL, .off = F(output_mode), .def = "0600",
	  .metavar = "MODE",
	  .help = "permissions of the profiles and flame graphs written (octal; directories get "
		  "x where r is given): profiles hold every profiled process's stacks",
	  .check = check_mode },
	{ .name = "ca-file", .type = T_STR, .cmds = CMD_AGENT | CMD_RUN, .off = F(ca_file),
	  .metavar = "FILE",
	  .help = "CA certificates to verify the server's TLS certificate (default: the system's)",
	  .check = check_nonempty },
	{ .name = "tenant-id", .type = T_STR, .cmds = CMD_AGENT | CMD_RUN, .off = F(tenant_id),
	  .metavar = "ID", .help = "X-Scope-OrgID header", .check = check_nonempty },
	{ .name = "basic-auth-user", .type = T_STR, .cmds = CMD_AGENT | CMD_RUN,
	  .off = F(basic_auth_user), .metavar = "USER",
	  .help = "basic auth user; password from EMBER_BASIC_AUTH_PASSWORD or --basic-auth-password-file",
	  .check = check_nonempty },
	{ .name = "basic-auth-password-file", .type = T_STR, .cmds = CMD_AGENT | CMD_RUN,
	  .off = F(basic_auth_password_file), .metavar = "FILE",
	  .help = "file holding the basic auth password", .check = check_nonempty },
	{ .name = "bearer-token-file", .type = T_STR, .cmds = CMD_AGENT | CMD_RUN,
	  .off = F(bearer_token_file), .metavar = "FILE",
	  .help = "file holding a bearer token (Authorization: Bearer)", .check = check_nonempty },
	{ .name = "metrics-addr", .type = T_STR, .cmds = CMD_AGENT | CMD_RUN, .off = F(metrics_addr),
	  .metavar = "HOST:PORT",
	  .help = "serve Prometheus self-metrics (127.0.0.1 if only :PORT is given)",
	  .check = check_metrics_addr },
	{ .name = "docker-socket", .type = T_STR, .cmds = ALL, .off = F(docker_socket),
	  .metavar = "PATH",
	  .help = "Docker Engine API socket, for container names and Compose services "
		  "(default: /var/run/docker.sock when it exists)",
	  .check = check_nonempty },
	{ .name = "kube-api", .type = T_STR, .cmds = ALL, .off = F(kube_api), .metavar = "URL",
	  .help = "Kubernetes API server for the pods of this node (default in a pod: the "
		  "in-cluster service account)",
	  .check = check_kube_api },
	{ .name = "kube-token-file", .type = T_STR, .cmds = ALL, .off = F(kube_token_file),
	  .metavar = "FILE", .help = "bearer token for --kube-api, read again when it rotates",
	  .check = check_nonempty },
	{ .name = "kube-ca-file", .type = T_STR, .cmds = ALL, .off = F(kube_ca_file),
	  .metavar = "FILE", .help = "CA certificate that --kube-api's TLS certificate must chain to",
	  .check = check_nonempty },
	{ .name = "node-name", .type = T_STR, .cmds = ALL, .off = F(node_name), .metavar = "NAME",
	  .help = "this node's Kubernetes name: only its pods are watched (default: $NODE_NAME)",
	  .check = check_nonempty },
	{ .name = "gpu-socket", .type = T_STR, .cmds = CMD_AGENT | CMD_RUN, .off = F(gpu_socket),
	  .def = "/run/ember/gpu.sock", .metavar = "PATH",
	  .help = "Unix socket where CUDA processes with libember_cupti.so hand GPU samples to ember",
	  .check = check_nonempty },
	{ .name = "gpu-graph-trace", .type = T_STR, .cmds = CMD_RUN, .off = F(gpu_graph_trace),
	  .def = "node",
	  .help = "CUDA graphs: every kernel of a replay (node) or one sample per graph launch (graph)",
	  .words = graph_trace_words },
	{ .name = "log-level", .type = T_STR, .cmds = ALL, .off = F(log_level), .def = "info",
	  .help = "log verbosity", .words = log_level_words },
	{ .name = "verbose", .short_name = 'v', .type = T_PRESET, .cmds = ALL, .target = "log-level",
	  .value = "debug" },
	{ .name = "call-graph", .short_name = 'g', .type = T_REFUSE, .cmds = ALL, .target = "unwind",
	  .help = "Ember always records call graphs; choose how user stacks are unwound with" },
	{ .name = "pid", .short_name = 'p', .type = T_LONG, .cmds = CMD_RECORD | CMD_RUN, .off = F(pid),
	  .def = "0", .min = 0, .max = 4194304, .metavar = "PID",
	  .help = "profile this process (and the children it starts)" },
	{ .name = "output-file", .short_name = 'o', .type = T_STR, .cmds = CMD_RECORD,
	  .off = F(out_file), .def = "ember.pb.gz", .metavar = "FILE.pb.gz",
	  .help = "write the gzipped pprof profile here", .check = check_nonempty },
	{ .name = "flamegraph", .type = T_STR, .cmds = CMD_RECORD, .off = F(flamegraph),
	  .metavar = "FILE.svg", .help = "also write an SVG flame graph", .check = check_nonempty },
	{ .name = "duration", .short_name = 'd', .type = T_DOUBLE, .cmds = CMD_RECORD,
	  .off = F(duration), .def = "0", .min = 0, .max = 31536000, .metavar = "SEC",
	  .help = "stop after SEC seconds (0: when the targets exit, or on Ctrl-C)" },
	{ .name = "quiet", .short_name = 'q', .type = T_BOOL, .cmds = CMD_RECORD, .off = F(quiet),
	  .def = "false", .help = "no progress output on stderr" },
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* Shown after the options by `ember help COMMAND`: a command line, then what it does. */
static const char *const record_examples[] = {
	"ember record -o cpu.pb.gz --flamegraph cpu.svg -- ./myprog args",
	"start ./myprog and profile it until it exits",
	"ember record -p 1234 -d 30 -o cpu.pb.gz",
	"profile process 1234 and the children it starts for 30 seconds",
	"ember record --service web=comm:nginx -F 499 --unwind dwarf -o web.pb.gz",
	"profile every nginx process at 499 Hz, user stacks unwound with DWARF, until Ctrl-C",
	"ember record --profiles cpu,alloc -o app.pb.gz -- ./myprog",
	"CPU into app.pb.gz and sampled allocations into app.alloc.pb.gz",
	NULL,
};
static const char *const agent_examples[] = {
	"ember agent --server http://pyroscope:4040",
	"profile every process on the host, one series per executable, sent every 15 seconds",
	"ember agent --server http://alloy:9999 --protocol ingest --service web=exe:/usr/sbin/nginx",
	"profile the nginx processes as service web, sent through Alloy's /ingest",
	"ember agent --server https://pyroscope.example --tenant-id team-a --label env=prod",
	"every process, to a multi-tenant server, each series labelled env=prod",
	"ember agent --profiles cpu,alloc --service api=cgroup:/system.slice/api.service",
	"CPU and allocations of a systemd unit's processes, written under ./ember-profiles",
	NULL,
};
static const char *const run_examples[] = {
	"ember run --server http://pyroscope:4040 -- ./myprog args",
	"start ./myprog and send its profiles until it exits; ember exits with its status",
	"ember run --profiles gpu,cpu -- python3 train.py",
	"CUDA kernels under the CPU stacks that launched them (needs libember_cupti.so)",
	"ember run --profiles alloc --interval 60 -- ./myprog",
	"sampled allocations of ./myprog, one profile a minute, into ./ember-profiles",
	NULL,
};

/* The one writer of "invalid value for --OPT"; where names the source (" (from EMBER_X)"). */
__attribute__((format(printf, 3, 0)))
static void vinvalid(const char *opt, const char *where, const char *fmt, va_list ap)
{
	fprintf(stderr, "ember: invalid value for --%s%s: ", opt, where);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

__attribute__((format(printf, 3, 4)))
static void invalid_at(const char *opt, const char *where, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vinvalid(opt, where, fmt, ap);
	va_end(ap);
}

void options_invalid(const char *opt, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vinvalid(opt, "", fmt, ap);
	va_end(ap);
}

static const char *const cmd_names[] = { "record", "agent", "run" };

/* "`ember agent` and `ember run`" for a mask of commands. */
static void join_commands(unsigned cmds, char *buf, size_t n)
{
	size_t len = 0, total = 0, seen = 0;

	for (unsigned i = 0; i < 3; i++)
		total += !!(cmds & (1u << i));
	buf[0] = '\0';
	for (unsigned i = 0; i < 3 && len < n; i++) {
		if (!(cmds & (1u << i)))
			continue;
		seen++;
		len += (size_t)snprintf(buf + len, n - len, "%s`ember %s`",
					seen == 1 ? "" : seen == total ? " and " : ", ", cmd_names[i]);
	}
}

/* The words of o that cmd takes (every word when cmd is 0), joined by sep, the last by last. */
static void join_words(const struct opt_def *o, unsigned cmd, const char *sep, const char *last,
		       char *buf, size_t n)
{
	size_t len = 0, total = 0, seen = 0;

	for (const struct opt_word *w = o->words; w->word; w++)
		total += !cmd || (w->cmds & cmd);
	buf[0] = '\0';
	for (const struct opt_word *w = o->words; w->word && len < n; w++) {
		if (cmd && !(w->cmds & cmd))
			continue;
		seen++;
		len += (size_t)snprintf(buf + len, n - len, "%s%s",
					seen == 1 ? "" : seen == total ? last : sep, w->word);
	}
}

/* Index of the len bytes at s among o's words, or -1. */
static int word_index(const struct opt_def *o, const char *s, size_t len)
{
	for (int i = 0; o->words[i].word; i++)
		if (strlen(o->words[i].word) == len && !strncmp(o->words[i].word, s, len))
			return i;
	return -1;
}

static bool check_mode(const char *v, char *err, size_t n)
{
	char *end;
	unsigned long m;

	errno = 0;
	m = strtoul(v, &end, 8);
	if (!*v || *end || errno || m > 0777) {
		snprintf(err, n, "'%s' is not an octal mode such as 0600 or 0640", v);
		return false;
	}
	if ((m & 0600) != 0600) {
		snprintf(err, n, "'%s' must let the owner read and write (0600 at least)", v);
		return false;
	}
	if (m & 0111) {
		snprintf(err, n, "'%s' gives execute permission to a profile", v);
		return false;
	}
	return true;
}

void options_output_modes(const struct ember_config *cfg, mode_t *ret_file, mode_t *ret_dir)
{
	mode_t m = cfg->output_mode ? (mode_t)strtoul(cfg->output_mode, NULL, 8) : 0600;

	*ret_file = m;
	*ret_dir = m | ((m & 0444) >> 2); /* x for each r: 0600 -> 0700, 0644 -> 0755 */
}

static bool check_nonempty(const char *v, char *err, size_t n)
{
	if (*v)
		return true;
	snprintf(err, n, "must not be empty");
	return false;
}

/* One word of o (T_STR with words, T_ENUM): its index, or -1 with a reason. */
static int parse_word(const struct opt_def *o, const char *v, char *err, size_t n)
{
	char list[128];
	int i = word_index(o, v, strlen(v));

	if (i < 0) {
		join_words(o, 0, ", ", " or ", list, sizeof(list));
		snprintf(err, n, "must be %s", list);
	}
	return i;
}

/* A comma-separated list of o's words (T_SET) into bits; false with a reason. */
static bool parse_set(const struct opt_def *o, const char *v, unsigned *ret_bits, char *err,
		      size_t n)
{
	char list[128];
	unsigned bits = 0;
	const char *p = v;

	if (!*v)
		goto bad;
	while (*p) {
		size_t len = strcspn(p, ",");
		int i = word_index(o, p, len);

		if (i < 0)
			goto bad;
		if (bits & (1u << i)) {
			snprintf(err, n, "%s is given twice", o->words[i].word);
			return false;
		}
		bits |= 1u << i;
		p += len;
		if (*p == ',' && *++p == '\0')
			goto bad;
	}
	*ret_bits = bits;
	return true;
bad:
	join_words(o, 0, ", ", ", ", list, sizeof(list));
	snprintf(err, n, "must be a comma-separated list of %s", list);
	return false;
}

static bool valid_label_name(const char *s, size_t len)
{
	if (len == 0 || isdigit((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

static bool check_label(const char *v, char *err, size_t n)
{
	const char *eq = strchr(v, '=');

	if (!eq || eq == v) {
		snprintf(err, n, "must be KEY=VALUE");
		return false;
	}
	if (!valid_label_name(v, (size_t)(eq - v)) || !strncmp(v, "__", 2)) {
		snprintf(err, n, "label name '%.*s' must match [A-Za-z_][A-Za-z0-9_.]* and not start with __",
			 (int)(eq - v), v);
		return false;
	}
	if (!strncmp(v, "service_name=", 13) || !strncmp(v, "hostname=", 9)) {
		snprintf(err, n, "'%.*s' is set by ember", (int)(eq - v), v);
		return false;
	}
	if (!eq[1]) {
		snprintf(err, n, "label '%.*s' has an empty value", (int)(eq - v), v);
		return false;
	}
	return true;
}

static bool check_service(const char *v, char *err, size_t n)
{
	const char *eq = strchr(v, '=');
	const char *sel;
	char *end;

	if (!eq || eq == v || !eq[1]) {
		snprintf(err, n, "must be NAME=SELECTOR");
		return false;
	}
	for (const char *p = v; p < eq; p++) {
		/* Pyroscope app names: [A-Za-z0-9_.\-/] */
		if (!isalnum((unsigned char)*p) && !strchr("_.-/", *p)) {
			snprintf(err, n, "service name '%.*s' may only use letters, digits and _.-/",
				 (int)(eq - v), v);
			return false;
		}
	}
	sel = eq + 1;
	if (!strncmp(sel, "pid:", 4)) {
		long pid;

		errno = 0;
		pid = strtol(sel + 4, &end, 10);
		if (errno || end == sel + 4 || *end || pid <= 0) {
			snprintf(err, n, "pid selector '%s' needs a positive number", sel);
			return false;
		}
		return true;
	}
	if (!strncmp(sel, "comm:", 5) || !strncmp(sel, "exe:", 4) || !strncmp(sel, "cgroup:", 7) ||
	    !strncmp(sel, "container:", 10) || !strncmp(sel, "docker:", 7) ||
	    !strncmp(sel, "k8s:", 4) || !strncmp(sel, "unit:", 5)) {
		const char *arg = strchr(sel, ':') + 1;

		if (!*arg) {
			snprintf(err, n, "selector '%s' has an empty argument", sel);
			return false;
		}
		if (!strncmp(sel, "comm:", 5) && strlen(arg) > 15) {
			snprintf(err, n, "comm '%s' is longer than the kernel's 15 characters", arg);
			return false;
		}
		if (!strncmp(sel, "k8s:", 4) && !strchr(arg, '/')) {
			snprintf(err, n, "k8s selector '%s' must be NAMESPACE/CONTAINER (globs allowed)",
				 sel);
			return false;
		}
		if (!strncmp(sel, "container:", 10)) {
			for (const char *p = arg; *p; p++) {
				if (!isxdigit((unsigned char)*p)) {
					snprintf(err, n, "container id prefix '%s' must be hexadecimal", arg);
					return false;
				}
			}
		}
		return true;
	}
	snprintf(err, n, "unknown selector '%s' (use pid:, comm:, exe:, cgroup:, container:, docker:, "
		 "k8s: or unit:)", sel);
	return false;
}

static bool check_kube_api(const char *v, char *err, size_t n)
{
	if (!strncmp(v, "https://", 8) && v[8] && !strchr(v + 8, '?'))
		return true;
	snprintf(err, n, "'%s' must be an https:// URL (the API server, e.g. "
		 "https://10.0.0.1:6443)", v);
	return false;
}

static bool check_server(const char *v, char *err, size_t n)
{
	if ((!strncmp(v, "http://", 7) && v[7]) || (!strncmp(v, "https://", 8) && v[8]))
		return true;
	snprintf(err, n, "'%s' must be an http:// or https:// URL", v);
	return false;
}

static bool check_metrics_addr(const char *v, char *err, size_t n)
{
	const char *colon = strrchr(v, ':');
	char *end;
	long port;

	if (!colon) {
		snprintf(err, n, "must be HOST:PORT or :PORT");
		return false;
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port < 1 || port > 65535) {
		snprintf(err, n, "port in '%s' must be 1-65535", v);
		return false;
	}
	return true;
}

static void *field(struct ember_config *cfg, const struct opt_def *o)
{
	return (char *)cfg + o->off;
}

static void strlist_clear(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int strlist_push(struct strlist *l, const char *s)
{
	char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	l->v = nv;
	l->v[l->n] = strdup(s);
	if (!l->v[l->n])
		return -ENOMEM;
	l->n++;
	return 0;
}

/* Validates and stores one value. `where` names the source for the error message. */
static int set_value(struct ember_config *cfg, const struct opt_def *o, const char *val,
		     const char *where)
{
	char reason[256] = "";
	void *dst = field(cfg, o);
	char *end;

	switch (o->type) {
	case T_STR:
	case T_LIST:
		if (o->words && parse_word(o, val, reason, sizeof(reason)) < 0)
			goto bad;
		if (o->check && !o->check(val, reason, sizeof(reason)))
			goto bad;
		if (o->type == T_LIST)
			return strlist_push(dst, val);
		free(*(char **)dst);
		*(char **)dst = strdup(val);
		return *(char **)dst ? 0 : -ENOMEM;
	case T_ENUM: {
		int i = parse_word(o, val, reason, sizeof(reason));

		if (i < 0)
			goto bad;
		*(int *)dst = i;
		return 0;
	}
	case T_SET:
		if (!parse_set(o, val, dst, reason, sizeof(reason)))
			goto bad;
		return 0;
	case T_LONG: {
		long v;

		errno = 0;
		v = strtol(val, &end, 10);
		if (errno || end == val || *end) {
			snprintf(reason, sizeof(reason), "'%s' is not an integer", val);
			goto bad;
		}
		if (v < (long)o->min || v > (long)o->max) {
			snprintf(reason, sizeof(reason), "%ld is out of range %ld-%ld", v, (long)o->min,
				 (long)o->max);
			goto bad;
		}
		if (!strcmp(o->name, "stack-size") && v > 0 && v < 512) {
			snprintf(reason, sizeof(reason), "%ld: give 0 (what each thread uses) or "
				 "512-65536", v);
			goto bad;
		}
		*(long *)dst = v;
		return 0;
	}
	case T_DOUBLE: {
		double v;

		errno = 0;
		v = strtod(val, &end);
		if (errno || end == val || *end || !isfinite(v)) {
			snprintf(reason, sizeof(reason), "'%s' is not a number", val);
			goto bad;
		}
		if (v < o->min || v > o->max) {
			snprintf(reason, sizeof(reason), "%g is out of range %g-%g", v, o->min, o->max);
			goto bad;
		}
		*(double *)dst = v;
		return 0;
	}
	case T_BOOL:
		if (!strcmp(val, "true") || !strcmp(val, "1") || !strcmp(val, "yes")) {
			*(bool *)dst = true;
		} else if (!strcmp(val, "false") || !strcmp(val, "0") || !strcmp(val, "no")) {
			*(bool *)dst = false;
		} else {
			snprintf(reason, sizeof(reason), "'%s' is not true or false", val);
			goto bad;
		}
		return 0;
	case T_PRESET:
	case T_REFUSE:
		break;
	}
	return -EINVAL;
bad:
	invalid_at(o->name, where, "%s", reason);
	return -EINVAL;
}

/* Any option of the table, whichever commands take it. */
static const struct opt_def *find_long(const char *name, size_t len)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len))
			return &opts[i];
	return NULL;
}

static const struct opt_def *find_short(char c)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].short_name && opts[i].short_name == c)
			return &opts[i];
	return NULL;
}

static bool parsed_by(const struct opt_def *o, enum ember_command cmd)
{
	return (o->cmds | o->refused) & cmd;
}

/* Edit distance with transpositions (optimal string alignment) of a[0..la) and b. */
static size_t edit_distance(const char *a, size_t la, const char *b)
{
	size_t lb = strlen(b), d[33][33];

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);

			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

/* Options only the command line takes: --config names the file; presets and habits are flags. */
static bool flag_only(const struct opt_def *o)
{
	return o->type == T_PRESET || o->type == T_REFUSE || !strcmp(o->name, "config");
}

/* The option of cmd whose name is closest to name[0..len), if it is close enough to be a typo:
 * one edit per four letters, at most three, and fewer than the name has letters. in_file:
 * leave out the options a file cannot set. */
static const struct opt_def *suggest(enum ember_command cmd, const char *name, size_t len,
				     bool in_file)
{
	const struct opt_def *best = NULL;
	size_t best_d = SIZE_MAX, limit = 1 + len / 4;

	if (limit > 3)
		limit = 3;
	for (size_t i = 0; i < NOPTS; i++) {
		size_t d;

		if (!(opts[i].cmds & cmd) || (in_file && flag_only(&opts[i])))
			continue;
		d = edit_distance(name, len, opts[i].name);
		if (d < best_d) {
			best_d = d;
			best = &opts[i];
		}
	}
	return best && best_d <= limit && best_d < len ? best : NULL;
}

/* One line for an option this command does not parse: a pointer to the commands that do, or
 * "unknown" with the nearest option of this command. prefix: "" or "FILE:LINE: "; shown is the
 * option as the user wrote it, dashes: "--" on the command line, "" in a file. */
static int refuse_option(enum ember_command cmd, const struct opt_def *o, const char *prefix,
			 const char *shown, size_t shown_len, const char *dashes)
{
	const struct opt_def *near;
	char cmds[96];
	const char *name = shown;
	size_t len = shown_len;

	if (o) {
		join_commands(o->cmds, cmds, sizeof(cmds));
		fprintf(stderr, "ember: %s%.*s is an option of %s, not of `ember %s`\n", prefix,
			(int)shown_len, shown, cmds, cmd_names[__builtin_ctz(cmd)]);
		return -EINVAL;
	}
	while (len && *name == '-') {
		name++;
		len--;
	}
	near = suggest(cmd, name, len, !*dashes);
	if (near)
		fprintf(stderr, "ember: %sunknown option '%.*s'; did you mean %s%s?\n", prefix,
			(int)shown_len, shown, dashes, near->name);
	else
		fprintf(stderr, "ember: %sunknown option '%.*s'\n", prefix, (int)shown_len, shown);
	return -EINVAL;
}

/* Sets a value from source src, replacing what a lower source set (lists are replaced whole). */
static int apply(struct ember_config *cfg, enum opt_source *srcs, const struct opt_def *o,
		 enum opt_source src, const char *val, const char *where)
{
	size_t idx = (size_t)(o - opts);

	if (srcs[idx] > src)
		return 0;
	if (o->type == T_LIST && srcs[idx] < src)
		strlist_clear(field(cfg, o));
	srcs[idx] = src;
	return set_value(cfg, o, val, where);
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	if (e - s >= 2 && ((s[0] == '"' && e[-1] == '"') || (s[0] == '\'' && e[-1] == '\''))) {
		e[-1] = '\0';
		s++;
	}
	return s;
}

/* A config file is named on purpose (--config, EMBER_CONFIG), so it follows the command line's
 * rule: an option of another command is an error, as on the command line. */
static int load_file(enum ember_command cmd, const char *path, struct ember_config *cfg,
		     enum opt_source *srcs)
{
	char *line = NULL, where[512];
	size_t cap = 0;
	unsigned lineno = 0;
	int err = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		options_invalid("config", "cannot read %s: %s", path, strerror(errno));
		return -EINVAL;
	}
	while (getline(&line, &cap, f) > 0) {
		char *s = trim(line), *eq, *key;
		const struct opt_def *o;

		lineno++;
		if (!*s || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			fprintf(stderr, "ember: %s:%u: expected `name = value`\n", path, lineno);
			err = -EINVAL;
			break;
		}
		*eq = '\0';
		key = trim(s);
		o = find_long(key, strlen(key));
		snprintf(where, sizeof(where), "%s:%u: ", path, lineno);
		if (o && flag_only(o))
			o = NULL;
		if (!o || !parsed_by(o, cmd)) {
			err = refuse_option(cmd, o, where, key, strlen(key), "");
			break;
		}
		snprintf(where, sizeof(where), " (%s:%u)", path, lineno);
		err = apply(cfg, srcs, o, SRC_FILE, trim(eq + 1), where);
		if (err)
			break;
	}
	free(line);
	fclose(f);
	return err;
}

static void env_name(const struct opt_def *o, char *buf, size_t n)
{
	size_t i = (size_t)snprintf(buf, n, "EMBER_");

	for (const char *p = o->name; *p && i + 1 < n; p++)
		buf[i++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	buf[i] = '\0';
}

/* The environment sets only the options this command uses. An EMBER_<OPTION> of another
 * command is ignored, not refused: one shell or unit file often exports EMBER_SERVER for the
 * agent and runs `ember record` beside it, and the variables are inherited by everything the
 * user starts. (So EMBER_SERVICE does not reach `ember run`, which refuses --service.) */
static int load_env(enum ember_command cmd, struct ember_config *cfg, enum opt_source *srcs)
{
	char name[64], where[80];

	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt_def *o = &opts[i];
		const char *val;

		if (!(o->cmds & cmd) || flag_only(o))
			continue;
		env_name(o, name, sizeof(name));
		val = getenv(name);
		if (!val)
			continue;
		snprintf(where, sizeof(where), " (from %s)", name);
		if (o->type == T_LIST) {
			/* Lists in the environment are comma-separated. */
			char *copy = strdup(val), *save = NULL;
			int err = 0;

			if (!copy)
				return -ENOMEM;
			strlist_clear(field(cfg, o));
			srcs[i] = SRC_ENV;
			for (char *tok = strtok_r(copy, ",", &save); tok && !err;
			     tok = strtok_r(NULL, ",", &save))
				err = set_value(cfg, o, trim(tok), where);
			free(copy);
			if (err)
				return err;
		} else {
			int err = apply(cfg, srcs, o, SRC_ENV, val, where);

			if (err)
				return err;
		}
	}
	return 0;
}

/* -g/--call-graph and the like: one line that points to the option Ember has instead. */
static int refuse_habit(const struct opt_def *o)
{
	const struct opt_def *t = find_long(o->target, strlen(o->target));
	char words[128];

	join_words(t, 0, "|", "|", words, sizeof(words));
	fprintf(stderr, "ember: -%c/--%s: %s --%s %s\n", o->short_name, o->name, o->help, t->name,
		words);
	return -EINVAL;
}

/* The command line, after the file and the environment. */
static int load_argv(enum ember_command cmd, int argc, char **argv, struct ember_config *cfg,
		     enum opt_source *srcs)
{
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *val = NULL;
		const struct opt_def *o = NULL;
		size_t shown_len = strlen(arg);
		int err;

		if (!strcmp(arg, "--")) {
			cfg->cmd_argv = argv + i + 1;
			cfg->cmd_argc = argc - i - 1;
			break;
		}
		if (!strncmp(arg, "--", 2)) {
			const char *eq = strchr(arg + 2, '=');

			shown_len = eq ? (size_t)(eq - arg) : strlen(arg);
			o = find_long(arg + 2, shown_len - 2);
			if (eq)
				val = eq + 1;
		} else if (arg[0] == '-' && arg[1]) {
			/* -F 99 or, as perf and getopt take it, -F99 */
			o = find_short(arg[1]);
			if (o && arg[2] && (o->type == T_BOOL || o->type == T_PRESET))
				o = NULL; /* no bundled flags (-qv) */
			if (o) {
				shown_len = 2;
				val = arg[2] ? arg + 2 : NULL;
			}
		} else {
			fprintf(stderr, "ember: unexpected argument '%s' (put the command after --)\n", arg);
			return -EINVAL;
		}
		if (!o || !parsed_by(o, cmd))
			return refuse_option(cmd, o, "", arg, shown_len, "--");
		if (o->type == T_REFUSE)
			return refuse_habit(o);
		if (o->type == T_PRESET) {
			if (val) {
				fprintf(stderr, "ember: option --%s takes no value\n", o->name);
				return -EINVAL;
			}
			err = apply(cfg, srcs, find_long(o->target, strlen(o->target)), SRC_FLAG,
				    o->value, "");
			if (err)
				return err;
			continue;
		}
		if (!val && o->type == T_BOOL) {
			val = "true";
		} else if (!val) {
			if (i + 1 >= argc) {
				fprintf(stderr, "ember: option --%s needs a value\n", o->name);
				return -EINVAL;
			}
			val = argv[++i];
		}
		if (!strcmp(o->name, "config"))
			continue;
		err = apply(cfg, srcs, o, SRC_FLAG, val, "");
		if (err)
			return err;
	}
	return 0;
}

int options_parse(enum ember_command cmd, int argc, char **argv, struct ember_config *cfg)
{
	enum opt_source srcs[NOPTS] = { 0 };
	const char *config = getenv("EMBER_CONFIG");
	int err;

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].def && (opts[i].cmds & cmd) && (err = set_value(cfg, &opts[i], opts[i].def, "")))
			return err;

	/* First pass over argv: --help and --config (the file sits below env and flags). */
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			config = argv[i + 1];
		else if (!strncmp(argv[i], "--config=", 9))
			config = argv[i] + 9;
	}
	if (config) {
		err = set_value(cfg, &opts[0], config, "");
		if (err)
			return err;
		err = load_file(cmd, config, cfg, srcs);
		if (err)
			return err;
	}
	err = load_env(cmd, cfg, srcs);
	if (err)
		return err;
	err = load_argv(cmd, argc, argv, cfg, srcs);
	if (err)
		return err;
	return options_validate(cmd, cfg);
}

/* The PROFILE_* bits cmd takes. */
static unsigned profiles_of(enum ember_command cmd)
{
	unsigned bits = 0;

	for (unsigned i = 0; profile_words[i].word; i++)
		if (profile_words[i].cmds & cmd)
			bits |= 1u << i;
	return bits;
}

static int refuse(const char *msg)
{
	fprintf(stderr, "ember: %s\n", msg);
	return -EINVAL;
}

int options_validate(enum ember_command cmd, const struct ember_config *cfg)
{
	switch (cmd) {
	case CMD_RECORD:
		if ((cfg->pid != 0) + (cfg->services.n != 0) + (cfg->cmd_argc != 0) > 1)
			return refuse("give only one of --pid, --service and -- CMD");
		if (cfg->cmd_argv && cfg->cmd_argc == 0)
			return refuse("no command after --");
		if (cfg->profiles & ~profiles_of(CMD_RECORD)) {
			options_invalid("profiles", "record takes cpu, alloc and offcpu; for gpu use ember run --profiles gpu");
			return -EINVAL;
		}
		return 0;
	case CMD_AGENT:
		if (cfg->cmd_argv)
			return refuse("agent takes no command; use `ember run -- CMD`");
		return 0;
	case CMD_RUN:
		if (cfg->pid && cfg->cmd_argv)
			return refuse("give --pid or -- CMD, not both");
		if (cfg->cmd_argc == 0 && !cfg->pid)
			return refuse("run needs a command or a process: ember run [options] -- CMD ARGS..., "
				      "or ember run [options] --pid N");
		if (cfg->services.n) {
			options_invalid("service", "run profiles the command it starts; use `ember agent` "
						   "to select services");
			return -EINVAL;
		}
		return 0;
	}
	return 0;
}

int options_command_start(enum ember_command cmd, const char *name, const char *usage, int argc,
			  char **argv, struct ember_config *cfg)
{
	enum log_level level;
	int err = options_parse(cmd, argc, argv, cfg);

	if (err == 1) {
		options_print_help(cmd, usage);
		options_free(cfg);
		return 0;
	}
	if (err) {
		fprintf(stderr, "ember: see 'ember help %s'\n", name);
		options_free(cfg);
		return 2;
	}
	if (log_parse_level(cfg->log_level, &level) == 0)
		log_set_level(level);
	return -1;
}

void options_free(struct ember_config *cfg)
{
	for (size_t i = 0; i < NOPTS; i++) {
		void *dst = field(cfg, &opts[i]);

		if (opts[i].type == T_STR)
			free(*(char **)dst);
		else if (opts[i].type == T_LIST)
			strlist_clear(dst);
	}
	memset(cfg, 0, sizeof(*cfg));
}

/* Prints text from column col on, breaking lines at spaces before HELP_WIDTH; continuation
 * lines start at column indent. A word longer than a line stays whole. */
static void print_wrapped(const char *text, int col, int indent)
{
	bool first = true;

	for (const char *p = text; *p;) {
		int len = (int)strcspn(p, " ");

		if (!first && col + 1 + len > HELP_WIDTH) {
			printf("\n%*s", indent, "");
			col = indent;
		} else if (!first) {
			putchar(' ');
			col++;
		}
		printf("%.*s", len, p);
		col += len;
		first = false;
		p += len;
		while (*p == ' ')
			p++;
	}
	putchar('\n');
}

void options_print_help(enum ember_command cmd, const char *usage)
{
	const char *const *ex = cmd == CMD_RECORD ? record_examples :
				cmd == CMD_AGENT  ? agent_examples : run_examples;

	printf("usage: ");
	print_wrapped(usage, 7, 7);
	printf("\n");
	print_wrapped("options (also EMBER_<OPTION> in the environment, or `option = value` lines in "
		      "--config FILE; flags win over the environment, the environment over the file):",
		      0, 0);
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt_def *o = &opts[i];
		char lhs[192], words[128], help[512];
		const char *metavar = o->metavar;
		size_t n;

		if (!(o->cmds & cmd) || o->type == T_REFUSE)
			continue;
		if (o->words && o->type != T_SET) {
			join_words(o, cmd, "|", "|", words, sizeof(words));
			metavar = words;
		}
		if (o->short_name)
			snprintf(lhs, sizeof(lhs), "-%c, --%s%s%s", o->short_name, o->name,
				 metavar ? " " : "", metavar ? metavar : "");
		else
			snprintf(lhs, sizeof(lhs), "    --%s%s%s", o->name, metavar ? " " : "",
				 metavar ? metavar : "");
		if (o->type == T_PRESET) {
			n = (size_t)snprintf(help, sizeof(help), "same as --%s %s", o->target, o->value);
		} else if (o->type == T_SET) {
			join_words(o, cmd, ",", ",", words, sizeof(words));
			n = (size_t)snprintf(help, sizeof(help), "%s %s", o->help, words);
		} else {
			n = (size_t)snprintf(help, sizeof(help), "%s", o->help);
		}
		if (o->def && strcmp(o->def, "0") && strcmp(o->def, "false") && n < sizeof(help))
			snprintf(help + n, sizeof(help) - n, " [default: %s]", o->def);
		if (strlen(lhs) > HELP_COL - 3)
			printf("  %s\n%*s", lhs, HELP_COL, "");
		else
			printf("  %-*s ", HELP_COL - 3, lhs);
		print_wrapped(help, HELP_COL, HELP_COL);
	}
	printf("\nEXAMPLES\n");
	for (size_t i = 0; ex[i] && ex[i + 1]; i += 2) {
		printf("  ");
		print_wrapped(ex[i], 2, 8);
		printf("      ");
		print_wrapped(ex[i + 1], 6, 6);
	}
}
