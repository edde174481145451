/* stack_snapshot.bpf.h: BPF-only. Copies a sampled thread's user registers and the top of its
 * user stack into a ring buffer, for processes whose stacks the agent unwinds with DWARF
 * (EMBER_TARGET_DWARF). Include after vmlinux.h, bpf_helpers.h, bpf_core_read.h, ember.h and
 * ember.bpf.h and python.bpf.h.
 *
 * The includer defines the maps and passes them in (a map argument must be a constant, which
 * it is once this is inlined):
 *
 *   struct {
 *	__uint(type, BPF_MAP_TYPE_ARRAY);      // not PERCPU: per-CPU values are capped at 32 KiB
 *	__uint(max_entries, 1);                // set to libbpf_num_possible_cpus() before load
 *	__type(key, __u32);
 *	__type(value, struct ember_snapshot_buf);
 *   } snapshot_buf SEC(".maps");
 *   struct {
 *	__uint(type, BPF_MAP_TYPE_RINGBUF);
 *	__uint(max_entries, 8 << 20);          // power of two, set before load
 *   } snapshots SEC(".maps");
 *
 * Cost per sample: one probe read of up to stack_size bytes into the CPU's slot (no further
 * than the exec-time stack pointer on the main thread; retried at half the size, down to 512
 * bytes, when the read crosses the end of the mapping), then one copy of the header and the
 * bytes read into the ring buffer. */
#ifndef EMBER_STACK_SNAPSHOT_BPF_H
#define EMBER_STACK_SNAPSHOT_BPF_H

/* One CPU's scratch record, indexed by CPU number in an ARRAY map: a struct
 * ember_stack_snapshot and room for its largest stack. */
struct ember_snapshot_buf {
	/* + 64: the verifier's bound of the stack length after the 8-byte rounding is a few
	 * bytes looser than the real one. */
	__u8 raw[sizeof(struct ember_stack_snapshot) + EMBER_SNAPSHOT_STACK_MAX +
		 sizeof(struct ember_py_stack) + 64];
};

/* What ember_snapshot() did; the caller bumps its own counters. */
enum ember_snapshot_result {
	EMBER_SNAPSHOT_OK = 0,       /* the record is in the ring buffer */
	EMBER_SNAPSHOT_SHORT,        /* sent, but with less stack than asked (EMBER_SNAP_SHORT) */
	EMBER_SNAPSHOT_NO_USER,      /* kernel thread or no user registers: nothing sent */
	EMBER_SNAPSHOT_FAULT,        /* not even 512 bytes of stack readable: nothing sent */
	EMBER_SNAPSHOT_NO_SCRATCH,   /* scratch slot missing (max_entries < CPUs): nothing sent */
	EMBER_SNAPSHOT_LOST,         /* ring buffer full: dropped */
};

#define EMBER_SNAPSHOT_MIN 512
/* EMBER_SNAPSHOT_STACK_MAX / EMBER_SNAPSHOT_MIN = 2^7: at most 8 tries. */
#define EMBER_SNAPSHOT_TRIES 8

/* bpf_find_vma() callback: the end of the mapping that holds the stack pointer. */
static long ember_stack_vma_end(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	*(__u64 *)data = vma->vm_end;
	return 0;
}

/* Sends one snapshot of the current thread. stack_size (bytes, a rodata knob: --stack-size) is
 * clamped to [EMBER_SNAPSHOT_MIN, EMBER_SNAPSHOT_STACK_MAX]; 0 is "what the thread uses": from
 * the stack pointer to the end of the mapping that holds it (a thread's stack ends there, its
 * pthread block and TLS above the frames; the main thread's at the exec-time stack pointer),
 * at most EMBER_SNAPSHOT_STACK_MAX, so deep stacks are copied whole and shallow ones cheaply.
 * Where the mapping cannot be looked up (its lock is held), EMBER_SNAPSHOT_DEFAULT. t is the process's target entry,
 * kernel_stack_id and stack_map as in struct ember_stack_snapshot. py, when not NULL, is
 * appended after the stack bytes (EMBER_SNAP_PY). */
