#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_type { T_STR, T_LIST, T_LONG, T_DOUBLE, T_BOOL };

/* Where a value came from; a higher source replaces a lower one (lists included). */
enum opt_source { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };

struct opt_def {
	const char *name;
	char short_name;
	enum opt_type type;
	unsigned cmds;
	size_t off;
	const char *def;
	double min, max;        /* T_LONG / T_DOUBLE bounds */
	const char *metavar;
	const char *help;
	/* Extra check of one value; writes a reason into err and returns false when invalid. */
	bool (*check)(const char *val, char *err, size_t errlen);
};

#define ALL (CMD_RECORD | CMD_AGENT | CMD_RUN)
#define F(field) offsetof(struct ember_config, field)

static bool check_protocol(const char *v, char *err, size_t n);
static bool check_service(const char *v, char *err, size_t n);
static bool check_profiles(const char *v, char *err, size_t n);
static bool check_unwind(const char *v, char *err, size_t n);
static bool check_label(const char *v, char *err, size_t n);
static bool check_server(const char *v, char *err, size_t n);
static bool check_log_level(const char *v, char *err, size_t n);
static bool check_metrics_addr(const char *v, char *err, size_t n);
static bool check_nonempty(const char *v, char *err, size_t n);
static bool check_graph_trace(const char *v, char *err, size_t n);

