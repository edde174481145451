/* test_push: drives the push sink against tests/receiver/receiver.py, a receiver that applies
 * Pyroscope's documented ingestion rules and decodes what it accepts with decoders we did not
 * write (python3-protobuf for the PushRequest, pprofdump for the profiles). Assertions are made
 * on what the receiver recorded, read back through tests/receiver/query.py.
 *
 * Usage: unit_push RECEIVER_DIR PPROFDUMP PROTO_DIR PYTHON PROTOC
 * No root needed; binds only 127.0.0.1. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "pprof.h"
#include "push.h"
#include "upload.h"

#define CPU_PERIOD (1000000000LL / 97)
#define SEC        1000000000LL

static const char *receiver_dir, *pprofdump, *proto_dir, *python, *protoc;
static char workdir[] = "/tmp/ember-test-push-XXXXXX";

struct receiver {
	pid_t pid;
	int port;
	char record[512];
	char requests[512];
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int cmp_label(const void *a, const void *b)
{
	return strcmp(((const struct upload_label *)a)->name, ((const struct upload_label *)b)->name);
}

/* A CPU upload as aggregation makes it: a gzipped pprof of `hits` samples over two stacks,
 * time_nanos = from_ns, and the labels "k=v" given (NULL-terminated), sorted by name. */
static struct upload *make_upload(int64_t from_ns, int hits, const char *const *labels)
{
	static const struct pprof_value_type cpu = { "cpu", "nanoseconds" };
	struct pprof_mapping_desc m = { 0x400000, 0x500000, 0, "/usr/bin/web", NULL };
	struct pprof_builder *b = NULL;
	struct upload *u = NULL;
	size_t n = 0;
	uint32_t mid;

	if (pprof_builder_new(&cpu, 1, &cpu, CPU_PERIOD, &b))
		return NULL;
	pprof_set_time(b, from_ns, 10 * SEC);
	mid = pprof_add_mapping(b, &m);
	{
		struct pprof_frame hot[] = {
			{ .function = "hot", .address = 0x401000, .mapping_id = mid },
			{ .function = "main", .address = 0x400100, .mapping_id = mid } };
		struct pprof_frame cold[] = {
			{ .function = "cold", .address = 0x402000, .mapping_id = mid },
			{ .function = "main", .address = 0x400200, .mapping_id = mid } };
		int64_t v = (int64_t)hits * CPU_PERIOD;

		if (pprof_add_sample(b, hot, 2, &v) || pprof_add_sample(b, cold, 2, &v))
			goto fail;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		goto fail;
	while (labels[n])
		n++;
	u->labels = calloc(n, sizeof(*u->labels));
	u->service = strdup("web");
	u->family = strdup("cpu");
	if (!u->labels || !u->service || !u->family)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(labels[i], '=');

		u->labels[i].name = strndup(labels[i], (size_t)(eq - labels[i]));
		u->labels[i].value = strdup(eq + 1);
		u->nlabels++;
	}
	qsort(u->labels, u->nlabels, sizeof(*u->labels), cmp_label);
	u->from_ns = from_ns;
	u->until_ns = from_ns + 10 * SEC;
	if (pprof_encode(b, true, &u->pprof_gz, &u->pprof_len))
		goto fail;
	pprof_builder_free(b);
	return u;
fail:
	pprof_builder_free(b);
	upload_free(u);
	return NULL;
}

