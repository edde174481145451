#include "cpu_collector.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <linux/perf_event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bpfutil.h"
#include "cpu.skel.h"
#include "hash.h"
#include "unwind.h"
#include "util.h"
#include "log.h"
#include "metrics.h"

/* Unwound DWARF snapshots waiting for the next drain; identical stacks are merged (count), so
 * each distinct stack is symbolized once per drain, as frame-pointer stacks are. */
struct pending_stack {
	struct ember_cpu_key key;
	__u64 *pcs;   /* user stack, kernel stack, then the Python frames: one allocation */
	__u32 nuser, nkernel, npy, py_status;
	bool truncated;
	bool dwarf;   /* unwound from a snapshot (else a frame-pointer sample with Python frames) */
	bool offcpu;  /* off-CPU blocks: count is their switches, offcpu_ns their time */
	__u64 count;
	__u64 offcpu_ns;
	__u64 hash;
};
#define PENDING_INDEX 8192 /* power of two: hash buckets (indexes into pending + 1) */
#define OPEN_BLOCKS 8192   /* off-CPU: threads whose block is followed at once */

/* Per-process unwind budget, a token bucket per tgid (hashed; a collision shares a bucket). */
#define BUDGET_SLOTS 1024
#define PENDING_MAX 65536
struct open_block;

struct budget_slot {
	__u32 tgid;
	double tokens;
	int64_t last_ns;
};

/* The DWARF counters are written by the loop and read by the metrics thread. */
#define DSTAT_ADD(c, field, v) __atomic_fetch_add(&(c)->dstats.field, (__u64)(v), __ATOMIC_RELAXED)

struct cpu_collector {
	struct cpu_bpf *skel;
	struct ring_buffer *rb;
	int *perf_fds;
	struct bpf_link **perf_links;
	int ncpus;
	bool offcpu;                /* --profiles offcpu: the sched_switch program runs */
	struct open_block *open;    /* [OPEN_BLOCKS], off-CPU blocks awaiting their END */
	unsigned sample_rate;
	unsigned count_entries;
	unsigned stack_entries;
	/* Event callback of the last poll (ring_buffer__new takes one fixed callback). */
	cpu_event_fn event_fn;
	void *event_ctx;
	/* Drain scratch: keys and values of one counts map. */
	struct ember_cpu_key *keys;
	__u64 *values;
	/* DWARF mode: snapshots are unwound as they arrive and wait here for the next drain. */
	struct unwinder *unwinder;
	struct pending_stack *pending;
	size_t npending, cap_pending;
	size_t nvisited; /* pending stacks cpu_collector_visit_python() has shown */
	__u32 pending_index[PENDING_INDEX];
	unsigned unwind_budget;
	bool dwarf_first;
	struct budget_slot budget[BUDGET_SLOTS];
	struct cpu_dwarf_stats dstats;
};

static size_t stack_len(const __u64 *ips)
{
	size_t n = 0;

	while (n < EMBER_MAX_STACK_DEPTH && ips[n])
		n++;
	return n;
}

static int handle_event(void *ctx, void *data, size_t size)
{
	struct cpu_collector *c = ctx;
	const struct ember_event *e = data;

	if (size < sizeof(struct ember_event))
		return 0;
	if (c->unwinder && (e->type == EMBER_EVENT_EXEC || e->type == EMBER_EVENT_MMAP))
		unwind_refresh(c->unwinder, (pid_t)e->tgid);
	if (c->event_fn)
		c->event_fn(c->event_ctx, e);
	return 0;
}

static bool budget_take(struct cpu_collector *c, __u32 tgid, int64_t now)
{
	struct budget_slot *b = &c->budget[(tgid * 2654435761u) % BUDGET_SLOTS];
	double rate = c->unwind_budget;

	if (b->tgid != tgid) {
		b->tgid = tgid;
		b->tokens = rate;
		b->last_ns = now;
	}
	b->tokens += rate * (double)(now - b->last_ns) / 1e9;
	if (b->tokens > rate)
		b->tokens = rate;
	b->last_ns = now;
	if (b->tokens < 1)
		return false;
	b->tokens -= 1;
	return true;
}

/* One snapshot: unwind it now (the kernel stack id is still valid: its pair is cleared only
 * after the drain that follows a flip has consumed this ring) and keep the stack for the next
 * drain. */
/* One stack of a drain to come: merged with an identical one (counts and off-CPU values
 * add up) or stored. The arrays are copied. */
struct stack_parts {
	struct ember_cpu_key key;
	const __u64 *pcs, *kst;
	size_t n, nk;
	const void *pyf;
	size_t npy;
	__u32 py_status;
	bool truncated, fp, offcpu;
};

