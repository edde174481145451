/* The option table and the rules of each command, without root: every error that
 * tests/integration/test_cli_errors.py can see before a privileged step, and the rules around
 * it (typed words, per-command options, the environment, perf's short options). Each error case
 * checks -EINVAL and the exact line written to stderr; help is checked for its width and its
 * options. argv[1]: the ember binary, for `ember help` and unknown commands. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "options.h"

extern char **environ;

static char captured[8192]; /* what the last captured call wrote, without its final newline */

/* Runs fn with file descriptor fd (1 or 2) sent to a temporary file, then reads it back. */
static void capture_begin(int fd, int *saved, FILE **tmp)
{
	fflush(stdout);
	fflush(stderr);
	*tmp = tmpfile();
	*saved = dup(fd);
	if (!*tmp || *saved < 0 || dup2(fileno(*tmp), fd) < 0) {
		perror("capture");
		exit(1);
	}
}

static void capture_end(int fd, int saved, FILE *tmp)
{
	size_t n;

	fflush(stdout);
	fflush(stderr);
	dup2(saved, fd);
	close(saved);
	rewind(tmp);
	n = fread(captured, 1, sizeof(captured) - 1, tmp);
	fclose(tmp);
	if (n && captured[n - 1] == '\n')
		n--;
	captured[n] = '\0';
}

/* options_parse on a NULL-terminated argv, stderr captured. */
static int parse_v(enum ember_command cmd, struct ember_config *cfg, char **argv)
{
	int argc = 0, saved, ret;
	FILE *tmp;

	while (argv[argc])
		argc++;
	capture_begin(2, &saved, &tmp);
	ret = options_parse(cmd, argc, argv, cfg);
	capture_end(2, saved, tmp);
	return ret;
}

#define PARSE(cmd, cfg, ...) parse_v(cmd, cfg, (char *[]){ __VA_ARGS__, NULL })

/* The parse fails with -EINVAL and exactly one line, msg. */
#define EXPECT_ERR(cmd, msg, ...)                                                   \
	do {                                                                        \
		struct ember_config c_;                                             \
		CHECK_INT(PARSE(cmd, &c_, __VA_ARGS__), -EINVAL);                   \
		CHECK_STR(captured, msg);                                           \
		options_free(&c_);                                                  \
	} while (0)

static int last_ret;

/* The parse succeeds silently; the code after it inspects cfg, then frees it. The argv array
 * lives in the caller's block, since cfg.cmd_argv points into it. */
#define EXPECT_OK(cmd, cfg, ...)                                                    \
	last_ret = PARSE(cmd, &cfg, __VA_ARGS__);                                   \
	CHECK_INT(last_ret, 0);                                                     \
	CHECK_STR(captured, "")

static void clear_ember_env(void)
{
	char name[256];

	for (;;) {
		char **e;

		for (e = environ; *e && strncmp(*e, "EMBER_", 6); e++)
			;
		if (!*e)
			return;
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
		unsetenv(name);
	}
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f)) {
		perror(path);
		exit(1);
	}
}