static const char *const web_labels[] = { "__name__=process_cpu", "service_name=web",
					  "hostname=h1", "env=prod", NULL };

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -1;
	if (!bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    !getsockname(fd, (struct sockaddr *)&a, &len))
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Starts receiver.py on `port` (0: ephemeral) with extra flags; waits for "listening on". */
static int receiver_start(struct receiver *r, int port, const char *const *extra)
{
	static int seq;
	char script[512], portarg[16], buf[128];
	const char *argv[32];
	struct pollfd pfd;
	size_t n = 0, got = 0;
	int pipefd[2];

	memset(r, 0, sizeof(*r));
	seq++;
	snprintf(r->record, sizeof(r->record), "%s/record-%d.jsonl", workdir, seq);
	snprintf(r->requests, sizeof(r->requests), "%s/requests-%d.jsonl", workdir, seq);
	snprintf(script, sizeof(script), "%s/receiver.py", receiver_dir);
	snprintf(portarg, sizeof(portarg), "%d", port);
	argv[n++] = python;
	argv[n++] = script;
	argv[n++] = "--port";
	argv[n++] = portarg;
	argv[n++] = "--record";
	argv[n++] = r->record;
	argv[n++] = "--requests";
	argv[n++] = r->requests;
	argv[n++] = "--pprofdump";
	argv[n++] = pprofdump;
	argv[n++] = "--proto-dir";
	argv[n++] = proto_dir;
	argv[n++] = "--protoc";
	argv[n++] = protoc;
	for (size_t i = 0; extra && extra[i] && n < 31; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;

	if (pipe2(pipefd, O_CLOEXEC))
		return -errno;
	r->pid = fork();
	if (r->pid < 0)
		return -errno;
	if (r->pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		execv(python, (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	pfd = (struct pollfd){ .fd = pipefd[0], .events = POLLIN };
	while (got < sizeof(buf) - 1 && !memchr(buf, '\n', got)) {
		ssize_t k;

		if (poll(&pfd, 1, 15000) <= 0)
			break;
		k = read(pipefd[0], buf + got, sizeof(buf) - 1 - got);
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	buf[got] = '\0';
	close(pipefd[0]);
	if (sscanf(buf, "listening on %d", &r->port) != 1) {
		fprintf(stderr, "receiver did not start: \"%s\"\n", buf);
		kill(r->pid, SIGKILL);
		waitpid(r->pid, NULL, 0);
		r->pid = 0;
		return -EIO;
	}
	return 0;
}

static void receiver_stop(struct receiver *r)
{
	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		waitpid(r->pid, NULL, 0);
	}
	r->pid = 0;
}

/* Evaluates EXPR over the receiver's logs with query.py; the printed result, newline cut. */
static const char *query(const struct receiver *r, const char *expr)
{
	static char out[8192];
	char script[512];
	const char *argv[] = { python, script, "--record", r->record, "--requests", r->requests,
			       expr, NULL };
	size_t got = 0;
	int pipefd[2], status;
	pid_t pid;

	snprintf(script, sizeof(script), "%s/query.py", receiver_dir);
	out[0] = '\0';
	if (pipe2(pipefd, O_CLOEXEC))
		return out;
	pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		execv(python, (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	for (;;) {
		ssize_t k = read(pipefd[0], out + got, sizeof(out) - 1 - got);

		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(pipefd[0]);
	waitpid(pid, &status, 0);
	out[got] = '\0';
	while (got && out[got - 1] == '\n')
		out[--got] = '\0';
	return out;
}

static struct push_opts test_opts(const struct receiver *r, int port, enum push_protocol proto)
{
	static char url[64];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", r ? r->port : port);
	return (struct push_opts){
		.server = url,
		.protocol = proto,
		.timeout_s = 5,
		.backoff_min_s = 0.05,
		.backoff_max_s = 0.2,
	};
}

/* (a), (b): three uploads arrive in order with their labels and profile type. */
static void test_deliver(enum push_protocol proto)
{
	const char *endpoint = proto == PUSH_PROTO_PUSH ? "push" : "ingest";
	struct push_opts o;
	struct push_stats st;
	struct receiver r;
	struct push *p = NULL;
	int64_t t0 = now_ns() - 60 * SEC;
	char expr[1024], want[256];

	if (receiver_start(&r, 0, NULL)) {
		CHECK(!"receiver started");
		return;
	}
	o = test_opts(&r, 0, proto);
	CHECK_INT(push_new(&o, &p), 0);
	if (!p)
		goto out;
	for (int i = 0; i < 3; i++)
		CHECK_INT(push_submit(p, make_upload(t0 + i * 10 * SEC, i + 1, web_labels)), 0);
	push_stop(p, 10);
	push_get_stats(p, &st);
	CHECK_INT(st.sent, 3);
	CHECK_INT(st.failed, 0);
	CHECK_INT(st.queue_len, 0);
	CHECK_INT(st.queue_bytes, 0);
	CHECK_INT(st.latency_count, 3);
	push_free(p);

	CHECK_STR(query(&r, "len(R)"), "3");
	snprintf(expr, sizeof(expr), "sorted(set(x['endpoint'] for x in R))");
	snprintf(want, sizeof(want), "[\"%s\"]", endpoint);
	CHECK_STR(query(&r, expr), want);
	snprintf(expr, sizeof(expr), "[x['profile']['time_nanos'] for x in R]");
	snprintf(want, sizeof(want), "[%lld,%lld,%lld]", (long long)t0, (long long)(t0 + 10 * SEC),
		 (long long)(t0 + 20 * SEC));
	CHECK_STR(query(&r, expr), want);
	/* Sample values: hits x period, so the order is also visible in the data. */
	snprintf(expr, sizeof(expr), "[sum(s['values'][0] for s in x['profile']['samples']) for x in R]");
	snprintf(want, sizeof(want), "[%lld,%lld,%lld]", 2 * CPU_PERIOD, 4 * CPU_PERIOD,
		 6 * CPU_PERIOD);
	CHECK_STR(query(&r, expr), want);
	CHECK_STR(query(&r, "all(x['profile']['sample_types'] == [['cpu', 'nanoseconds']] and "
			    "x['profile']['period_type'] == ['cpu', 'nanoseconds'] for x in R)"),
		  "true");
	if (proto == PUSH_PROTO_PUSH) {
		CHECK_STR(query(&r, "all(x['labels'] == {'__name__': 'process_cpu', 'service_name': "
				    "'web', 'hostname': 'h1', 'env': 'prod'} for x in R)"),
			  "true");
		CHECK_STR(query(&r, "sorted(set(x['headers']['Content-Type'] for x in R))"),
			  "[\"application/proto\"]");
	} else {
		/* The server derives __name__ from the sample type and adds __delta__ and the spy. */
		CHECK_STR(query(&r, "all(x['labels'] == {'__name__': 'process_cpu', 'service_name': "
				    "'web', 'hostname': 'h1', 'env': 'prod', '__delta__': 'false', "
				    "'pyroscope_spy': 'ember'} for x in R)"),
			  "true");
		CHECK_STR(query(&r, "sorted(set(x['query']['name'] for x in R))"),
			  "[\"web{env=prod,hostname=h1}\"]");
		snprintf(expr, sizeof(expr), "[[x['query']['from_ns'], x['query']['until_ns']] for x in R]");
		snprintf(want, sizeof(want), "[[%lld,%lld],[%lld,%lld],[%lld,%lld]]", (long long)t0,
			 (long long)(t0 + 10 * SEC), (long long)(t0 + 10 * SEC),
			 (long long)(t0 + 20 * SEC), (long long)(t0 + 20 * SEC),
			 (long long)(t0 + 30 * SEC));
		CHECK_STR(query(&r, expr), want);
	}
	CHECK_STR(query(&r, "[x['status'] for x in Q]"), "[200,200,200]");
out:
	receiver_stop(&r);
}

/* (c): the server is down at first; everything queued arrives, oldest first, unchanged. */
static void test_outage(void)
{
	int port = free_port();
	struct push_opts o = test_opts(NULL, port, PUSH_PROTO_PUSH);
	struct push_stats st;
	struct receiver r = { 0 };
	struct push *p = NULL;
	int64_t t0 = now_ns() - 120 * SEC;
	char want[128];

	CHECK(port > 0);
	CHECK_INT(push_new(&o, &p), 0);
	if (!p)
		return;
	for (int i = 0; i < 4; i++)
		CHECK_INT(push_submit(p, make_upload(t0 + i * 10 * SEC, i + 1, web_labels)), 0);
	sleep_s(1.0);
	push_get_stats(p, &st);
	CHECK_INT(st.sent, 0);
	CHECK(st.conn_errors >= 2);
	CHECK_INT(st.queue_len, 4);
	CHECK(st.last_error[0] != '\0');

	if (receiver_start(&r, port, NULL))
		CHECK(!"receiver started late on the same port");
	push_stop(p, 10);
	push_get_stats(p, &st);
	CHECK_INT(st.sent, 4);
	CHECK(st.retries >= 1);
	CHECK_INT(st.dropped[PUSH_DROP_SHUTDOWN], 0);
	push_free(p);
	snprintf(want, sizeof(want), "[%lld,%lld,%lld,%lld]", (long long)t0,
		 (long long)(t0 + 10 * SEC), (long long)(t0 + 20 * SEC), (long long)(t0 + 30 * SEC));
	CHECK_STR(query(&r, "[x['profile']['time_nanos'] for x in R]"), want);
	receiver_stop(&r);
}

/* (d), (f): a 400 is not retried; a too-old upload is not sent at all. */
static void test_rejected_and_too_old(void)
{
	const char *const flags[] = { "--fail-status", "400", "--fail-count", "1000", NULL };
	struct push_opts o;
	struct push_stats st;
	struct receiver r;
	struct push *p = NULL;

	if (receiver_start(&r, 0, flags)) {
		CHECK(!"receiver started");
		return;
	}
	o = test_opts(&r, 0, PUSH_PROTO_PUSH);
	CHECK_INT(push_new(&o, &p), 0);
	if (!p)
		goto out;
	CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, web_labels)), 0);
	CHECK_INT(push_submit(p, make_upload(now_ns() - 56 * 60 * SEC, 1, web_labels)), 0);
	push_stop(p, 5);
	push_get_stats(p, &st);
	CHECK_INT(st.sent, 0);
	CHECK_INT(st.failed, 1);
	CHECK_INT(st.retries, 0);
	CHECK_INT(st.dropped[PUSH_DROP_REJECTED], 1);
	CHECK_INT(st.dropped[PUSH_DROP_TOO_OLD], 1);
	CHECK(strstr(st.last_error, "HTTP 400: injected failure") != NULL);
	push_free(p);
	CHECK_STR(query(&r, "[x['status'] for x in Q]"), "[400]");
	CHECK_STR(query(&r, "len(R)"), "0");
out:
	receiver_stop(&r);
}

/* (e): 429 and 503 are retried until the server takes the upload. */
static void test_retry_status(const char *status)
{
	const char *const flags[] = { "--fail-status", status, "--fail-count", "3", NULL };
	struct push_opts o;
	struct push_stats st;
	struct receiver r;
	struct push *p = NULL;
	char want[64];

	if (receiver_start(&r, 0, flags)) {
		CHECK(!"receiver started");
		return;
	}
	o = test_opts(&r, 0, PUSH_PROTO_PUSH);
	CHECK_INT(push_new(&o, &p), 0);
	if (!p)
		goto out;
	CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, web_labels)), 0);
	push_stop(p, 10);
	push_get_stats(p, &st);
	CHECK_INT(st.sent, 1);
	CHECK_INT(st.failed, 3);
	CHECK_INT(st.retries, 3);
	CHECK_INT(st.dropped[PUSH_DROP_REJECTED], 0);
	push_free(p);
	snprintf(want, sizeof(want), "[%s,%s,%s,200]", status, status, status);
	CHECK_STR(query(&r, "[x['status'] for x in Q]"), want);
	CHECK_STR(query(&r, "len(R)"), "1");
out:
	receiver_stop(&r);
}

/* (f): a queue that holds two uploads keeps the newest two while the server is down. */
static void test_queue_bound(void)
{
	int port = free_port();
	struct push_opts o = test_opts(NULL, port, PUSH_PROTO_PUSH);
	struct upload *probe = make_upload(now_ns(), 1, web_labels);
	struct push_stats st;
	struct receiver r = { 0 };
	struct push *p = NULL;
	int64_t t0 = now_ns() - 120 * SEC;
	char want[128];

	if (!probe) {
		CHECK(!"upload built");
		return;
	}
	o.queue_max_bytes = upload_size(probe) * 5 / 2;
	upload_free(probe);
	CHECK_INT(push_new(&o, &p), 0);
	if (!p)
		return;
	for (int i = 0; i < 5; i++)
		CHECK_INT(push_submit(p, make_upload(t0 + i * 10 * SEC, 1, web_labels)), 0);
	sleep_s(0.3);
	push_get_stats(p, &st);
	CHECK_INT(st.dropped[PUSH_DROP_QUEUE_FULL], 3);
	CHECK_INT(st.queue_len, 2);
	CHECK(st.queue_bytes <= o.queue_max_bytes);

	if (receiver_start(&r, port, NULL))
		CHECK(!"receiver started late on the same port");
	push_stop(p, 10);
	push_get_stats(p, &st);
	CHECK_INT(st.sent, 2);
	CHECK_INT(st.dropped[PUSH_DROP_QUEUE_FULL], 3);
	push_free(p);
	snprintf(want, sizeof(want), "[%lld,%lld]", (long long)(t0 + 30 * SEC),
		 (long long)(t0 + 40 * SEC));
	CHECK_STR(query(&r, "[x['profile']['time_nanos'] for x in R]"), want);
	receiver_stop(&r);
}

/* Runs fn with stderr captured into a file; returns the captured text (malloc'd). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
	char path[512];
	int fd, saved;
	char *buf = NULL;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/stderr.txt", workdir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	saved = dup(STDERR_FILENO);
	if (fd < 0 || saved < 0)
		return NULL;
	dup2(fd, STDERR_FILENO);
	close(fd);
	fn(arg);
	dup2(saved, STDERR_FILENO);
	close(saved);
	f = fopen(path, "re");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n)
		buf[0] = '\0';
	fclose(f);
	return buf;
}

struct auth_run {
	struct push_opts o;
	struct push_stats st;
};

static void auth_push(void *arg)
{
	struct auth_run *a = arg;
	struct push *p = NULL;

	if (push_new(&a->o, &p)) {
		a->st.last_error[0] = '!';
		return;
	}
	(void)push_submit(p, make_upload(now_ns() - 5 * SEC, 1, web_labels));
	push_stop(p, 5);
	push_get_stats(p, &a->st);
	push_free(p);
}

/* (g): tenant and basic auth reach the server; the password never reaches the log. */
static void test_auth(void)
{
	static const char password[] = "S3cret-pw-42", wrong[] = "Wr0ng-pw-77";
	const char *const flags[] = { "--require-tenant", "--basic-auth", "ember:S3cret-pw-42", NULL };
	struct auth_run a = { 0 };
	struct receiver r;
	char *log;

	if (receiver_start(&r, 0, flags)) {
		CHECK(!"receiver started");
		return;
	}
	log_set_level(LOG_DEBUG);
	a.o = test_opts(&r, 0, PUSH_PROTO_PUSH);
	a.o.tenant_id = "team-a";
	a.o.basic_user = "ember";
	a.o.basic_password = password;
	log = capture_stderr(auth_push, &a);
	CHECK_INT(a.st.sent, 1);
	CHECK(log && !strstr(log, password));
	free(log);

	a.o.basic_password = wrong;
	memset(&a.st, 0, sizeof(a.st));
	log = capture_stderr(auth_push, &a);
	CHECK_INT(a.st.sent, 0);
	CHECK_INT(a.st.dropped[PUSH_DROP_REJECTED], 1);
	CHECK_INT(a.st.retries, 0);
	CHECK(log && strstr(log, "HTTP 401") && !strstr(log, wrong));
	free(log);

	/* No tenant: 401 as well. */
	a.o.basic_password = password;
	a.o.tenant_id = NULL;
	memset(&a.st, 0, sizeof(a.st));
	log = capture_stderr(auth_push, &a);
	CHECK_INT(a.st.dropped[PUSH_DROP_REJECTED], 1);
	CHECK(log && !strstr(log, password));
	free(log);
	log_set_level(LOG_WARN);

	CHECK_STR(query(&r, "[x['status'] for x in Q]"), "[200,401,401]");
	CHECK_STR(query(&r, "[[x['headers']['X-Scope-OrgID'], x['headers']['Authorization'], "
			    "x['headers']['user']] for x in R]"),
		  "[[\"team-a\",\"Basic\",\"ember\"]]");
	receiver_stop(&r);
}

/* (g): a bearer token read from a file arrives as Authorization: Bearer. */
static void test_bearer(void)
{
	const char *const flags[] = { "--bearer-token", "tok-0123456789", NULL };
	struct auth_run a = { 0 };
	struct receiver r;
	char path[512];
	FILE *f;
	char *log;

	snprintf(path, sizeof(path), "%s/token", workdir);
	f = fopen(path, "we");
	if (!f || fputs("tok-0123456789\n", f) < 0 || fclose(f)) {
		CHECK(!"token file written");
		return;
	}
	if (receiver_start(&r, 0, flags)) {
		CHECK(!"receiver started");
		return;
	}
	log_set_level(LOG_DEBUG);
	a.o = test_opts(&r, 0, PUSH_PROTO_INGEST);
	a.o.bearer_token_file = path;
	log = capture_stderr(auth_push, &a);
	log_set_level(LOG_WARN);
	CHECK_INT(a.st.sent, 1);
	CHECK(log && !strstr(log, "tok-0123456789"));
	free(log);
	CHECK_STR(query(&r, "[x['headers']['Authorization'] for x in R]"), "[\"Bearer\"]");
	receiver_stop(&r);
}

/* (h): the receiver enforces Pyroscope's label rules; the sink drops what it refuses. */
static void test_receiver_rules(void)
{
	static const char *const bad_name[] = { "__name__=process_cpu", "service_name=web",
						"bad-label=x", NULL };
	static const char *const no_name[] = { "service_name=web", NULL };
	const char *many[40];
	char names[32][16];
	struct push_opts o;
	struct push_stats st;
	struct receiver r;
	struct push *p = NULL;

	many[0] = "__name__=process_cpu";
	for (int i = 0; i < 30; i++) {
		snprintf(names[i], sizeof(names[i]), "l%02d=v", i);
		many[i + 1] = names[i];
	}
	many[31] = NULL;
	if (receiver_start(&r, 0, NULL)) {
		CHECK(!"receiver started");
		return;
	}
	o = test_opts(&r, 0, PUSH_PROTO_PUSH);
	CHECK_INT(push_new(&o, &p), 0);
	if (!p)
		goto out;
	/* The sink refuses an upload without __name__ itself. */
	CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, no_name)), -EINVAL);
	CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, bad_name)), 0);
	CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, many)), 0);
	/* time_nanos 2 h ago while from_ns is recent: outside the ingestion window. */
	{
		struct upload *u = make_upload(now_ns() - 2 * 3600 * SEC, 1, web_labels);

		if (u)
			u->from_ns = now_ns() - 5 * SEC;
		CHECK_INT(push_submit(p, u), 0);
	}
	push_stop(p, 5);
	push_get_stats(p, &st);
	CHECK_INT(st.sent, 0);
	CHECK_INT(st.dropped[PUSH_DROP_REJECTED], 3);
	push_free(p);
	CHECK_STR(query(&r, "[x['status'] for x in Q]"), "[400,400,400]");
	CHECK_STR(query(&r, "[x['message'].split(':')[0] for x in Q]"),
		  "[\"invalid_labels\",\"profile series '{__name__=\\\"process_cpu\\\", "
		  "l00=\\\"v\\\", l01=\\\"v\\\", l02=\\\"v\\\", l03=\\\"v\\\", l04=\\\"v\\\", "
		  "l05=\\\"v\\\", l06=\\\"v\\\", l07=\\\"v\\\", l08=\\\"v\\\", l09=\\\"v\\\", "
		  "l10=\\\"v\\\", l11=\\\"v\\\", l12=\\\"v\\\", l13=\\\"v\\\", l14=\\\"v\\\", "
		  "l15=\\\"v\\\", l16=\\\"v\\\", l17=\\\"v\\\", l18=\\\"v\\\", l19=\\\"v\\\", "
		  "l20=\\\"v\\\", l21=\\\"v\\\", l22=\\\"v\\\", l23=\\\"v\\\", l24=\\\"v\\\", "
		  "l25=\\\"v\\\", l26=\\\"v\\\", l27=\\\"v\\\", l28=\\\"v\\\", l29=\\\"v\\\"}' has 31 "
		  "label names; limit 30\",\"not_in_ingestion_window\"]");
	CHECK_STR(query(&r, "len(R)"), "0");
