#include "push.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "log.h"
#include "metrics.h"
#include "push.pb-c.h"

#define PUSH_DEFAULT_QUEUE_BYTES (64u << 20)
#define PUSH_DEFAULT_TIMEOUT_S   10.0
#define PUSH_DEFAULT_BACKOFF_MIN 0.5
#define PUSH_DEFAULT_BACKOFF_MAX 30.0
/* Pyroscope's reject_older_than is 1 h (PYROSCOPE.md §4); keep a margin for the request. */
#define PUSH_DEFAULT_MAX_AGE_NS  (55LL * 60 * 1000000000LL)
#define PUSH_RESP_MAX            4096
/* A server's response headers beyond this are not read: the transfer is cut. Pyroscope's
 * are a few hundred bytes. */
#define PUSH_HEADERS_MAX         (64u << 10)
#define PUSH_WARNED_MAX          32
#define PUSH_TOKEN_MAX           16384

struct push_item {
	struct push_item *next;
	struct upload *u;
	size_t bytes;      /* upload_size(u), what the queue bound counts */
	uint8_t *body;     /* PushRequest, packed on the first attempt (push protocol) */
	size_t body_len;
	char *url;         /* /ingest URL with this upload's name and times (ingest protocol) */
	unsigned attempts;
};

struct push_warned {
	long status;
	uint64_t hash;
};

struct push {
	/* Set by push_new(), read-only afterwards. */
	char *push_url;          /* server + /push.v1.PusherService/Push */
	char *server;            /* without a trailing '/' */
	enum push_protocol protocol;
	char *tenant_id;
	char *basic_user;
	char *basic_password;
	char *bearer_header;     /* "Authorization: Bearer ..." */
	char *ca_file;
	char *spy_name;
	size_t queue_max_bytes;
	double timeout_s, backoff_min_s, backoff_max_s;
	int64_t max_age_ns;
	bool curl_global;

	/* Sender thread only. */
	CURL *curl;
	struct curl_slist *headers;
	char errbuf[CURL_ERROR_SIZE];
	char resp[PUSH_RESP_MAX];
	size_t resp_len;
	bool resp_truncated;     /* the body went past resp[]: the transfer was cut there */
	size_t hdr_bytes;
	bool hdr_overflow;       /* the headers went past PUSH_HEADERS_MAX */
	uint64_t rng;
	unsigned fail_streak;    /* consecutive retryable failures: the backoff exponent */
	bool outage;
	struct push_warned warned[PUSH_WARNED_MAX];
	unsigned nwarned;

	/* Under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;     /* CLOCK_MONOTONIC; signalled on submit and stop */
	pthread_t thread;
	bool thread_running, stopping, joining;
	struct push_item *head, *tail;
	struct push_item *inflight;  /* being sent; stays linked unless evicted */
	bool inflight_evicted;       /* unlinked and counted as queue_full while being sent */
	struct push_stats stats;

	_Atomic int64_t deadline_ns; /* CLOCK_MONOTONIC stop deadline, INT64_MAX until push_stop */
};

enum send_result { SEND_OK, SEND_RETRY, SEND_REJECT, SEND_REDIRECT, SEND_ABORT };

static const char *const drop_names[PUSH_DROP_MAX] = {
	[PUSH_DROP_QUEUE_FULL] = "queue_full",
	[PUSH_DROP_TOO_OLD] = "too_old",
	[PUSH_DROP_REJECTED] = "rejected_4xx",
	[PUSH_DROP_REDIRECT] = "redirect_3xx",
	[PUSH_DROP_SHUTDOWN] = "shutdown",
};

const char *push_drop_reason_name(enum push_drop_reason r)
{
	return (unsigned)r < PUSH_DROP_MAX ? drop_names[r] : "unknown";
}

static const char *const error_names[PUSH_ERR_MAX] = {
	[PUSH_ERR_TLS] = "tls",
	[PUSH_ERR_DNS] = "dns",
	[PUSH_ERR_CONNECT] = "connect",
	[PUSH_ERR_TIMEOUT] = "timeout",
	[PUSH_ERR_PROTOCOL] = "protocol",
	[PUSH_ERR_OTHER] = "other",
};

const char *push_error_kind_name(enum push_error_kind k)
{
	return (unsigned)k < PUSH_ERR_MAX ? error_names[k] : "unknown";
}