/* The cases of test_cli_errors.py that are decided by the options alone. */
static void test_cli_errors_cases(const char *dir)
{
	struct ember_config cfg;
	char conf[512], want[1024];

	EXPECT_ERR(CMD_RECORD, "ember: unknown option '--bogus'", "--bogus");
	EXPECT_ERR(CMD_RECORD, "ember: invalid value for --sample-rate: 0 is out of range 1-1000",
		   "--sample-rate", "0", "-o", "x.pb.gz", "--", "true");
	EXPECT_ERR(CMD_RECORD, "ember: invalid value for --sample-rate: 'fast' is not an integer",
		   "--sample-rate", "fast", "-o", "x.pb.gz", "--", "true");
	EXPECT_ERR(CMD_RECORD,
		   "ember: invalid value for --service: unknown selector 'port:80' "
		   "(use pid:, comm:, exe:, cgroup:, container:, docker:, k8s: or unit:)",
		   "--service", "web=port:80", "-o", "x.pb.gz");
	EXPECT_ERR(CMD_AGENT,
		   "ember: invalid value for --service: k8s selector 'k8s:api' must be "
		   "NAMESPACE/CONTAINER (globs allowed)",
		   "--service", "web=k8s:api");
	EXPECT_ERR(CMD_AGENT, "ember: invalid value for --service: selector 'docker:' has an empty "
		   "argument", "--service", "web=docker:");
	EXPECT_ERR(CMD_AGENT,
		   "ember: invalid value for --kube-api: 'http://10.0.0.1:6443' must be an https:// "
		   "URL (the API server, e.g. https://10.0.0.1:6443)",
		   "--kube-api", "http://10.0.0.1:6443");
	EXPECT_ERR(CMD_AGENT, "ember: invalid value for --docker-socket: must not be empty",
		   "--docker-socket", "");
	EXPECT_ERR(CMD_RECORD, "ember: give only one of --pid, --service and -- CMD", "--pid", "1",
		   "-o", "x.pb.gz", "--", "true");

	setenv("EMBER_SAMPLE_RATE", "-5", 1);
	EXPECT_ERR(CMD_RECORD,
		   "ember: invalid value for --sample-rate (from EMBER_SAMPLE_RATE): -5 is out of range 1-1000",
		   "-o", "x.pb.gz", "--", "true");
	unsetenv("EMBER_SAMPLE_RATE");

	snprintf(conf, sizeof(conf), "%s/bad.conf", dir);
	write_file(conf, "sample-rate = 97\nfrobnicate = yes\n");
	snprintf(want, sizeof(want), "ember: %s:2: unknown option 'frobnicate'", conf);
	EXPECT_ERR(CMD_RECORD, want, "--config", conf, "-o", "x.pb.gz", "--", "true");

	/* Precedence: flag > environment > file. */
	write_file(conf, "# comment\nsample-rate = 5\n");
	EXPECT_OK(CMD_RECORD, cfg, "--quiet", "--config", conf, "-o", "x.pb.gz", "--", "true");
	CHECK_INT(cfg.sample_rate, 5);
	CHECK(cfg.quiet);
	CHECK_INT(cfg.cmd_argc, 1);
	CHECK_STR(cfg.out_file, "x.pb.gz");
	CHECK_STR(cfg.config_file, conf);
	options_free(&cfg);
	setenv("EMBER_SAMPLE_RATE", "7", 1);
	EXPECT_OK(CMD_RECORD, cfg, "--config", conf, "--", "true");
	CHECK_INT(cfg.sample_rate, 7);
	options_free(&cfg);
	EXPECT_OK(CMD_RECORD, cfg, "--config", conf, "--sample-rate", "11", "--", "true");
	CHECK_INT(cfg.sample_rate, 11);
	options_free(&cfg);
	unsetenv("EMBER_SAMPLE_RATE");
	setenv("EMBER_CONFIG", conf, 1);
	EXPECT_OK(CMD_RECORD, cfg, "--", "true");
	CHECK_INT(cfg.sample_rate, 5);
	options_free(&cfg);
	unsetenv("EMBER_CONFIG");

	snprintf(want, sizeof(want), "ember: invalid value for --config: cannot read %s/none.conf: "
				     "No such file or directory", dir);
	snprintf(conf, sizeof(conf), "%s/none.conf", dir);
	EXPECT_ERR(CMD_RECORD, want, "--config", conf);
}