static void add_pending(struct cpu_collector *c, const struct stack_parts *sp, __u64 count,
			__u64 offcpu_ns)
{
	size_t pybytes = sp->npy * sizeof(struct ember_py_frame), n = sp->n, nk = sp->nk;
	struct pending_stack *ps;
	__u64 h;
	size_t slot;

	/* One hash over the key, both stacks and the Python frames. */
	h = hash_fnv1a64(HASH_FNV1A64_INIT, &sp->key, sizeof(sp->key));
	h = hash_fnv1a64(h, sp->pcs, n * sizeof(*sp->pcs));
	h = hash_fnv1a64(h, sp->kst, nk * sizeof(*sp->kst));
	if (sp->pyf)
		h = hash_fnv1a64(h, sp->pyf, pybytes);
	h ^= sp->truncated | (__u64)sp->py_status << 1 | (__u64)sp->fp << 4 | (__u64)sp->offcpu << 5;
	for (slot = h & (PENDING_INDEX - 1); c->pending_index[slot]; slot = (slot + 1) & (PENDING_INDEX - 1)) {
		ps = &c->pending[c->pending_index[slot] - 1];
		if (ps->hash == h && ps->nuser == n && ps->nkernel == nk &&
		    ps->truncated == sp->truncated && ps->npy == sp->npy &&
		    ps->py_status == sp->py_status && ps->dwarf == !sp->fp && ps->offcpu == sp->offcpu &&
		    !memcmp(&ps->key, &sp->key, sizeof(sp->key)) &&
		    !memcmp(ps->pcs, sp->pcs, n * sizeof(*sp->pcs)) &&
		    !memcmp(ps->pcs + n, sp->kst, nk * sizeof(*sp->kst)) &&
		    (!pybytes || !memcmp(ps->pcs + n + nk, sp->pyf, pybytes))) {
			ps->count += count;
			ps->offcpu_ns += offcpu_ns;
			return;
		}
	}
	if (c->npending >= PENDING_MAX || c->npending >= PENDING_INDEX * 7 / 10 ||
	    util_grow((void **)&c->pending, &c->cap_pending, c->npending + 1, sizeof(*c->pending))) {
		DSTAT_ADD(c, dropped_pending, 1);
		return;
	}
	ps = &c->pending[c->npending];
	ps->pcs = malloc((n + nk + 1) * sizeof(*ps->pcs) + pybytes);
	if (!ps->pcs) {
		DSTAT_ADD(c, dropped_pending, 1);
		return;
	}
	memcpy(ps->pcs, sp->pcs, n * sizeof(*sp->pcs));
	memcpy(ps->pcs + n, sp->kst, nk * sizeof(*sp->kst));
	if (pybytes)
		memcpy(ps->pcs + n + nk, sp->pyf, pybytes);
	ps->nuser = (__u32)n;
	ps->nkernel = (__u32)nk;
	ps->npy = (__u32)sp->npy;
	ps->py_status = sp->py_status;
	ps->dwarf = !sp->fp;
	ps->offcpu = sp->offcpu;
	ps->truncated = sp->truncated;
	ps->key = sp->key;
	ps->count = count;
	ps->offcpu_ns = offcpu_ns;
	ps->hash = h;
	c->pending_index[slot] = (__u32)c->npending + 1;
	c->npending++;
}

struct open_block {
	__u32 tid, seq;             /* tid 0: free */
	struct stack_parts parts;   /* its arrays point into buf */
	__u64 *buf;
};

/* Off-CPU: each thread's last block, from its START record (stacks unwound then, while the
 * process's maps are those of the block) until its END (the time). One slot per thread,
 * hashed by tid: a thread blocks once at a time; a collision gives the slot to the newer
 * block and counts the older one lost. */
static struct open_block *open_slot(struct cpu_collector *c, __u32 tid)
{
	return &c->open[(tid * 2654435761u) % OPEN_BLOCKS];
}

static void open_store(struct cpu_collector *c, __u32 tid, __u32 seq, const struct stack_parts *sp)
{
	struct open_block *ob = open_slot(c, tid);
	size_t pybytes = sp->npy * sizeof(struct ember_py_frame);
	__u64 *buf;

	if (ob->tid && ob->tid != tid)
		DSTAT_ADD(c, offcpu_evicted, 1);
	buf = realloc(ob->buf, (sp->n + sp->nk + 1) * sizeof(*buf) + pybytes);
	if (!buf) {
		free(ob->buf);
		*ob = (struct open_block){ 0 };
		return;
	}
	memcpy(buf, sp->pcs, sp->n * sizeof(*buf));
	memcpy(buf + sp->n, sp->kst, sp->nk * sizeof(*buf));
	if (pybytes)
		memcpy(buf + sp->n + sp->nk, sp->pyf, pybytes);
	ob->buf = buf;
	ob->tid = tid;
	ob->seq = seq;
	ob->parts = *sp;
	ob->parts.pcs = buf;
	ob->parts.kst = buf + sp->n;
	ob->parts.pyf = pybytes ? (const void *)(buf + sp->n + sp->nk) : NULL;
}