static enum push_error_kind error_kind(CURLcode rc)
{
	switch (rc) {
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_USE_SSL_FAILED:
		return PUSH_ERR_TLS;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return PUSH_ERR_DNS;
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		return PUSH_ERR_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return PUSH_ERR_TIMEOUT;
	case CURLE_GOT_NOTHING:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_PARTIAL_FILE:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_WRITE_ERROR: /* only the headers bound gets here */
		return PUSH_ERR_PROTOCOL;
	default:
		return PUSH_ERR_OTHER;
	}
}

size_t push_redact_url(const char *url, char *buf, size_t n)
{
	const char *host = url ? strstr(url, "://") : NULL, *end, *at = NULL;
	int len;

	if (!n)
		return 0;
	if (!url) {
		buf[0] = '\0';
		return 0;
	}
	if (host) {
		host += 3;
		/* The authority ends at the first '/', '?' or '#'; its last '@' ends the userinfo. */
		end = host + strcspn(host, "/?#");
		for (const char *q = host; q < end; q++)
			if (*q == '@')
				at = q;
	}
	if (at)
		len = snprintf(buf, n, "%.*s***%s", (int)(host - url), url, at);
	else
		len = snprintf(buf, n, "%s", url);
	return len < 0 ? 0 : (size_t)len;
}

static int64_t clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct timespec ns_to_timespec(int64_t ns)
{
	return (struct timespec){ .tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL };
}

static void item_free(struct push_item *it)
{
	if (!it)
		return;
	upload_free(it->u);
	free(it->body);
	free(it->url);
	free(it);
}

static char *strdup_or_null(const char *s, bool *oom)
{
	char *r;

	if (!s)
		return NULL;
	r = strdup(s);
	if (!r)
		*oom = true;
	return r;
}

static void secret_free(char *s)
{
	if (!s)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

/* Reads a bearer token file: the whole file, trailing whitespace removed. */
static int read_token_file(const char *path, char **ret_token)
{
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int fd = -1, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		log_debug("push: %s: %s", path, strerror(-err));
		return err;
	}
	buf = malloc(PUSH_TOKEN_MAX + 1);
	if (!buf) {
		err = -ENOMEM;
		goto close_fd;
	}
	while ((n = read(fd, buf + len, PUSH_TOKEN_MAX - len)) > 0)
		len += (size_t)n;
	if (n < 0) {
		err = -errno;
		log_debug("push: %s: %s", path, strerror(-err));
		goto free_buf;
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
		       buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	if (!len || strpbrk(buf, "\r\n")) {
		log_debug("push: %s: empty or multi-line token", path);
		err = -EINVAL;
		goto free_buf;
	}
	close(fd);
	*ret_token = buf;
	return 0;

free_buf:
	explicit_bzero(buf, PUSH_TOKEN_MAX + 1);
	free(buf);
close_fd:
	close(fd);
	return err;
}

/* xorshift64*: jitter only, no need for quality. */
static double rand01(struct push *p)
{
	p->rng ^= p->rng >> 12;
	p->rng ^= p->rng << 25;
	p->rng ^= p->rng >> 27;
	return (double)((p->rng * 2685821657736338717ULL) >> 11) / (double)(1ULL << 53);
}

/* Keeps the body's first PUSH_RESP_MAX - 1 bytes (for an error message) and no more: past
 * them, a short count makes curl stop the transfer (CURLE_WRITE_ERROR, see push_send), so a
 * server answering a huge body costs one buffer, not the whole download. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct push *p = userdata;
	size_t n = size * nmemb, room = sizeof(p->resp) - 1 - p->resp_len;
	size_t take = n < room ? n : room;

	memcpy(p->resp + p->resp_len, data, take);
	p->resp_len += take;
	p->resp[p->resp_len] = '\0';
	if (take < n)
		p->resp_truncated = true;
	return take;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct push *p = userdata;
	size_t n = size * nmemb;

	(void)data;
	p->hdr_bytes += n;
	if (p->hdr_bytes > PUSH_HEADERS_MAX) {
		p->hdr_overflow = true;
		return 0;
	}
	return n;
}

/* Aborts a transfer in progress once push_stop()'s deadline has passed. */
static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct push *p = userdata;

	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return clock_ns(CLOCK_MONOTONIC) >= atomic_load(&p->deadline_ns);
}

