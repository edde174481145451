#include "gpu_receiver.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "demangle.h"
#include "log.h"
#include "metrics.h"
#include "procmaps.h"

#define RX_INITIAL 65536

struct client {
	int fd;
	pid_t pid;
	uint64_t start_time;
	bool hello;
	uint8_t *rx;
	size_t rxlen, rxcap;
	uint64_t ctr[EMBER_GPU_CTR_COUNT]; /* last COUNTERS values */
};

struct stored {
	struct stored *next;
	struct gpu_sample s;
	/* leaf, name, pcs, capture pcs follow */
};

struct gpu_receiver {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd, efd;
	pthread_t thread;
	bool thread_started;
	struct client *clients;
	size_t nclients;

	pthread_mutex_t lock; /* everything below */
	struct stored *head, **tail;
	size_t pending, pending_bytes;
	size_t max_clients, max_pending, max_pending_bytes;
	struct gpu_receiver_stats stats;
};

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
	r->tail = &r->head;
	r->max_clients = 1024;
	r->max_pending = 200000;
	r->max_pending_bytes = 64u << 20;
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
	free(c->rx);
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
	if (r->lfd >= 0)
		close(r->lfd);
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
	metrics_counter(w, "ember_gpu_dropped_total", "GPU entries dropped, by reason",
			(const char *[]){ "reason", "agent_queue_full", NULL }, (double)gs.dropped);
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
		       const char *name_in, const uint64_t *pcs, const uint64_t *cpcs)
{
	char name[EMBER_GPU_MAX_NAME + 1], *dm = NULL;
	const char *shown;
	size_t leaf_len, size;
	struct stored *st;
	char *p;

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
	       ((size_t)e->nframes + e->ncapture) * sizeof(uint64_t);
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
	/* PC arrays first (8-byte aligned right after the struct), then the strings. */
	p = (char *)(st + 1);
	st->s.pcs = (const uint64_t *)p;
	memcpy(p, pcs, (size_t)e->nframes * sizeof(uint64_t));
	p += (size_t)e->nframes * sizeof(uint64_t);
	if (e->ncapture) {
		st->s.capture_pcs = (const uint64_t *)p;
		memcpy(p, cpcs, (size_t)e->ncapture * sizeof(uint64_t));
		p += (size_t)e->ncapture * sizeof(uint64_t);
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
	st->s.gpu_ns = e->gpu_time_ns > INT64_MAX ? INT64_MAX : (int64_t)e->gpu_time_ns;
	st->s.launches = e->launches > INT64_MAX ? INT64_MAX : (int64_t)e->launches;
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

/* Validates a whole BATCH payload before storing anything from it. */
static int parse_batch(struct gpu_receiver *r, struct client *c, const uint8_t *p, size_t len)
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
			    e.ncapture > EMBER_GPU_MAX_FRAMES || e.reserved ||
			    (e.flags & ~(uint32_t)(EMBER_GPU_ENTRY_NO_STACK |
						   EMBER_GPU_ENTRY_UNSAMPLED | EMBER_GPU_ENTRY_GRAPH)))
				return -EBADMSG;
			need = sizeof(e) + ember_gpu_pad8(e.name_len) +
			       ((size_t)e.nframes + e.ncapture) * sizeof(uint64_t);
			if (len - off < need)
				return -EBADMSG;
			if (pass == 1) {
				const uint8_t *q = p + off + sizeof(e);
				uint64_t pcs[EMBER_GPU_MAX_FRAMES], cpcs[EMBER_GPU_MAX_FRAMES];

				memcpy(pcs, q + ember_gpu_pad8(e.name_len), e.nframes * sizeof(uint64_t));
				memcpy(cpcs, q + ember_gpu_pad8(e.name_len) + e.nframes * sizeof(uint64_t),
				       e.ncapture * sizeof(uint64_t));
				if (store_entry(r, c, &bt, &e, (const char *)q, pcs, cpcs))
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
		return parse_batch(r, c, p, h->length);
	if (h->type == EMBER_GPU_MSG_COUNTERS)
		return parse_counters(r, c, p, h->length);
	return -EBADMSG;
}

/* Reads what the client sent; returns 0, or < 0 to disconnect it (EOF, error, bad input). */
static int client_read(struct gpu_receiver *r, struct client *c)
{
	for (;;) {
		size_t off = 0;
		ssize_t n;

		if (c->rxlen == c->rxcap) {
			/* Only a message longer than the buffer gets here: grow up to the max. */
			size_t ncap = c->rxcap * 2;
			uint8_t *nb;

			if (ncap > sizeof(struct ember_gpu_hdr) + EMBER_GPU_MAX_MSG)
				ncap = sizeof(struct ember_gpu_hdr) + EMBER_GPU_MAX_MSG;
			if (ncap <= c->rxcap)
				return -EBADMSG;
			nb = realloc(c->rx, ncap);
			if (!nb)
				return -ENOMEM;
			c->rx = nb;
			c->rxcap = ncap;
		}
		n = recv(c->fd, c->rx + c->rxlen, c->rxcap - c->rxlen, MSG_DONTWAIT);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -errno;
		c->rxlen += (size_t)n;
		while (c->rxlen - off >= sizeof(struct ember_gpu_hdr)) {
			struct ember_gpu_hdr h;
			int err;

			memcpy(&h, c->rx + off, sizeof(h));
			if (h.magic != EMBER_GPU_MAGIC || h.version != EMBER_GPU_VERSION ||
			    h.reserved || h.length > EMBER_GPU_MAX_MSG)
				return -EBADMSG;
			if (c->rxlen - off - sizeof(h) < h.length)
				break;
			err = handle_msg(r, c, &h, c->rx + off + sizeof(h));
			if (err)
				return err;
			off += sizeof(h) + h.length;
		}
		memmove(c->rx, c->rx + off, c->rxlen - off);
		c->rxlen -= off;
	}
}

static void accept_clients(struct gpu_receiver *r)
{
	for (;;) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		struct client *nc, c = { .fd = -1 };
		size_t max;
		int fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		pthread_mutex_lock(&r->lock);
		max = r->max_clients;
		pthread_mutex_unlock(&r->lock);
		if (r->nclients >= max ||
		    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0) {
			close(fd);
			pthread_mutex_lock(&r->lock);
			r->stats.rejected++;
			pthread_mutex_unlock(&r->lock);
			continue;
		}
		c.fd = fd;
		c.pid = cred.pid;
		(void)procmaps_start_time(cred.pid, &c.start_time);
		c.rx = malloc(RX_INITIAL);
		nc = realloc(r->clients, (r->nclients + 1) * sizeof(*nc));
		if (!c.rx || !nc) {
			free(c.rx);
			if (nc)
				r->clients = nc;
			close(fd);
			continue;
		}
		c.rxcap = RX_INITIAL;
		r->clients = nc;
		r->clients[r->nclients++] = c;
		pthread_mutex_lock(&r->lock);
		r->stats.accepted++;
		r->stats.clients = r->nclients;
		pthread_mutex_unlock(&r->lock);
		log_debug("gpu_receiver: pid %d connected", (int)cred.pid);
	}
}

static void *receiver_main(void *arg)
{
	struct gpu_receiver *r = arg;
	struct pollfd *pfds = NULL;

	for (;;) {
		size_t n = r->nclients + 2;
		struct pollfd *np = realloc(pfds, n * sizeof(*pfds));

		if (!np) {
			usleep(100000);
			continue;
		}
		pfds = np;
		pfds[0] = (struct pollfd){ .fd = r->efd, .events = POLLIN };
		pfds[1] = (struct pollfd){ .fd = r->lfd, .events = POLLIN };
		for (size_t i = 0; i < r->nclients; i++)
			pfds[i + 2] = (struct pollfd){ .fd = r->clients[i].fd, .events = POLLIN };
		if (poll(pfds, n, -1) < 0) {
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
			if (err) {
				if (err == -EBADMSG) {
					log_debug("gpu_receiver: pid %d sent a malformed message, "
						  "disconnecting", (int)r->clients[i].pid);
					pthread_mutex_lock(&r->lock);
					r->stats.rejected++;
					pthread_mutex_unlock(&r->lock);
				}
				client_close(r, i);
			}
		}
		if (pfds[1].revents)
			accept_clients(r);
	}
	free(pfds);
	return NULL;
}