out:
	receiver_stop(&r);
}

/* TLS: the server's certificate is verified, against ca_file when one is given. */
static void test_tls(void)
{
	char cert[512], key[512], ca[512], url[64];
	const char *const flags[] = { "--tls-cert", cert, "--tls-key", key, NULL };
	struct push_opts o;
	struct push_stats st;
	struct receiver r;
	struct push *p = NULL;

	snprintf(cert, sizeof(cert), "%s/tls/server.pem", receiver_dir);
	snprintf(key, sizeof(key), "%s/tls/server.key", receiver_dir);
	snprintf(ca, sizeof(ca), "%s/tls/ca.pem", receiver_dir);
	if (receiver_start(&r, 0, flags)) {
		CHECK(!"receiver started");
		return;
	}
	o = test_opts(&r, 0, PUSH_PROTO_PUSH);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/", r.port);
	o.server = url;
	o.ca_file = ca;
	CHECK_INT(push_new(&o, &p), 0);
	if (!p)
		goto out;
	CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, web_labels)), 0);
	push_stop(p, 10);
	push_get_stats(p, &st);
	CHECK_INT(st.sent, 1);
	push_free(p);
	p = NULL;

	/* Without our CA the certificate is not trusted: nothing is sent. */
	o.ca_file = NULL;
	CHECK_INT(push_new(&o, &p), 0);
	if (!p)
		goto out;
	CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, web_labels)), 0);
	/* Wait for the failed handshake itself (a loaded machine may take a while), not a guess.
	 * Its error is kept from that moment: a retry cut short by push_stop() below fails
	 * differently (a timeout) and would overwrite last_error. */
	char first_error[sizeof(st.last_error)] = "";
	for (int i = 0; i < 200; i++) {
		push_get_stats(p, &st);
		if (st.conn_errors >= 1) {
			snprintf(first_error, sizeof(first_error), "%s", st.last_error);
			break;
		}
		sleep_s(0.05);
	}
	push_stop(p, 0.2);
	push_get_stats(p, &st);
	CHECK_INT(st.sent, 0);
	CHECK(st.conn_errors >= 1);
	CHECK(st.errors[PUSH_ERR_TLS] >= 1);
	CHECK_INT(st.dropped[PUSH_DROP_SHUTDOWN], 1);
	if (!strstr(first_error, "certificate"))
		fprintf(stderr, "first error: %s\n", first_error);
	CHECK(strstr(first_error, "certificate") != NULL);
	push_free(p);
	CHECK_STR(query(&r, "len(R)"), "1");
