#include "gpu_receiver.h"
#include "gpu_receiver_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "demangle.h"
#include "log.h"
#include "metrics.h"
#include "procmaps.h"

_Static_assert(sizeof(struct ember_py_frame) == EMBER_GPU_PY_FRAME_SIZE,
	       "the wire's Python frame is bpf/ember.h's");

/* A client's receive buffer: none while it has nothing partial, RX_MIN for headers and small
 * messages, grown to the exact size of a larger message it has started, given back once the
 * message is complete. So idle clients hold no buffer and a client's bytes are what it has in
 * flight, which the per-uid and total byte bounds limit. */
#define RX_MIN 4096
#define RX_KEEP 65536
#define READS_PER_WAKE 16
/* Absurd values are a client's lie or bug, not a measurement: one entry sums one interval. */
#define MAX_ENTRY_GPU_NS (3600ull * 1000000000ull)
#define ACCEPT_BACKOFF_MS 1000

struct client {
	int fd;
	pid_t pid;
	uid_t uid;
	uint64_t start_time;
	bool hello;
	uint8_t *rx;
	size_t rxlen, rxcap;
	int64_t accepted_ms;   /* CLOCK_MONOTONIC */
	int64_t last_rx_ms;    /* last byte received */
	int64_t partial_ms;    /* first byte of the incomplete message in rx; 0 if none */
	uint64_t ctr[EMBER_GPU_CTR_COUNT]; /* last COUNTERS values */
};

struct uid_use {
	uid_t uid;
	size_t conns, bytes;
};

struct stored {
	struct stored *next;
	struct gpu_sample s;
	/* leaf, name, pcs, capture pcs follow */
};

struct gpu_receiver {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd, efd;
	int reserve_fd;        /* /dev/null, closed to accept-and-close when out of descriptors */
	pthread_t thread;
	bool thread_started;
	/* Receiver thread only. */
	struct client *clients;
	size_t nclients;
	struct uid_use *uids;
	size_t nuids;
	size_t rx_bytes;       /* every client's rx buffer */
	int64_t accept_paused_until_ms;
	uint8_t rbuf[65536];

	pthread_mutex_t lock; /* everything below */
	struct stored *head, **tail;
	size_t pending, pending_bytes;
	size_t max_clients, max_pending, max_pending_bytes;
	size_t max_uid_clients, max_uid_bytes, max_rx_bytes;
	int64_t hello_timeout_ms, idle_timeout_ms, partial_timeout_ms;
	struct gpu_receiver_stats stats;
};

static const char *const refuse_names[GPU_REFUSE_MAX] = {
	[GPU_REFUSE_UID_LIMIT] = "uid_limit",
	[GPU_REFUSE_TOTAL_LIMIT] = "total_limit",
	[GPU_REFUSE_UID_BYTES] = "uid_bytes",
	[GPU_REFUSE_TOTAL_BYTES] = "total_bytes",
	[GPU_REFUSE_TIMEOUT] = "timeout",
	[GPU_REFUSE_OVERSIZED] = "oversized",
	[GPU_REFUSE_MALFORMED] = "malformed",
	[GPU_REFUSE_NO_FDS] = "no_fds",
	[GPU_REFUSE_NO_IDENTITY] = "no_identity",
};