static void open_end(struct cpu_collector *c, const struct ember_stack_snapshot *e)
{
	struct open_block *ob = open_slot(c, e->tid);

	if (ob->tid != e->tid || ob->seq != e->offcpu_seq || !ob->buf) {
		DSTAT_ADD(c, offcpu_unmatched, 1);
		return;
	}
	add_pending(c, &ob->parts, e->offcpu_switches, e->offcpu_ns);
	ob->tid = 0;
}

static int handle_snapshot(void *ctx, void *data, size_t size)
{
	struct cpu_collector *c = ctx;
	const struct ember_stack_snapshot *snap = data;
	__u64 pcs[EMBER_MAX_UNWIND_DEPTH], kst[EMBER_MAX_STACK_DEPTH];
	const struct ember_py_stack *py = NULL;
	struct unwind_regs regs;
	struct stack_parts sp;
	size_t n = 0, nk = 0, npy = 0;
	__u32 py_status = 0;
	bool truncated = false, fp;
	int64_t t0;

	if (size < sizeof(*snap) || size - sizeof(*snap) < snap->stack_len)
		return 0;
	if (snap->flags & EMBER_SNAP_OFFCPU_END) {
		open_end(c, snap);
		return 0;
	}
	fp = snap->flags & EMBER_SNAP_FP;
	if (snap->flags & EMBER_SNAP_PY) {
		size_t room = size - sizeof(*snap) - snap->stack_len;

		py = (const struct ember_py_stack *)(snap->stack + snap->stack_len);
		if (room < EMBER_PY_STACK_HDR || py->nframes > EMBER_PY_MAX_FRAMES ||
		    room - EMBER_PY_STACK_HDR < py->nframes * sizeof(struct ember_py_frame) ||
		    py->status == 0 || py->status >= EMBER_PY_STATUS_MAX) {
			DSTAT_ADD(c, py_malformed, 1);
			return 0;
		}
		npy = py->nframes;
		py_status = py->status;
		__atomic_fetch_add(&c->dstats.py[py_status], 1, __ATOMIC_RELAXED);
	}
	if (fp) {
		/* A frame-pointer sample sent for its Python frames (or an off-CPU block): the
		 * stacks are in the map pair of stack_map, still valid (see above). */
		int fd = bpf_map__fd(snap->stack_map ? c->skel->maps.stacks1 : c->skel->maps.stacks0);

		if (snap->user_stack_id >= 0) {
			memset(pcs, 0, sizeof(pcs));
			if (bpf_map_lookup_elem(fd, &snap->user_stack_id, pcs) == 0)
				n = stack_len(pcs);
		}
	} else {
		DSTAT_ADD(c, snapshots, 1);
		DSTAT_ADD(c, bytes, snap->stack_len);
		t0 = util_now_ns(CLOCK_MONOTONIC);
		if (!budget_take(c, snap->tgid, t0)) {
			DSTAT_ADD(c, skipped_budget, 1);
			return 0;
		}
		_Static_assert(sizeof(regs) == sizeof(snap->regs), "unwind_regs matches the snapshot");
		memcpy(&regs, snap->regs, sizeof(regs));
		_Static_assert(sizeof(uint64_t) == sizeof(__u64), "PC width");
		if (unwind_stack(c->unwinder, (pid_t)snap->tgid, snap->cookie, &regs, snap->stack,
				 snap->stack_len, (uint64_t *)pcs, EMBER_MAX_UNWIND_DEPTH, &n, &truncated))
			n = 0;
		DSTAT_ADD(c, unwind_ns, (__u64)(util_now_ns(CLOCK_MONOTONIC) - t0));
		truncated = truncated || n == 0;
		DSTAT_ADD(c, unwound, n > 0);
		DSTAT_ADD(c, truncated, truncated);
	}
	if (snap->kernel_stack_id >= 0) {
		int fd = bpf_map__fd(snap->stack_map ? c->skel->maps.stacks1 : c->skel->maps.stacks0);

		memset(kst, 0, sizeof(kst));
		if (bpf_map_lookup_elem(fd, &snap->kernel_stack_id, kst) == 0)
			nk = stack_len(kst);
	}
	sp = (struct stack_parts){
		.key = {
			.tgid = snap->tgid,
			.user_stack_id = n ? 0 : (fp && snap->user_stack_id < 0 ? snap->user_stack_id : -EFAULT),
			.kernel_stack_id = snap->kernel_stack_id >= 0 ? 0 : snap->kernel_stack_id,
			.service_id = snap->service_id,
			.cookie = snap->cookie,
		},
		.pcs = pcs, .kst = kst, .n = n, .nk = nk,
		.pyf = py ? (const void *)py->frames : NULL, .npy = npy, .py_status = py_status,
		.truncated = truncated, .fp = fp,
		.offcpu = (snap->flags & EMBER_SNAP_OFFCPU_START) != 0,
	};
	if (sp.offcpu)
		open_store(c, snap->tid, snap->offcpu_seq, &sp);
	else
		add_pending(c, &sp, 1, 0);
	return 0;
}