out:
	receiver_stop(&r);
}

/* push_stop() returns by its deadline even when the server never answers: the request in
 * flight is cut short and what is left is counted as dropped at shutdown. */
static void test_stop_deadline(void)
{
	const char *const flags[] = { "--delay", "20", NULL };
	struct push_opts o;
	struct push_stats st;
	struct receiver r;
	struct push *p = NULL;
	struct timespec a, b;
	double took;

	if (receiver_start(&r, 0, flags)) {
		CHECK(!"receiver started");
		return;
	}
	o = test_opts(&r, 0, PUSH_PROTO_PUSH);
	o.timeout_s = 30;
	CHECK_INT(push_new(&o, &p), 0);
	if (!p)
		goto out;
	CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, web_labels)), 0);
	CHECK_INT(push_submit(p, make_upload(now_ns() - 4 * SEC, 1, web_labels)), 0);
	sleep_s(1.0); /* the first request is in flight, held by the receiver's --delay */
	clock_gettime(CLOCK_MONOTONIC, &a);
	push_stop(p, 1.0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	took = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	/* The deadline plus curl's progress-callback period (about a second) at most. */
	CHECK(took >= 0.9 && took < 3.0);
	push_get_stats(p, &st);
	CHECK_INT(st.sent, 0);
	CHECK_INT(st.dropped[PUSH_DROP_SHUTDOWN], 2);
	CHECK_INT(st.queue_len, 0);
	CHECK_INT(push_submit(p, make_upload(now_ns(), 1, web_labels)), -ESHUTDOWN);
	push_free(p);
out:
	receiver_stop(&r);
}