static int curl_err(const char *what, CURLcode rc)
{
	log_debug("push: %s: %s", what, curl_easy_strerror(rc));
	return rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

/* Options that stay the same for every request: set once, the handle keeps its connection. */
static int push_setup_curl(struct push *p)
{
	const char *ctype = p->protocol == PUSH_PROTO_PUSH ? "Content-Type: application/proto"
							   : "Content-Type: application/octet-stream";
	struct curl_slist *h;
	char *tenant = NULL;
	CURLcode rc = CURLE_OK;

	p->curl = curl_easy_init();
	if (!p->curl)
		return -ENOMEM;

	h = curl_slist_append(NULL, ctype);
	p->headers = h;
	if (h && p->protocol == PUSH_PROTO_PUSH)
		h = curl_slist_append(p->headers, "Connect-Protocol-Version: 1");
	/* No "Expect: 100-continue" round trip for bodies over 1 MiB. */
	if (h)
		h = curl_slist_append(p->headers, "Expect:");
	if (h && p->tenant_id) {
		if (asprintf(&tenant, "X-Scope-OrgID: %s", p->tenant_id) < 0)
			return -ENOMEM;
		h = curl_slist_append(p->headers, tenant);
		free(tenant);
	}
	if (h && p->bearer_header)
		h = curl_slist_append(p->headers, p->bearer_header);
	if (!h)
		return -ENOMEM;

#define SETOPT(opt, val)                                                 \
	do {                                                             \
		if (rc == CURLE_OK)                                      \
			rc = curl_easy_setopt(p->curl, opt, val);        \
	} while (0)
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_ERRORBUFFER, p->errbuf);
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_POST, 1L);
	SETOPT(CURLOPT_HTTPHEADER, p->headers);
	SETOPT(CURLOPT_USERAGENT, "ember/0.1");
	SETOPT(CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(CURLOPT_WRITEDATA, p);
	SETOPT(CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(CURLOPT_HEADERDATA, p);
	/* Redirects are not followed (a push server that redirects is misconfigured, and the
	 * credentials must not travel to another host): a 3xx is counted as such. */
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_NOPROGRESS, 0L);
	SETOPT(CURLOPT_XFERINFOFUNCTION, on_progress);
	SETOPT(CURLOPT_XFERINFODATA, p);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)(p->timeout_s * 1000));
	SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	if (p->ca_file)
		SETOPT(CURLOPT_CAINFO, p->ca_file);
	if (p->basic_user) {
		SETOPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		SETOPT(CURLOPT_USERNAME, p->basic_user);
		SETOPT(CURLOPT_PASSWORD, p->basic_password ? p->basic_password : "");
	}
#undef SETOPT
	if (rc != CURLE_OK)
		return curl_err("curl_easy_setopt", rc);
	return 0;
}

static void *push_thread(void *arg);

/* What push_new() set up, secrets wiped: its error path and push_free() both end here. */
static void push_release(struct push *p)
{
	for (struct curl_slist *h = p->headers; h; h = h->next)
		explicit_bzero(h->data, strlen(h->data)); /* the bearer token */
	curl_slist_free_all(p->headers);
	if (p->curl)
		curl_easy_cleanup(p->curl);
	if (p->curl_global)
		curl_global_cleanup();
	free(p->server);
	free(p->push_url);
	free(p->tenant_id);
	free(p->basic_user);
	secret_free(p->basic_password);
	secret_free(p->bearer_header);
	free(p->ca_file);
	free(p->spy_name);
	free(p);
}