static void test_defaults_and_types(void)
{
	struct ember_config cfg;

	EXPECT_OK(CMD_RECORD, cfg, "--pid", "42");
	CHECK_INT(cfg.pid, 42);
	CHECK_INT(cfg.sample_rate, 97);
	CHECK_INT(cfg.unwind, UNWIND_AUTO);
	CHECK_INT(cfg.profiles, PROFILE_CPU);
	CHECK_STR(cfg.out_file, "ember.pb.gz");
	CHECK_STR(cfg.log_level, "info");
	CHECK_INT(cfg.stack_size, 0);
	CHECK(cfg.cmd_argv == NULL);
	CHECK(cfg.server == NULL);
	options_free(&cfg);

	EXPECT_OK(CMD_AGENT, cfg, "--protocol", "ingest", "--unwind", "fp", "--interval", "2.5",
		  "--server", "https://pyro:4040", "--label", "env=a", "--label", "team=b");
	CHECK_INT(cfg.protocol, PROTOCOL_INGEST);
	CHECK_INT(cfg.unwind, UNWIND_FP);
	CHECK(cfg.interval == 2.5);
	CHECK_STR(cfg.server, "https://pyro:4040");
	CHECK_INT(cfg.labels.n, 2);
	CHECK_STR(cfg.output, "./ember-profiles");
	options_free(&cfg);

	EXPECT_OK(CMD_AGENT, cfg, "--unwind=dwarf");
	CHECK_INT(cfg.protocol, PROTOCOL_PUSH);
	CHECK_INT(cfg.unwind, UNWIND_DWARF);
	CHECK(cfg.interval == 15);
	options_free(&cfg);

	EXPECT_OK(CMD_RUN, cfg, "--gpu-graph-trace", "graph", "--", "sh", "-c", "true");
	CHECK_STR(cfg.gpu_graph_trace, "graph");
	CHECK_INT(cfg.cmd_argc, 3);
	CHECK_STR(cfg.cmd_argv[0], "sh");
	options_free(&cfg);

	EXPECT_ERR(CMD_RECORD, "ember: invalid value for --unwind: must be auto, fp or dwarf",
		   "--unwind", "frame");
	EXPECT_ERR(CMD_AGENT, "ember: invalid value for --protocol: must be push or ingest",
		   "--protocol", "http");
	EXPECT_ERR(CMD_AGENT, "ember: invalid value for --log-level: must be error, warn, info or debug",
		   "--log-level", "trace");
	EXPECT_ERR(CMD_RUN, "ember: invalid value for --gpu-graph-trace: must be node or graph",
		   "--gpu-graph-trace", "all", "--", "true");
	EXPECT_ERR(CMD_AGENT, "ember: invalid value for --interval: 0.5 is out of range 1-3600",
		   "--interval", "0.5");
	EXPECT_ERR(CMD_AGENT, "ember: invalid value for --server: 'ftp://x' must be an http:// or "
			      "https:// URL", "--server", "ftp://x");
	EXPECT_ERR(CMD_RECORD, "ember: invalid value for --quiet: 'maybe' is not true or false",
		   "--quiet=maybe");
	EXPECT_ERR(CMD_RECORD, "ember: option --sample-rate needs a value", "--sample-rate");
	EXPECT_ERR(CMD_RECORD, "ember: unexpected argument 'true' (put the command after --)", "true");
}

static void test_profiles(void)
{
	struct ember_config cfg;

	EXPECT_OK(CMD_RECORD, cfg, "--profiles", "alloc,cpu");
	CHECK_INT(cfg.profiles, PROFILE_CPU | PROFILE_ALLOC);
	options_free(&cfg);
	EXPECT_OK(CMD_RECORD, cfg, "--profiles", "alloc");
	CHECK_INT(cfg.profiles, PROFILE_ALLOC);
	options_free(&cfg);
	EXPECT_OK(CMD_AGENT, cfg, "--profiles", "cpu,gpu,alloc");
	CHECK_INT(cfg.profiles, PROFILE_CPU | PROFILE_ALLOC | PROFILE_GPU);
	options_free(&cfg);
	EXPECT_OK(CMD_RUN, cfg, "--profiles", "gpu", "--", "true");
	CHECK_INT(cfg.profiles, PROFILE_GPU);
	options_free(&cfg);
	EXPECT_OK(CMD_RUN, cfg, "--pid", "42", "--profiles", "gpu");
	CHECK_INT(cfg.pid, 42);
	options_free(&cfg);

	EXPECT_ERR(CMD_RECORD, "ember: invalid value for --profiles: cpu is given twice",
		   "--profiles", "cpu,cpu");
	EXPECT_ERR(CMD_AGENT, "ember: invalid value for --profiles: gpu is given twice",
		   "--profiles", "gpu,cpu,gpu");
	EXPECT_ERR(CMD_RECORD, "ember: invalid value for --profiles: record takes cpu, alloc and offcpu; "
			       "for gpu use ember run --profiles gpu", "--profiles", "cpu,gpu");
	EXPECT_ERR(CMD_RECORD, "ember: invalid value for --profiles: record takes cpu, alloc and offcpu; "
			       "for gpu use ember run --profiles gpu", "--profiles", "gpu");
	EXPECT_ERR(CMD_AGENT, "ember: invalid value for --profiles: must be a comma-separated list "
			      "of cpu, alloc, gpu, offcpu", "--profiles", "");
	EXPECT_ERR(CMD_AGENT, "ember: invalid value for --profiles: must be a comma-separated list "
			      "of cpu, alloc, gpu, offcpu", "--profiles", "cpu,");
	EXPECT_ERR(CMD_AGENT, "ember: invalid value for --profiles: must be a comma-separated list "
			      "of cpu, alloc, gpu, offcpu", "--profiles", "cpu,,alloc");
}

