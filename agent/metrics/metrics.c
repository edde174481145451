#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define METRICS_NAME_MAX 200
/* Regular slots, then spare ones that a connection gets on probation (see metrics_slot). */
#define METRICS_SLOTS (METRICS_MAX_CONNS + METRICS_SPARE_CONNS)
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_writer {
	char *buf;
	size_t len, cap;
	bool full;                         /* METRICS_MAX_BODY reached: nothing more is added */
	char last[METRICS_NAME_MAX + 1];   /* name whose HELP/TYPE were written last */
};

struct metrics_conn {
	int fd;                            /* -1: free slot */
	bool writing;                      /* request read, answer being sent */
	int64_t deadline_ms;               /* CLOCK_MONOTONIC; closed when reached */
	int64_t accepted_ms;               /* CLOCK_MONOTONIC */
	bool probation;                    /* in a spare slot: 503 unless its request comes soon */
	size_t req_len;
	char req[METRICS_MAX_REQUEST];
	char *out;
	size_t out_len, out_off;
};

struct metrics {
	int listen_fd;
	int wake_fd;                       /* eventfd: metrics_stop() wakes the thread */
	pthread_t thread;
	bool started;
	metrics_collect_fn fn;
	void *ctx;
	double start_time;                 /* process start, seconds since the epoch */
	struct metrics_conn conns[METRICS_SLOTS];
	/* Metrics thread only. */
	int reserve_fd;                    /* /dev/null, given up to accept-and-close on EMFILE */
	int64_t accept_paused_until_ms;    /* out of descriptors: the listen socket waits */
	uint64_t conns_dropped[METRICS_DROP_MAX];
};

static const char *const conn_drop_names[METRICS_DROP_MAX] = {
	[METRICS_DROP_BUSY] = "busy",
	[METRICS_DROP_EVICTED] = "evicted",
	[METRICS_DROP_NO_FDS] = "no_fds",
	[METRICS_DROP_TIMEOUT] = "timeout",
};

/* ---- exposition writer ---------------------------------------------------------------- */

