/* Self-metrics endpoint, scraped by a real HTTP client (the curl command line): the exposition
 * parses line by line, HELP/TYPE once per name, label values escaped, the process metrics
 * plausible; / , 404, 405, 431; an idle client does not hold up a scrape; the connection
 * limit answers 503; address errors. No root. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "metrics.h"

static int port;
static int scrapes;

static void collect(void *ctx, struct metrics_writer *w)
{
	int *n = ctx;

	(*n)++;
	metrics_counter(w, "ember_samples_total", "CPU samples aggregated.", NULL, 42);
	metrics_counter(w, "ember_samples_lost_total", "Samples dropped, by reason.",
			(const char *[]){ "reason", "stack_collision", NULL }, 3);
	metrics_counter(w, "ember_samples_lost_total", "Samples dropped, by reason.",
			(const char *[]){ "reason", "a\"b\\c\nd", NULL }, 1);
	metrics_gauge(w, "ember_processes_tracked", "Help with \\ and\nnewline.", NULL, 7);
	metrics_gauge(w, "ember_upload_queue_bytes", "Bytes queued.",
			(const char *[]){ "sink", "push", "tenant", "t1", NULL }, 0.25);
	metrics_summary(w, "ember_upload_latency_seconds", "Upload durations.", NULL, 1.5, 3);
	metrics_counter(w, "bad-name", "never shown", NULL, 1);
	metrics_counter(w, "ember_bad_label_total", "never shown",
			(const char *[]){ "0bad", "x", NULL }, 1);
	metrics_counter(w, "ember_big_total", "A large counter.", NULL, 12345678901234.0);
}

/* Runs curl -i on path; returns the whole answer (headers and body), caller frees. */
static char *curl(const char *extra, const char *path)
{
	char cmd[512], *buf = NULL;
	size_t len = 0, cap = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "curl -sS -i --max-time 1.5 %s 'http://127.0.0.1:%d%s'", extra,
		 port, path);
	p = popen(cmd, "r");
	if (!p)
		return NULL;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
			if (!buf)
				break;
		}
		size_t n = fread(buf + len, 1, cap - len - 1, p);
		if (n == 0)
			break;
		len += n;
	}
	pclose(p);
	if (buf)
		buf[len] = '\0';
	return buf;
}

static int status_of(const char *resp)
{
	int code = 0;

	if (resp)
		sscanf(resp, "HTTP/%*s %d", &code);
	return code;
}

static const char *body_of(const char *resp)
{
	const char *b = resp ? strstr(resp, "\r\n\r\n") : NULL;

	return b ? b + 4 : "";
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static bool name_ok(const char **p)
{
	const char *s = *p;

	if (!(isalpha((unsigned char)*s) || *s == '_' || *s == ':'))
		return false;
	while (isalnum((unsigned char)*s) || *s == '_' || *s == ':')
		s++;
	*p = s;
	return true;
}

/* Checks one line of the text format: a comment or name{labels} value. */
static bool line_ok(const char *line)
{
	const char *p = line;
	char *end;

	if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) {
		p = line + 7;
		if (!name_ok(&p) || *p != ' ')
			return false;
		if (line[2] == 'T')
			return !strcmp(p, " counter") || !strcmp(p, " gauge") || !strcmp(p, " summary");
		return true;
	}
	if (!name_ok(&p))
		return false;
	if (*p == '{') {
		p++;
		while (*p != '}') {
			if (!name_ok(&p) || *p++ != '=' || *p++ != '"')
				return false;
			while (*p != '"') {
				if (!*p)
					return false;
				if (*p == '\\') {
					p++;
					if (*p != '\\' && *p != '"' && *p != 'n')
						return false;
				}
				p++;
			}
			p++;
			if (*p == ',')
				p++;
		}
		p++;
	}
	if (*p++ != ' ')
		return false;
	strtod(p, &end);
	return end != p && *end == '\0';
}

