// SPDX-License-Identifier: GPL-2.0
/* cpu.bpf.c: CPU sampling. A perf_event program runs on every cpu-clock tick of every CPU,
 * drops samples of unselected processes before touching any stack, and counts
 * (process, user stack, kernel stack) in one of two map pairs; userspace flips `active` and
 * drains the idle pair, so draining never races with counting. Tracepoints on exec, fork and
 * exit keep the target set current and tell userspace when to capture a process's maps. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "ember.h"
#include "ember.bpf.h"
#include "python.bpf.h"
#include "stack_snapshot.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Knobs set by userspace before load. */
const volatile bool select_all = false;      /* no --service: every process is a target */
const volatile bool follow_children = false; /* children of targets become targets */
const volatile bool report_execs = false;    /* send EXEC for every process (selector matching) */
const volatile bool report_cgroups = false;  /* send CGROUP when a process changes cgroup */
const volatile __u64 ns_per_tick = 10000000; /* NSEC_PER_SEC / sysconf(_SC_CLK_TCK) */
const volatile bool dwarf_all = false;       /* --unwind dwarf: every target sends snapshots */
const volatile bool dwarf_first = false;     /* --unwind auto: a new image starts in DWARF mode
					      * (complete stacks) until userspace picks its mode */
const volatile __u32 snapshot_stack_size = 0; /* --stack-size, bytes; 0: what each thread uses */

/* Off-CPU (--profiles offcpu): blocked time of target threads. */
const volatile bool offcpu_on = false;
const volatile bool offcpu_preempted = false; /* also count time taken away by preemption */
const volatile __u32 offcpu_min_ns = 100000;  /* --offcpu-min-us: shorter blocks are sampled */
const volatile bool offcpu_dwarf = false;     /* blocks always as snapshots (--unwind auto):
					       * waits go through libc's syscall wrappers, which
					       * keep no frame pointers on most distributions */
const volatile __u32 offcpu_window_max = 200; /* blocks followed per CPU per 100 ms before
					       * thinning (1 in 2, 4, ...) */

/* Which counts/stacks pair the sampler writes to (0 or 1); flipped by userspace. */
__u32 active = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tgid */
	__type(value, struct ember_target);
} targets SEC(".maps");

struct stack_map {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, EMBER_MAX_STACK_DEPTH * sizeof(__u64));
};
struct stack_map stacks0 SEC(".maps");
struct stack_map stacks1 SEC(".maps");

struct counts_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ember_cpu_key);
	__type(value, __u64);
};
struct counts_map counts0 SEC(".maps");
struct counts_map counts1 SEC(".maps");

/* Off-CPU: when each followed thread blocked, task-local (bounded by the threads that exist,
 * gone with them). */
struct offcpu_task {
	__u64 ts;       /* 0: not blocked, or not followed */
	__u32 seq;      /* blocks followed so far */
	__u32 shift;    /* the block stands for 2^shift blocks (thinning) */
};
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct offcpu_task);
} offcpu_tasks SEC(".maps");

/* Off-CPU: per-CPU rate of blocks followed, for thinning under heavy switching. */
struct offcpu_rate {
	__u64 window;   /* start of the 100 ms window, ns */
	__u32 count;    /* blocks followed in it */
	__u32 shift;    /* current thinning: follow 1 in 2^shift */
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct offcpu_rate);
} offcpu_rates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMBER_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* DWARF mode: per-CPU scratch for one snapshot (an ARRAY indexed by CPU: per-CPU map values
 * are capped at 32 KiB), and the ring buffer the snapshots go through. Both sized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ember_snapshot_buf);
} snapshot_buf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} snapshots SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		(*v)++;
}

static __always_inline __u64 task_cookie(struct task_struct *task)
{
	return BPF_CORE_READ(task, group_leader, start_boottime) / ns_per_tick;
}

static __always_inline void emit_event(__u32 type, __u32 tgid, __u32 ppid,
				       const struct ember_target *t)
{
	struct ember_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		stat_inc(EMBER_STAT_EVENTS_LOST);
		return;
	}
	e->type = type;
	e->tgid = tgid;
	e->ppid = ppid;
	e->service_id = t ? t->service_id : 0;
	e->cookie = t ? t->cookie : 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

