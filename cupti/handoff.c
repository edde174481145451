#include "handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clog.h"
#include "counters.h"
#include "join.h"

#define RETRY_NS 1000000000ull

struct handoff {
	struct sockaddr_un addr;
	int fd;
	struct ember_gpu_hello hello;
	uint64_t last_try_ns;
	/* Queue of whole messages; `sent` bytes of it already written. */
	uint8_t *q;
	size_t qlen, qcap, sent, max_queue;
	/* Batch being built. */
	uint8_t *b;
	size_t blen, bcap;
	uint64_t bstart, bend;
	uint32_t bentries;
	int in_batch;
};

int handoff_new(const char *path, size_t max_queue, const struct ember_gpu_hello *hello,
		struct handoff **ret_h)
{
	struct handoff *h;

	if (!path || strlen(path) >= sizeof(h->addr.sun_path))
		return -ENAMETOOLONG;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->fd = -1;
	h->addr.sun_family = AF_UNIX;
	strcpy(h->addr.sun_path, path);
	h->hello = *hello;
	h->max_queue = max_queue;
	*ret_h = h;
	return 0;
}

void handoff_free(struct handoff *h)
{
	if (!h)
		return;
	if (h->fd >= 0)
		close(h->fd);
	free(h->q);
	free(h->b);
	free(h);
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	size_t ncap = *cap ? *cap : 4096;
	uint8_t *nb;

	while (ncap < need)
		ncap *= 2;
	if (ncap == *cap)
		return 0;
	nb = realloc(*buf, ncap);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = ncap;
	return 0;
}

/* Queues one complete message (header included), or drops it. */
static void enqueue(struct handoff *h, const uint8_t *msg, size_t len)
{
	if (h->qlen + len > h->max_queue || grow(&h->q, &h->qcap, h->qlen + len)) {
		counters_add(EMBER_GPU_CTR_HANDOFF_DROPPED, 1);
		counters_add(EMBER_GPU_CTR_HANDOFF_DROPPED_BYTES, len);
		return;
	}
	memcpy(h->q + h->qlen, msg, len);
	h->qlen += len;
}

static void put_hdr(uint8_t *p, uint16_t type, uint32_t length)
{
	struct ember_gpu_hdr hdr = { .magic = EMBER_GPU_MAGIC, .version = EMBER_GPU_VERSION,
				     .type = type, .length = length };

	memcpy(p, &hdr, sizeof(hdr));
}

static void batch_start_msg(struct handoff *h)
{
	h->blen = sizeof(struct ember_gpu_hdr) + sizeof(struct ember_gpu_batch);
	h->bentries = 0;
	(void)grow(&h->b, &h->bcap, h->blen);
}

static void batch_close_msg(struct handoff *h)
{
	struct ember_gpu_batch bt = { .start_ns = h->bstart, .end_ns = h->bend,
				      .nentries = h->bentries };

	if (!h->b || h->bentries == 0)
		return;
	put_hdr(h->b, EMBER_GPU_MSG_BATCH, (uint32_t)(h->blen - sizeof(struct ember_gpu_hdr)));
	memcpy(h->b + sizeof(struct ember_gpu_hdr), &bt, sizeof(bt));
	enqueue(h, h->b, h->blen);
}

void handoff_batch_begin(struct handoff *h, uint64_t start_ns, uint64_t end_ns)
{
	h->bstart = start_ns;
	h->bend = end_ns;
	h->in_batch = 1;
	batch_start_msg(h);
}

/* A walk's status as the receiver accepts it: a known one, or 0 (no walk). */
static uint8_t wire_status(uint32_t st)
{
	return st < EMBER_PY_STATUS_MAX ? (uint8_t)st : 0;
}