/* A hostile server of our own (receiver.py cannot misbehave this way): answers every request
 * with one of the modes below, then closes. */
enum fake_mode { FAKE_HUGE_BODY, FAKE_REDIRECT, FAKE_HUGE_HEADERS };

struct fake {
	int lfd, port;
	enum fake_mode mode;
	pthread_t thread;
	volatile int stop;
	volatile long long body_sent; /* bytes of body written before the client went away */
	volatile int requests;
};

static void fake_read_request(int fd)
{
	char buf[65536];
	size_t len = 0;
	long long need = -1;

	for (;;) {
		ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		char *end, *cl;

		if (n <= 0)
			return;
		len += (size_t)n;
		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (!end) {
			if (len == sizeof(buf) - 1)
				return;
			continue;
		}
		cl = strcasestr(buf, "Content-Length:");
		need = cl ? atoll(cl + 15) : 0;
		need -= (long long)(len - (size_t)(end + 4 - buf));
		break;
	}
	while (need > 0) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n <= 0)
			return;
		need -= n;
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	static char zeros[65536], hdr[4096];

	while (!f->stop) {
		struct pollfd pfd = { .fd = f->lfd, .events = POLLIN };
		int fd;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		fd = accept(f->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		fake_read_request(fd);
		f->requests++;
		if (f->mode == FAKE_HUGE_BODY) {
			const char *h = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
					"Content-Length: 1073741824\r\n\r\n";

			(void)send(fd, h, strlen(h), MSG_NOSIGNAL);
			/* Streams the 1 GiB until the client stops reading and closes. */
			for (long long sent = 0; sent < (1LL << 30) && !f->stop;) {
				ssize_t n = send(fd, zeros, sizeof(zeros), MSG_NOSIGNAL);

				if (n <= 0)
					break;
				sent += n;
				f->body_sent = sent;
			}
		} else if (f->mode == FAKE_REDIRECT) {
			const char *h = "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\n"
					"Content-Length: 0\r\n\r\n";

			(void)send(fd, h, strlen(h), MSG_NOSIGNAL);
		} else {
			const char *h = "HTTP/1.1 200 OK\r\n";

			(void)send(fd, h, strlen(h), MSG_NOSIGNAL);
			memset(hdr, 'a', sizeof(hdr));
			memcpy(hdr, "X-Pad: ", 7);
			memcpy(hdr + sizeof(hdr) - 2, "\r\n", 2);
			for (int i = 0; i < 1024 && !f->stop; i++)
				if (send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL) <= 0)
					break;
		}
		close(fd);
	}
	return NULL;
}