static void wr_append(struct metrics_writer *w, const char *s, size_t n)
{
	if (w->full)
		return;
	if (n > METRICS_MAX_BODY - w->len) {
		w->full = true;
		return;
	}
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		char *buf;

		while (cap < w->len + n)
			cap *= 2;
		if (cap > METRICS_MAX_BODY)
			cap = METRICS_MAX_BODY;
		buf = realloc(w->buf, cap);
		if (!buf) {
			w->full = true;
			return;
		}
		w->buf = buf;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

static void wr_str(struct metrics_writer *w, const char *s)
{
	wr_append(w, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void wr_printf(struct metrics_writer *w, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		w->full = true;  /* only numbers go through here; cannot happen */
		return;
	}
	wr_append(w, tmp, (size_t)n);
}

/* Escapes '\\' and '\n', and '"' too when quote is set (label values; HELP keeps quotes). */
static void wr_escaped(struct metrics_writer *w, const char *s, bool quote)
{
	const char *run = s;

	for (; *s; s++) {
		const char *esc = NULL;

		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (*s == '"' && quote)
			esc = "\\\"";
		if (!esc)
			continue;
		wr_append(w, run, (size_t)(s - run));
		wr_str(w, esc);
		run = s + 1;
	}
	wr_append(w, run, (size_t)(s - run));
}

/* Integral values print as integers (counters read naturally); others with 15 significant
 * digits when that reads back as the same double (0.0013, not 0.0013339999999999999), else 17. */
static void wr_value(struct metrics_writer *w, double v)
{
	char tmp15[32];

	snprintf(tmp15, sizeof(tmp15), "%.15g", v);
	if (v != v)
		wr_str(w, "NaN");
	else if (v > 1.7976931348623157e308)
		wr_str(w, "+Inf");
	else if (v < -1.7976931348623157e308)
		wr_str(w, "-Inf");
	else if (v > -9e15 && v < 9e15 && v == (double)(long long)v)
		wr_printf(w, "%lld", (long long)v);
	else
		wr_printf(w, "%.*g", strtod(tmp15, NULL) == v ? 15 : 17, v);
}

static bool metrics_valid_name(const char *s, bool colon)
{
	size_t n = 0;

	if (!s || !*s)
		return false;
	for (; s[n]; n++) {
		char c = s[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			  (colon && c == ':') || (n > 0 && c >= '0' && c <= '9');

		if (!ok || n >= METRICS_NAME_MAX)
			return false;
	}
	return true;
}

static void wr_sample(struct metrics_writer *w, const char *name, const char *suffix,
		      const char *const *labels, double value)
{
	wr_str(w, name);
	wr_str(w, suffix);
	if (labels && labels[0]) {
		wr_str(w, "{");
		for (size_t i = 0; labels[i] && labels[i + 1]; i += 2) {
			if (i)
				wr_str(w, ",");
			wr_str(w, labels[i]);
			wr_str(w, "=\"");
			wr_escaped(w, labels[i + 1], true);
			wr_str(w, "\"");
		}
		wr_str(w, "}");
	}
	wr_str(w, " ");
	wr_value(w, value);
	wr_str(w, "\n");
}

/* Writes HELP/TYPE (unless name was the last one written) and n samples, or nothing at all
 * when the body limit is reached midway. */
static void wr_metric(struct metrics_writer *w, const char *name, const char *help,
		      const char *type, const char *const *labels, size_t n,
		      const char *const *suffixes, const double *values)
{
	size_t mark;

	if (!w || w->full)
		return;
	mark = w->len;
	if (!metrics_valid_name(name, true)) {
		log_debug("metrics: invalid metric name '%s'", name ? name : "(null)");
		return;
	}
	for (size_t i = 0; labels && labels[i]; i += 2) {
		if (!labels[i + 1] || !metrics_valid_name(labels[i], false) ||
		    (labels[i][0] == '_' && labels[i][1] == '_')) {
			log_debug("metrics: %s: invalid label '%s'", name, labels[i]);
			return;
		}
	}
	if (strcmp(w->last, name)) {
		wr_str(w, "# HELP ");
		wr_str(w, name);
		wr_str(w, " ");
		wr_escaped(w, help ? help : "", false);
		wr_str(w, "\n# TYPE ");
		wr_str(w, name);
		wr_str(w, " ");
		wr_str(w, type);
		wr_str(w, "\n");
	}
	for (size_t i = 0; i < n; i++)
		wr_sample(w, name, suffixes[i], labels, values[i]);
	if (w->full) {
		w->len = mark;
		log_debug("metrics: body limit of %u bytes reached at %s", METRICS_MAX_BODY, name);
		return;
	}
	snprintf(w->last, sizeof(w->last), "%s", name);
}

void metrics_counter(struct metrics_writer *w, const char *name, const char *help,
		     const char *const *labels, double value)
{
	wr_metric(w, name, help, "counter", labels, 1, (const char *[]){ "" }, &value);
}

void metrics_gauge(struct metrics_writer *w, const char *name, const char *help,
		   const char *const *labels, double value)
{
	wr_metric(w, name, help, "gauge", labels, 1, (const char *[]){ "" }, &value);
}

void metrics_summary(struct metrics_writer *w, const char *name, const char *help,
		     const char *const *labels, double sum, uint64_t count)
{
	wr_metric(w, name, help, "summary", labels, 2, (const char *[]){ "_sum", "_count" },
		  (const double[]){ sum, (double)count });
}

/* ---- process metrics ------------------------------------------------------------------ */

static double metrics_now_realtime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t metrics_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads a small /proc file into buf (NUL-terminated); returns its length or -errno. */
static ssize_t metrics_read_proc(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -errno;
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
	return (ssize_t)n;
}

/* Process start from /proc/self/stat (field 22, ticks after boot) and /proc/stat btime;
 * now when either is unreadable. */
static double metrics_process_start(void)
{
	char buf[4096], *p;
	unsigned long long ticks = 0, btime = 0;
	long hz = sysconf(_SC_CLK_TCK);

	if (hz <= 0 || metrics_read_proc("/proc/self/stat", buf, sizeof(buf)) <= 0)
		return metrics_now_realtime();
	p = strrchr(buf, ')');  /* comm may hold spaces and ')' */
	/* After ")": state is field 3, starttime field 22. */
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
			 &ticks) != 1)
		return metrics_now_realtime();
	if (metrics_read_proc("/proc/stat", buf, sizeof(buf)) <= 0 || !(p = strstr(buf, "\nbtime ")) ||
	    sscanf(p + 7, "%llu", &btime) != 1)
		return metrics_now_realtime();
	return (double)btime + (double)ticks / (double)hz;
}

static void metrics_process(struct metrics *m, struct metrics_writer *w)
{
	struct rusage ru;
	char buf[4096], *p;
	unsigned long long kb;

	if (getrusage(RUSAGE_SELF, &ru) == 0)
		metrics_counter(w, "ember_agent_cpu_seconds_total",
				"User and system CPU time of the agent process, in seconds.", NULL,
				(double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
				(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	if (metrics_read_proc("/proc/self/status", buf, sizeof(buf)) > 0 &&
	    (p = strstr(buf, "VmRSS:")) && sscanf(p + 6, "%llu", &kb) == 1)
		metrics_gauge(w, "ember_agent_resident_memory_bytes",
			      "Resident set size of the agent process, in bytes.", NULL,
			      (double)kb * 1024.0);
	metrics_gauge(w, "ember_agent_start_time_seconds",
		      "Start time of the agent process, in seconds since the Unix epoch.", NULL,
		      m->start_time);
	for (int i = 0; i < METRICS_DROP_MAX; i++)
		metrics_counter(w, "ember_metrics_connections_dropped_total",
				"Connections to this endpoint closed unanswered, by reason",
				(const char *[]){ "reason", conn_drop_names[i], NULL },
				(double)m->conns_dropped[i]);
}

/* ---- HTTP ----------------------------------------------------------------------------- */

static void metrics_conn_close(struct metrics_conn *c)
{
	char drain[512];

	if (c->fd < 0)
		return;
	/* Read what the client sent past the request head, so close() sends FIN, not RST. */
	while (recv(c->fd, drain, sizeof(drain), MSG_DONTWAIT) > 0)
		;
	close(c->fd);
	free(c->out);
	c->fd = -1;
	c->out = NULL;
	c->writing = false;
	c->req_len = c->out_len = c->out_off = 0;
}

/* Sets c->out to a full response; the body is copied. Returns 0 or -ENOMEM. */
static int metrics_respond(struct metrics_conn *c, const char *status, const char *ctype,
			   const char *extra, const char *body, size_t body_len)
{
	char hdr[256];
	int n;

	n = snprintf(hdr, sizeof(hdr),
		     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
		     status, ctype, body_len, extra ? extra : "");
	if (n < 0 || (size_t)n >= sizeof(hdr))
		return -EINVAL;
	c->out = malloc((size_t)n + body_len);
	if (!c->out)
		return -ENOMEM;
	memcpy(c->out, hdr, (size_t)n);
	if (body_len)
		memcpy(c->out + n, body, body_len);
	c->out_len = (size_t)n + body_len;
	c->out_off = 0;
	return 0;
}

static int metrics_respond_text(struct metrics_conn *c, const char *status, const char *extra,
				const char *body)
{
	return metrics_respond(c, status, "text/plain; charset=utf-8", extra, body, strlen(body));
}

static int metrics_scrape(struct metrics *m, struct metrics_conn *c)
{
	struct metrics_writer w = {0};
	int err;

	if (m->fn)
		m->fn(m->ctx, &w);
	metrics_process(m, &w);
	err = metrics_respond(c, "200 OK", METRICS_CONTENT_TYPE, NULL, w.buf, w.len);
	free(w.buf);
	return err;
}

/* Answers a complete request head in c->req. */
static int metrics_handle(struct metrics *m, struct metrics_conn *c)
{
	char *line = c->req, *method, *target, *version, *save = NULL, *q;

	line[strcspn(line, "\r\n")] = '\0';
	method = strtok_r(line, " ", &save);
	target = strtok_r(NULL, " ", &save);
	version = strtok_r(NULL, " ", &save);
	if (!method || !target || !version || strncmp(version, "HTTP/", 5) || target[0] != '/')
		return metrics_respond_text(c, "400 Bad Request", NULL, "bad request\n");
	if (strcmp(method, "GET"))
		return metrics_respond_text(c, "405 Method Not Allowed", "Allow: GET\r\n",
					    "method not allowed\n");
	q = strchr(target, '?');
	if (q)
		*q = '\0';
	if (!strcmp(target, "/metrics"))
		return metrics_scrape(m, c);
	if (!strcmp(target, "/"))
		return metrics_respond_text(c, "200 OK", NULL,
					    "Ember agent self-metrics: see /metrics\n");
	return metrics_respond_text(c, "404 Not Found", NULL, "not found\n");
}

static void metrics_conn_write(struct metrics_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			break;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len)
		(void)shutdown(c->fd, SHUT_WR);
	metrics_conn_close(c);
}

static void metrics_conn_read(struct metrics *m, struct metrics_conn *c)
{
	for (;;) {
		size_t room = sizeof(c->req) - 1 - c->req_len;
		ssize_t n;

		if (room == 0) {
			if (metrics_respond_text(c, "431 Request Header Fields Too Large", NULL,
						 "request too large\n"))
				goto close;
			break;
		}
		n = recv(c->fd, c->req + c->req_len, room, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			goto close;
		}
		if (n == 0)
			goto close;
		c->req_len += (size_t)n;
		c->req[c->req_len] = '\0';
		if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
			if (metrics_handle(m, c))
				goto close;
			break;
		}
	}
	c->writing = true;
	c->deadline_ms = metrics_now_ms() + METRICS_TIMEOUT_MS;
	metrics_conn_write(c);
	return;
close:
	metrics_conn_close(c);
}

/* Out of descriptors: the waiting client is accepted into the reserve descriptor's place and
 * closed, so that the listening socket does not stay readable (a busy loop), and accepting
 * pauses for a second. */
static void metrics_accept_no_fds(struct metrics *m, int err)
{
	if (m->reserve_fd >= 0) {
		int fd;

		close(m->reserve_fd);
		fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			close(fd);
		m->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	m->conns_dropped[METRICS_DROP_NO_FDS]++;
	m->accept_paused_until_ms = metrics_now_ms() + METRICS_ACCEPT_BACKOFF_MS;
	log_debug("metrics: accept: %s; pausing", strerror(err));
}

static void metrics_send_busy(int fd)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
				   "Connection: close\r\n\r\n";

	(void)send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* The oldest connection in slots [from, to) that is still waiting for its request and was
 * accepted at or before `before`; NULL if none. */
static struct metrics_conn *metrics_oldest_reading(struct metrics *m, size_t from, size_t to,
						   int64_t before)
{
	struct metrics_conn *oldest = NULL;

	for (size_t i = from; i < to; i++) {
		struct metrics_conn *c = &m->conns[i];

		if (c->fd >= 0 && !c->writing && c->accepted_ms <= before &&
		    (!oldest || c->accepted_ms < oldest->accepted_ms))
			oldest = c;
	}
	return oldest;
}

/* Where a new connection goes, so that slow clients cannot keep a scraper (which sends its
 * request as soon as it connects) out:
 *   1. a free regular slot;
 *   2. the regular slot of the oldest connection that has not sent its request
 *      METRICS_EVICT_GRACE_MS after it connected (a slow client), which is closed;
 *   3. a free spare slot, on probation: answered 503 unless its request comes within
 *      METRICS_EVICT_GRACE_MS;
 *   4. the spare slot of the oldest connection on probation still without its request.
 * NULL when every slot is answering: the new connection is answered 503. */
static struct metrics_conn *metrics_slot(struct metrics *m)
{
	int64_t now = metrics_now_ms();
	struct metrics_conn *c;

	for (size_t i = 0; i < METRICS_MAX_CONNS; i++)
		if (m->conns[i].fd < 0) {
			m->conns[i].probation = false;
			return &m->conns[i];
		}
	c = metrics_oldest_reading(m, 0, METRICS_MAX_CONNS, now - METRICS_EVICT_GRACE_MS);
	if (c) {
		metrics_conn_close(c);
		m->conns_dropped[METRICS_DROP_EVICTED]++;
		c->probation = false;
		return c;
	}
	for (size_t i = METRICS_MAX_CONNS; i < METRICS_SLOTS; i++)
		if (m->conns[i].fd < 0) {
			m->conns[i].probation = true;
			return &m->conns[i];
		}
	c = metrics_oldest_reading(m, METRICS_MAX_CONNS, METRICS_SLOTS, INT64_MAX);
	if (c) {
		metrics_send_busy(c->fd);
		metrics_conn_close(c);
		m->conns_dropped[METRICS_DROP_EVICTED]++;
		c->probation = true;
	}
	return c;
}

static void metrics_accept(struct metrics *m)
{
	for (;;) {
		struct metrics_conn *c;
		int fd = accept4(m->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				metrics_accept_no_fds(m, errno);
			else if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_debug("metrics: accept: %s", strerror(errno));
			return;
		}
		c = metrics_slot(m);
		if (!c) {
			metrics_send_busy(fd);
			close(fd);
			m->conns_dropped[METRICS_DROP_BUSY]++;
			continue;
		}
		c->fd = fd;
		c->writing = false;
		c->req_len = 0;
		c->accepted_ms = metrics_now_ms();
		c->deadline_ms = c->accepted_ms +
				 (c->probation ? METRICS_EVICT_GRACE_MS : METRICS_TIMEOUT_MS);
		/* A request already there is served at once, before later connections. */
		metrics_conn_read(m, c);
	}
}

static void *metrics_thread(void *arg)
{
	struct metrics *m = arg;
	struct pollfd pfds[2 + METRICS_SLOTS];
	int slot[2 + METRICS_SLOTS];

	for (;;) {
		int64_t now = metrics_now_ms(), next = -1;
		nfds_t nfds = 2;
		int timeout, n;

		pfds[0] = (struct pollfd){ .fd = m->wake_fd, .events = POLLIN };
		pfds[1] = (struct pollfd){ .fd = m->listen_fd, .events = POLLIN };
		if (m->accept_paused_until_ms > now) {
			pfds[1].fd = -1;
			next = m->accept_paused_until_ms;
		}
		for (int i = 0; i < METRICS_SLOTS; i++) {
			struct metrics_conn *c = &m->conns[i];

			if (c->fd < 0)
				continue;
			if (now >= c->deadline_ms) {
				if (c->probation && !c->writing) {
					metrics_send_busy(c->fd);
					m->conns_dropped[METRICS_DROP_BUSY]++;
				} else {
					m->conns_dropped[METRICS_DROP_TIMEOUT]++;
				}
				metrics_conn_close(c);
				continue;
			}
			if (next < 0 || c->deadline_ms < next)
				next = c->deadline_ms;
			slot[nfds] = i;
			pfds[nfds++] = (struct pollfd){ .fd = c->fd,
							.events = c->writing ? POLLOUT : POLLIN };
		}
		timeout = next < 0 ? -1 : (int)(next - now);
		n = poll(pfds, nfds, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_debug("metrics: poll: %s", strerror(errno));
			break;
		}
		if (pfds[0].revents)
			break;
		for (nfds_t k = 2; k < nfds; k++) {
			struct metrics_conn *c = &m->conns[slot[k]];

			if (!pfds[k].revents)
				continue;
			if (c->writing)
				metrics_conn_write(c);
			else
				metrics_conn_read(m, c);
		}
		if (pfds[1].revents)
			metrics_accept(m);
	}
	for (int i = 0; i < METRICS_SLOTS; i++)
		metrics_conn_close(&m->conns[i]);
	return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" into host and port strings. */
static int metrics_parse_addr(const char *addr, char *host, size_t hostsz, char *port,
			      size_t portsz)
{
	const char *colon, *h = addr;
	size_t hlen;

	if (!addr)
		return -EINVAL;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		h = addr + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -EINVAL;
		hlen = (size_t)(colon - addr);
		if (memchr(addr, ':', hlen))
			return -EINVAL;  /* an IPv6 address needs brackets */
	}
	if (hlen >= hostsz)
		return -EINVAL;
	if (hlen == 0)
		snprintf(host, hostsz, "127.0.0.1");
	else
		snprintf(host, hostsz, "%.*s", (int)hlen, h);
	colon++;
	if (!*colon || strlen(colon) > 5 || strspn(colon, "0123456789") != strlen(colon) ||
	    atoi(colon) > 65535 || strlen(colon) >= portsz)
		return -EINVAL;
	snprintf(port, portsz, "%s", colon);
	return 0;
}

static int metrics_listen(const char *addr)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | AI_PASSIVE };
	struct addrinfo *res = NULL, *ai;
	char host[256], port[8];
	int fd = -1, err, one = 1;

	err = metrics_parse_addr(addr, host, sizeof(host), port, sizeof(port));
	if (err) {
		log_debug("metrics: '%s': not HOST:PORT", addr ? addr : "(null)");
		return err;
	}
	err = getaddrinfo(host, port, &hints, &res);
	if (err) {
		log_debug("metrics: %s: %s", host, gai_strerror(err));
		if (err == EAI_SYSTEM)
			return errno ? -errno : -EINVAL;
		return err == EAI_MEMORY ? -ENOMEM : err == EAI_AGAIN ? -EAGAIN : -EINVAL;
	}
	err = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, METRICS_MAX_CONNS) == 0) {
			err = 0;
			break;
		}
		err = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (err)
		log_debug("metrics: %s: cannot listen: %s", addr, strerror(-err));
	return err ? err : fd;
}