/* options_validate's rules, through options_parse and directly. */
static void test_validate(void)
{
	struct ember_config cfg = { 0 };
	int saved, ret;
	FILE *tmp;

	EXPECT_ERR(CMD_RECORD, "ember: give only one of --pid, --service and -- CMD", "--service",
		   "web=comm:nginx", "--", "true");
	EXPECT_ERR(CMD_RECORD, "ember: give only one of --pid, --service and -- CMD", "-p", "7",
		   "--service", "web=comm:nginx");
	EXPECT_ERR(CMD_RECORD, "ember: no command after --", "-o", "x.pb.gz", "--");
	EXPECT_ERR(CMD_AGENT, "ember: agent takes no command; use `ember run -- CMD`", "--", "sleep", "1");
	EXPECT_ERR(CMD_AGENT, "ember: agent takes no command; use `ember run -- CMD`", "--");
	EXPECT_ERR(CMD_RUN, "ember: run needs a command or a process: ember run [options] -- CMD "
			    "ARGS..., or ember run [options] --pid N", "--");
	EXPECT_ERR(CMD_RUN, "ember: run needs a command or a process: ember run [options] -- CMD "
			    "ARGS..., or ember run [options] --pid N", "--interval", "5");
	EXPECT_ERR(CMD_RUN, "ember: invalid value for --service: run profiles the command it starts; "
			    "use `ember agent` to select services",
		   "--service", "web=comm:nginx", "--", "true");

	cfg.profiles = PROFILE_CPU;
	CHECK_INT(options_validate(CMD_AGENT, &cfg), 0);
	CHECK_INT(options_validate(CMD_RECORD, &cfg), 0);
	cfg.profiles = PROFILE_GPU;
	capture_begin(2, &saved, &tmp);
	ret = options_validate(CMD_RECORD, &cfg);
	capture_end(2, saved, tmp);
	CHECK_INT(ret, -EINVAL);
	CHECK_STR(captured, "ember: invalid value for --profiles: record takes cpu, alloc and offcpu; "
			    "for gpu use ember run --profiles gpu");

	capture_begin(2, &saved, &tmp);
	options_invalid("pid", "no process %ld", 999999L);
	capture_end(2, saved, tmp);
	CHECK_STR(captured, "ember: invalid value for --pid: no process 999999");
}