static int fake_start(struct fake *f, enum fake_mode mode)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);

	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(f->lfd, 8) ||
	    getsockname(f->lfd, (struct sockaddr *)&a, &len))
		return -1;
	f->port = ntohs(a.sin_port);
	return pthread_create(&f->thread, NULL, fake_main, f) ? -1 : 0;
}

static void fake_stop(struct fake *f)
{
	f->stop = 1;
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A 200 with a 1 GiB body: the upload counts as sent, the body is cut after 4 KiB (not
 * downloaded: the server could write only what the socket buffers hold), quickly. */
static void test_huge_body(void)
{
	struct push_opts o = test_opts(NULL, 0, PUSH_PROTO_PUSH);
	struct push_stats st = { 0 };
	struct push *p = NULL;
	struct fake f;
	double c0, took;
	struct timespec a, b;

	if (fake_start(&f, FAKE_HUGE_BODY)) {
		CHECK(!"fake server started");
		return;
	}
	o = test_opts(NULL, f.port, PUSH_PROTO_PUSH);
	CHECK_INT(push_new(&o, &p), 0);
	if (!p)
		goto out;
	c0 = thread_cpu_s();
	clock_gettime(CLOCK_MONOTONIC, &a);
	CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, web_labels)), 0);
	CHECK_INT(push_submit(p, make_upload(now_ns() - 4 * SEC, 1, web_labels)), 0);
	for (int i = 0; i < 100; i++) {
		push_get_stats(p, &st);
		if (st.sent >= 2)
			break;
		sleep_s(0.05);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	took = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	CHECK_INT(st.sent, 2);
	CHECK_INT(st.failed, 0);
	CHECK_INT(st.conn_errors, 0);
	CHECK_INT(st.body_truncated, 2);
	CHECK(took < 3.0);
	push_stop(p, 1);
	/* Reading 2 GiB through curl takes seconds of CPU; two cut answers take milliseconds. */
	CHECK(thread_cpu_s() - c0 < 1.0);
	push_free(p);
	CHECK(f.body_sent < (64LL << 20));
out:
	fake_stop(&f);
}