int push_new(const struct push_opts *opts, struct push **ret_push)
{
	struct push *p = NULL;
	pthread_condattr_t cattr;
	char *token = NULL;
	bool oom = false;
	size_t n;
	int err;

	if (!opts->server || (strncmp(opts->server, "http://", 7) && strncmp(opts->server, "https://", 8))) {
		log_debug("push: server must be an http:// or https:// URL");
		return -EINVAL;
	}
	if (opts->protocol != PUSH_PROTO_PUSH && opts->protocol != PUSH_PROTO_INGEST)
		return -EINVAL;
	if (opts->basic_user && (opts->bearer_token || opts->bearer_token_file)) {
		log_debug("push: basic auth and a bearer token are mutually exclusive");
		return -EINVAL;
	}
	if (opts->timeout_s < 0 || opts->backoff_min_s < 0 || opts->backoff_max_s < 0 ||
	    opts->max_age_ns < 0)
		return -EINVAL;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	atomic_init(&p->deadline_ns, INT64_MAX);
	p->protocol = opts->protocol;
	p->server = strdup_or_null(opts->server, &oom);
	p->tenant_id = strdup_or_null(opts->tenant_id, &oom);
	p->basic_user = strdup_or_null(opts->basic_user, &oom);
	p->basic_password = strdup_or_null(opts->basic_password, &oom);
	p->ca_file = strdup_or_null(opts->ca_file, &oom);
	p->spy_name = strdup_or_null(opts->spy_name ? opts->spy_name : "ember", &oom);
	if (oom) {
		err = -ENOMEM;
		goto free_push;
	}
	n = strlen(p->server);
	while (n > 0 && p->server[n - 1] == '/')
		p->server[--n] = '\0';
	if (asprintf(&p->push_url, "%s/push.v1.PusherService/Push", p->server) < 0) {
		p->push_url = NULL;
		err = -ENOMEM;
		goto free_push;
	}
	if (p->tenant_id && strpbrk(p->tenant_id, "\r\n")) {
		err = -EINVAL;
		goto free_push;
	}

	if (opts->bearer_token) {
		token = strdup(opts->bearer_token);
		if (!token) {
			err = -ENOMEM;
			goto free_push;
		}
		if (strpbrk(token, "\r\n")) {
			err = -EINVAL;
			goto free_token;
		}
	} else if (opts->bearer_token_file) {
		err = read_token_file(opts->bearer_token_file, &token);
		if (err)
			goto free_push;
	}
	if (token) {
		if (asprintf(&p->bearer_header, "Authorization: Bearer %s", token) < 0) {
			p->bearer_header = NULL;
			err = -ENOMEM;
			goto free_token;
		}
		secret_free(token);
		token = NULL;
	}

	p->queue_max_bytes = opts->queue_max_bytes ? opts->queue_max_bytes : PUSH_DEFAULT_QUEUE_BYTES;
	p->timeout_s = opts->timeout_s > 0 ? opts->timeout_s : PUSH_DEFAULT_TIMEOUT_S;
	p->backoff_min_s = opts->backoff_min_s > 0 ? opts->backoff_min_s : PUSH_DEFAULT_BACKOFF_MIN;
	p->backoff_max_s = opts->backoff_max_s > 0 ? opts->backoff_max_s : PUSH_DEFAULT_BACKOFF_MAX;
	if (p->backoff_max_s < p->backoff_min_s)
		p->backoff_max_s = p->backoff_min_s;
	p->max_age_ns = opts->max_age_ns ? opts->max_age_ns : PUSH_DEFAULT_MAX_AGE_NS;
	p->rng = (uint64_t)clock_ns(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)p;
	if (!p->rng)
		p->rng = 1;

	/* Reference-counted and thread-safe since curl 7.84; paired with push_free(). */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		err = -ENOMEM;
		goto free_push;
	}
	p->curl_global = true;
	err = push_setup_curl(p);
	if (err)
		goto free_push;

	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &cattr);
	pthread_condattr_destroy(&cattr);
	err = -pthread_create(&p->thread, NULL, push_thread, p);
	if (err) {
		log_debug("push: pthread_create: %s", strerror(-err));
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->lock);
		goto free_push;
	}
	p->thread_running = true;
	{
		char shown[512];

		(void)push_redact_url(p->server, shown, sizeof(shown));
		log_debug("push: sending to %s with %s, queue bound %zu bytes", shown,
			  p->protocol == PUSH_PROTO_PUSH ? "push.v1" : "/ingest", p->queue_max_bytes);
	}
	*ret_push = p;
	return 0;

free_token:
	secret_free(token);
free_push:
	push_release(p);
	return err;
}

/* Under lock. Counts a dropped upload. */
static void push_drop(struct push *p, struct push_item *it, enum push_drop_reason why)
{
	p->stats.dropped[why]++;
	log_debug("push: dropping upload %s/%s from %" PRId64 " (%s)",
		  it->u->service ? it->u->service : "?", it->u->family ? it->u->family : "?",
		  it->u->from_ns, drop_names[why]);
}

/* Under lock. Unlinks the head of the queue and updates the totals. */
static struct push_item *push_unlink_head(struct push *p)
{
	struct push_item *it = p->head;

	p->head = it->next;
	if (!p->head)
		p->tail = NULL;
	it->next = NULL;
	p->stats.queue_bytes -= it->bytes;
	p->stats.queue_len--;
	return it;
}

/* Under lock. Drops the oldest upload; one being sent is only marked, its sender frees it. */
static void push_evict_oldest(struct push *p)
{
	struct push_item *it = push_unlink_head(p);

	push_drop(p, it, PUSH_DROP_QUEUE_FULL);
	if (it == p->inflight)
		p->inflight_evicted = true;
	else
		item_free(it);
}

