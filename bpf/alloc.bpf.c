// SPDX-License-Identifier: GPL-2.0
/* alloc.bpf.c: allocation sampling by bytes, decided here, plus the live set of sampled
 * allocations.
 *
 * Uprobe mode: one program sees every call of the allocator functions of the selected
 * processes (the uprobe cookie says which function). A per-CPU countdown of bytes to the next
 * sampling point (exponential gaps, alloc_sample.h) decides at entry; only a sampled call needs
 * the returned address, so:
 *   - session mode (kernel >= 6.13, uprobe_multi session links): ember_alloc_session runs at
 *     entry and returns 1 for an unsampled call, which tells the kernel not to hijack the
 *     return; the return half runs for sampled calls only;
 *   - classic mode (older kernels): ember_alloc_entry + a uretprobe ember_alloc_return on every
 *     call; the return is O(1) (one hash miss) but the kernel's return trap is paid per call.
 * The user stack is taken at the return, where the frame-pointer chain is intact (at the entry
 * of malloc the caller's own frame is missing from the rbp chain).
 * free is probed past its entry (see alloc_collector.h) and only deletes (tgid, ptr) from `live`.
 *
 * Preload mode: libember_alloc.so samples in-process and fires the USDT probes
 * ember_alloc:alloc(ptr, size, interval, flags) and ember_alloc:free(ptr) for sampled
 * allocations only; ember_usdt_alloc/ember_usdt_free record them the same way. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/usdt.bpf.h>
#include "ember.h"
#include "ember.bpf.h"
#include "alloc_sample.h"
#include "python.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Knobs set by userspace before load. */
const volatile __u64 sample_interval = ALLOC_SAMPLE_DEFAULT_BYTES; /* mean bytes between samples */
const volatile __u64 ns_per_tick = 10000000; /* NSEC_PER_SEC / sysconf(_SC_CLK_TCK) */

/* Session-uprobe kfuncs (kernel >= 6.13); only the session program calls them. */
extern bool bpf_session_is_return(void) __ksym __weak;

/* Per-CPU sampling state. */
struct cpu_state {
	__u64 remaining; /* bytes to the next sampling point; 0: not drawn yet */
	__u64 seq;       /* sample ids issued by this CPU */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} cpu_state SEC(".maps");

/* A sampled call between its entry and its return, by thread. */
struct pending {
	__u64 size;   /* bytes requested */
	__u64 memptr; /* posix_memalign's result pointer, else 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct pending);
} pending SEC(".maps");

/* Sampled allocations not yet freed. Sized by userspace (--alloc-live-entries). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ember_alloc_key);
	__type(value, struct ember_alloc_live);
} live SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMBER_ASTAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} alloc_stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&alloc_stats, &idx);

	if (v)
		(*v)++;
}

static __always_inline void forget(__u32 tgid, __u64 addr)
{
	struct ember_alloc_key k = { .tgid = tgid, .addr = addr };

	if (bpf_map_delete_elem(&live, &k) == 0)
		stat_inc(EMBER_ASTAT_FREES_MATCHED);
}

/* Records one sampled allocation: live entry (unless untracked), then the event with the
 * user stack. Inserting first means userspace never sees a live id it has no event for
 * after draining the ring buffer. */
static __always_inline void record(void *ctx, __u64 addr, __u64 size, __u64 interval,
				   __u32 flags)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, z = 0;
	struct ember_alloc_key k = { .tgid = tgid, .addr = addr };
	struct ember_alloc_live v = { .size = size };
	struct ember_alloc_py_event *pe = NULL;
	struct ember_alloc_event *e;
	struct ember_py_stack *py;
	struct cpu_state *st;
	long n;

	st = bpf_map_lookup_elem(&cpu_state, &z);
	if (!st)
		return;
	st->seq++;
	v.id = ((__u64)bpf_get_smp_processor_id() << 56) | (st->seq & ((1ULL << 56) - 1));
	stat_inc(EMBER_ASTAT_SAMPLED);
	if (!(flags & EMBER_ALLOC_EV_TRACKED)) {
		stat_inc(EMBER_ASTAT_UNTRACKED);
	} else if (bpf_map_update_elem(&live, &k, &v, BPF_ANY)) {
		/* BPF_ANY: an old entry at this address was freed on a path we missed. */
		flags &= ~EMBER_ALLOC_EV_TRACKED;
		stat_inc(EMBER_ASTAT_LIVE_FULL);
	}
	/* A Python process sends its Python frames with the event: a bigger record. */
	py = ember_py_walk(tgid);
	if (py) {
		pe = bpf_ringbuf_reserve(&samples, sizeof(*pe), 0);
		e = pe ? &pe->ev : NULL;
	} else {
		e = bpf_ringbuf_reserve(&samples, sizeof(*e), 0);
	}
	if (!e) {
		if (flags & EMBER_ALLOC_EV_TRACKED)
			(void)bpf_map_delete_elem(&live, &k);
		stat_inc(EMBER_ASTAT_EVENTS_LOST);
		return;
	}
	if (pe) {
		if (bpf_probe_read_kernel(&pe->py, sizeof(pe->py), py))
			pe->py.nframes = 0;
		flags |= EMBER_ALLOC_EV_PY;
	}
	e->tgid = tgid;
	e->flags = flags;
	e->size = size;
	e->addr = addr;
	e->id = v.id;
	e->interval = interval;
	e->pad = 0;
	/* Which process, not only which pid: probes attached for every process that maps the
	 * preload library fire before the agent has heard of the process. */
	e->cookie = BPF_CORE_READ(bpf_get_current_task_btf(), group_leader, start_boottime) / ns_per_tick;
	n = bpf_get_stack(ctx, e->ips, sizeof(e->ips), BPF_F_USER_STACK);
	e->ustack_len = (__s32)n;
	if (n < 0)
		stat_inc(EMBER_ASTAT_STACK_LOST);
	bpf_ringbuf_submit(e, 0);
}

