/* The agent's side of the GPU hand-off, without CUDA: a test client that speaks
 * cupti/ember_gpu_proto.h (encoded here by hand, not by the library) sends HELLO, BATCH and
 * COUNTERS; gpu_receiver validates and stores them; gpuprof symbolizes this very process's PCs;
 * stackagg builds the gpu profile, written to OUTDIR/gpu.pb.gz for check_gpu_pprof.py (which
 * reads it with pprofdump). Malformed clients are disconnected while the good one is served. */
#include <errno.h>
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "fileio.h"
#include "gpu_receiver.h"
#include "gpuprof.h"
#include "profile_types.h"
#include "stackagg.h"

struct msg {
	uint8_t b[65536];
	size_t len;
};

static void msg_add(struct msg *m, const void *p, size_t n)
{
	if (!n)
		return;
	memcpy(m->b + m->len, p, n);
	m->len += n;
}

static void msg_begin(struct msg *m, uint16_t type)
{
	struct ember_gpu_hdr h = { .magic = EMBER_GPU_MAGIC, .version = EMBER_GPU_VERSION,
				   .type = type };

	m->len = 0;
	msg_add(m, &h, sizeof(h));
}

static void msg_end(struct msg *m)
{
	uint32_t len = (uint32_t)(m->len - sizeof(struct ember_gpu_hdr));

	memcpy(m->b + offsetof(struct ember_gpu_hdr, length), &len, sizeof(len));
}

static void entry(struct msg *m, uint16_t op, const char *name, uint32_t flags,
		  const uint64_t *pcs, size_t n, const uint64_t *cpcs, size_t nc, uint64_t ns,
		  uint64_t launches)
{
	struct ember_gpu_entry e = { .op = op, .name_len = (uint16_t)strlen(name),
				     .nframes = (uint16_t)n, .ncapture = (uint16_t)nc,
				     .flags = flags, .gpu_time_ns = ns, .launches = launches };
	uint8_t pad[8] = { 0 };

	msg_add(m, &e, sizeof(e));
	msg_add(m, name, e.name_len);
	msg_add(m, pad, ember_gpu_pad8(e.name_len) - e.name_len);
	msg_add(m, pcs, n * sizeof(uint64_t));
	msg_add(m, cpcs, nc * sizeof(uint64_t));
}