/* Each command takes only the options it uses; the others are pointed to their commands. */
static void test_per_command(const char *dir)
{
	struct ember_config cfg;
	char conf[512], want[1024];

	EXPECT_ERR(CMD_RECORD, "ember: --interval is an option of `ember agent` and `ember run`, "
			       "not of `ember record`", "--interval", "5");
	EXPECT_ERR(CMD_RECORD, "ember: --server is an option of `ember agent` and `ember run`, "
			       "not of `ember record`", "--server=http://x:4040", "--", "true");
	EXPECT_ERR(CMD_RECORD, "ember: --label is an option of `ember agent` and `ember run`, "
			       "not of `ember record`", "--label", "env=a");
	EXPECT_ERR(CMD_RECORD, "ember: --protocol is an option of `ember agent` and `ember run`, "
			       "not of `ember record`", "--protocol", "push");
	EXPECT_ERR(CMD_RECORD, "ember: --gpu-graph-trace is an option of `ember run`, "
			       "not of `ember record`", "--gpu-graph-trace", "node");
	EXPECT_ERR(CMD_AGENT, "ember: -o is an option of `ember record`, not of `ember agent`",
		   "-o", "x.pb.gz");
	EXPECT_ERR(CMD_RUN, "ember: give --pid or -- CMD, not both", "--pid", "1", "--", "true");
	EXPECT_ERR(CMD_AGENT, "ember: --duration is an option of `ember record`, not of `ember agent`",
		   "--duration=5");

	/* Did you mean: the nearest option of this command, for a typo only. */
	EXPECT_ERR(CMD_RECORD, "ember: unknown option '--sampel-rate'; did you mean --sample-rate?",
		   "--sampel-rate", "5");
	EXPECT_ERR(CMD_RECORD, "ember: unknown option '--flamegrpah'; did you mean --flamegraph?",
		   "--flamegrpah=x.svg");
	EXPECT_ERR(CMD_AGENT, "ember: unknown option '--sever'; did you mean --server?", "--sever",
		   "http://x");
	EXPECT_ERR(CMD_AGENT, "ember: unknown option '--intreval'; did you mean --interval?",
		   "--intreval", "5");
	EXPECT_ERR(CMD_RECORD, "ember: unknown option '--frequency'", "--frequency", "99");
	EXPECT_ERR(CMD_RECORD, "ember: unknown option '-x'", "-x");
	EXPECT_ERR(CMD_RECORD, "ember: unknown option '-qv'", "-qv");

	/* The config file follows the command line's rule. */
	snprintf(conf, sizeof(conf), "%s/other.conf", dir);
	write_file(conf, "interval = 5\n");
	snprintf(want, sizeof(want), "ember: %s:1: interval is an option of `ember agent` and "
				     "`ember run`, not of `ember record`", conf);
	EXPECT_ERR(CMD_RECORD, want, "--config", conf);
	write_file(conf, "\n  sample-rat = 5\n");
	snprintf(want, sizeof(want), "ember: %s:2: unknown option 'sample-rat'; did you mean "
				     "sample-rate?", conf);
	EXPECT_ERR(CMD_RECORD, want, "--config", conf);
	write_file(conf, "verbose = true\n");
	snprintf(want, sizeof(want), "ember: %s:1: unknown option 'verbose'", conf);
	EXPECT_ERR(CMD_RECORD, want, "--config", conf);
	write_file(conf, "interval = 5\nserver = \"http://x:4040\"\n");
	EXPECT_OK(CMD_AGENT, cfg, "--config", conf);
	CHECK(cfg.interval == 5);
	CHECK_STR(cfg.server, "http://x:4040");
	options_free(&cfg);
	snprintf(want, sizeof(want), "ember: invalid value for --interval (%s:1): 0 is out of range "
				     "1-3600", conf);
	write_file(conf, "interval = 0\n");
	EXPECT_ERR(CMD_AGENT, want, "--config", conf);
}

/* The environment sets the command's own options and ignores those of other commands. */
static void test_env(void)
{
	struct ember_config cfg;

	setenv("EMBER_SERVER", "http://pyroscope:4040", 1);
	setenv("EMBER_INTERVAL", "not a number", 1);
	setenv("EMBER_LABEL", "env=a,team=b", 1);
	setenv("EMBER_SERVICE", "web=comm:nginx", 1);
	setenv("EMBER_UNWIND", "dwarf", 1);
	setenv("EMBER_PROFILES", "alloc,cpu", 1);
	EXPECT_OK(CMD_RECORD, cfg, "-o", "x.pb.gz");
	CHECK(cfg.server == NULL);
	CHECK_INT(cfg.labels.n, 0);
	CHECK_INT(cfg.services.n, 1);
	CHECK_INT(cfg.unwind, UNWIND_DWARF);
	CHECK_INT(cfg.profiles, PROFILE_CPU | PROFILE_ALLOC);
	options_free(&cfg);
	/* run refuses --service, so an EMBER_SERVICE meant for the agent does not reach it. */
	setenv("EMBER_INTERVAL", "30", 1);
	EXPECT_OK(CMD_RUN, cfg, "--unwind", "fp", "--", "true");
	CHECK_STR(cfg.server, "http://pyroscope:4040");
	CHECK_INT(cfg.services.n, 0);
	CHECK_INT(cfg.labels.n, 2);
	CHECK(cfg.interval == 30);
	CHECK_INT(cfg.unwind, UNWIND_FP);
	options_free(&cfg);
	EXPECT_OK(CMD_AGENT, cfg, "--label", "only=flag");
	CHECK_INT(cfg.services.n, 1);
	CHECK_INT(cfg.labels.n, 1);
	CHECK_STR(cfg.labels.v[0], "only=flag");
	options_free(&cfg);
	setenv("EMBER_PROFILES", "cpu,cpu", 1);
	EXPECT_ERR(CMD_AGENT, "ember: invalid value for --profiles (from EMBER_PROFILES): cpu is "
			      "given twice", "--interval", "5");
	clear_ember_env();
}