static __always_inline enum ember_snapshot_result
ember_snapshot(void *scratch_map, void *ringbuf, const struct ember_target *t, __u32 tgid,
	       __s32 kernel_stack_id, __u32 stack_map, __u32 stack_size,
	       const struct ember_py_stack *py, __u32 flags, __u32 seq)
{
#if defined(__TARGET_ARCH_x86)
	struct task_struct *task = bpf_get_current_task_btf();
	struct ember_stack_snapshot *snap;
	struct ember_snapshot_buf *buf;
	struct pt_regs *regs;
	__u32 cpu = bpf_get_smp_processor_id();
	bool wake;
	__u64 sp, start_stack;
	__u32 len, pylen = 0;
	long err = -1;

	if (!task->mm)
		return EMBER_SNAPSHOT_NO_USER;
	/* The user registers saved at kernel entry: right whether the sample hit user or kernel
	 * mode (in user mode they are the interrupted registers themselves). */
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return EMBER_SNAPSHOT_NO_USER;
	buf = bpf_map_lookup_elem(scratch_map, &cpu);
	if (!buf)
		return EMBER_SNAPSHOT_NO_SCRATCH;
	snap = (struct ember_stack_snapshot *)buf->raw;

	snap->tgid = tgid;
	snap->tid = (__u32)bpf_get_current_pid_tgid();
	snap->cookie = t->cookie;
	snap->service_id = t->service_id;
	snap->kernel_stack_id = kernel_stack_id;
	snap->stack_map = stack_map;
	snap->flags = flags;
	snap->user_stack_id = -1;
	snap->offcpu_ns = 0;
	snap->offcpu_switches = 0;
	snap->offcpu_seq = seq;
	snap->regs[EMBER_SNAP_IP] = regs->ip;
	snap->regs[EMBER_SNAP_SP] = sp = regs->sp;
	snap->regs[EMBER_SNAP_BP] = regs->bp;
	snap->regs[EMBER_SNAP_BX] = regs->bx;
	snap->regs[EMBER_SNAP_R12] = regs->r12;
	snap->regs[EMBER_SNAP_R13] = regs->r13;
	snap->regs[EMBER_SNAP_R14] = regs->r14;
	snap->regs[EMBER_SNAP_R15] = regs->r15;
	snap->regs[EMBER_SNAP_AX] = regs->ax;
	snap->regs[EMBER_SNAP_CX] = regs->cx;
	snap->regs[EMBER_SNAP_DX] = regs->dx;
	snap->regs[EMBER_SNAP_SI] = regs->si;
	snap->regs[EMBER_SNAP_DI] = regs->di;
	snap->regs[EMBER_SNAP_R8] = regs->r8;
	snap->regs[EMBER_SNAP_R9] = regs->r9;
	snap->regs[EMBER_SNAP_R10] = regs->r10;
	snap->regs[EMBER_SNAP_R11] = regs->r11;

	len = stack_size;
	if (!len) {
		__u64 end = 0;

		len = EMBER_SNAPSHOT_DEFAULT;
		if (bpf_find_vma(task, sp, ember_stack_vma_end, &end, 0) == 0 && end > sp)
			len = end - sp > EMBER_SNAPSHOT_STACK_MAX ? EMBER_SNAPSHOT_STACK_MAX
								    : ((__u32)(end - sp) + 7) & ~7u;
	}
	if (len > EMBER_SNAPSHOT_STACK_MAX)
		len = EMBER_SNAPSHOT_STACK_MAX;
	if (len < EMBER_SNAPSHOT_MIN)
		len = EMBER_SNAPSHOT_MIN;
	/* On the main thread nothing above the exec-time sp (argc, argv, the environment) is a
	 * frame, and the mapping ends a few KiB higher: stop there instead of faulting. */
	start_stack = task->mm->start_stack;
	if (sp < start_stack && start_stack - sp + 64 < len)
		len = ((__u32)(start_stack - sp) + 64) & ~7u;
	/* A read that crosses the top of the stack mapping fails whole: halve until it fits. */
	for (int i = 0; i < EMBER_SNAPSHOT_TRIES; i++) {
		/* The verifier wants the size bounded by the buffer on every path; barrier_var()
		 * keeps clang from checking one copy of len and passing another. */
		barrier_var(len);
		if (len > EMBER_SNAPSHOT_STACK_MAX)
			break;
		err = bpf_probe_read_user(snap->stack, len, (const void *)sp);
		if (!err)
			break;
		if (len <= EMBER_SNAPSHOT_MIN)
			break;
		len /= 2;
		snap->flags |= EMBER_SNAP_SHORT;
	}
	if (err)
		return EMBER_SNAPSHOT_FAULT;
	snap->stack_len = len;
	if (len > EMBER_SNAPSHOT_STACK_MAX) /* for the verifier: len was checked in the loop */
		return EMBER_SNAPSHOT_FAULT;
	if (py) {
		__u32 off = len;

		pylen = ember_py_stack_bytes(py);
		/* Both bounds checked on the registers the read uses: the stack part may be the
		 * whole EMBER_SNAPSHOT_STACK_MAX (--stack-size 0 on a deep stack). */
		barrier_var(pylen);
		barrier_var(off);
		if (pylen <= sizeof(struct ember_py_stack) && off <= EMBER_SNAPSHOT_STACK_MAX &&
		    !bpf_probe_read_kernel(snap->stack + off, pylen, py))
			snap->flags |= EMBER_SNAP_PY;
		else
			pylen = 0;
	}
	/* No wakeup per sample: the agent polls the ring at least every 100 ms; wake it only once
	 * the ring is a quarter full, so bursts never fill it. */
	wake = bpf_ringbuf_query(ringbuf, BPF_RB_AVAIL_DATA) >
	       bpf_ringbuf_query(ringbuf, BPF_RB_RING_SIZE) / 4;
	if (bpf_ringbuf_output(ringbuf, buf, sizeof(*snap) + len + pylen,
			       wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP))
		return EMBER_SNAPSHOT_LOST;
	return (snap->flags & EMBER_SNAP_SHORT) ? EMBER_SNAPSHOT_SHORT : EMBER_SNAPSHOT_OK;
#else
	return EMBER_SNAPSHOT_NO_USER; /* registers are read for x86-64 only */
#endif
}