static bool too_old(const struct push *p, const struct upload *u)
{
	return clock_ns(CLOCK_REALTIME) - u->from_ns > p->max_age_ns;
}

int push_submit(struct push *p, struct upload *u)
{
	struct push_item *it;

	if (!u)
		return -EINVAL;
	if (!u->pprof_gz || !u->pprof_len || !upload_label(u, "__name__")) {
		log_debug("push: upload without pprof data or __name__");
		upload_free(u);
		return -EINVAL;
	}
	it = calloc(1, sizeof(*it));
	if (!it) {
		upload_free(u);
		return -ENOMEM;
	}
	it->u = u;
	it->bytes = upload_size(u);

	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		pthread_mutex_unlock(&p->lock);
		item_free(it);
		return -ESHUTDOWN;
	}
	if (too_old(p, u) || it->bytes > p->queue_max_bytes) {
		push_drop(p, it, too_old(p, u) ? PUSH_DROP_TOO_OLD : PUSH_DROP_QUEUE_FULL);
		pthread_mutex_unlock(&p->lock);
		item_free(it);
		return 0;
	}
	while (p->head && p->stats.queue_bytes + it->bytes > p->queue_max_bytes)
		push_evict_oldest(p);
	if (p->tail)
		p->tail->next = it;
	else
		p->head = it;
	p->tail = it;
	p->stats.queue_bytes += it->bytes;
	p->stats.queue_len++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* The "message" of a Connect/JSON error body, printable; else the body's start. */