int handoff_batch_add(struct handoff *h, const struct join_entry *e)
{
	size_t name_len = e->name ? strnlen(e->name, EMBER_GPU_MAX_NAME) : 0;
	size_t nf = e->npcs < EMBER_GPU_MAX_FRAMES ? e->npcs : EMBER_GPU_MAX_FRAMES;
	size_t nc = e->ncapture < EMBER_GPU_MAX_FRAMES ? e->ncapture : EMBER_GPU_MAX_FRAMES;
	size_t npy = !e->py ? 0 : e->npy < EMBER_GPU_MAX_PY_FRAMES ? e->npy : EMBER_GPU_MAX_PY_FRAMES;
	size_t ncpy = !e->capture_py ? 0 : e->ncapture_py < EMBER_GPU_MAX_PY_FRAMES ? e->ncapture_py
										  : EMBER_GPU_MAX_PY_FRAMES;
	size_t need;
	struct ember_gpu_entry ent;
	uint8_t *p;

	/* Frames without a status would be refused as malformed: sent without them. */
	if (!wire_status(e->py_status))
		npy = 0;
	if (!wire_status(e->capture_py_status))
		ncpy = 0;
	need = sizeof(struct ember_gpu_entry) + ember_gpu_pad8((uint32_t)name_len) +
	       (nf + nc) * sizeof(uint64_t) + (npy + ncpy) * EMBER_GPU_PY_FRAME_SIZE;
	ent = (struct ember_gpu_entry){
		.op = e->op, .name_len = (uint16_t)name_len, .nframes = (uint16_t)nf,
		.ncapture = (uint16_t)nc, .flags = e->flags, .gpu_time_ns = e->gpu_time_ns,
		.launches = e->launches, .npy = (uint8_t)npy, .ncapture_py = (uint8_t)ncpy,
		.py_status = wire_status(e->py_status),
		.capture_py_status = wire_status(e->capture_py_status),
	};

	if (!h->in_batch)
		return -EINVAL;
	if (h->blen + need - sizeof(struct ember_gpu_hdr) > EMBER_GPU_MAX_MSG) {
		batch_close_msg(h);
		batch_start_msg(h);
	}
	if (grow(&h->b, &h->bcap, h->blen + need)) {
		counters_add(EMBER_GPU_CTR_HANDOFF_DROPPED, 1);
		return -ENOMEM;
	}
	p = h->b + h->blen;
	memcpy(p, &ent, sizeof(ent));
	p += sizeof(ent);
	memset(p, 0, ember_gpu_pad8((uint32_t)name_len));
	if (name_len)
		memcpy(p, e->name, name_len);
	p += ember_gpu_pad8((uint32_t)name_len);
	if (nf)
		memcpy(p, e->pcs, nf * sizeof(uint64_t));
	p += nf * sizeof(uint64_t);
	if (nc)
		memcpy(p, e->capture_pcs, nc * sizeof(uint64_t));
	p += nc * sizeof(uint64_t);
	if (npy)
		memcpy(p, e->py, npy * EMBER_GPU_PY_FRAME_SIZE);
	p += npy * EMBER_GPU_PY_FRAME_SIZE;
	if (ncpy)
		memcpy(p, e->capture_py, ncpy * EMBER_GPU_PY_FRAME_SIZE);
	h->blen += need;
	h->bentries++;
	return 0;
}

void handoff_batch_end(struct handoff *h)
{
	if (!h->in_batch)
		return;
	batch_close_msg(h);
	h->in_batch = 0;
	h->blen = 0;
}

void handoff_counters(struct handoff *h)
{
	uint8_t msg[sizeof(struct ember_gpu_hdr) + sizeof(struct ember_gpu_counters) +
		    EMBER_GPU_CTR_COUNT * sizeof(uint64_t)];
	struct ember_gpu_counters c = { .ncounters = EMBER_GPU_CTR_COUNT };
	uint8_t *p = msg + sizeof(struct ember_gpu_hdr);

	put_hdr(msg, EMBER_GPU_MSG_COUNTERS, (uint32_t)(sizeof(msg) - sizeof(struct ember_gpu_hdr)));
	memcpy(p, &c, sizeof(c));
	p += sizeof(c);
	for (int i = 0; i < EMBER_GPU_CTR_COUNT; i++) {
		uint64_t v = counters_get((enum ember_gpu_counter)i);

		memcpy(p + (size_t)i * sizeof(v), &v, sizeof(v));
	}
	enqueue(h, msg, sizeof(msg));
}