/* About half a second of snapshots at the full rate on every CPU, a power of two in 1-64 MiB:
 * the ring is drained as it fills, by the poll loop. */
static __u32 snapshot_ring_size(const struct cpu_collector_opts *opts)
{
	/* --stack-size 0 copies what each thread uses: most stacks are a few KiB, deep ones up to
	 * 64 KiB; the ring is sized as for the old fixed 16 KiB, and drained as it fills. */
	__u64 want = (__u64)(opts->sample_rate ? opts->sample_rate : 97) * (__u64)libbpf_num_possible_cpus() *
		     (sizeof(struct ember_stack_snapshot) +
		      (opts->stack_size ? opts->stack_size : EMBER_SNAPSHOT_DEFAULT)) / 2;
	__u32 size = 1 << 20;

	while (size < want && size < (64u << 20))
		size <<= 1;
	return size;
}

static int open_skel(struct cpu_collector *c, const struct cpu_collector_opts *opts, bool with_mmap)
{
	long ticks = sysconf(_SC_CLK_TCK);
	int err;

	c->skel = cpu_bpf__open();
	if (!c->skel) {
		err = -errno;
		log_debug("cpu: cannot open BPF object: %s", strerror(-err));
		return err;
	}
	c->skel->rodata->select_all = opts->select_all;
	c->skel->rodata->follow_children = opts->follow_children;
	c->skel->rodata->report_execs = opts->report_execs;
	c->skel->rodata->report_cgroups = opts->report_cgroups;
	c->skel->rodata->ns_per_tick = ticks > 0 ? 1000000000ULL / (unsigned long long)ticks : 10000000ULL;
	if (opts->max_targets)
		(void)bpf_map__set_max_entries(c->skel->maps.targets, opts->max_targets);
	(void)bpf_map__set_max_entries(c->skel->maps.stacks0, c->stack_entries);
	(void)bpf_map__set_max_entries(c->skel->maps.stacks1, c->stack_entries);
	(void)bpf_map__set_max_entries(c->skel->maps.counts0, c->count_entries);
	(void)bpf_map__set_max_entries(c->skel->maps.counts1, c->count_entries);
	c->skel->rodata->offcpu_on = opts->offcpu;
	c->skel->rodata->offcpu_preempted = opts->offcpu_preempted;
	c->skel->rodata->offcpu_min_ns = opts->offcpu_min_ns;
	c->skel->rodata->offcpu_dwarf = opts->offcpu && (opts->dwarf_all || opts->dwarf_first);
	if (!opts->offcpu)
		(void)bpf_program__set_autoload(c->skel->progs.ember_offcpu_switch, false);
	if (!with_mmap)
		(void)bpf_program__set_autoload(c->skel->progs.ember_mmap, false);
	c->skel->rodata->dwarf_all = opts->dwarf_all;
	c->skel->rodata->dwarf_first = opts->dwarf_first;
	c->dwarf_first = opts->dwarf_first;
	c->skel->rodata->snapshot_stack_size = opts->stack_size; /* 0: what each thread uses */
	(void)bpf_map__set_max_entries(c->skel->maps.snapshot_buf, (__u32)libbpf_num_possible_cpus());
	(void)bpf_map__set_max_entries(c->skel->maps.snapshots, snapshot_ring_size(opts));
	return 0;
}

static int reopen_without_mmap(struct cpu_collector *c, const struct cpu_collector_opts *opts)
{
	int err = open_skel(c, opts, false);

	if (err)
		return err;
	return cpu_bpf__load(c->skel);
}

int cpu_collector_open(const struct cpu_collector_opts *opts, struct cpu_collector **ret_c)
{
	struct cpu_collector *c;
	int err;

	bpfutil_route_libbpf_log();
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->sample_rate = opts->sample_rate;
	c->count_entries = opts->count_entries ? opts->count_entries : 16384;
	c->stack_entries = opts->stack_entries ? opts->stack_entries : 16384;
	c->keys = calloc(c->count_entries, sizeof(*c->keys));
	c->values = calloc(c->count_entries, sizeof(*c->values));
	c->offcpu = opts->offcpu;
	if (c->offcpu)
		c->open = calloc(OPEN_BLOCKS, sizeof(*c->open));
	if (!c->keys || !c->values || (c->offcpu && !c->open)) {
		err = -ENOMEM;
		goto err_free;
	}

	err = open_skel(c, opts, true);
	if (err)
		goto err_free;
	err = cpu_bpf__load(c->skel);
	if (err) {
		/* Without fentry support, go on without the mmap hook (maps are then re-read when
		 * an address falls outside them). */
		log_debug("cpu: load failed (%s), retrying without the mmap hook", strerror(-err));
		cpu_bpf__destroy(c->skel);
		c->skel = NULL;
		err = reopen_without_mmap(c, opts);
	}
	if (err) {
		log_debug("cpu: cannot load BPF object: %s", strerror(-err));
		goto err_free;
	}
	err = cpu_bpf__attach(c->skel);
	if (err) {
		log_debug("cpu: cannot attach tracepoints: %s", strerror(-err));
		goto err_free;
	}
	c->rb = ring_buffer__new(bpf_map__fd(c->skel->maps.events), handle_event, c, NULL);
	if (!c->rb) {
		err = -errno;
		goto err_free;
	}
	err = ring_buffer__add(c->rb, bpf_map__fd(c->skel->maps.snapshots), handle_snapshot, c);
	if (err)
		goto err_free;
	err = unwinder_new_shared(opts->cache, &c->unwinder);
	if (err)
		goto err_free;
	c->unwind_budget = opts->unwind_budget ? opts->unwind_budget : 4 * (opts->sample_rate ? opts->sample_rate : 97);
	*ret_c = c;
	return 0;

err_free:
	cpu_collector_free(c);
	return err;
}