/* tgid's target entry; in every-process mode one is made for a process not seen yet. NULL:
 * not a target (or the map is full). */
static __always_inline struct ember_target *target_of(__u32 tgid, struct task_struct *task)
{
	struct ember_target *t = bpf_map_lookup_elem(&targets, &tgid);
	struct ember_target nt = {};

	if (t || !select_all || tgid == 0)
		return t;
	nt.flags = dwarf_first ? EMBER_TARGET_DWARF : 0;
	nt.cookie = task_cookie(task);
	bpf_map_update_elem(&targets, &tgid, &nt, BPF_NOEXIST);
	return bpf_map_lookup_elem(&targets, &tgid);
}

static __always_inline bool sampled_in_user_mode(struct bpf_perf_event_data *ctx)
{
	/* User addresses have the top bit clear on x86-64 and arm64; kernel addresses set it.
	 * (Reading the mode from pt_regs->cs is not portable: since FRED, cs is a 16-bit field
	 * and the verifier only allows full-width context loads.) */
	return (__s64)PT_REGS_IP(&ctx->regs) >= 0;
}

static __always_inline void count_stack(void *counts, struct ember_cpu_key *key)
{
	__u64 one = 1, *v;
	long err;

	v = bpf_map_lookup_elem(counts, key);
	if (v) {
		__sync_fetch_and_add(v, 1);
		return;
	}
	err = bpf_map_update_elem(counts, key, &one, BPF_NOEXIST);
	if (err == -EEXIST) {
		/* Another CPU inserted the same key in between. */
		v = bpf_map_lookup_elem(counts, key);
		if (v)
			__sync_fetch_and_add(v, 1);
	} else if (err) {
		stat_inc(EMBER_STAT_COUNTS_FULL);
	}
}

/* A user stack that bpf_get_stackid() could not take, or -1 when there was none to take.
 * Kernel threads have no user stack and the helper reports -EFAULT for them, as for an
 * unreadable one; only then is current->mm read, to tell the two apart off the hot path. */
static __always_inline __s32 user_stack_result(long id)
{
	if (id >= 0)
		return id;
	if (id == -EFAULT && !bpf_get_current_task_btf()->mm)
		return -1; /* kernel thread: no user stack, and none lost */
	if (id == -EEXIST)
		stat_inc(EMBER_STAT_USTACK_COLLISION);
	else if (id == -EFAULT)
		stat_inc(EMBER_STAT_USTACK_FAULT);
	else
		stat_inc(EMBER_STAT_USTACK_ERROR);
	return id;
}

static __always_inline void kernel_stack_lost(long id)
{
	if (id == -EEXIST)
		stat_inc(EMBER_STAT_KSTACK_COLLISION);
	else if (id == -EFAULT)
		stat_inc(EMBER_STAT_KSTACK_FAULT);
	else
		stat_inc(EMBER_STAT_KSTACK_ERROR);
}

/* Where the time goes (bench/bench_bpf_cost.py, 2-vCPU nested VM, 14-frame user stack, ns per
 * run at 997 / 97 Hz): entering an empty program ~400 / ~1200, the targets lookup +150 / +700,
 * the user-stack walk in bpf_get_stackid() +1700 / +4200, the count +500 / +1000. Only the walk
 * is large, and it is the kernel's. */