/* A frame-pointer sample that carries Python frames: the stack ids instead of stack bytes
 * (EMBER_SNAP_FP), then py. Same results as ember_snapshot() (never SHORT or NO_USER). */
static __always_inline enum ember_snapshot_result
ember_snapshot_fp(void *scratch_map, void *ringbuf, const struct ember_target *t, __u32 tgid,
		  __s32 user_stack_id, __s32 kernel_stack_id, __u32 stack_map,
		  const struct ember_py_stack *py, __u32 flags, __u32 seq)
{
	struct ember_stack_snapshot *snap;
	struct ember_snapshot_buf *buf;
	__u32 cpu = bpf_get_smp_processor_id(), pylen;
	bool wake;

	buf = bpf_map_lookup_elem(scratch_map, &cpu);
	if (!buf)
		return EMBER_SNAPSHOT_NO_SCRATCH;
	snap = (struct ember_stack_snapshot *)buf->raw;
	__builtin_memset(snap, 0, sizeof(*snap));
	snap->tgid = tgid;
	snap->tid = (__u32)bpf_get_current_pid_tgid();
	snap->cookie = t->cookie;
	snap->service_id = t->service_id;
	snap->kernel_stack_id = kernel_stack_id;
	snap->user_stack_id = user_stack_id;
	snap->stack_map = stack_map;
	snap->flags = EMBER_SNAP_FP | flags;
	snap->offcpu_seq = seq;
	pylen = 0;
	if (py) {
		/* the stack ids, then the Python frames */
		snap->flags |= EMBER_SNAP_PY;
		pylen = ember_py_stack_bytes(py);
		barrier_var(pylen);
		if (pylen > sizeof(struct ember_py_stack) ||
		    bpf_probe_read_kernel(snap->stack, pylen, py))
			return EMBER_SNAPSHOT_FAULT;
	}
	wake = bpf_ringbuf_query(ringbuf, BPF_RB_AVAIL_DATA) >
	       bpf_ringbuf_query(ringbuf, BPF_RB_RING_SIZE) / 4;
	if (bpf_ringbuf_output(ringbuf, buf, sizeof(*snap) + pylen,
			       wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP))
		return EMBER_SNAPSHOT_LOST;
	return EMBER_SNAPSHOT_OK;
}

#endif