static const struct opt_def opts[] = {
	{ "config", 0, T_STR, ALL, F(config_file), NULL, 0, 0, "FILE",
	  "read options from FILE (lines of `name = value`)", check_nonempty },
	{ "server", 0, T_STR, ALL, F(server), NULL, 0, 0, "URL",
	  "Pyroscope or Alloy receive_http base URL (none: local sink)", check_server },
	{ "protocol", 0, T_STR, ALL, F(protocol), "push", 0, 0, "push|ingest",
	  "/push.v1.PusherService/Push or /ingest", check_protocol },
	{ "service", 0, T_LIST, ALL, F(services), NULL, 0, 0, "NAME=SELECTOR",
	  "select processes (repeatable); SELECTOR is pid:N, comm:NAME, exe:PATH-or-glob, "
	  "cgroup:PATH or container:ID-prefix", check_service },
	{ "profiles", 0, T_STR, ALL, F(profiles), "cpu", 0, 0, "LIST",
	  "profile families, any of cpu,alloc,gpu", check_profiles },
	{ "alloc-sample-bytes", 0, T_LONG, ALL, F(alloc_sample_bytes), "524288", 1, 1073741824, "BYTES",
	  "mean allocation sampling interval in bytes (exponentially distributed)", NULL },
	{ "sample-rate", 0, T_LONG, ALL, F(sample_rate), "97", 1, 1000, "HZ",
	  "CPU samples per second per CPU", NULL },
	{ "interval", 0, T_DOUBLE, CMD_AGENT | CMD_RUN, F(interval), "15", 1, 3600, "SEC",
	  "aggregation and upload interval", NULL },
	{ "unwind", 0, T_STR, ALL, F(unwind), "auto", 0, 0, "auto|fp|dwarf",
	  "user-stack unwinding", check_unwind },
	{ "stack-size", 0, T_LONG, ALL, F(stack_size), "16384", 512, 65536, "BYTES",
	  "user stack copied per sample for DWARF unwinding", NULL },
	{ "label", 0, T_LIST, ALL, F(labels), NULL, 0, 0, "KEY=VALUE",
	  "extra series label (repeatable); also EMBER_TAG_<KEY>=VALUE", check_label },
	{ "output", 0, T_STR, CMD_AGENT | CMD_RUN, F(output), "./ember-profiles", 0, 0, "DIR",
	  "local sink directory (used when no --server)", check_nonempty },
	{ "output-max-mb", 0, T_LONG, CMD_AGENT | CMD_RUN, F(output_max_mb), "512", 1, 1048576, "MB",
	  "bound on the local sink directory; oldest profiles are deleted first", NULL },
	{ "ca-file", 0, T_STR, CMD_AGENT | CMD_RUN, F(ca_file), NULL, 0, 0, "FILE",
	  "CA certificates to verify the server's TLS certificate (default: the system's)",
	  check_nonempty },
	{ "tenant-id", 0, T_STR, CMD_AGENT | CMD_RUN, F(tenant_id), NULL, 0, 0, "ID",
	  "X-Scope-OrgID header", check_nonempty },
	{ "basic-auth-user", 0, T_STR, CMD_AGENT | CMD_RUN, F(basic_auth_user), NULL, 0, 0, "USER",
	  "basic auth user; password from EMBER_BASIC_AUTH_PASSWORD or --basic-auth-password-file",
	  check_nonempty },
	{ "basic-auth-password-file", 0, T_STR, CMD_AGENT | CMD_RUN, F(basic_auth_password_file), NULL,
	  0, 0, "FILE", "file holding the basic auth password", check_nonempty },
	{ "bearer-token-file", 0, T_STR, CMD_AGENT | CMD_RUN, F(bearer_token_file), NULL, 0, 0, "FILE",
	  "file holding a bearer token (Authorization: Bearer)", check_nonempty },
	{ "metrics-addr", 0, T_STR, CMD_AGENT | CMD_RUN, F(metrics_addr), NULL, 0, 0, "HOST:PORT",
	  "serve Prometheus self-metrics (127.0.0.1 if only :PORT is given)", check_metrics_addr },
	{ "gpu-socket", 0, T_STR, CMD_AGENT | CMD_RUN, F(gpu_socket), "/run/ember/gpu.sock", 0, 0, "PATH",
	  "Unix socket where CUDA processes with libember_cupti.so hand GPU samples to ember",
	  check_nonempty },
	{ "gpu-graph-trace", 0, T_STR, CMD_RUN, F(gpu_graph_trace), "node", 0, 0, "node|graph",
	  "CUDA graphs: every kernel of a replay (node) or one sample per graph launch (graph)",
	  check_graph_trace },
	{ "log-level", 0, T_STR, ALL, F(log_level), "info", 0, 0, "LEVEL",
	  "error, warn, info or debug", check_log_level },
	{ "pid", 'p', T_LONG, CMD_RECORD, F(pid), "0", 0, 4194304, "PID",
	  "profile this process (and the children it starts)", NULL },
	{ "output-file", 'o', T_STR, CMD_RECORD, F(out_file), "ember.pb.gz", 0, 0, "FILE.pb.gz",
	  "write the gzipped pprof profile here (also -o)", check_nonempty },
	{ "flamegraph", 0, T_STR, CMD_RECORD, F(flamegraph), NULL, 0, 0, "FILE.svg",
	  "also write an SVG flame graph", check_nonempty },
	{ "duration", 'd', T_DOUBLE, CMD_RECORD, F(duration), "0", 0, 31536000, "SEC",
	  "stop after SEC seconds (0: when the targets exit, or on Ctrl-C)", NULL },
	{ "quiet", 'q', T_BOOL, CMD_RECORD, F(quiet), "false", 0, 0, NULL,
	  "no progress output on stderr", NULL },
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static bool check_nonempty(const char *v, char *err, size_t n)
{
	if (*v)
		return true;
	snprintf(err, n, "must not be empty");
	return false;
}

static bool check_graph_trace(const char *v, char *err, size_t n)
{
	if (!strcmp(v, "node") || !strcmp(v, "graph"))
		return true;
	snprintf(err, n, "must be node or graph");
	return false;
}

static bool check_protocol(const char *v, char *err, size_t n)
{
	if (!strcmp(v, "push") || !strcmp(v, "ingest"))
		return true;
	snprintf(err, n, "must be push or ingest");
	return false;
}

static bool check_unwind(const char *v, char *err, size_t n)
{
	if (!strcmp(v, "auto") || !strcmp(v, "fp") || !strcmp(v, "dwarf"))
		return true;
	snprintf(err, n, "must be auto, fp or dwarf");
	return false;
}

static bool check_log_level(const char *v, char *err, size_t n)
{
	static const char *const levels[] = { "error", "warn", "info", "debug" };

	for (size_t i = 0; i < 4; i++)
		if (!strcmp(v, levels[i]))
			return true;
	snprintf(err, n, "must be error, warn, info or debug");
	return false;
}

static bool check_profiles(const char *v, char *err, size_t n)
{
	const char *p = v;

	if (!*v)
		goto bad;
	while (*p) {
		size_t len = strcspn(p, ",");

		if (!((len == 3 && !strncmp(p, "cpu", 3)) || (len == 5 && !strncmp(p, "alloc", 5)) ||
		      (len == 3 && !strncmp(p, "gpu", 3))))
			goto bad;
		p += len;
		if (*p == ',' && *++p == '\0')
			goto bad;
	}
	return true;
bad:
	snprintf(err, n, "must be a comma-separated list of cpu, alloc, gpu");
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
	    !strncmp(sel, "container:", 10)) {
		const char *arg = strchr(sel, ':') + 1;

		if (!*arg) {
			snprintf(err, n, "selector '%s' has an empty argument", sel);
			return false;
		}
		if (!strncmp(sel, "comm:", 5) && strlen(arg) > 15) {
			snprintf(err, n, "comm '%s' is longer than the kernel's 15 characters", arg);
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
	snprintf(err, n, "unknown selector '%s' (use pid:, comm:, exe:, cgroup: or container:)", sel);
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
		if (o->check && !o->check(val, reason, sizeof(reason)))
			goto bad;
		if (o->type == T_LIST)
			return strlist_push(dst, val);
		free(*(char **)dst);
		*(char **)dst = strdup(val);
		return *(char **)dst ? 0 : -ENOMEM;
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
	}
	return -EINVAL;
bad:
	fprintf(stderr, "ember: invalid value for --%s%s: %s\n", o->name, where, reason);
	return -EINVAL;
}

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

static int load_file(enum ember_command cmd, const char *path, struct ember_config *cfg,
		     enum opt_source *srcs)
{
	char *line = NULL, where[512];
	size_t cap = 0;
	unsigned lineno = 0;
	int err = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		fprintf(stderr, "ember: invalid value for --config: cannot read %s: %s\n", path,
			strerror(errno));
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
		if (!o || !(o->cmds & cmd) || !strcmp(o->name, "config")) {
			fprintf(stderr, "ember: %s:%u: unknown option '%s'\n", path, lineno, key);
			err = -EINVAL;
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

static int load_env(enum ember_command cmd, struct ember_config *cfg, enum opt_source *srcs)
{
	char name[64], where[80];

	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt_def *o = &opts[i];
		const char *val;

		if (!(o->cmds & cmd) || !strcmp(o->name, "config"))
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

	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *val = NULL;
		const struct opt_def *o = NULL;

		if (!strcmp(arg, "--")) {
			cfg->cmd_argv = argv + i + 1;
			cfg->cmd_argc = argc - i - 1;
			break;
		}
		if (!strncmp(arg, "--", 2)) {
			const char *eq = strchr(arg + 2, '=');

			o = find_long(arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
			if (eq)
				val = eq + 1;
		} else if (arg[0] == '-' && arg[1] && !arg[2]) {
			o = find_short(arg[1]);
		} else {
			fprintf(stderr, "ember: unexpected argument '%s' (put the command after --)\n", arg);
			return -EINVAL;
		}
		if (!o || !(o->cmds & cmd)) {
			fprintf(stderr, "ember: unknown option '%s'\n", arg);
			return -EINVAL;
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

void options_print_help(enum ember_command cmd, const char *usage)
{
	char env[64];

	printf("usage: %s\n\noptions (also EMBER_<OPTION> in the environment, or `option = value` "
	       "lines in --config FILE;\nflags win over the environment, the environment over the file):\n",
	       usage);
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt_def *o = &opts[i];
		char lhs[64];

		if (!(o->cmds & cmd))
			continue;
		if (o->short_name)
			snprintf(lhs, sizeof(lhs), "-%c, --%s%s%s", o->short_name, o->name,
				 o->metavar ? " " : "", o->metavar ? o->metavar : "");
		else
			snprintf(lhs, sizeof(lhs), "    --%s%s%s", o->name, o->metavar ? " " : "",
				 o->metavar ? o->metavar : "");
		env_name(o, env, sizeof(env));
		printf("  %-36s %s", lhs, o->help);
		if (o->def && strcmp(o->def, "0") && strcmp(o->def, "false"))
			printf(" [default: %s]", o->def);
		printf("\n");
	}
}