void cpu_collector_free(struct cpu_collector *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->ncpus; i++) {
		bpf_link__destroy(c->perf_links ? c->perf_links[i] : NULL);
		if (c->perf_fds && c->perf_fds[i] >= 0)
			close(c->perf_fds[i]);
	}
	free(c->perf_links);
	free(c->perf_fds);
	ring_buffer__free(c->rb);
	cpu_bpf__destroy(c->skel);
	for (size_t i = 0; i < c->npending; i++)
		free(c->pending[i].pcs);
	free(c->pending);
	unwinder_free(c->unwinder);
	free(c->keys);
	free(c->values);
	for (size_t i = 0; c->open && i < OPEN_BLOCKS; i++)
		free(c->open[i].buf);
	free(c->open);
	free(c);
}

int cpu_collector_start(struct cpu_collector *c)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.size = sizeof(attr),
		.freq = 1,
		.sample_freq = c->sample_rate,
	};
	int ncpus = libbpf_num_possible_cpus();
	int attached = 0, err = 0;

	if (ncpus < 0)
		return ncpus;
	c->perf_fds = malloc((size_t)ncpus * sizeof(*c->perf_fds));
	c->perf_links = calloc((size_t)ncpus, sizeof(*c->perf_links));
	if (!c->perf_fds || !c->perf_links)
		return -ENOMEM;
	c->ncpus = ncpus;
	for (int cpu = 0; cpu < ncpus; cpu++) {
		int fd = (int)syscall(__NR_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);

		c->perf_fds[cpu] = fd;
		if (fd < 0) {
			/* A possible but offline CPU has no events; anything else is fatal below. */
			if (errno != ENODEV)
				err = -errno;
			continue;
		}
		c->perf_links[cpu] = bpf_program__attach_perf_event(c->skel->progs.ember_cpu_sample, fd);
		if (!c->perf_links[cpu]) {
			err = -errno;
			log_debug("cpu: attach to perf event on CPU %d: %s", cpu, strerror(-err));
			continue;
		}
		attached++;
	}
	if (attached == 0) {
		if (err == -ENOENT || err == -EOPNOTSUPP || err == 0)
			err = -ENODEV;
		log_debug("cpu: no cpu-clock perf event could be opened: %s", strerror(-err));
		return err;
	}
	return 0;
}

int cpu_collector_add_target(struct cpu_collector *c, pid_t tgid, __u32 service_id, __u64 cookie)
{
	if (!c)
		return 0 /* no sampler (GPU only): nothing to select */;
	struct ember_target t = {
		.service_id = service_id,
		.flags = c->dwarf_first ? EMBER_TARGET_DWARF : 0,
		.cookie = cookie,
	};
	__u32 key = (__u32)tgid;

	if (bpf_map_update_elem(bpf_map__fd(c->skel->maps.targets), &key, &t, BPF_ANY))
		return -errno;
	return 0;
}

int cpu_collector_remove_target(struct cpu_collector *c, pid_t tgid)
{
	if (!c)
		return 0;
	__u32 key = (__u32)tgid;

	if (bpf_map_delete_elem(bpf_map__fd(c->skel->maps.targets), &key) && errno != ENOENT)
		return -errno;
	return 0;
}

int cpu_collector_epoll_fd(struct cpu_collector *c)
{
	return ring_buffer__epoll_fd(c->rb);
}

int cpu_collector_poll(struct cpu_collector *c, int timeout_ms, cpu_event_fn fn, void *ctx)
{
	/* Kept after the poll: the drain consumes the same rings, and an event it finds there
	 * (an exit, a first sample) must still reach the caller. */
	c->event_fn = fn;
	c->event_ctx = ctx;
	return ring_buffer__poll(c->rb, timeout_ms);
}