/* Entry of an allocator function. Returns 1 when the call was sampled (its return matters). */
static __always_inline int on_entry(struct pt_regs *ctx, __u64 cookie)
{
	__u64 kind = cookie & EMBER_ALLOC_KIND_MASK;
	bool nests = cookie & EMBER_ALLOC_GLIBC_NESTS;
	__u64 size, memptr = 0, id = bpf_get_current_pid_tgid();
	struct pending p;
	struct cpu_state *st;
	__u32 z = 0;

	switch (kind) {
	case EMBER_ALLOC_FREE:
		size = PT_REGS_PARM1(ctx);
		stat_inc(EMBER_ASTAT_FREES);
		if (size)
			forget(id >> 32, size);
		return 0;
	case EMBER_ALLOC_CALLOC:
		size = PT_REGS_PARM1(ctx) * PT_REGS_PARM2(ctx);
		break;
	case EMBER_ALLOC_REALLOC:
		if (PT_REGS_PARM1(ctx))
			forget(id >> 32, PT_REGS_PARM1(ctx));
		else if (nests)
			return 0; /* glibc: realloc(NULL, n) is malloc(n), probed there */
		size = PT_REGS_PARM2(ctx);
		break;
	case EMBER_ALLOC_POSIX_MEMALIGN:
		if (nests && PT_REGS_PARM2(ctx) <= 16)
			return 0; /* glibc: malloc(size), probed there */
		memptr = PT_REGS_PARM1(ctx);
		size = PT_REGS_PARM3(ctx);
		break;
	case EMBER_ALLOC_MEMALIGN:
		if (nests && PT_REGS_PARM1(ctx) <= 16)
			return 0; /* glibc: malloc(size), probed there */
		size = PT_REGS_PARM2(ctx);
		break;
	default:
		size = PT_REGS_PARM1(ctx);
		break;
	}
	stat_inc(EMBER_ASTAT_CALLS);
	if (!size)
		return 0;
	st = bpf_map_lookup_elem(&cpu_state, &z);
	if (!st)
		return 0;
	/* A task preempted between here and the update can let another task on this CPU reuse
	 * the same countdown: a negligible perturbation of the gaps, never a bias in the weights
	 * (those depend only on size and interval). */
	if (!st->remaining)
		st->remaining = alloc_sample_gap(bpf_get_prandom_u32(), sample_interval);
	if (size < st->remaining) {
		st->remaining -= size;
		return 0;
	}
	st->remaining = alloc_sample_gap(bpf_get_prandom_u32(), sample_interval);
	p.size = size;
	p.memptr = memptr;
	if (bpf_map_update_elem(&pending, &id, &p, BPF_ANY)) {
		stat_inc(EMBER_ASTAT_PENDING_FULL);
		return 0;
	}
	return 1;
}

static __always_inline int on_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), addr;
	struct pending *p;
	struct pending copy;

	p = bpf_map_lookup_elem(&pending, &id);
	if (!p)
		return 0;
	copy = *p;
	(void)bpf_map_delete_elem(&pending, &id);
	if (copy.memptr) {
		/* posix_memalign returns 0 on success and stores the address in *memptr. */
		if (PT_REGS_RC(ctx) != 0 ||
		    bpf_probe_read_user(&addr, sizeof(addr), (void *)copy.memptr))
			addr = 0;
	} else {
		addr = PT_REGS_RC(ctx);
	}
	if (!addr) {
		stat_inc(EMBER_ASTAT_NO_RESULT);
		return 0;
	}
	record(ctx, addr, copy.size, sample_interval, EMBER_ALLOC_EV_TRACKED);
	return 0;
}

/* Session mode: one program for entry and return; the cookie is the ember_alloc_kind (and
 * EMBER_ALLOC_GLIBC_NESTS).
 * Returning 1 from the entry half skips the return half for this call. */
SEC("uprobe")
int ember_alloc_session(struct pt_regs *ctx)
{
	if (bpf_session_is_return())
		return on_return(ctx);
	return on_entry(ctx, bpf_get_attach_cookie(ctx)) ? 0 : 1;
}

/* Classic mode. */
SEC("uprobe")
int ember_alloc_entry(struct pt_regs *ctx)
{
	(void)on_entry(ctx, bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("uretprobe")
int ember_alloc_return(struct pt_regs *ctx)
{
	return on_return(ctx);
}

/* Preload mode: the library sampled this allocation already. */
SEC("usdt")
int BPF_USDT(ember_usdt_alloc, void *ptr, __u64 size, __u64 interval, __u64 lib_flags)
{
	__u32 flags = EMBER_ALLOC_EV_PRELOAD;

	/* lib_flags bit 0: the library could not remember the address (its table was full), so
	 * no free will be reported for it: keeping it live would be a phantom leak. */
	if (!(lib_flags & 1))
		flags |= EMBER_ALLOC_EV_TRACKED;
	if (ptr)
		record(ctx, (__u64)ptr, size, interval ? interval : sample_interval, flags);
	return 0;
}

SEC("usdt")
int BPF_USDT(ember_usdt_free, void *ptr)
{
	stat_inc(EMBER_ASTAT_FREES);
	forget(bpf_get_current_pid_tgid() >> 32, (__u64)ptr);
	return 0;
}