static void error_message(const char *body, char *out, size_t outlen)
{
	const char *s = strstr(body, "\"message\"");
	size_t n = 0;
	bool quoted = false;

	if (s) {
		s += strlen("\"message\"");
		while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
			s++;
		if (*s == ':') {
			s++;
			while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
				s++;
			if (*s == '"') {
				s++;
				quoted = true;
			}
		}
	}
	if (!quoted)
		s = body;
	for (; *s && n + 1 < outlen; s++) {
		char c = *s;

		if (quoted && c == '"')
			break;
		if (quoted && c == '\\' && s[1]) {
			c = *++s;
			if (c == 'n' || c == 't' || c == 'r')
				c = ' ';
			else if (c == 'u')
				c = '?';
		}
		if (!quoted && (c == '\n' || c == '\r'))
			c = ' ';
		out[n++] = (c >= 0x20 && c < 0x7f) ? c : '?';
	}
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

/* A refused upload is a warning the first time a status and message are seen, debug after. */
static void warn_rejected(struct push *p, long status, const char *msg)
{
	uint64_t h = hash_fnv1a64_str(msg);

	for (unsigned i = 0; i < p->nwarned && i < PUSH_WARNED_MAX; i++) {
		if (p->warned[i].status == status && p->warned[i].hash == h) {
			log_debug("push: server refused an upload (%s)", msg);
			return;
		}
	}
	p->warned[p->nwarned++ % PUSH_WARNED_MAX] = (struct push_warned){ status, h };
	log_warn("push: server refused an upload (%s); dropping it "
		 "(repeats are logged at debug level)", msg);
}

/* The ingest name `service{k=v,...}`: every label except __name__, service_name and the
 * reserved __-prefixed ones; values that the name syntax cannot carry are left out. */
static char *ingest_name(const struct upload *u)
{
	const char *service = upload_label(u, "service_name");
	char *buf = NULL;
	size_t len = 0;
	bool first = true;
	FILE *f;

	if (!service)
		service = u->service ? u->service : "unknown_service";
	f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	fputs(service, f);
	for (size_t i = 0; i < u->nlabels; i++) {
		const struct upload_label *l = &u->labels[i];

		if (!strncmp(l->name, "__", 2) || !strcmp(l->name, "service_name"))
			continue;
		if (strpbrk(l->value, "{},=") || strpbrk(l->name, "{},= ")) {
			log_debug("push: label %s cannot be sent in an /ingest name, left out", l->name);
			continue;
		}
		fprintf(f, "%s%s=%s", first ? "{" : ",", l->name, l->value);
		first = false;
	}
	if (!first)
		fputc('}', f);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

static int build_ingest_url(struct push *p, struct push_item *it)
{
	char *name = ingest_name(it->u), *ename = NULL, *espy = NULL;
	int err = -ENOMEM;

	if (!name)
		return -ENOMEM;
	ename = curl_easy_escape(p->curl, name, 0);
	espy = curl_easy_escape(p->curl, p->spy_name, 0);
	if (ename && espy &&
	    asprintf(&it->url, "%s/ingest?name=%s&from=%" PRId64 "&until=%" PRId64
				"&format=pprof&spyName=%s",
		     p->server, ename, it->u->from_ns,
		     it->u->until_ns > it->u->from_ns ? it->u->until_ns : it->u->from_ns, espy) >= 0)
		err = 0;
	else
		it->url = NULL;
	curl_free(ename);
	curl_free(espy);
	free(name);
	return err;
}

/* One series with one sample: the upload's labels and its gzipped pprof. */
static int build_push_body(struct push_item *it)
{
	Push__V1__PushRequest req = PUSH__V1__PUSH_REQUEST__INIT;
	Push__V1__RawProfileSeries series = PUSH__V1__RAW_PROFILE_SERIES__INIT, *pseries = &series;
	Push__V1__RawSample sample = PUSH__V1__RAW_SAMPLE__INIT, *psample = &sample;
	Push__V1__LabelPair *pairs = NULL, **ppairs = NULL;
	const struct upload *u = it->u;
	int err = 0;

	pairs = calloc(u->nlabels ? u->nlabels : 1, sizeof(*pairs));
	ppairs = calloc(u->nlabels ? u->nlabels : 1, sizeof(*ppairs));
	if (!pairs || !ppairs) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < u->nlabels; i++) {
		push__v1__label_pair__init(&pairs[i]);
		pairs[i].name = u->labels[i].name;
		pairs[i].value = u->labels[i].value;
		ppairs[i] = &pairs[i];
	}
	series.n_labels = u->nlabels;
	series.labels = ppairs;
	sample.raw_profile.data = u->pprof_gz;
	sample.raw_profile.len = u->pprof_len;
	series.n_samples = 1;
	series.samples = &psample;
	req.n_series = 1;
	req.series = &pseries;

	it->body_len = push__v1__push_request__get_packed_size(&req);
	it->body = malloc(it->body_len ? it->body_len : 1);
	if (!it->body) {
		err = -ENOMEM;
		goto out;
	}
	push__v1__push_request__pack(&req, it->body);
out:
	free(pairs);
	free(ppairs);
	return err;
}

/* Sends one upload (unlocked; the item is p->inflight). */
static enum send_result push_send(struct push *p, struct push_item *it, char *why, size_t whylen,
				  long *ret_status, long *ret_retry_after_s,
				  enum push_error_kind *ret_kind)
{
	int64_t start = clock_ns(CLOCK_MONOTONIC), left = atomic_load(&p->deadline_ns) - start;
	long timeout_ms = (long)(p->timeout_s * 1000), status = 0;
	curl_off_t retry_after = 0;
	const char *url;
	const void *body;
	size_t body_len;
	char msg[200];
	CURLcode rc;

	*ret_status = 0;
	*ret_retry_after_s = 0;
	if (p->protocol == PUSH_PROTO_PUSH) {
		if (!it->body && build_push_body(it)) {
			snprintf(why, whylen, "out of memory building the request");
			return SEND_RETRY;
		}
		url = p->push_url;
		body = it->body;
		body_len = it->body_len;
	} else {
		if (!it->url && build_ingest_url(p, it)) {
			snprintf(why, whylen, "out of memory building the request");
			return SEND_RETRY;
		}
		url = it->url;
		body = it->u->pprof_gz;
		body_len = it->u->pprof_len;
	}
	if (left / 1000000 < timeout_ms)
		timeout_ms = left / 1000000 > 1 ? (long)(left / 1000000) : 1;

	p->errbuf[0] = '\0';
	p->resp_len = 0;
	p->resp[0] = '\0';
	p->resp_truncated = false;
	p->hdr_bytes = 0;
	p->hdr_overflow = false;
	rc = curl_easy_setopt(p->curl, CURLOPT_URL, url);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(p->curl, CURLOPT_POSTFIELDS, body);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(p->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(p->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	if (rc == CURLE_OK)
		rc = curl_easy_perform(p->curl);
	/* Cut short by on_body once the kept prefix was full: the answer is complete enough. */
	if (rc == CURLE_WRITE_ERROR && p->resp_truncated && !p->hdr_overflow) {
		rc = CURLE_OK;
		pthread_mutex_lock(&p->lock);
		p->stats.body_truncated++;
		pthread_mutex_unlock(&p->lock);
	}
	if (rc != CURLE_OK) {
		if (p->hdr_overflow)
			snprintf(why, whylen, "response headers over %u bytes", PUSH_HEADERS_MAX);
		else
			snprintf(why, whylen, "%s", p->errbuf[0] ? p->errbuf : curl_easy_strerror(rc));
		log_debug("push: request failed: %s", why);
		*ret_kind = error_kind(rc);
		return rc == CURLE_ABORTED_BY_CALLBACK ? SEND_ABORT : SEND_RETRY;
	}
	(void)curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &status);
	*ret_status = status;
	if (status >= 200 && status < 300) {
		log_debug("push: sent %s/%s from %" PRId64 " (%zu bytes, HTTP %ld, %.3f s)",
			  it->u->service ? it->u->service : "?", it->u->family ? it->u->family : "?",
			  it->u->from_ns, body_len, status,
			  (double)(clock_ns(CLOCK_MONOTONIC) - start) / 1e9);
		return SEND_OK;
	}
	error_message(p->resp, msg, sizeof(msg));
	snprintf(why, whylen, "HTTP %ld%s%s", status, msg[0] ? ": " : "", msg);
	log_debug("push: %s", why);
	if (status == 408 || status == 429 || status >= 500) {
		if (curl_easy_getinfo(p->curl, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
		    retry_after > 0)
			*ret_retry_after_s = (long)retry_after;
		return SEND_RETRY;
	}
	if (status >= 300 && status < 400) {
		snprintf(why, whylen, "HTTP %ld: a redirect, not followed: check the server URL",
			 status);
		return SEND_REDIRECT;
	}
	return SEND_REJECT;
}

/* Under lock: waits until `until_ns` (CLOCK_MONOTONIC) or the stop deadline. */
static void push_wait_until(struct push *p, int64_t until_ns)
{
	for (;;) {
		int64_t deadline = atomic_load(&p->deadline_ns), wake = until_ns, now;
		struct timespec ts;

		if (deadline < wake)
			wake = deadline;
		now = clock_ns(CLOCK_MONOTONIC);
		if (now >= wake)
			return;
		ts = ns_to_timespec(wake);
		(void)pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	}
}

static double backoff_s(struct push *p, long retry_after_s)
{
	double d = p->backoff_min_s;

	for (unsigned i = 1; i < p->fail_streak && d < p->backoff_max_s; i++)
		d *= 2;
	if (d > p->backoff_max_s)
		d = p->backoff_max_s;
	/* Equal jitter: half fixed, half random, so that agents restarted together spread out. */
	d = d / 2 + d / 2 * rand01(p);
	if (retry_after_s > 0 && d < (double)retry_after_s)
		d = (double)retry_after_s < p->backoff_max_s ? (double)retry_after_s : p->backoff_max_s;
	return d;
}

static void *push_thread(void *arg)
{
	struct push *p = arg;
	char why[sizeof(p->stats.last_error)];

	pthread_mutex_lock(&p->lock);
	for (;;) {
		enum send_result res;
		enum push_error_kind kind = PUSH_ERR_OTHER;
		struct push_item *it;
		int64_t t0, elapsed;
		long status, retry_after_s;
		bool evicted;

		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		if (!p->head)
			break;
		if (clock_ns(CLOCK_MONOTONIC) >= atomic_load(&p->deadline_ns))
			break;
		it = p->head;
		if (too_old(p, it->u)) {
			push_drop(p, push_unlink_head(p), PUSH_DROP_TOO_OLD);
			item_free(it);
			continue;
		}
		p->inflight = it;
		p->inflight_evicted = false;
		if (it->attempts++ > 0)
			p->stats.retries++;
		pthread_mutex_unlock(&p->lock);

		t0 = clock_ns(CLOCK_MONOTONIC);
		why[0] = '\0';
		res = push_send(p, it, why, sizeof(why), &status, &retry_after_s, &kind);
		elapsed = clock_ns(CLOCK_MONOTONIC) - t0;

		pthread_mutex_lock(&p->lock);
		evicted = p->inflight_evicted;
		p->inflight = NULL;
		p->inflight_evicted = false;
		/* An abort is our own shutdown cutting the request short, not the server's doing:
		 * keep the error that explains why uploads were failing. */
		if (res != SEND_OK && res != SEND_ABORT)
			snprintf(p->stats.last_error, sizeof(p->stats.last_error), "%s", why);
		if (res == SEND_OK) {
			p->stats.sent++;
			p->stats.latency_count++;
			p->stats.latency_sum_s += (double)elapsed / 1e9;
			if ((double)elapsed / 1e9 > p->stats.latency_max_s)
				p->stats.latency_max_s = (double)elapsed / 1e9;
			if (evicted)
				p->stats.dropped[PUSH_DROP_QUEUE_FULL]--; /* delivered after all */
			else
				(void)push_unlink_head(p);
			item_free(it);
			p->fail_streak = 0;
			if (p->outage) {
				p->outage = false;
				log_info("push: server reachable again, %" PRIu64 " upload(s) queued",
					 p->stats.queue_len);
			}
			continue;
		}
		if (status) {
			p->stats.failed++;
		} else if (res != SEND_ABORT) {
			p->stats.conn_errors++;
			p->stats.errors[kind]++;
		}
		if (res == SEND_REJECT || res == SEND_REDIRECT) {
			if (!evicted) {
				(void)push_unlink_head(p);
				push_drop(p, it, res == SEND_REDIRECT ? PUSH_DROP_REDIRECT
								      : PUSH_DROP_REJECTED);
			}
			item_free(it);
			p->fail_streak = 0;
			pthread_mutex_unlock(&p->lock);
			warn_rejected(p, status, why);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		if (evicted)
			item_free(it);
		if (res == SEND_ABORT)
			break;
		if (!p->outage) {
			p->outage = true;
			log_warn("push: %s; queueing uploads and retrying with backoff", why);
		}
		p->fail_streak++;
		push_wait_until(p, clock_ns(CLOCK_MONOTONIC) +
					   (int64_t)(backoff_s(p, retry_after_s) * 1e9));
	}
	while (p->head) {
		struct push_item *it = push_unlink_head(p);

		push_drop(p, it, PUSH_DROP_SHUTDOWN);
		item_free(it);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void push_stop(struct push *p, double timeout_s)
{
	int64_t deadline;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	if (!p->thread_running || p->joining) {
		p->stopping = true;
		pthread_mutex_unlock(&p->lock);
		return;
	}
	p->stopping = true;
	p->joining = true;
	deadline = clock_ns(CLOCK_MONOTONIC) + (int64_t)(timeout_s > 0 ? timeout_s * 1e9 : 0);
	if (deadline < atomic_load(&p->deadline_ns))
		atomic_store(&p->deadline_ns, deadline);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);

	pthread_join(p->thread, NULL);
	pthread_mutex_lock(&p->lock);
	p->thread_running = false;
	pthread_mutex_unlock(&p->lock);
}

void push_free(struct push *p)
{
	if (!p)
		return;
	push_stop(p, 0);
	while (p->head)
		item_free(push_unlink_head(p));
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	push_release(p);
}

void push_write_metrics(struct push *p, struct metrics_writer *w)
{
	struct push_stats ps;

	push_get_stats(p, &ps);
	metrics_counter(w, "ember_profiles_sent_total", "Profiles accepted by the server", NULL,
			(double)ps.sent);
	metrics_counter(w, "ember_profiles_failed_total", "Failed upload attempts", NULL,
			(double)ps.failed);
	for (int r = 0; r < PUSH_DROP_MAX; r++)
		metrics_counter(w, "ember_profiles_dropped_total", "Profiles given up, by reason",
				(const char *[]){ "reason", push_drop_reason_name(r), NULL },
				(double)ps.dropped[r]);
	for (int k = 0; k < PUSH_ERR_MAX; k++)
		metrics_counter(w, "ember_upload_errors_total",
				"Upload attempts that got no HTTP answer, by kind",
				(const char *[]){ "kind", push_error_kind_name(k), NULL },
				(double)ps.errors[k]);
	metrics_counter(w, "ember_upload_responses_truncated_total",
			"Server answers whose body was cut at 4 KiB", NULL,
			(double)ps.body_truncated);
	metrics_gauge(w, "ember_upload_queue_bytes", "Bytes waiting in the upload queue", NULL,
		      (double)ps.queue_bytes);
	metrics_summary(w, "ember_upload_latency_seconds", "Duration of successful uploads", NULL,
			ps.latency_sum_s, ps.latency_count);
}

void push_get_stats(struct push *p, struct push_stats *ret_stats)
{
	pthread_mutex_lock(&p->lock);
	*ret_stats = p->stats;
	pthread_mutex_unlock(&p->lock);
}