/* Value of the sample line that starts with prefix (name and labels), or NAN. */
static double value_of(const char *body, const char *prefix)
{
	char needle[256];
	const char *p;

	snprintf(needle, sizeof(needle), "\n%s ", prefix);
	p = strstr(body, needle);
	return p ? strtod(p + strlen(needle), NULL) : NAN;
}

static int raw_connect(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads what the server sends until it closes (or 5 s pass); returns the byte count. */
static ssize_t raw_read_all(int fd, char *buf, size_t size)
{
	size_t len = 0;
	ssize_t n;

	while (len + 1 < size && (n = recv(fd, buf + len, size - 1 - len, 0)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	return (ssize_t)len;
}

static void test_scrape(void)
{
	char *resp = curl("", "/metrics"), *body, *line, *save = NULL;
	double now = (double)time(NULL), v;
	int lines = 0;

	CHECK_INT(status_of(resp), 200);
	CHECK(resp && strstr(resp, "Content-Type: text/plain; version=0.0.4"));
	CHECK_INT(scrapes, 1);
	body = strdup(body_of(resp));
	if (!body) {
		free(resp);
		return;
	}
	/* Layout of the agent's metrics: HELP and TYPE once, each label set on its line. */
	CHECK(strstr(body, "# HELP ember_samples_total CPU samples aggregated.\n"
			   "# TYPE ember_samples_total counter\n"
			   "ember_samples_total 42\n"));
	CHECK(strstr(body, "# HELP ember_samples_lost_total Samples dropped, by reason.\n"
			   "# TYPE ember_samples_lost_total counter\n"
			   "ember_samples_lost_total{reason=\"stack_collision\"} 3\n"
			   "ember_samples_lost_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n"));
	CHECK_INT(count(body, "# HELP ember_samples_lost_total "), 1);
	CHECK_INT(count(body, "# TYPE ember_samples_lost_total "), 1);
	CHECK(strstr(body, "# HELP ember_processes_tracked Help with \\\\ and\\nnewline.\n"
			   "# TYPE ember_processes_tracked gauge\n"
			   "ember_processes_tracked 7\n"));
	CHECK(strstr(body, "\nember_upload_queue_bytes{sink=\"push\",tenant=\"t1\"} 0.25\n"));
	CHECK(strstr(body, "# TYPE ember_upload_latency_seconds summary\n"
			   "ember_upload_latency_seconds_sum 1.5\n"
			   "ember_upload_latency_seconds_count 3\n"));
	CHECK(strstr(body, "\nember_big_total 12345678901234\n"));
	CHECK(!strstr(body, "bad-name"));
	CHECK(!strstr(body, "ember_bad_label_total"));

	/* The process metrics the module adds. */
	CHECK(strstr(body, "# TYPE ember_agent_cpu_seconds_total counter\n"));
	CHECK(strstr(body, "# TYPE ember_agent_resident_memory_bytes gauge\n"));
	CHECK(strstr(body, "# TYPE ember_agent_start_time_seconds gauge\n"));
	v = value_of(body, "ember_agent_cpu_seconds_total");
	CHECK(v >= 0 && v < 3600);
	v = value_of(body, "ember_agent_resident_memory_bytes");
	CHECK(v > 1024 * 1024 && v < 64.0 * 1024 * 1024 * 1024);
	v = value_of(body, "ember_agent_start_time_seconds");
	CHECK(v > now - 3600 && v <= now + 1);

	/* Every line parses as the text format; the body ends with a newline. */
	CHECK(body[0] && body[strlen(body) - 1] == '\n');
	for (line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lines++;
		if (!line_ok(line)) {
			fprintf(stderr, "bad exposition line: %s\n", line);
			CHECK(!"line parses");
		}
	}
	CHECK(lines >= 25);
	free(body);
	free(resp);
}

static void test_http(void)
{
	char *resp;

	resp = curl("", "/");
	CHECK_INT(status_of(resp), 200);
	CHECK(strstr(body_of(resp), "/metrics"));
	free(resp);
	resp = curl("", "/nope");
	CHECK_INT(status_of(resp), 404);
	free(resp);
	resp = curl("-X POST -d x=1", "/metrics");
	CHECK_INT(status_of(resp), 405);
	CHECK(resp && strstr(resp, "Allow: GET"));
	free(resp);
	resp = curl("", "/metrics?x=1");
	CHECK_INT(status_of(resp), 200);
	free(resp);
}

static void test_slow_clients(void)
{
	char buf[4096], big[9000];
	int idle, partial, huge;
	char *resp;

	/* One client connects and sends nothing, another stops mid-request: a scrape still
	 * completes within curl's 1.5 s, before the server's 2 s timeout could have helped. */
	idle = raw_connect();
	partial = raw_connect();
	CHECK(idle >= 0 && partial >= 0);
	CHECK(send(partial, "GET /met", 8, MSG_NOSIGNAL) == 8);
	resp = curl("", "/metrics");
	CHECK_INT(status_of(resp), 200);
	CHECK(resp && strstr(resp, "ember_samples_total 42"));
	free(resp);
	/* Then the server drops both: recv sees EOF, with no answer. */
	CHECK_INT(raw_read_all(idle, buf, sizeof(buf)), 0);
	CHECK_INT(raw_read_all(partial, buf, sizeof(buf)), 0);
	close(idle);
	close(partial);

	/* A request head over 8 KiB is answered 431. */
	huge = raw_connect();
	CHECK(huge >= 0);
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /metrics HTTP/1.1\r\nX-Pad: ", 30);
	CHECK(send(huge, big, sizeof(big), MSG_NOSIGNAL) == (ssize_t)sizeof(big));
	raw_read_all(huge, buf, sizeof(buf));
	CHECK(!strncmp(buf, "HTTP/1.1 431 ", 13));
	close(huge);
}

static void test_conn_limit(void)
{
	int fds[METRICS_MAX_CONNS + 1];
	char buf[512];

	/* Connections are accepted in order: the one past the limit gets 503 at once. */
	for (int i = 0; i <= METRICS_MAX_CONNS; i++) {
		fds[i] = raw_connect();
		CHECK(fds[i] >= 0);
	}
	if (fds[METRICS_MAX_CONNS] >= 0) {
		raw_read_all(fds[METRICS_MAX_CONNS], buf, sizeof(buf));
		CHECK(!strncmp(buf, "HTTP/1.1 503 ", 13));
	}
	for (int i = 0; i <= METRICS_MAX_CONNS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* A slowloris: 100 connections that never finish their request, reopened as the server
 * drops them. Scrapes still answer (the oldest slow connection makes way), in time. */
static void test_slowloris(void)
{
	int fds[100];
	char *resp;

	for (int i = 0; i < 100; i++) {
		fds[i] = raw_connect();
		if (fds[i] >= 0)
			(void)send(fds[i], "GET /met", 8, MSG_NOSIGNAL);
	}
	usleep((METRICS_EVICT_GRACE_MS + 100) * 1000);
	for (int round = 0; round < 3; round++) {
		struct timespec t0, t1;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		resp = curl("", "/metrics");
		clock_gettime(CLOCK_MONOTONIC, &t1);
		CHECK_INT(status_of(resp), 200);
		CHECK(resp && strstr(resp, "ember_metrics_connections_dropped_total{reason=\"evicted\"}"));
		CHECK((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9 < 1.0);
		free(resp);
		/* The attacker reconnects what was dropped. */
		for (int i = 0; i < 100; i++) {
			char c;

			if (fds[i] >= 0 && recv(fds[i], &c, 1, MSG_DONTWAIT) == 0) {
				close(fds[i]);
				fds[i] = raw_connect();
				if (fds[i] >= 0)
					(void)send(fds[i], "GET /met", 8, MSG_NOSIGNAL);
			}
		}
		usleep((METRICS_EVICT_GRACE_MS + 50) * 1000);
	}
	for (int i = 0; i < 100; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Out of descriptors: the server neither spins nor stays stuck. The client sockets are made
 * first, the soft limit is lowered to what is open, then they connect (the kernel completes
 * the handshake) and the server's accept() fails EMFILE. */
static void test_emfile(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct rlimit old, low;
	int fds[8], maxfd = 0;
	double c0, c1;
	char *resp;

	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	CHECK_INT(getrlimit(RLIMIT_NOFILE, &old), 0);
	for (int i = 0; i < 8; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] > maxfd)
			maxfd = fds[i];
	}
	low = old;
	low.rlim_cur = (rlim_t)maxfd + 1;
	CHECK_INT(setrlimit(RLIMIT_NOFILE, &low), 0);
	for (int i = 0; i < 8; i++)
		CHECK_INT(connect(fds[i], (struct sockaddr *)&sin, sizeof(sin)), 0);
	c0 = cpu_s();
	usleep(600000);
	c1 = cpu_s();
	CHECK(c1 - c0 < 0.2); /* a busy accept loop burns the whole 0.6 s */
	CHECK_INT(setrlimit(RLIMIT_NOFILE, &old), 0);
	for (int i = 0; i < 8; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	usleep(METRICS_ACCEPT_BACKOFF_MS * 1000 + 200000);
	/* Accepting resumes after the backoff; on a loaded machine the first scrape may still
	 * time out: ask again (for up to ~8 s) rather than guess a longer sleep. */
	resp = curl("", "/metrics");
	for (int i = 0; i < 4 && status_of(resp) != 200; i++) {
		free(resp);
		usleep(500000);
		resp = curl("", "/metrics");
	}
	CHECK_INT(status_of(resp), 200);
	CHECK(resp && value_of(body_of(resp),
			       "ember_metrics_connections_dropped_total{reason=\"no_fds\"}") >= 1);
	free(resp);
}

static void test_addr(void)
{
	struct metrics *m = NULL, *m2 = NULL;
	char addr[64];

	CHECK_INT(metrics_start("nonsense", NULL, NULL, &m), -EINVAL);
	CHECK_INT(metrics_start("127.0.0.1:", NULL, NULL, &m), -EINVAL);
	CHECK_INT(metrics_start("127.0.0.1:65536", NULL, NULL, &m), -EINVAL);
	CHECK_INT(metrics_start("127.0.0.1:8x", NULL, NULL, &m), -EINVAL);
	CHECK_INT(metrics_start("::1:9000", NULL, NULL, &m), -EINVAL);
	CHECK_INT(metrics_start("[::1:9000", NULL, NULL, &m), -EINVAL);
	CHECK_INT(metrics_start("999.1.1.1:0", NULL, NULL, &m), -EINVAL);
	CHECK(m == NULL);

	/* ":PORT" binds loopback; a taken port is -EADDRINUSE. */
	CHECK_INT(metrics_start(":0", NULL, NULL, &m), 0);
	if (!m)
		return;
	CHECK(metrics_port(m) > 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", metrics_port(m));
	CHECK_INT(metrics_start(addr, NULL, NULL, &m2), -EADDRINUSE);
	CHECK(m2 == NULL);
	metrics_stop(m);
	metrics_stop(NULL);
}

int main(void)
{
	struct metrics *m = NULL;
	int err;

	test_addr();
	err = metrics_start("127.0.0.1:0", collect, &scrapes, &m);
	CHECK_INT(err, 0);
	if (err)
		return check_exit("metrics");
	port = metrics_port(m);
	CHECK(port > 0);
	test_scrape();
	test_http();
	test_slow_clients();
	test_conn_limit();
	test_slowloris();
	test_emfile();
	metrics_stop(m);
	return check_exit("metrics");
}