/* Reads every (key, count) of a counts map into c->keys/c->values and deletes them.
 * Returns the number read or -errno. */
static int take_counts(struct cpu_collector *c, int fd)
{
	struct ember_cpu_key k, next;
	int n = 0;
	bool first = true;

	/* get_next_key over a map we delete from would restart; collect keys, then delete. */
	while (n < (int)c->count_entries &&
	       bpf_map_get_next_key(fd, first ? NULL : &k, &next) == 0) {
		first = false;
		k = next;
		if (bpf_map_lookup_elem(fd, &k, &c->values[n]) == 0)
			c->keys[n++] = k;
	}
	for (int i = 0; i < n; i++)
		(void)bpf_map_delete_elem(fd, &c->keys[i]);
	return n;
}

static void clear_stacks(int fd)
{
	__u32 k, next;
	bool more = bpf_map_get_next_key(fd, NULL, &k) == 0;

	/* The next id is taken before k goes: a stack map restarts its scan at bucket 0 for a
	 * key it no longer holds, which would make clearing quadratic in the map's size. */
	while (more) {
		more = bpf_map_get_next_key(fd, &k, &next) == 0;
		if (bpf_map_delete_elem(fd, &k))
			break;
		k = next;
	}
}

int cpu_collector_drain(struct cpu_collector *c, cpu_stack_fn fn, void *ctx)
{
	if (!c)
		return 0;
	__u32 was = c->skel->bss->active & 1;
	int counts_fd = bpf_map__fd(was ? c->skel->maps.counts1 : c->skel->maps.counts0);
	int stacks_fd = bpf_map__fd(was ? c->skel->maps.stacks1 : c->skel->maps.stacks0);
	struct timespec grace = { .tv_nsec = 2 * 1000 * 1000 };
	__u64 ustack[EMBER_MAX_STACK_DEPTH], kstack[EMBER_MAX_STACK_DEPTH];
	int n;

	/* Flip, then give samplers already running on other CPUs (a few microseconds each) time
	 * to finish with the old pair before it is read and emptied. */
	__atomic_store_n(&c->skel->bss->active, was ^ 1, __ATOMIC_SEQ_CST);
	nanosleep(&grace, NULL);
	/* Snapshots still in the ring refer to this pair's kernel stacks: take them first. */
	(void)ring_buffer__consume(c->rb);

	n = take_counts(c, counts_fd);
	for (int i = 0; i < n; i++) {
		struct cpu_stack s = { .key = &c->keys[i], .count = c->values[i] };

		if (c->keys[i].user_stack_id >= 0) {
			memset(ustack, 0, sizeof(ustack));
			if (bpf_map_lookup_elem(stacks_fd, &c->keys[i].user_stack_id, ustack) == 0) {
				s.ustack = ustack;
				s.ustack_len = stack_len(ustack);
			}
		}
		if (c->keys[i].kernel_stack_id >= 0) {
			memset(kstack, 0, sizeof(kstack));
			if (bpf_map_lookup_elem(stacks_fd, &c->keys[i].kernel_stack_id, kstack) == 0) {
				s.kstack = kstack;
				s.kstack_len = stack_len(kstack);
			}
		}
		fn(ctx, &s);
	}
	clear_stacks(stacks_fd);
	/* Unwound DWARF snapshots, one stack each. */
	for (size_t i = 0; i < c->npending; i++) {
		struct pending_stack *p = &c->pending[i];
		struct cpu_stack s = {
			.key = &p->key,
			.ustack = p->nuser ? p->pcs : NULL,
			.ustack_len = p->nuser,
			.kstack = p->nkernel ? p->pcs + p->nuser : NULL,
			.kstack_len = p->nkernel,
			.count = p->count,
			.offcpu = p->offcpu,
			.offcpu_ns = p->offcpu_ns,
			.dwarf = p->dwarf,
			.truncated = p->truncated,
			.py = p->npy ? (const struct ember_py_frame *)(p->pcs + p->nuser + p->nkernel) : NULL,
			.npy = p->npy,
			.py_status = p->py_status,
		};

		fn(ctx, &s);
		free(p->pcs);
	}
	n += (int)c->npending;
	c->npending = 0;
	c->nvisited = 0;
	memset(c->pending_index, 0, sizeof(c->pending_index));
	return n;
}

int cpu_collector_set_dwarf(struct cpu_collector *c, pid_t tgid, bool dwarf)
{
	if (!c)
		return -ENOENT;
	int fd = bpf_map__fd(c->skel->maps.targets);
	struct ember_target t;
	__u32 key = (__u32)tgid;

	if (bpf_map_lookup_elem(fd, &key, &t))
		return -ENOENT;
	if (dwarf)
		t.flags |= EMBER_TARGET_DWARF;
	else
		t.flags &= ~EMBER_TARGET_DWARF;
	/* BPF_EXIST: never re-create a target the exit tracepoint just removed. */
	if (bpf_map_update_elem(fd, &key, &t, BPF_EXIST))
		return -errno;
	return 0;
}