SEC("perf_event")
int ember_cpu_sample(struct bpf_perf_event_data *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ember_cpu_key key = {};
	struct ember_py_stack *py;
	struct ember_target *t;
	__u32 buf;
	long id;

	/* Selection first: an unselected process costs one hash lookup. */
	t = target_of(tgid, bpf_get_current_task_btf());
	if (!t) {
		stat_inc(EMBER_STAT_FILTERED);
		return 0;
	}
	stat_inc(EMBER_STAT_SAMPLES);
	py = (t->flags & EMBER_TARGET_PYTHON) ? ember_py_walk(tgid) : NULL;
	if (!(t->flags & EMBER_TARGET_SEEN)) {
		/* Racing CPUs may both report; userspace tolerates duplicates. */
		t->flags |= EMBER_TARGET_SEEN;
		emit_event(EMBER_EVENT_FIRST_SAMPLE, tgid, 0, t);
	}

	key.tgid = tgid;
	key.service_id = t->service_id;
	key.cookie = t->cookie;
	key.kernel_stack_id = -1;
	/* One read of `active`: the stacks and the count of a sample must go to the same pair even
	 * when userspace flips it in between. */
	buf = *(volatile __u32 *)&active & 1;

	if (dwarf_all || (t->flags & EMBER_TARGET_DWARF)) {
		/* DWARF mode: the kernel stack as usual, the user stack as a snapshot that userspace
		 * unwinds. */
		if (!sampled_in_user_mode(ctx)) {
			id = buf ? bpf_get_stackid(ctx, &stacks1, 0) : bpf_get_stackid(ctx, &stacks0, 0);
			if (id < 0)
				kernel_stack_lost(id);
			key.kernel_stack_id = id;
		}
		switch (ember_snapshot(&snapshot_buf, &snapshots, t, tgid, key.kernel_stack_id, buf,
				       snapshot_stack_size, py, 0, 0)) {
		case EMBER_SNAPSHOT_LOST:
			stat_inc(EMBER_STAT_SNAPSHOT_LOST);
			break;
		case EMBER_SNAPSHOT_FAULT:
		case EMBER_SNAPSHOT_NO_SCRATCH:
			stat_inc(EMBER_STAT_SNAPSHOT_FAULT);
			break;
		case EMBER_SNAPSHOT_SHORT:
			stat_inc(EMBER_STAT_SNAPSHOT_SHORT);
			break;
		case EMBER_SNAPSHOT_NO_USER:
			/* A kernel thread: nothing to unwind, count its kernel stack as usual. */
			key.user_stack_id = -1;
			if (buf)
				count_stack(&counts1, &key);
			else
				count_stack(&counts0, &key);
			break;
		default:
			break;
		}
		return 0;
	}

	/* bpf_get_stackid() needs the map as a constant: one branch per buffer. */
	id = buf ? bpf_get_stackid(ctx, &stacks1, BPF_F_USER_STACK)
		 : bpf_get_stackid(ctx, &stacks0, BPF_F_USER_STACK);
	key.user_stack_id = user_stack_result(id);
	if (!sampled_in_user_mode(ctx)) {
		id = buf ? bpf_get_stackid(ctx, &stacks1, 0) : bpf_get_stackid(ctx, &stacks0, 0);
		if (id < 0)
			kernel_stack_lost(id);
		key.kernel_stack_id = id;
	}
	if (py) {
		/* The Python frames differ from sample to sample: the sample goes to userspace. */
		switch (ember_snapshot_fp(&snapshot_buf, &snapshots, t, tgid, key.user_stack_id,
					  key.kernel_stack_id, buf, py, 0, 0)) {
		case EMBER_SNAPSHOT_OK:
			return 0;
		case EMBER_SNAPSHOT_LOST:
			stat_inc(EMBER_STAT_SNAPSHOT_LOST);
			return 0;
		default:
			break; /* no scratch: count it without its Python frames */
		}
	}
	if (buf)
		count_stack(&counts1, &key);
	else
		count_stack(&counts0, &key);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ember_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	struct ember_target *t = bpf_map_lookup_elem(&targets, &tgid);

	if (t) {
		/* New image: the next sample recaptures the maps. */
		t->flags &= ~(EMBER_TARGET_SEEN | EMBER_TARGET_PYTHON);
		if (dwarf_first)
			t->flags |= EMBER_TARGET_DWARF;
		emit_event(EMBER_EVENT_EXEC, tgid, 0, t);
	} else if (report_execs) {
		emit_event(EMBER_EVENT_EXEC, tgid, 0, NULL);
	}
	return 0;
}