/* A 302 is counted as a redirect (not followed, not a 4xx); headers without end are cut. */
static void test_redirect_and_headers(void)
{
	struct push_opts o;
	struct push_stats st = { 0 };
	struct push *p = NULL;
	struct fake f;
	char buf[256];
	int port = free_port();

	if (fake_start(&f, FAKE_REDIRECT)) {
		CHECK(!"fake server started");
		return;
	}
	o = test_opts(NULL, f.port, PUSH_PROTO_PUSH);
	CHECK_INT(push_new(&o, &p), 0);
	if (p) {
		CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, web_labels)), 0);
		push_stop(p, 5);
		push_get_stats(p, &st);
		CHECK_INT(st.sent, 0);
		CHECK_INT(st.dropped[PUSH_DROP_REDIRECT], 1);
		CHECK_INT(st.dropped[PUSH_DROP_REJECTED], 0);
		CHECK_INT(f.requests, 1); /* the Location was not followed */
		CHECK_STR(push_drop_reason_name(PUSH_DROP_REDIRECT), "redirect_3xx");
		push_free(p);
		p = NULL;
	}
	fake_stop(&f);

	if (fake_start(&f, FAKE_HUGE_HEADERS)) {
		CHECK(!"fake server started");
		return;
	}
	o = test_opts(NULL, f.port, PUSH_PROTO_PUSH);
	CHECK_INT(push_new(&o, &p), 0);
	if (p) {
		CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, web_labels)), 0);
		for (int i = 0; i < 100 && !st.errors[PUSH_ERR_PROTOCOL]; i++) {
			sleep_s(0.05);
			push_get_stats(p, &st);
		}
		push_stop(p, 0.2);
		push_get_stats(p, &st);
		CHECK_INT(st.sent, 0);
		CHECK(st.errors[PUSH_ERR_PROTOCOL] >= 1);
		CHECK(strstr(st.last_error, "headers over") != NULL);
		push_free(p);
		p = NULL;
	}
	fake_stop(&f);

	/* Nobody listening: a connect error, by kind. */
	o = test_opts(NULL, port, PUSH_PROTO_PUSH);
	CHECK_INT(push_new(&o, &p), 0);
	if (p) {
		CHECK_INT(push_submit(p, make_upload(now_ns() - 5 * SEC, 1, web_labels)), 0);
		for (int i = 0; i < 100 && !st.errors[PUSH_ERR_CONNECT]; i++) {
			sleep_s(0.05);
			push_get_stats(p, &st);
		}
		push_stop(p, 0);
		CHECK(st.errors[PUSH_ERR_CONNECT] >= 1);
		push_free(p);
	}

	/* URLs in logs: the userinfo is never shown. */
	push_redact_url("http://user:secret@host:4040/x@y", buf, sizeof(buf));
	CHECK_STR(buf, "http://***@host:4040/x@y");
	push_redact_url("https://a@b:p:w@h?q=@", buf, sizeof(buf));
	CHECK_STR(buf, "https://***@h?q=@");
	push_redact_url("http://host:4040", buf, sizeof(buf));
	CHECK_STR(buf, "http://host:4040");
	CHECK_INT(push_redact_url("http://u:p@h", buf, 8), 12);
	CHECK_STR(buf, "http://");
}