static int connect_to(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void send_all(int fd, const struct msg *m)
{
	CHECK_INT(send(fd, m->b, m->len, MSG_NOSIGNAL), (long long)m->len);
}

static void send_hello(int fd)
{
	struct ember_gpu_hello h = { .pid = 1 /* a lie: the receiver uses SO_PEERCRED */ };
	struct msg m;

	msg_begin(&m, EMBER_GPU_MSG_HELLO);
	msg_add(&m, &h, sizeof(h));
	msg_end(&m);
	send_all(fd, &m);
}

/* The launch stacks: PCs of this process, as the library would capture them. */
static uint64_t launch_pcs[64], capture_pcs[64];
static size_t nlaunch, ncapture;

static __attribute__((noinline)) void gpu_launch_site(void)
{
	void *buf[64];
	int n = backtrace(buf, 64);

	/* Drop backtrace's own frame: PCs start at this function's caller's return address. */
	for (int i = 0; i < n; i++)
		launch_pcs[nlaunch++] = (uint64_t)(uintptr_t)buf[i];
	__asm__ volatile("" ::: "memory");
}

static __attribute__((noinline)) void graph_capture_site(void)
{
	void *buf[64];
	int n = backtrace(buf, 64);

	for (int i = 0; i < n; i++)
		capture_pcs[ncapture++] = (uint64_t)(uintptr_t)buf[i];
	__asm__ volatile("" ::: "memory");
}

static void wait_entries(struct gpu_receiver *r, uint64_t entries, uint64_t rejected)
{
	struct gpu_receiver_stats st;

	for (int i = 0; i < 500; i++) {
		gpu_receiver_get_stats(r, &st);
		if (st.entries >= entries && st.rejected >= rejected)
			return;
		usleep(10000);
	}
}

struct sink {
	struct symbolizer *sym;
	struct stackagg *agg;
	size_t samples;
	int saw_kernel_demangled, saw_site_under_kernel, saw_main, saw_graph;
};

static void on_sample(void *ctx, const struct gpu_sample *s)
{
	struct sink *k = ctx;
	struct sym_frame frames[GPUPROF_MAX_FRAMES];
	int64_t values[2];
	size_t n = gpuprof_frames(k->sym, NULL, s, frames);

	k->samples++;
	CHECK(s->pid == getpid());
	CHECK(s->start_time != 0); /* the identity the pipeline checks against pid reuse */
	gpuprof_values(s, values);
	CHECK_INT(stackagg_add(k->agg, frames, n, values), 0);
	if (!strcmp(frames[0].name, "[cuda kernel] square(float*, int)")) {
		k->saw_kernel_demangled = 1;
		CHECK_STR(s->name, "_Z6squarePfi");
		for (size_t i = 1; i < n; i++) {
			if (strstr(frames[i].name, "gpu_launch_site"))
				k->saw_site_under_kernel = 1;
			if (!strcmp(frames[i].name, "main"))
				k->saw_main = 1;
		}
	}
	if (s->flags & EMBER_GPU_ENTRY_GRAPH) {
		int cap = 0, marker = 0, launch = 0;

		for (size_t i = 1; i < n; i++) {
			if (strstr(frames[i].name, "graph_capture_site") && !marker)
				cap = 1;
			if (!strcmp(frames[i].name, "[cuda graph launch]"))
				marker = 1;
			if (strstr(frames[i].name, "gpu_launch_site") && marker)
				launch = 1;
		}
		k->saw_graph = cap && marker && launch;
	}
}

static void wait_refused(struct gpu_receiver *r, enum gpu_refuse_reason why, uint64_t n)
{
	struct gpu_receiver_stats st;

	for (int i = 0; i < 500; i++) {
		gpu_receiver_get_stats(r, &st);
		if (st.refused[why] >= n)
			return;
		usleep(10000);
	}
}

static int peer_closed(int fd)
{
	char c;
	struct timeval tv = { .tv_sec = 3 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return recv(fd, &c, 1, 0) == 0;
}

static void noop_sample(void *ctx, const struct gpu_sample *s)
{
	(void)ctx, (void)s;
}

/* The bounds a hostile local user meets: connections per uid, bytes per uid, timeouts, a
 * huge length prefix, absurd values. */
static void test_bounds(struct gpu_receiver *r, const char *path)
{
	struct gpu_receiver_stats st0, st;
	struct ember_gpu_batch bt = { .start_ns = 1000, .end_ns = 2000, .nentries = 2 };
	struct msg m;
	int fds[6], fd;

	gpu_receiver_get_stats(r, &st0);
	/* Per uid: 3 connections kept, the next 3 refused at once (closed by the agent). */
	gpu_receiver_set_client_limits(r, 3, 1u << 20, 64u << 20);
	for (int i = 0; i < 6; i++) {
		fds[i] = connect_to(path);
		CHECK(fds[i] >= 0);
	}
	wait_refused(r, GPU_REFUSE_UID_LIMIT, 3);
	gpu_receiver_get_stats(r, &st);
	CHECK_INT(st.refused[GPU_REFUSE_UID_LIMIT] - st0.refused[GPU_REFUSE_UID_LIMIT], 3);
	CHECK_INT(st.clients, 3);
	CHECK(peer_closed(fds[5]));
	for (int i = 0; i < 6; i++)
		close(fds[i]);
	for (int i = 0; i < 300 && (gpu_receiver_get_stats(r, &st), st.clients); i++)
		usleep(10000);
	CHECK_INT(st.clients, 0);

	/* Bytes per uid: a header announcing 1 MiB, then more than the uid's 64 KiB bound. */
	gpu_receiver_set_client_limits(r, 3, 65536, 64u << 20);
	fd = connect_to(path);
	send_hello(fd);
	msg_begin(&m, EMBER_GPU_MSG_BATCH);
	memcpy(m.b + 8, &(uint32_t){ EMBER_GPU_MAX_MSG }, 4);
	memset(m.b + 16, 0, sizeof(m.b) - 16);
	m.len = sizeof(m.b);
	(void)send(fd, m.b, m.len, MSG_NOSIGNAL);
	(void)send(fd, m.b + 16, 16384, MSG_NOSIGNAL);
	wait_refused(r, GPU_REFUSE_UID_BYTES, 1);
	gpu_receiver_get_stats(r, &st);
	CHECK_INT(st.refused[GPU_REFUSE_UID_BYTES] - st0.refused[GPU_REFUSE_UID_BYTES], 1);
	close(fd);

	/* A length prefix over the protocol's maximum: disconnected, counted as oversized. */
	fd = connect_to(path);
	send_hello(fd);
	msg_begin(&m, EMBER_GPU_MSG_BATCH);
	memcpy(m.b + 8, &(uint32_t){ 0xffffffffu }, 4);
	(void)send(fd, m.b, 16, MSG_NOSIGNAL);
	CHECK(peer_closed(fd));
	close(fd);
	gpu_receiver_get_stats(r, &st);
	CHECK_INT(st.refused[GPU_REFUSE_OVERSIZED] - st0.refused[GPU_REFUSE_OVERSIZED], 1);

	/* Timeouts: one client never says HELLO; one trickles a message, a byte at a time and
	 * more often than the idle timeout, and never finishes it. Both are closed. */
	gpu_receiver_set_client_limits(r, 64, 8u << 20, 64u << 20);
	gpu_receiver_set_timeouts(r, 300, 600, 400);
	fds[0] = connect_to(path);
	fds[1] = connect_to(path);
	send_hello(fds[1]);
	msg_begin(&m, EMBER_GPU_MSG_BATCH);
	bt.nentries = 1;
	msg_add(&m, &bt, sizeof(bt));
	entry(&m, EMBER_GPU_OP_KERNEL, "x", 0, launch_pcs, 2, NULL, 0, 1, 1);
	msg_end(&m);
	for (size_t i = 0; i < 12 && i < m.len; i++) {
		if (send(fds[1], m.b + i, 1, MSG_NOSIGNAL) != 1)
			break;
		usleep(100000);
	}
	CHECK(peer_closed(fds[0]));
	CHECK(peer_closed(fds[1]));
	close(fds[0]);
	close(fds[1]);
	wait_refused(r, GPU_REFUSE_TIMEOUT, st0.refused[GPU_REFUSE_TIMEOUT] + 2);
	gpu_receiver_get_stats(r, &st);
	CHECK_INT(st.refused[GPU_REFUSE_TIMEOUT] - st0.refused[GPU_REFUSE_TIMEOUT], 2);
	gpu_receiver_set_timeouts(r, 10000, 120000, 30000);

	/* Absurd values: an entry of 2^63-1 ns and one of "-1" ns are dropped; the sane one of the
	 * same batch is kept; the client stays connected. */
	(void)gpu_receiver_drain(r, noop_sample, NULL);
	fd = connect_to(path);
	send_hello(fd);
	msg_begin(&m, EMBER_GPU_MSG_BATCH);
	bt.nentries = 3;
	msg_add(&m, &bt, sizeof(bt));
	entry(&m, EMBER_GPU_OP_KERNEL, "huge", 0, launch_pcs, 2, NULL, 0, INT64_MAX, 1);
	entry(&m, EMBER_GPU_OP_KERNEL, "neg", 0, launch_pcs, 2, NULL, 0, UINT64_MAX, 1);
	entry(&m, EMBER_GPU_OP_KERNEL, "sane", 0, launch_pcs, 2, NULL, 0, 5000, 1);
	msg_end(&m);
	send_all(fd, &m);
	wait_entries(r, st.entries + 1, 0);
	gpu_receiver_get_stats(r, &st);
	CHECK_INT(st.absurd - st0.absurd, 2);
	CHECK_INT(st.entries - st0.entries, 1);
	CHECK_INT(gpu_receiver_drain(r, noop_sample, NULL), 1);
	close(fd);
}

/* ---- protocol versions ---- */

struct py_seen {
	size_t samples, npy, ncapture_py;
	uint32_t py_status, capture_py_status;
	struct ember_py_frame py[4], cpy[4];
};

static void py_sample(void *ctx, const struct gpu_sample *s)
{
	struct py_seen *v = ctx;

	v->samples++;
	v->npy = s->npy;
	v->ncapture_py = s->ncapture_py;
	v->py_status = s->py_status;
	v->capture_py_status = s->capture_py_status;
	if (s->py && s->npy <= 4)
		memcpy(v->py, s->py, s->npy * sizeof(*s->py));
	if (s->capture_py && s->ncapture_py <= 4)
		memcpy(v->cpy, s->capture_py, s->ncapture_py * sizeof(*s->capture_py));
}

/* One BATCH of one entry with Python frames, in the given header version; npy/ncpy frames
 * follow the PCs. */
static void py_batch(struct msg *m, uint16_t version, uint8_t npy, uint8_t st, uint8_t ncpy,
		     uint8_t cst, const struct ember_py_frame *py, size_t nsend)
{
	struct ember_gpu_batch bt = { .start_ns = 1000, .end_ns = 2000, .nentries = 1 };
	struct ember_gpu_entry e = { .op = EMBER_GPU_OP_KERNEL, .name_len = 4, .nframes = 2,
				     .ncapture = 1, .flags = EMBER_GPU_ENTRY_GRAPH,
				     .npy = npy, .ncapture_py = ncpy, .py_status = st,
				     .capture_py_status = cst, .gpu_time_ns = 10, .launches = 1 };

	msg_begin(m, EMBER_GPU_MSG_BATCH);
	memcpy(m->b + offsetof(struct ember_gpu_hdr, version), &version, sizeof(version));
	msg_add(m, &bt, sizeof(bt));
	msg_add(m, &e, sizeof(e));
	msg_add(m, "k_py\0\0\0\0", 8);
	msg_add(m, launch_pcs, 2 * sizeof(uint64_t));
	msg_add(m, capture_pcs, sizeof(uint64_t));
	msg_add(m, py, nsend * sizeof(*py));
	msg_end(m);
}

/* Version 1 clients (older libraries) are still accepted, and their zero bytes must stay
 * zero; version 2 entries carry Python frames, bounded and with a walk status. */
static void test_versions(struct gpu_receiver *r, const char *path)
{
	const struct ember_py_frame py[5] = {
		{ .code = 0x7f0000001000ull, .key = 11, .instr = 40 },
		{ .code = 0x7f0000002000ull | EMBER_PYF_ENTRY, .key = 22, .instr = 8 },
		{ .code = EMBER_PYF_MARKER },
		{ .code = 0x7f0000003000ull, .key = 33, .instr = 2 },
		{ .code = 0x7f0000004000ull, .key = 44, .instr = 6 },
	};
	struct gpu_receiver_stats st0, st;
	struct py_seen v = { 0 };
	struct msg m;
	int fd;

	(void)gpu_receiver_drain(r, noop_sample, NULL);
	gpu_receiver_get_stats(r, &st0);

	/* Version 1: accepted, no Python frames. */
	fd = connect_to(path);
	send_hello(fd);
	py_batch(&m, 1, 0, 0, 0, 0, py, 0);
	send_all(fd, &m);
	/* Version 2 on the same connection: 3 launch frames (one a marker), 1 capture frame. */
	py_batch(&m, 2, 3, EMBER_PY_COMPLETE, 1, EMBER_PY_TRUNCATED, py, 4);
	send_all(fd, &m);
	wait_entries(r, st0.entries + 2, 0);
	CHECK(!peer_closed(fd));
	close(fd);
	gpu_receiver_get_stats(r, &st);
	CHECK_INT(st.entries - st0.entries, 2);
	CHECK_INT(st.rejected - st0.rejected, 0);
	CHECK_INT(gpu_receiver_drain(r, py_sample, &v), 2);
	CHECK_INT(v.samples, 2);
	CHECK_INT(v.npy, 3);
	CHECK_INT(v.ncapture_py, 1);
	CHECK_INT(v.py_status, EMBER_PY_COMPLETE);
	CHECK_INT(v.capture_py_status, EMBER_PY_TRUNCATED);
	CHECK(!memcmp(v.py, py, 3 * sizeof(*py)));
	CHECK(!memcmp(v.cpy, py + 3, sizeof(*py)));

	/* Malformed: Python fields in a version 1 entry; more frames than the protocol allows;
	 * frames without a walk status; an unknown status; a version from the future. Each
	 * client is disconnected and counted, nothing of it is kept. */
	for (int kind = 0; kind < 5; kind++) {
		fd = connect_to(path);
		send_hello(fd);
		if (kind == 0)
			py_batch(&m, 1, 1, EMBER_PY_COMPLETE, 0, 0, py, 1);
		else if (kind == 1)
			py_batch(&m, 2, EMBER_GPU_MAX_PY_FRAMES + 1, EMBER_PY_COMPLETE, 0, 0, py, 5);
		else if (kind == 2)
			py_batch(&m, 2, 1, 0, 0, 0, py, 1);
		else if (kind == 3)
			py_batch(&m, 2, 1, EMBER_PY_STATUS_MAX, 0, 0, py, 1);
		else
			py_batch(&m, EMBER_GPU_VERSION + 1, 0, 0, 0, 0, py, 0);
		send_all(fd, &m);
		CHECK(peer_closed(fd));
		close(fd);
	}
	wait_refused(r, GPU_REFUSE_MALFORMED, st.refused[GPU_REFUSE_MALFORMED] + 5);
	gpu_receiver_get_stats(r, &st0);
	CHECK_INT(st0.refused[GPU_REFUSE_MALFORMED] - st.refused[GPU_REFUSE_MALFORMED], 5);
	CHECK_INT(st0.entries, st.entries);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/ember-gpu-recv-XXXXXX", path[256], out[512];
	struct gpu_receiver *r = NULL;
	struct gpu_receiver_stats st;
	struct sink k = { 0 };
	struct msg m;
	struct stat sst;
	struct ember_gpu_batch bt = { .start_ns = 1000, .end_ns = 2000 };
	struct ember_gpu_counters ch = { .ncounters = EMBER_GPU_CTR_COUNT + 2 };
	int good, bad;

	if (argc < 2) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/run/ember/gpu.sock", dir);
	CHECK_INT(gpu_receiver_start(path, &r), 0);
	if (!r)
		return check_exit("gpu_receiver");
	CHECK_INT(stat(path, &sst), 0);
	CHECK(S_ISSOCK(sst.st_mode) && (sst.st_mode & 0777) == 0666);
	/* A second agent on the same socket is refused; the first keeps it. */
	{
		struct gpu_receiver *r2 = NULL;

		CHECK_INT(gpu_receiver_start(path, &r2), -EADDRINUSE);
	}

	gpu_launch_site();
	graph_capture_site();
	CHECK(nlaunch > 2 && ncapture > 2);

	good = connect_to(path);
	CHECK(good >= 0);
	send_hello(good);
	msg_begin(&m, EMBER_GPU_MSG_BATCH);
	bt.nentries = 5;
	msg_add(&m, &bt, sizeof(bt));
	entry(&m, EMBER_GPU_OP_KERNEL, "_Z6squarePfi", 0, launch_pcs, nlaunch, NULL, 0, 6000, 3);
	entry(&m, EMBER_GPU_OP_MEMCPY, "HtoD", 0, launch_pcs, nlaunch, NULL, 0, 2000, 1);
	entry(&m, EMBER_GPU_OP_MEMSET, "", 0, launch_pcs, nlaunch, NULL, 0, 500, 1);
	entry(&m, EMBER_GPU_OP_KERNEL, "plain_kernel", EMBER_GPU_ENTRY_NO_STACK, NULL, 0, NULL, 0,
	      100, 1);
	entry(&m, EMBER_GPU_OP_KERNEL, "_Z5graphv", EMBER_GPU_ENTRY_GRAPH, launch_pcs, nlaunch,
	      capture_pcs, ncapture, 1500, 5);
	msg_end(&m);
	send_all(good, &m);
	msg_begin(&m, EMBER_GPU_MSG_COUNTERS);
	msg_add(&m, &ch, sizeof(ch));
	for (uint64_t i = 0; i < ch.ncounters; i++)
		msg_add(&m, &(uint64_t){ i == EMBER_GPU_CTR_ZERO_TS ? 7 : 0 }, sizeof(uint64_t));
	msg_end(&m);
	send_all(good, &m);

	/* Malformed clients: bad magic; BATCH before HELLO; a length over the limit; an entry
	 * with too many frames; entries that do not fill the payload. */
	for (int kind = 0; kind < 5; kind++) {
		bad = connect_to(path);
		CHECK(bad >= 0);
		if (kind != 1)
			send_hello(bad);
		msg_begin(&m, EMBER_GPU_MSG_BATCH);
		bt.nentries = 1;
		msg_add(&m, &bt, sizeof(bt));
		entry(&m, EMBER_GPU_OP_KERNEL, "x", 0, launch_pcs, 2, NULL, 0, 1, 1);
		msg_end(&m);
		if (kind == 0)
			m.b[0] ^= 0xff;
		if (kind == 2)
			memcpy(m.b + 8, &(uint32_t){ EMBER_GPU_MAX_MSG + 1 }, 4);
		if (kind == 3)
			memcpy(m.b + 16 + 24 + 4, &(uint16_t){ EMBER_GPU_MAX_FRAMES + 1 }, 2);
		if (kind == 4) {
			msg_add(&m, "junkjunk", 8);
			msg_end(&m);
		}
		send_all(bad, &m);
		close(bad);
	}
	wait_entries(r, 5, 5);
	gpu_receiver_get_stats(r, &st);
	CHECK_INT(st.entries, 5);
	CHECK_INT(st.batches, 1);
	CHECK_INT(st.rejected, 5);
	CHECK_INT(st.lib[EMBER_GPU_CTR_ZERO_TS], 7);
	CHECK_INT(st.accepted, 7); /* 1 good, 5 bad, and the second agent's liveness probe */

	/* The good client is still served after the bad ones were dropped. */
	msg_begin(&m, EMBER_GPU_MSG_BATCH);
	bt.nentries = 1;
	msg_add(&m, &bt, sizeof(bt));
	entry(&m, EMBER_GPU_OP_KERNEL, "_Z6squarePfi", 0, launch_pcs, nlaunch, NULL, 0, 4000, 2);
	msg_end(&m);
	send_all(good, &m);
	wait_entries(r, 6, 5);
	close(good);

	CHECK_INT(symbolizer_new(&k.sym), 0);
	CHECK_INT(stackagg_new(2, &k.agg), 0);
	CHECK_INT(gpu_receiver_drain(r, on_sample, &k), 6);
	CHECK_INT(k.samples, 6);
	CHECK(k.saw_kernel_demangled);
	CHECK(k.saw_site_under_kernel);
	CHECK(k.saw_main);
	CHECK(k.saw_graph);
	CHECK_INT(stackagg_total(k.agg, 0), 6000 + 2000 + 500 + 100 + 1500 + 4000);
	CHECK_INT(stackagg_total(k.agg, 1), 3 + 1 + 1 + 1 + 5 + 2);
	CHECK_INT(gpu_receiver_drain(r, on_sample, &k), 0);

	{
		const struct profile_family *fam = profile_family_find("gpu");
		struct pprof_value_type types[2] = { { fam->types[0][0], fam->types[0][1] },
						     { fam->types[1][0], fam->types[1][1] } };
		struct pprof_value_type period = { fam->period[0], fam->period[1] };
		struct stackagg_profile p = { .types = types, .period_type = &period, .period = 1,
					      .time_nanos = 1000, .duration_nanos = 1000 };
		struct stackagg_result res = { 0 };
		FILE *f;

		CHECK_INT(stackagg_build(k.agg, &p, NULL, &res), 0);
		snprintf(out, sizeof(out), "%s", argv[1]);
		mkdir(out, 0755);
		snprintf(out, sizeof(out), "%s/gpu.pb.gz", argv[1]);
		f = fopen(out, "we");
		CHECK(f != NULL);
		if (f) {
			CHECK_INT(fwrite(res.pprof_gz, 1, res.pprof_len, f), (long long)res.pprof_len);
			fclose(f);
		}
		stackagg_result_fini(&res);
	}
	stackagg_free(k.agg);
	symbolizer_free(k.sym);
	test_bounds(r, path);
	test_versions(r, path);
	gpu_receiver_stop(r);
	CHECK(access(path, F_OK) != 0); /* the socket file is gone */
	snprintf(out, sizeof(out), "rm -rf %s", dir);
	(void)!system(out);
	return check_exit("gpu_receiver");
}