const char *gpu_refuse_reason_name(enum gpu_refuse_reason why)
{
	return (unsigned)why < GPU_REFUSE_MAX ? refuse_names[why] : "unknown";
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void count_refused(struct gpu_receiver *r, enum gpu_refuse_reason why)
{
	pthread_mutex_lock(&r->lock);
	r->stats.rejected++;
	r->stats.refused[why]++;
	pthread_mutex_unlock(&r->lock);
}

static struct uid_use *uid_find(struct gpu_receiver *r, uid_t uid)
{
	for (size_t i = 0; i < r->nuids; i++)
		if (r->uids[i].uid == uid)
			return &r->uids[i];
	return NULL;
}

static void uid_release(struct gpu_receiver *r, uid_t uid)
{
	struct uid_use *u = uid_find(r, uid);

	if (u && --u->conns == 0)
		*u = r->uids[--r->nuids];
}

/* Sets c's buffer to cap bytes (0: none), within its uid's and the total byte bounds. */
static int client_set_cap(struct gpu_receiver *r, struct client *c, size_t cap)
{
	struct uid_use *u = uid_find(r, c->uid);
	size_t max_uid, max_total;
	uint8_t *nb;

	if (cap == c->rxcap || !u)
		return 0;
	pthread_mutex_lock(&r->lock);
	max_uid = r->max_uid_bytes;
	max_total = r->max_rx_bytes;
	pthread_mutex_unlock(&r->lock);
	if (cap > c->rxcap) {
		size_t more = cap - c->rxcap;

		if (u->bytes + more > max_uid)
			return -EDQUOT;
		if (r->rx_bytes + more > max_total)
			return -ENOBUFS;
	}
	if (cap == 0) {
		free(c->rx);
		nb = NULL;
	} else {
		nb = realloc(c->rx, cap);
		if (!nb)
			return -ENOMEM;
	}
	u->bytes = u->bytes - c->rxcap + cap;
	r->rx_bytes = r->rx_bytes - c->rxcap + cap;
	c->rx = nb;
	c->rxcap = cap;
	return 0;
}

static int mkdir_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* A socket file left by an agent that died is replaced; a live one is not. */
static int clear_stale(const struct sockaddr_un *addr)
{
	struct stat st;
	int fd, err = 0;

	if (lstat(addr->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0)
		err = -EADDRINUSE;
	close(fd);
	if (!err && unlink(addr->sun_path) < 0 && errno != ENOENT)
		err = -errno;
	return err;
}

static void *receiver_main(void *arg);

int gpu_receiver_start(const char *path, struct gpu_receiver **ret_r)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct gpu_receiver *r;
	int err;

	if (!path || !*path || strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->lfd = -1;
	r->efd = -1;
	r->reserve_fd = -1;
	r->tail = &r->head;
	r->max_clients = GPU_RECV_MAX_CLIENTS;
	r->max_pending = 200000;
	r->max_pending_bytes = 64u << 20;
	r->max_uid_clients = GPU_RECV_MAX_UID_CLIENTS;
	r->max_uid_bytes = GPU_RECV_MAX_UID_BYTES;
	r->max_rx_bytes = GPU_RECV_MAX_RX_BYTES;
	r->hello_timeout_ms = GPU_RECV_HELLO_TIMEOUT_MS;
	r->idle_timeout_ms = GPU_RECV_IDLE_TIMEOUT_MS;
	r->partial_timeout_ms = GPU_RECV_PARTIAL_TIMEOUT_MS;
	pthread_mutex_init(&r->lock, NULL);
	snprintf(r->path, sizeof(r->path), "%s", path);
	strcpy(addr.sun_path, path);

	err = mkdir_parent(path);
	if (err)
		goto err;
	err = clear_stale(&addr);
	if (err)
		goto err;
	r->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (r->lfd < 0) {
		err = -errno;
		goto err;
	}
	if (bind(r->lfd, (const struct sockaddr *)&addr, sizeof(addr)) < 0) {
		err = -errno;
		goto err;
	}
	/* Services run under many uids: anyone may connect. The pid of a sample is the peer's
	 * SO_PEERCRED pid, so a client can only speak for its own process. */
	if (chmod(path, 0666) < 0 || listen(r->lfd, 128) < 0) {
		err = -errno;
		goto err_unlink;
	}
	/* Kept to be closed when accept() says EMFILE: the pending client is then accepted and
	 * closed at once instead of making the listening socket readable forever. */
	r->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->efd < 0) {
		err = -errno;
		goto err_unlink;
	}
	err = -pthread_create(&r->thread, NULL, receiver_main, r);
	if (err)
		goto err_unlink;
	r->thread_started = true;
	*ret_r = r;
	return 0;

err_unlink:
	(void)unlink(path);
err:
	r->path[0] = '\0';
	gpu_receiver_stop(r);
	return err;
}

static void client_close(struct gpu_receiver *r, size_t i)
{
	struct client *c = &r->clients[i];

	close(c->fd);
	(void)client_set_cap(r, c, 0);
	uid_release(r, c->uid);
	r->clients[i] = r->clients[--r->nclients];
	pthread_mutex_lock(&r->lock);
	r->stats.clients = r->nclients;
	pthread_mutex_unlock(&r->lock);
}

void gpu_receiver_stop(struct gpu_receiver *r)
{
	struct stored *s, *next;

	if (!r)
		return;
	if (r->thread_started) {
		uint64_t one = 1;

		(void)!write(r->efd, &one, sizeof(one));
		pthread_join(r->thread, NULL);
	}
	while (r->nclients)
		client_close(r, r->nclients - 1);
	free(r->clients);
	free(r->uids);
	if (r->lfd >= 0)
		close(r->lfd);
	if (r->reserve_fd >= 0)
		close(r->reserve_fd);
	if (r->efd >= 0)
		close(r->efd);
	if (r->path[0])
		(void)unlink(r->path);
	for (s = r->head; s; s = next) {
		next = s->next;
		free(s);
	}
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void gpu_receiver_set_limits(struct gpu_receiver *r, size_t max_clients, size_t max_pending,
			     size_t max_pending_bytes)
{
	pthread_mutex_lock(&r->lock);
	r->max_clients = max_clients;
	r->max_pending = max_pending;
	r->max_pending_bytes = max_pending_bytes;
	pthread_mutex_unlock(&r->lock);
}

void gpu_receiver_set_client_limits(struct gpu_receiver *r, size_t max_uid_clients,
				    size_t max_uid_bytes, size_t max_rx_bytes)
{
	pthread_mutex_lock(&r->lock);
	r->max_uid_clients = max_uid_clients;
	r->max_uid_bytes = max_uid_bytes;
	r->max_rx_bytes = max_rx_bytes;
	pthread_mutex_unlock(&r->lock);
}

void gpu_receiver_set_timeouts(struct gpu_receiver *r, int64_t hello_ms, int64_t idle_ms,
			       int64_t partial_ms)
{
	pthread_mutex_lock(&r->lock);
	r->hello_timeout_ms = hello_ms;
	r->idle_timeout_ms = idle_ms;
	r->partial_timeout_ms = partial_ms;
	pthread_mutex_unlock(&r->lock);
}

void gpu_receiver_get_stats(struct gpu_receiver *r, struct gpu_receiver_stats *ret_stats)
{
	pthread_mutex_lock(&r->lock);
	*ret_stats = r->stats;
	pthread_mutex_unlock(&r->lock);
}

void gpu_receiver_write_metrics(struct gpu_receiver *r, struct metrics_writer *w)
{
	struct gpu_receiver_stats gs;

	gpu_receiver_get_stats(r, &gs);
	metrics_gauge(w, "ember_gpu_clients", "CUDA processes connected with libember_cupti.so",
		      NULL, (double)gs.clients);
	metrics_counter(w, "ember_gpu_entries_total", "GPU sample entries received", NULL,
			(double)gs.entries);
	for (int i = 0; i < GPU_REFUSE_MAX; i++)
		metrics_counter(w, "ember_gpu_clients_refused_total",
				"GPU clients refused or disconnected, by reason",
				(const char *[]){ "reason", gpu_refuse_reason_name(i), NULL },
				(double)gs.refused[i]);
	metrics_counter(w, "ember_gpu_dropped_total", "GPU entries dropped, by reason",
			(const char *[]){ "reason", "agent_queue_full", NULL }, (double)gs.dropped);
	metrics_counter(w, "ember_gpu_dropped_total", "GPU entries dropped, by reason",
			(const char *[]){ "reason", "absurd_value", NULL }, (double)gs.absurd);
	metrics_counter(w, "ember_gpu_dropped_total", "GPU entries dropped, by reason",
			(const char *[]){ "reason", "client_rejected", NULL }, (double)gs.rejected);
}

size_t gpu_receiver_drain(struct gpu_receiver *r,
			  void (*fn)(void *ctx, const struct gpu_sample *s), void *ctx)
{
	struct stored *head, *next;
	size_t n = 0;

	pthread_mutex_lock(&r->lock);
	head = r->head;
	r->head = NULL;
	r->tail = &r->head;
	r->pending = 0;
	r->pending_bytes = 0;
	pthread_mutex_unlock(&r->lock);
	for (; head; head = next) {
		next = head->next;
		fn(ctx, &head->s);
		free(head);
		n++;
	}
	return n;
}

/* ---- parsing ---- */

static const char *op_prefix(uint16_t op)
{
	switch (op) {
	case EMBER_GPU_OP_KERNEL: return "[cuda kernel] ";
	case EMBER_GPU_OP_MEMCPY: return "[cuda memcpy ";
	case EMBER_GPU_OP_MEMSET: return "[cuda memset";
	case EMBER_GPU_OP_GRAPH: return "[cuda graph] ";
	default: return NULL;
	}
}

/* Printable ASCII only: kernel names are; anything else becomes '?' (pprof wants UTF-8). */
static void sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

static int store_entry(struct gpu_receiver *r, const struct client *c,
		       const struct ember_gpu_batch *bt, const struct ember_gpu_entry *e,
		       const char *name_in, const uint64_t *pcs, const uint64_t *cpcs,
		       const struct ember_py_frame *py)
{
	char name[EMBER_GPU_MAX_NAME + 1], *dm = NULL;
	const char *shown;
	size_t leaf_len, size;
	struct stored *st;
	char *p;

	/* Not an error of the stream: the entry alone is dropped (and counted). */
	if (e->gpu_time_ns > MAX_ENTRY_GPU_NS || e->launches > INT64_MAX) {
		pthread_mutex_lock(&r->lock);
		r->stats.absurd++;
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	memcpy(name, name_in, e->name_len);
	name[e->name_len] = '\0';
	sanitize(name);
	shown = name;
	if (e->op == EMBER_GPU_OP_KERNEL && demangle_wanted(name)) {
		dm = demangle(name);
		if (dm) {
			sanitize(dm);
			shown = dm;
		}
	}
	if (e->op == EMBER_GPU_OP_MEMSET)
		shown = "";
	/* prefix + shown + "]" + NUL */
	leaf_len = strlen(op_prefix(e->op)) + strlen(shown) + 2;
	size = sizeof(*st) + leaf_len + e->name_len + 1 + 8 +
	       ((size_t)e->nframes + e->ncapture) * sizeof(uint64_t) +
	       ((size_t)e->npy + e->ncapture_py) * sizeof(struct ember_py_frame);
	pthread_mutex_lock(&r->lock);
	if (r->pending >= r->max_pending || r->pending_bytes + size > r->max_pending_bytes) {
		r->stats.dropped++;
		pthread_mutex_unlock(&r->lock);
		free(dm);
		return 0;
	}
	pthread_mutex_unlock(&r->lock);

	st = calloc(1, size);
	if (!st) {
		free(dm);
		return -ENOMEM;
	}
	/* PC and Python frame arrays first (8-byte aligned right after the struct), then the
	 * strings. */
	p = (char *)(st + 1);
	st->s.pcs = (const uint64_t *)p;
	memcpy(p, pcs, (size_t)e->nframes * sizeof(uint64_t));
	p += (size_t)e->nframes * sizeof(uint64_t);
	if (e->ncapture) {
		st->s.capture_pcs = (const uint64_t *)p;
		memcpy(p, cpcs, (size_t)e->ncapture * sizeof(uint64_t));
		p += (size_t)e->ncapture * sizeof(uint64_t);
	}
	if (e->npy) {
		st->s.py = (const struct ember_py_frame *)p;
		memcpy(p, py, (size_t)e->npy * sizeof(struct ember_py_frame));
		p += (size_t)e->npy * sizeof(struct ember_py_frame);
	}
	if (e->ncapture_py) {
		st->s.capture_py = (const struct ember_py_frame *)p;
		memcpy(p, py + e->npy, (size_t)e->ncapture_py * sizeof(struct ember_py_frame));
		p += (size_t)e->ncapture_py * sizeof(struct ember_py_frame);
	}
	snprintf(p, leaf_len, "%s%s%s", op_prefix(e->op), shown,
		 (e->op == EMBER_GPU_OP_MEMCPY || e->op == EMBER_GPU_OP_MEMSET) ? "]" : "");
	st->s.leaf = p;
	p += leaf_len;
	memcpy(p, name, e->name_len + 1);
	st->s.name = p;
	free(dm);

	st->s.pid = c->pid;
	st->s.start_time = c->start_time;
	st->s.op = e->op;
	st->s.flags = e->flags;
	st->s.npcs = e->nframes;
	st->s.ncapture = e->ncapture;
	st->s.npy = e->npy;
	st->s.py_status = e->py_status;
	st->s.ncapture_py = e->ncapture_py;
	st->s.capture_py_status = e->capture_py_status;
	st->s.gpu_ns = (int64_t)e->gpu_time_ns;
	st->s.launches = (int64_t)e->launches;
	st->s.start_ns = bt->start_ns;
	st->s.end_ns = bt->end_ns;

	pthread_mutex_lock(&r->lock);
	*r->tail = st;
	r->tail = &st->next;
	r->pending++;
	r->pending_bytes += size;
	r->stats.entries++;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* The Python fields of an entry: zero in version 1; bounded counts and known walk statuses in
 * version 2. */
static bool py_fields_ok(const struct ember_gpu_entry *e, uint16_t version)
{
	if (version < 2)
		return !e->npy && !e->ncapture_py && !e->py_status && !e->capture_py_status;
	return e->npy <= EMBER_GPU_MAX_PY_FRAMES && e->ncapture_py <= EMBER_GPU_MAX_PY_FRAMES &&
	       e->py_status < EMBER_PY_STATUS_MAX && e->capture_py_status < EMBER_PY_STATUS_MAX &&
	       (e->npy == 0 || e->py_status) && (e->ncapture_py == 0 || e->capture_py_status);
}

/* Validates a whole BATCH payload before storing anything from it. */
static int parse_batch(struct gpu_receiver *r, struct client *c, uint16_t version,
		       const uint8_t *p, size_t len)
{
	struct ember_gpu_batch bt;
	size_t off;

	if (len < sizeof(bt))
		return -EBADMSG;
	memcpy(&bt, p, sizeof(bt));
	if (bt.reserved || bt.nentries > (len - sizeof(bt)) / sizeof(struct ember_gpu_entry) ||
	    bt.end_ns < bt.start_ns)
		return -EBADMSG;
	for (int pass = 0; pass < 2; pass++) {
		off = sizeof(bt);
		for (uint32_t i = 0; i < bt.nentries; i++) {
			struct ember_gpu_entry e;
			size_t need;

			if (len - off < sizeof(e))
				return -EBADMSG;
			memcpy(&e, p + off, sizeof(e));
			if (e.op < EMBER_GPU_OP_KERNEL || e.op > EMBER_GPU_OP_GRAPH ||
			    e.name_len > EMBER_GPU_MAX_NAME || e.nframes > EMBER_GPU_MAX_FRAMES ||
			    e.ncapture > EMBER_GPU_MAX_FRAMES || !py_fields_ok(&e, version) ||
			    (e.flags & ~(uint32_t)(EMBER_GPU_ENTRY_NO_STACK |
						   EMBER_GPU_ENTRY_UNSAMPLED | EMBER_GPU_ENTRY_GRAPH)))
				return -EBADMSG;
			need = sizeof(e) + ember_gpu_pad8(e.name_len) +
			       ((size_t)e.nframes + e.ncapture) * sizeof(uint64_t) +
			       ((size_t)e.npy + e.ncapture_py) * EMBER_GPU_PY_FRAME_SIZE;
			if (len - off < need)
				return -EBADMSG;
			if (pass == 1) {
				const uint8_t *q = p + off + sizeof(e);
				uint64_t pcs[EMBER_GPU_MAX_FRAMES], cpcs[EMBER_GPU_MAX_FRAMES];
				struct ember_py_frame py[2 * EMBER_GPU_MAX_PY_FRAMES];
				size_t at = ember_gpu_pad8(e.name_len);

				memcpy(pcs, q + at, e.nframes * sizeof(uint64_t));
				at += e.nframes * sizeof(uint64_t);
				memcpy(cpcs, q + at, e.ncapture * sizeof(uint64_t));
				at += e.ncapture * sizeof(uint64_t);
				memcpy(py, q + at, ((size_t)e.npy + e.ncapture_py) * sizeof(*py));
				if (store_entry(r, c, &bt, &e, (const char *)q, pcs, cpcs, py))
					return -ENOMEM;
			}
			off += need;
		}
		if (off != len)
			return -EBADMSG;
	}
	pthread_mutex_lock(&r->lock);
	r->stats.batches++;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int parse_counters(struct gpu_receiver *r, struct client *c, const uint8_t *p,
			  size_t len)
{
	struct ember_gpu_counters h;

	if (len < sizeof(h))
		return -EBADMSG;
	memcpy(&h, p, sizeof(h));
	if (h.reserved || h.ncounters > 256 || len != sizeof(h) + (size_t)h.ncounters * 8)
		return -EBADMSG;
	pthread_mutex_lock(&r->lock);
	for (uint32_t i = 0; i < h.ncounters && i < EMBER_GPU_CTR_COUNT; i++) {
		uint64_t v;

		memcpy(&v, p + sizeof(h) + (size_t)i * 8, 8);
		/* Cumulative in the library: add what is new since this client's last report. */
		if (v >= c->ctr[i])
			r->stats.lib[i] += v - c->ctr[i];
		c->ctr[i] = v;
	}
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int handle_msg(struct gpu_receiver *r, struct client *c, const struct ember_gpu_hdr *h,
		      const uint8_t *p)
{
	if (h->type == EMBER_GPU_MSG_HELLO) {
		if (c->hello || h->length != sizeof(struct ember_gpu_hello))
			return -EBADMSG;
		c->hello = true;
		return 0;
	}
	if (!c->hello)
		return -EBADMSG;
	if (h->type == EMBER_GPU_MSG_BATCH)
		return parse_batch(r, c, h->version, p, h->length);
	if (h->type == EMBER_GPU_MSG_COUNTERS)
		return parse_counters(r, c, p, h->length);
	return -EBADMSG;
}

/* Why a client is disconnected, from a parse or buffer error. */
static enum gpu_refuse_reason refuse_reason(int err)
{
	switch (err) {
	case -EMSGSIZE: return GPU_REFUSE_OVERSIZED;
	case -EDQUOT: return GPU_REFUSE_UID_BYTES;
	case -ENOBUFS: return GPU_REFUSE_TOTAL_BYTES;
	case -ETIMEDOUT: return GPU_REFUSE_TIMEOUT;
	default: return GPU_REFUSE_MALFORMED;
	}
}

/* Handles the complete messages at the start of c->rx and keeps the rest. */
static int client_parse(struct gpu_receiver *r, struct client *c, int64_t now)
{
	size_t off = 0;
	int err = 0;

	while (c->rxlen - off >= sizeof(struct ember_gpu_hdr)) {
		struct ember_gpu_hdr h;

		memcpy(&h, c->rx + off, sizeof(h));
		if (h.magic != EMBER_GPU_MAGIC || h.version < EMBER_GPU_VERSION_MIN ||
		    h.version > EMBER_GPU_VERSION || h.reserved) {
			err = -EBADMSG;
			break;
		}
		if (h.length > EMBER_GPU_MAX_MSG) {
			err = -EMSGSIZE;
			break;
		}
		if (c->rxlen - off - sizeof(h) < h.length)
			break;
		err = handle_msg(r, c, &h, c->rx + off + sizeof(h));
		if (err)
			break;
		off += sizeof(h) + h.length;
	}
	if (off) {
		memmove(c->rx, c->rx + off, c->rxlen - off);
		c->rxlen -= off;
		c->partial_ms = c->rxlen ? now : 0;
	}
	return err;
}

/* Takes len bytes of c's stream: buffers them (within the byte bounds) and handles every
 * message they complete. Returns 0, or < 0 to disconnect the client. */
static int client_input(struct gpu_receiver *r, struct client *c, const uint8_t *data,
			size_t len, int64_t now)
{
	if (len)
		c->last_rx_ms = now;
	while (len) {
		size_t want = RX_MIN, take;
		int err;

		if (c->rxlen >= sizeof(struct ember_gpu_hdr)) {
			struct ember_gpu_hdr h;

			/* client_parse() left an incomplete message with a valid header. */
			memcpy(&h, c->rx, sizeof(h));
			if (sizeof(h) + (size_t)h.length > want)
				want = sizeof(h) + (size_t)h.length;
		}
		if (c->rxcap < want) {
			err = client_set_cap(r, c, want);
			if (err)
				return err;
		}
		take = c->rxcap - c->rxlen < len ? c->rxcap - c->rxlen : len;
		if (!c->rxlen)
			c->partial_ms = now;
		memcpy(c->rx + c->rxlen, data, take);
		c->rxlen += take;
		data += take;
		len -= take;
		err = client_parse(r, c, now);
		if (err)
			return err;
	}
	/* Nothing partial, or only a small part: give a large buffer back. */
	if (c->rxlen == 0 && c->rxcap)
		(void)client_set_cap(r, c, 0);
	else if (c->rxlen <= RX_MIN && c->rxcap > RX_KEEP)
		(void)client_set_cap(r, c, RX_MIN);
	return 0;
}

/* Reads what the client sent; returns 0, or < 0 to disconnect it (EOF, error, bad input). */
static int client_read(struct gpu_receiver *r, struct client *c)
{
	/* A bounded number of reads: a client that never stops sending cannot starve the rest. */
	for (int i = 0; i < READS_PER_WAKE; i++) {
		ssize_t n = recv(c->fd, r->rbuf, sizeof(r->rbuf), MSG_DONTWAIT);
		int err;

		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -errno;
		err = client_input(r, c, r->rbuf, (size_t)n, now_ms());
		if (err)
			return err;
	}
	return 0;
}

/* The time c is closed at unless it sends; INT64_MAX for none. */
static int64_t client_deadline(const struct gpu_receiver *r, const struct client *c,
			       int64_t hello_ms, int64_t idle_ms, int64_t partial_ms)
{
	int64_t d = INT64_MAX;

	(void)r;
	if (!c->hello && hello_ms > 0)
		d = c->accepted_ms + hello_ms;
	if (idle_ms > 0 && c->last_rx_ms + idle_ms < d)
		d = c->last_rx_ms + idle_ms;
	if (c->partial_ms && partial_ms > 0 && c->partial_ms + partial_ms < d)
		d = c->partial_ms + partial_ms;
	return d;
}

/* Out of descriptors: accept the waiting client into the reserve descriptor's place and close
 * it, so that the listening socket does not stay readable, and stop accepting for a while. */
static void accept_no_fds(struct gpu_receiver *r, int err)
{
	static int64_t last_warn_ms;
	int64_t now = now_ms();

	if (r->reserve_fd >= 0) {
		int fd;

		close(r->reserve_fd);
		fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			close(fd);
		r->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	count_refused(r, GPU_REFUSE_NO_FDS);
	r->accept_paused_until_ms = now + ACCEPT_BACKOFF_MS;
	if (!last_warn_ms || now - last_warn_ms > 60000) {
		last_warn_ms = now;
		log_warn("gpu_receiver: accept: %s; refusing GPU clients for a while (%zu connected)",
			 strerror(err), r->nclients);
	}
}

/* The client bound: the configured one, and never more than a quarter of the descriptors this
 * process may open, so that GPU clients cannot take the descriptors profiles are written with. */
static size_t effective_max_clients(size_t max)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur / 4 < max)
		max = rl.rlim_cur / 4;
	return max;
}

static void accept_clients(struct gpu_receiver *r)
{
	for (;;) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		struct client *nc, c = { .fd = -1 };
		struct uid_use *u;
		size_t max, max_uid;
		int fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				accept_no_fds(r, errno);
			return;
		}
		pthread_mutex_lock(&r->lock);
		max = r->max_clients;
		max_uid = r->max_uid_clients;
		pthread_mutex_unlock(&r->lock);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0) {
			close(fd);
			count_refused(r, GPU_REFUSE_NO_IDENTITY);
			continue;
		}
		u = uid_find(r, cred.uid);
		if (u && u->conns >= max_uid) {
			close(fd);
			count_refused(r, GPU_REFUSE_UID_LIMIT);
			continue;
		}
		if (r->nclients >= effective_max_clients(max)) {
			close(fd);
			count_refused(r, GPU_REFUSE_TOTAL_LIMIT);
			continue;
		}
		c.fd = fd;
		c.pid = cred.pid;
		c.uid = cred.uid;
		c.accepted_ms = c.last_rx_ms = now_ms();
		/* Every sample carries this start time: with it, a pid that is reused after the
		 * client exits is told apart from the client. No start time, no samples. */
		if (procmaps_start_time(cred.pid, &c.start_time) < 0 || !c.start_time) {
			close(fd);
			count_refused(r, GPU_REFUSE_NO_IDENTITY);
			continue;
		}
		nc = realloc(r->clients, (r->nclients + 1) * sizeof(*nc));
		if (nc)
			r->clients = nc;
		if (!u && nc) {
			struct uid_use *nu = realloc(r->uids, (r->nuids + 1) * sizeof(*nu));

			if (nu) {
				r->uids = nu;
				u = &r->uids[r->nuids++];
				*u = (struct uid_use){ .uid = cred.uid };
			}
		}
		if (!nc || !u) {
			close(fd);
			continue;
		}
		u->conns++;
		r->clients[r->nclients++] = c;
		pthread_mutex_lock(&r->lock);
		r->stats.accepted++;
		r->stats.clients = r->nclients;
		pthread_mutex_unlock(&r->lock);
		log_debug("gpu_receiver: pid %d (uid %u) connected", (int)cred.pid,
			  (unsigned)cred.uid);
	}
}

static void client_drop(struct gpu_receiver *r, size_t i, int err)
{
	if (err != -ECONNRESET && err != -EPIPE && err != -ENOMEM) {
		log_debug("gpu_receiver: pid %d: %s, disconnecting", (int)r->clients[i].pid,
			  gpu_refuse_reason_name(refuse_reason(err)));
		count_refused(r, refuse_reason(err));
	}
	client_close(r, i);
}

static void *receiver_main(void *arg)
{
	struct gpu_receiver *r = arg;
	struct pollfd *pfds = NULL;

	for (;;) {
		size_t n = r->nclients + 2;
		struct pollfd *np = realloc(pfds, n * sizeof(*pfds));
		int64_t now = now_ms(), next = INT64_MAX, hello_ms, idle_ms, partial_ms;
		int timeout;

		if (!np) {
			usleep(100000);
			continue;
		}
		pfds = np;
		pthread_mutex_lock(&r->lock);
		hello_ms = r->hello_timeout_ms;
		idle_ms = r->idle_timeout_ms;
		partial_ms = r->partial_timeout_ms;
		pthread_mutex_unlock(&r->lock);
		/* Silent clients, and clients that trickle a message, are closed at their deadline. */
		for (size_t i = r->nclients; i-- > 0;) {
			int64_t d = client_deadline(r, &r->clients[i], hello_ms, idle_ms, partial_ms);

			if (d <= now)
				client_drop(r, i, -ETIMEDOUT);
			else if (d < next)
				next = d;
		}
		n = r->nclients + 2;
		pfds[0] = (struct pollfd){ .fd = r->efd, .events = POLLIN };
		pfds[1] = (struct pollfd){ .fd = r->lfd, .events = POLLIN };
		if (r->accept_paused_until_ms > now) {
			pfds[1].fd = -1; /* out of descriptors: not now */
			if (r->accept_paused_until_ms < next)
				next = r->accept_paused_until_ms;
		}
		for (size_t i = 0; i < r->nclients; i++)
			pfds[i + 2] = (struct pollfd){ .fd = r->clients[i].fd, .events = POLLIN };
		timeout = next == INT64_MAX ? -1 : next - now > 60000 ? 60000 : (int)(next - now);
		if (poll(pfds, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfds[0].revents)
			break;
		/* Clients first (indices shift when one closes: walk backwards). */
		for (size_t i = n - 2; i-- > 0;) {
			int err;

			if (!pfds[i + 2].revents)
				continue;
			err = client_read(r, &r->clients[i]);
			if (err)
				client_drop(r, i, err);
		}
		if (pfds[1].revents)
			accept_clients(r);
	}
	free(pfds);
	return NULL;
}

/* ---- fuzzing entry point (gpu_receiver_internal.h) ---- */

struct gpu_receiver *gpu_receiver_new_detached(void)
{
	struct gpu_receiver *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->lfd = r->efd = r->reserve_fd = -1;
	r->tail = &r->head;
	r->max_clients = GPU_RECV_MAX_CLIENTS;
	r->max_pending = 200000;
	r->max_pending_bytes = 64u << 20;
	r->max_uid_clients = GPU_RECV_MAX_UID_CLIENTS;
	r->max_uid_bytes = GPU_RECV_MAX_UID_BYTES;
	r->max_rx_bytes = GPU_RECV_MAX_RX_BYTES;
	pthread_mutex_init(&r->lock, NULL);
	r->clients = calloc(1, sizeof(*r->clients));
	r->uids = calloc(1, sizeof(*r->uids));
	if (!r->clients || !r->uids) {
		gpu_receiver_stop(r);
		return NULL;
	}
	r->clients[0] = (struct client){ .fd = -1, .pid = 1, .uid = 0, .start_time = 1 };
	r->uids[0] = (struct uid_use){ .uid = 0, .conns = 1 };
	r->nclients = 1;
	r->nuids = 1;
	return r;
}

int gpu_receiver_feed(struct gpu_receiver *r, const uint8_t *data, size_t len)
{
	if (!r->nclients)
		return -ENOTCONN;
	return client_input(r, &r->clients[0], data, len, 1);
}