int metrics_start(const char *addr, metrics_collect_fn fn, void *ctx, struct metrics **ret_metrics)
{
	struct metrics *m = NULL;
	sigset_t all, old;
	int err;

	if (!ret_metrics)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->listen_fd = m->wake_fd = -1;
	m->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	for (int i = 0; i < METRICS_SLOTS; i++)
		m->conns[i].fd = -1;
	m->fn = fn;
	m->ctx = ctx;
	m->start_time = metrics_process_start();

	m->listen_fd = metrics_listen(addr);
	if (m->listen_fd < 0) {
		err = m->listen_fd;
		goto err_free;
	}
	m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->wake_fd < 0) {
		err = -errno;
		goto err_free;
	}
	/* The thread takes no signals: SIGINT/SIGTERM stay with the agent's main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(&m->thread, NULL, metrics_thread, m);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		goto err_free;
	m->started = true;
	*ret_metrics = m;
	return 0;

err_free:
	metrics_stop(m);
	return err;
}

int metrics_port(const struct metrics *m)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (!m || getsockname(m->listen_fd, (struct sockaddr *)&ss, &len) < 0)
		return m ? -errno : -EINVAL;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}

void metrics_stop(struct metrics *m)
{
	if (!m)
		return;
	if (m->started) {
		uint64_t one = 1;

		(void)!write(m->wake_fd, &one, sizeof(one));
		pthread_join(m->thread, NULL);
	}
	if (m->wake_fd >= 0)
		close(m->wake_fd);
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	if (m->reserve_fd >= 0)
		close(m->reserve_fd);
	free(m);
}