void cpu_collector_visit_python(struct cpu_collector *c, cpu_python_fn fn, void *ctx)
{
	if (!c)
		return;
	/* Samples wake nobody (see stack_snapshot.bpf.h): take what the ring holds. */
	(void)ring_buffer__consume(c->rb);
	for (; c->nvisited < c->npending; c->nvisited++) {
		const struct pending_stack *p = &c->pending[c->nvisited];

		if (p->npy)
			fn(ctx, (pid_t)p->key.tgid,
			   (const struct ember_py_frame *)(p->pcs + p->nuser + p->nkernel), p->npy);
	}
}

int cpu_collector_set_python(struct cpu_collector *c, pid_t tgid, const struct ember_py_proc *pp)
{
	if (!c)
		return -ENOENT;
	int fd = bpf_map__fd(c->skel->maps.targets);
	struct ember_target t;
	__u32 key = (__u32)tgid;

	if (bpf_map_update_elem(bpf_map__fd(c->skel->maps.py_procs), &key, pp, BPF_ANY))
		return -errno;
	if (bpf_map_lookup_elem(fd, &key, &t))
		return -ENOENT;
	t.flags |= EMBER_TARGET_PYTHON;
	if (bpf_map_update_elem(fd, &key, &t, BPF_EXIST))
		return -errno;
	return 0;
}

void cpu_collector_forget(struct cpu_collector *c, pid_t tgid)
{
	if (!c)
		return;
	__u32 key = (__u32)tgid;

	(void)bpf_map_delete_elem(bpf_map__fd(c->skel->maps.py_procs), &key);
	unwind_forget(c->unwinder, tgid);
}

void cpu_collector_dwarf_stats(struct cpu_collector *c, struct cpu_dwarf_stats *ret)
{
	if (!c)
		return (void)memset(ret, 0, sizeof(*ret));
	ret->snapshots = __atomic_load_n(&c->dstats.snapshots, __ATOMIC_RELAXED);
	ret->unwound = __atomic_load_n(&c->dstats.unwound, __ATOMIC_RELAXED);
	ret->truncated = __atomic_load_n(&c->dstats.truncated, __ATOMIC_RELAXED);
	ret->skipped_budget = __atomic_load_n(&c->dstats.skipped_budget, __ATOMIC_RELAXED);
	ret->dropped_pending = __atomic_load_n(&c->dstats.dropped_pending, __ATOMIC_RELAXED);
	ret->bytes = __atomic_load_n(&c->dstats.bytes, __ATOMIC_RELAXED);
	ret->unwind_ns = __atomic_load_n(&c->dstats.unwind_ns, __ATOMIC_RELAXED);
	for (int i = 0; i < EMBER_PY_STATUS_MAX; i++)
		ret->py[i] = __atomic_load_n(&c->dstats.py[i], __ATOMIC_RELAXED);
	ret->py_malformed = __atomic_load_n(&c->dstats.py_malformed, __ATOMIC_RELAXED);
}