/* perf's habits: -F, -p, -v; -g and --call-graph get a pointer to --unwind. */
static void test_perf_habits(void)
{
	struct ember_config cfg;

	EXPECT_OK(CMD_RECORD, cfg, "-F", "99", "-p", "1234");
	CHECK_INT(cfg.sample_rate, 99);
	CHECK_INT(cfg.pid, 1234);
	options_free(&cfg);
	EXPECT_OK(CMD_AGENT, cfg, "-F999");
	CHECK_INT(cfg.sample_rate, 999);
	options_free(&cfg);
	EXPECT_OK(CMD_RECORD, cfg, "-v", "-ox.pb.gz");
	CHECK_STR(cfg.log_level, "debug");
	CHECK_STR(cfg.out_file, "x.pb.gz");
	options_free(&cfg);
	EXPECT_OK(CMD_RUN, cfg, "--verbose", "--", "true");
	CHECK_STR(cfg.log_level, "debug");
	options_free(&cfg);
	EXPECT_OK(CMD_RECORD, cfg, "-v", "--log-level", "warn"); /* the later flag wins */
	CHECK_STR(cfg.log_level, "warn");
	options_free(&cfg);
	setenv("EMBER_LOG_LEVEL", "error", 1);
	EXPECT_OK(CMD_RECORD, cfg, "-v");
	CHECK_STR(cfg.log_level, "debug");
	options_free(&cfg);
	unsetenv("EMBER_LOG_LEVEL");

	EXPECT_ERR(CMD_RECORD, "ember: invalid value for --sample-rate: 0 is out of range 1-1000",
		   "-F0");
	EXPECT_ERR(CMD_RECORD, "ember: option --verbose takes no value", "--verbose=yes");
	EXPECT_ERR(CMD_RECORD, "ember: -g/--call-graph: Ember always records call graphs; choose how "
			       "user stacks are unwound with --unwind auto|fp|dwarf", "-g", "--", "true");
	EXPECT_ERR(CMD_AGENT, "ember: -g/--call-graph: Ember always records call graphs; choose how "
			      "user stacks are unwound with --unwind auto|fp|dwarf", "--call-graph", "dwarf");
	EXPECT_ERR(CMD_RUN, "ember: -g/--call-graph: Ember always records call graphs; choose how "
			    "user stacks are unwound with --unwind auto|fp|dwarf", "--call-graph=fp",
		   "--", "true");
	EXPECT_ERR(CMD_AGENT, "ember: --pid is an option of `ember record` and `ember run`, not of "
			      "`ember agent`", "--pid", "1");
	EXPECT_ERR(CMD_AGENT, "ember: -p is an option of `ember record` and `ember run`, not of "
			      "`ember agent`", "-p", "1");
}

/* Help: --help returns 1; each command lists what it takes, within 100 columns, and examples. */
static void check_help(enum ember_command cmd, const char *const *want, const char *const *not)
{
	int saved, width = 0;
	FILE *tmp;

	capture_begin(1, &saved, &tmp);
	options_print_help(cmd, "ember test [options]");
	capture_end(1, saved, tmp);
	for (const char *p = captured; *p;) {
		int len = (int)strcspn(p, "\n");

		if (len > width)
			width = len;
		CHECK(len == 0 || p[len - 1] != ' ');
		p += len + !!p[len];
	}
	CHECK(width <= 100);
	CHECK(strstr(captured, "usage: ember test [options]\n") == captured);
	CHECK(strstr(captured, "\nEXAMPLES\n  ember ") != NULL);
	for (; *want; want++)
		if (!strstr(captured, *want)) {
			fprintf(stderr, "help of %d lacks '%s'\n", (int)cmd, *want);
			CHECK(!"help lists what it should");
		}
	for (; *not; not++)
		if (strstr(captured, *not)) {
			fprintf(stderr, "help of %d lists '%s'\n", (int)cmd, *not);
			CHECK(!"help lists only the command's options");
		}
}