static void test_bad_options(void)
{
	struct push_opts o = { .server = "ftp://example.invalid" };
	struct push *p = NULL;

	CHECK_INT(push_new(&o, &p), -EINVAL);
	o.server = "http://127.0.0.1:1";
	o.basic_user = "u";
	o.bearer_token = "t";
	CHECK_INT(push_new(&o, &p), -EINVAL);
	o.basic_user = NULL;
	o.bearer_token = NULL;
	o.bearer_token_file = "/nonexistent/token";
	CHECK_INT(push_new(&o, &p), -ENOENT);
	CHECK(p == NULL);
	push_free(NULL);
}

int main(int argc, char **argv)
{
	char cmd[600];

	if (argc != 6) {
		fprintf(stderr, "usage: %s RECEIVER_DIR PPROFDUMP PROTO_DIR PYTHON PROTOC\n", argv[0]);
		return 2;
	}
	receiver_dir = argv[1];
	pprofdump = argv[2];
	proto_dir = argv[3];
	python = argv[4];
	protoc = argv[5];
	if (!mkdtemp(workdir)) {
		perror("mkdtemp");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_WARN);

	test_bad_options();
	test_deliver(PUSH_PROTO_PUSH);
	test_deliver(PUSH_PROTO_INGEST);
	test_outage();
	test_rejected_and_too_old();
	test_retry_status("429");
	test_retry_status("503");
	test_queue_bound();
	test_auth();
	test_bearer();
	test_receiver_rules();
	test_stop_deadline();
	test_tls();
	test_huge_body();
	test_redirect_and_headers();

	if (!check_failures) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", workdir);
		(void)!system(cmd);
	} else {
		fprintf(stderr, "receiver logs kept in %s\n", workdir);
	}
	curl_global_cleanup();
	return check_exit("test_push");
}