void cpu_collector_write_metrics(struct cpu_collector *c, struct metrics_writer *w)
{
	if (!c)
		return;
	/* Every value of enum ember_cpu_stat but the two totals has a reason here. */
	static const struct {
		enum ember_cpu_stat stat;
		const char *reason;
	} lost[] = {
		{ EMBER_STAT_USTACK_COLLISION, "user_stack_collision" },
		{ EMBER_STAT_USTACK_FAULT, "user_stack_fault" },
		{ EMBER_STAT_USTACK_ERROR, "user_stack_error" },
		{ EMBER_STAT_KSTACK_COLLISION, "kernel_stack_collision" },
		{ EMBER_STAT_KSTACK_FAULT, "kernel_stack_fault" },
		{ EMBER_STAT_KSTACK_ERROR, "kernel_stack_error" },
		{ EMBER_STAT_COUNTS_FULL, "counts_map_full" },
		{ EMBER_STAT_EVENTS_LOST, "process_events_ringbuf_full" },
		{ EMBER_STAT_SNAPSHOT_LOST, "stack_snapshot_ringbuf_full" },
		{ EMBER_STAT_SNAPSHOT_FAULT, "stack_snapshot_unreadable" },
	};
	_Static_assert(sizeof(lost) / sizeof(lost[0]) == EMBER_STAT_MAX - 6,
		       "a new enum ember_cpu_stat value needs its metric here");
	__u64 st[EMBER_STAT_MAX] = { 0 };
	struct cpu_dwarf_stats ds;

	(void)cpu_collector_read_stats(c, st);
	cpu_collector_dwarf_stats(c, &ds);
	for (size_t i = 0; i < sizeof(lost) / sizeof(lost[0]); i++)
		metrics_counter(w, "ember_samples_lost_total",
				"Samples or stacks lost, by reason (stack lost: the sample is kept "
				"under a [lost user stack] frame)",
				(const char *[]){ "reason", lost[i].reason, NULL }, (double)st[lost[i].stat]);
	metrics_counter(w, "ember_samples_filtered_total",
			"Samples of processes that are not targets, dropped in BPF before any stack",
			NULL, (double)st[EMBER_STAT_FILTERED]);
	metrics_counter(w, "ember_dwarf_stacks_total", "DWARF-unwound stacks, by outcome",
			(const char *[]){ "outcome", "complete", NULL }, (double)(ds.unwound - ds.truncated));
	metrics_counter(w, "ember_dwarf_stacks_total", "DWARF-unwound stacks, by outcome",
			(const char *[]){ "outcome", "truncated", NULL }, (double)ds.truncated);
	metrics_counter(w, "ember_dwarf_stacks_total", "DWARF-unwound stacks, by outcome",
			(const char *[]){ "outcome", "skipped_over_budget", NULL },
			(double)ds.skipped_budget);
	metrics_counter(w, "ember_dwarf_stacks_total", "DWARF-unwound stacks, by outcome",
			(const char *[]){ "outcome", "dropped_backlog", NULL },
			(double)ds.dropped_pending);
	for (int r = 0; c->unwinder && r < UNWIND_REFUSED_MAX; r++)
		metrics_counter(w, "ember_unwind_refused_total",
				"DWARF unwinds stopped and unwind tables or entries refused, by reason "
				"(budget: an unwind spent its accessor-call budget; hostile_cfi: a "
				"module whose CFI did so, not used again)",
				(const char *[]){ "reason", unwind_refusal_name(r), NULL },
				(double)unwind_refused(c->unwinder, r));
	{
		static const char *const outcome[EMBER_PY_STATUS_MAX] = {
			[EMBER_PY_COMPLETE] = "complete",
			[EMBER_PY_TRUNCATED] = "truncated",
			[EMBER_PY_NO_TSTATE] = "no_thread_state",
			[EMBER_PY_UNREADABLE] = "unreadable",
		};
		static const char help[] =
			"CPU samples of Python processes by outcome of the frame walk (truncated: "
			"deeper than the frame limit; no_thread_state: a thread without Python; "
			"unreadable: the chain changed or broke mid-walk, the frames read so far are "
			"kept; malformed: a record that did not fit its size, dropped)";

		for (int i = 1; i < EMBER_PY_STATUS_MAX; i++)
			metrics_counter(w, "ember_python_stacks_total", help,
					(const char *[]){ "outcome", outcome[i], NULL }, (double)ds.py[i]);
		metrics_counter(w, "ember_python_stacks_total", help,
				(const char *[]){ "outcome", "malformed", NULL }, (double)ds.py_malformed);
	}
	if (c->offcpu) {
		static const char help[] =
			"Off-CPU blocks of target threads, by outcome (recorded: at least "
			"--offcpu-min-us, or kept by sampling below it, weighted; sampled_out: shorter "
			"ones sampling left out, their time carried by the weights; thinned: not "
			"followed under heavy switching, carried by the weights of those followed; "
			"unmatched: an end whose start was lost; evicted: a start given up for "
			"another thread's)";
		const struct { const char *o; double v; } out[] = {
			{ "recorded", (double)st[EMBER_STAT_OFFCPU] },
			{ "sampled_out", (double)st[EMBER_STAT_OFFCPU_SHORT] },
			{ "thinned", (double)st[EMBER_STAT_OFFCPU_THINNED] },
			{ "unmatched", (double)ds.offcpu_unmatched },
			{ "evicted", (double)ds.offcpu_evicted },
		};

		for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
			metrics_counter(w, "ember_offcpu_blocks_total", help,
					(const char *[]){ "outcome", out[i].o, NULL }, out[i].v);
	}
	metrics_counter(w, "ember_dwarf_snapshots_short_total",
			"DWARF snapshots with less stack readable than --stack-size (the unwind may "
			"end early)", NULL, (double)st[EMBER_STAT_SNAPSHOT_SHORT]);
}

int cpu_collector_read_stats(struct cpu_collector *c, __u64 out[EMBER_STAT_MAX])
{
	if (!c)
		return memset(out, 0, EMBER_STAT_MAX * sizeof(*out)), 0;
	return bpfutil_percpu_sum(bpf_map__fd(c->skel->maps.stats), EMBER_STAT_MAX, out);
}

int cpu_collector_prog_stats(struct cpu_collector *c, __u64 *ret_run_cnt, __u64 *ret_run_time_ns)
{
	if (!c)
		return -ENODEV;
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	int err;

	err = bpf_obj_get_info_by_fd(bpf_program__fd(c->skel->progs.ember_cpu_sample), &info, &len);
	if (err)
		return -errno;
	*ret_run_cnt = info.run_cnt;
	*ret_run_time_ns = info.run_time_ns;
	return 0;
}