static size_t msg_len_at(const struct handoff *h, size_t off)
{
	struct ember_gpu_hdr hdr;

	memcpy(&hdr, h->q + off, sizeof(hdr));
	return sizeof(hdr) + hdr.length;
}

static uint16_t msg_type_at(const struct handoff *h, size_t off)
{
	struct ember_gpu_hdr hdr;

	memcpy(&hdr, h->q + off, sizeof(hdr));
	return hdr.type;
}

/* Removes the first `len` bytes of the queue. */
static void consume(struct handoff *h, size_t len)
{
	memmove(h->q, h->q + len, h->qlen - len);
	h->qlen -= len;
}

static void disconnect(struct handoff *h)
{
	size_t off = 0;

	close(h->fd);
	h->fd = -1;
	/* Drop what was written, and a message cut in the middle. */
	while (off < h->qlen && off < h->sent) {
		size_t len = msg_len_at(h, off);

		if (off + len > h->sent && msg_type_at(h, off) != EMBER_GPU_MSG_HELLO) {
			counters_add(EMBER_GPU_CTR_HANDOFF_DROPPED, 1);
			counters_add(EMBER_GPU_CTR_HANDOFF_DROPPED_BYTES, len);
		}
		off += len;
	}
	consume(h, off);
	h->sent = 0;
	/* A HELLO never sent is not kept: the next connection starts with a fresh one. */
	if (h->qlen && msg_type_at(h, 0) == EMBER_GPU_MSG_HELLO)
		consume(h, msg_len_at(h, 0));
}

static int try_connect(struct handoff *h)
{
	uint8_t msg[sizeof(struct ember_gpu_hdr) + sizeof(struct ember_gpu_hello)];
	int fd, err;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&h->addr, sizeof(h->addr)) < 0 &&
	    errno != EINPROGRESS) {
		err = -errno;
		close(fd);
		return err;
	}
	h->fd = fd;
	/* HELLO goes first, ahead of anything queued while disconnected. */
	put_hdr(msg, EMBER_GPU_MSG_HELLO, sizeof(struct ember_gpu_hello));
	memcpy(msg + sizeof(struct ember_gpu_hdr), &h->hello, sizeof(h->hello));
	if (grow(&h->q, &h->qcap, h->qlen + sizeof(msg))) {
		disconnect(h);
		return -ENOMEM;
	}
	memmove(h->q + sizeof(msg), h->q, h->qlen);
	memcpy(h->q, msg, sizeof(msg));
	h->qlen += sizeof(msg);
	h->sent = 0;
	clog_debug("handoff: connected to %s", h->addr.sun_path);
	return 0;
}

int handoff_pump(struct handoff *h, uint64_t now_ns)
{
	if (h->fd < 0) {
		int err;

		if (h->last_try_ns && now_ns - h->last_try_ns < RETRY_NS)
			return -ENOTCONN;
		h->last_try_ns = now_ns;
		err = try_connect(h);
		if (err) {
			clog_debug("handoff: connect %s: %s", h->addr.sun_path, strerror(-err));
			return err;
		}
	}
	while (h->sent < h->qlen) {
		ssize_t w = send(h->fd, h->q + h->sent, h->qlen - h->sent,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w < 0) {
			int err = -errno;

			if (err == -EAGAIN || err == -EINTR)
				return 0;
			clog_debug("handoff: send: %s", strerror(-err));
			disconnect(h);
			return err;
		}
		h->sent += (size_t)w;
	}
	h->qlen = 0;
	h->sent = 0;
	return 1;
}

void handoff_drain(struct handoff *h, int timeout_ms)
{
	struct timespec ts;
	uint64_t now, deadline;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	deadline = now + (uint64_t)timeout_ms * 1000000ull;
	h->last_try_ns = 0;
	while (handoff_pump(h, now) == 0 && now < deadline) {
		struct pollfd pfd = { .fd = h->fd, .events = POLLOUT };

		(void)poll(&pfd, 1, (int)((deadline - now) / 1000000ull) + 1);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	}
}

size_t handoff_queued(const struct handoff *h)
{
	return h->qlen - h->sent;
}

int handoff_connected(const struct handoff *h)
{
	return h->fd >= 0;
}