static void test_help(void)
{
	static const char *const record_want[] = {
		"-F, --sample-rate HZ", "-p, --pid PID", "-v, --verbose", "--unwind auto|fp|dwarf",
		"--profiles LIST", "any of cpu,alloc,offcpu [default: cpu]", "-o, --output-file",
		"ember record ", NULL
	};
	static const char *const record_not[] = { "--server", "--interval", "--label", "--protocol",
						  "--output ", "--gpu", "--call-graph", "gpu", NULL };
	static const char *const agent_want[] = { "--server URL", "--protocol push|ingest",
						  "any of cpu,alloc,gpu,offcpu", "--service NAME=SELECTOR",
						  "--interval SEC", "ember agent ", NULL };
	static const char *const agent_not[] = { "--pid", "--output-file", "--flamegraph",
						 "--gpu-graph-trace", "--call-graph", NULL };
	static const char *const run_want[] = { "--gpu-graph-trace node|graph", "--label KEY=VALUE",
						"ember run ", NULL };
	static const char *const run_not[] = { "--service", "--duration", NULL };
	struct ember_config cfg;

	CHECK_INT(PARSE(CMD_RECORD, &cfg, "--bogus", "--help"), 1);
	CHECK_STR(captured, "");
	options_free(&cfg);
	CHECK_INT(PARSE(CMD_AGENT, &cfg, "-h"), 1);
	options_free(&cfg);
	check_help(CMD_RECORD, record_want, record_not);
	check_help(CMD_AGENT, agent_want, agent_not);
	check_help(CMD_RUN, run_want, run_not);
}

/* Runs the ember binary; returns its exit status, stdout in out (size n) and stderr in captured. */
static int run_ember(const char *ember, char *out, size_t n, const char *a1, const char *a2)
{
	FILE *o = tmpfile(), *e = tmpfile();
	int st = -1;
	size_t got;
	pid_t pid;

	if (!o || !e)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(fileno(o), 1);
		dup2(fileno(e), 2);
		execl(ember, ember, a1, a2, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
	rewind(o);
	got = fread(out, 1, n - 1, o);
	out[got] = '\0';
	rewind(e);
	got = fread(captured, 1, sizeof(captured) - 1, e);
	captured[got] = '\0';
	fclose(o);
	fclose(e);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

static void test_main(const char *ember)
{
	static char out[16384];

	CHECK_INT(run_ember(ember, out, sizeof(out), "help", "bogus"), 2);
	CHECK_STR(captured, "ember: help: unknown command 'bogus' (commands: record, agent, run, "
			    "version, help; help profiles lists the profile types)\n");
	CHECK_STR(out, "");
	CHECK_INT(run_ember(ember, out, sizeof(out), "nosuchcommand", NULL), 2);
	CHECK(has_prefix(captured, "ember: unknown command 'nosuchcommand'\n"));
	CHECK_INT(run_ember(ember, out, sizeof(out), "help", "record"), 0);
	CHECK(strstr(out, "\nEXAMPLES\n") != NULL);
	CHECK(strstr(out, "usage: ember record [options]") == out);
	CHECK_INT(run_ember(ember, out, sizeof(out), "help", "run"), 0);
	CHECK(strstr(out, "ember run --profiles gpu,cpu") != NULL);
	CHECK_INT(run_ember(ember, out, sizeof(out), "help", "profiles"), 0);
	CHECK(strstr(out, "process_cpu:cpu:nanoseconds:cpu:nanoseconds\t") == out);
	CHECK_INT(run_ember(ember, out, sizeof(out), "help", NULL), 0);
	CHECK(strstr(out, "usage: ember COMMAND") == out);
	CHECK_INT(run_ember(ember, out, sizeof(out), "record", "--interval=1"), 2);
	CHECK(has_prefix(captured, "ember: --interval is an option of `ember agent` and `ember run`, "
				   "not of `ember record`\n"));
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/ember-options-XXXXXX", path[600];

	if (argc < 2) {
		fprintf(stderr, "usage: %s EMBER_BINARY\n", argv[0]);
		return 2;
	}
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	clear_ember_env();
	test_cli_errors_cases(dir);
	test_defaults_and_types();
	test_profiles();
	test_validate();
	test_per_command(dir);
	test_env();
	test_perf_habits();
	test_help();
	test_main(argv[1]);
	snprintf(path, sizeof(path), "%s/bad.conf", dir);
	(void)unlink(path);
	snprintf(path, sizeof(path), "%s/other.conf", dir);
	(void)unlink(path);
	(void)rmdir(dir);
	return check_exit("unit.options");
}