/* ld.so and dlopen map code with mmap(PROT_EXEC): tell userspace to re-read the maps while the
 * process is alive, as perf does with its MMAP records. fentry needs no tracefs; the agent
 * runs without this program where the kernel lacks fentry. */
SEC("fentry/security_mmap_file")
int BPF_PROG(ember_mmap, struct file *file, unsigned long prot, unsigned long flags)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ember_target *t;

	if (!file || !(prot & 4 /* PROT_EXEC */))
		return 0;
	t = bpf_map_lookup_elem(&targets, &tgid);
	if (t)
		emit_event(EMBER_EVENT_MMAP, tgid, 0, t);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(ember_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	struct ember_target *pt, nt = {};

	if (!follow_children || ptgid == ctgid)
		return 0; /* a new thread, not a new process */
	pt = bpf_map_lookup_elem(&targets, &ptgid);
	if (!pt)
		return 0;
	nt.service_id = pt->service_id;
	nt.flags = pt->flags & EMBER_TARGET_DWARF; /* the child runs the same code, at first */
	nt.cookie = BPF_CORE_READ(child, start_boottime) / ns_per_tick;
	bpf_map_update_elem(&targets, &ctgid, &nt, BPF_ANY);
	emit_event(EMBER_EVENT_FORK, ctgid, ptgid, &nt);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(ember_exit, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	struct ember_target *t;

	/* signal->live drops to 0 when the last thread exits, before this tracepoint. */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	t = bpf_map_lookup_elem(&targets, &tgid);
	if (!t)
		return 0;
	emit_event(EMBER_EVENT_EXIT, tgid, 0, t);
	bpf_map_delete_elem(&targets, &tgid);
	return 0;
}

/* cgroup:/container: selectors must see a process moved into a group after it started. */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(ember_cgroup_attach, struct cgroup *dst, const char *path, struct task_struct *task,
	     bool threadgroup)
{
	struct ember_target *t;
	__u32 tgid;

	if (!report_cgroups)
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
	t = bpf_map_lookup_elem(&targets, &tgid);
	emit_event(EMBER_EVENT_CGROUP, tgid, 0, t);
	return 0;
}

/* ---- off-CPU ----
 *
 * Tracepoints only (kprobes and fentry are not available everywhere): at sched_switch the
 * thread leaving the CPU (prev, which is `current`) has its stacks taken as for a CPU sample
 * (frame-pointer ids or a DWARF snapshot, the kernel stack, the Python frames) and sent as an
 * OFFCPU_START record; when it is switched in again (next, at a later sched_switch on any CPU)
 * an OFFCPU_END record with the same sequence number carries how long it was off. Userspace
 * keeps each thread's last START until its END. A block shorter than offcpu_min_ns, of d ns,
 * is kept with probability d / min and then counts min ns and min / d switches (rounded at
 * random); under heavy switching a CPU follows only 1 in 2^shift blocks and each followed one
 * counts 2^shift times: both keep the totals unbiased. */

static __always_inline void offcpu_end(struct task_struct *next, __u64 now)
{
	struct ember_stack_snapshot e = {};
	struct offcpu_task *st;
	__u64 d, ns, switches, min = offcpu_min_ns;

	st = bpf_task_storage_get(&offcpu_tasks, next, 0, 0);
	if (!st || !st->ts)
		return;
	d = now - st->ts;
	st->ts = 0;
	if (min && d < min) {
		if (!d || bpf_get_prandom_u32() % min >= d) {
			stat_inc(EMBER_STAT_OFFCPU_SHORT);
			return;
		}
		ns = min;
		switches = min / d + (bpf_get_prandom_u32() % d < min % d ? 1 : 0);
	} else {
		ns = d;
		switches = 1;
	}
	stat_inc(EMBER_STAT_OFFCPU);
	e.tgid = next->tgid;
	e.tid = next->pid;
	e.flags = EMBER_SNAP_OFFCPU_END;
	e.kernel_stack_id = -1;
	e.user_stack_id = -1;
	e.offcpu_seq = st->seq;
	e.offcpu_ns = ns << (st->shift & 15);
	e.offcpu_switches = switches << (st->shift & 15);
	if (bpf_ringbuf_output(&snapshots, &e, sizeof(e), 0))
		stat_inc(EMBER_STAT_SNAPSHOT_LOST);
}

/* Follow this block? Thins to 1 in 2^shift per CPU when more than offcpu_window_max blocks
 * come in 100 ms; *ret_shift is the weight's exponent. */
static __always_inline bool offcpu_follow(__u64 now, __u32 *ret_shift)
{
	__u32 z = 0;
	struct offcpu_rate *r = bpf_map_lookup_elem(&offcpu_rates, &z);

	if (!r)
		return false;
	if (now - r->window > 100000000ULL) {
		if (r->count > offcpu_window_max && r->shift < 10)
			r->shift++;
		else if (r->count < offcpu_window_max / 4 && r->shift)
			r->shift--;
		r->window = now;
		r->count = 0;
	}
	r->count++;
	*ret_shift = r->shift;
	if (r->shift && (bpf_get_prandom_u32() & ((1u << (r->shift & 15)) - 1))) {
		stat_inc(EMBER_STAT_OFFCPU_THINNED);
		return false;
	}
	return true;
}

static __always_inline void offcpu_start(void *ctx, struct task_struct *prev, __u64 now)
{
	enum ember_snapshot_result r;
	struct ember_py_stack *py;
	struct offcpu_task *st;
	struct ember_target *t;
	__s32 kid, uid;
	__u32 tgid = prev->tgid, buf, shift = 0;
	long id;

	if (!tgid)
		return;
	/* Every-process mode: a process that only ever blocks is a target too. */
	t = target_of(tgid, prev);
	if (!t)
		return;
	if (!offcpu_follow(now, &shift))
		return;
	st = bpf_task_storage_get(&offcpu_tasks, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st)
		return;
	if (!(t->flags & EMBER_TARGET_SEEN)) {
		t->flags |= EMBER_TARGET_SEEN;
		emit_event(EMBER_EVENT_FIRST_SAMPLE, tgid, 0, t);
	}
	st->seq++;
	st->shift = shift;
	buf = *(volatile __u32 *)&active & 1;
	/* Skip this program's frame and bpf_trace_run*(): the stack starts at __schedule(). */
	id = buf ? bpf_get_stackid(ctx, &stacks1, 2) : bpf_get_stackid(ctx, &stacks0, 2);
	if (id < 0)
		kernel_stack_lost(id);
	kid = id;
	py = (t->flags & EMBER_TARGET_PYTHON) ? ember_py_walk(tgid) : NULL;
	if (offcpu_dwarf || dwarf_all || (t->flags & EMBER_TARGET_DWARF)) {
		r = ember_snapshot(&snapshot_buf, &snapshots, t, tgid, kid, buf, snapshot_stack_size,
				   py, EMBER_SNAP_OFFCPU_START, st->seq);
	} else {
		id = buf ? bpf_get_stackid(ctx, &stacks1, BPF_F_USER_STACK)
			 : bpf_get_stackid(ctx, &stacks0, BPF_F_USER_STACK);
		uid = user_stack_result(id);
		r = ember_snapshot_fp(&snapshot_buf, &snapshots, t, tgid, uid, kid, buf, py,
				      EMBER_SNAP_OFFCPU_START, st->seq);
	}
	if (r == EMBER_SNAPSHOT_OK || r == EMBER_SNAPSHOT_SHORT)
		st->ts = now; /* followed: its END will come */
	else
		stat_inc(r == EMBER_SNAPSHOT_LOST ? EMBER_STAT_SNAPSHOT_LOST : EMBER_STAT_SNAPSHOT_FAULT);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(ember_offcpu_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	__u64 now;

	if (!offcpu_on)
		return 0;
	now = bpf_ktime_get_ns();
	/* next's block ends first: its END is in the ring before prev's next START */
	offcpu_end(next, now);
	/* blocked (not runnable), unless preemption is asked for too */
	if (offcpu_preempted || (!preempt && prev_state != 0 /* TASK_RUNNING */))
		offcpu_start(ctx, prev, now);
	return 0;
}
