/* python.bpf.h: BPF-only. Reads the Python frames of the sampled thread of a CPython process
 * (3.10-3.14, default builds, x86-64), at a CPU sample or a sampled allocation. Include after
 * vmlinux.h, bpf_helpers.h, bpf_core_read.h, ember.h and ember.bpf.h.
 *
 * bpf_loop callbacks take no map arguments, so the maps are defined here (one set per BPF
 * object that includes this): py_procs, filled by the agent for each Python process it
 * profiles; py_threads, the thread-state cache; py_scratch, each CPU's working memory.
 *
 * The thread's own thread state (PYTHON.md section 3.2): the interpreter's list of thread
 * states is searched for the one whose thread_id (its pthread_t, which on x86-64 glibc and
 * musl is the thread pointer) equals the sampled task's fs base. That holds whether or not the
 * thread holds the GIL, needs no libc knowledge and no pid namespace translation. The answer is
 * cached per thread in py_threads and checked again at every use (one read of the thread
 * state, which the walk needs anyway); a thread without a thread state is searched again at
 * most once a second.
 *
 * Cost per sample of a Python thread whose state is cached: one map lookup, one read of the
 * thread state (3.11/3.12: two); on 3.11+ one read of up to 8 KiB of the data stack below the
 * current frame, which holds the frames of most chains (3.10, generators and frames past it:
 * one read each); per code object one read for its validation key, reused by this CPU for
 * EMBER_PY_CODE_TTL_MS for the same code and function objects. Names and lines are the
 * agent's work. Every read may fail
 * (frames popped meanwhile, garbage pointers, an exiting process): the walk then stops and
 * says so in the status; it never follows more than EMBER_PY_MAX_FRAMES frames. */
#ifndef EMBER_PYTHON_BPF_H
#define EMBER_PYTHON_BPF_H

/* Value of py_threads, keyed by the task's TID (root namespace). */
struct ember_py_thread {
	__u64 tstate;   /* the thread's PyThreadState, 0: none found */
	__u64 retry_ns; /* none found: search again after this time (bpf_ktime_get_ns) */
	__u32 tgid;     /* the process it was found in (TIDs are reused) */
	__u32 span;     /* 3.11+: bytes of data stack the last walk used (0: not known yet) */
};

/* A code object's key as this CPU read it lately, with the function object the frame ran
 * it for. */
struct ember_py_code_slot {
	__u64 frame;
	__u64 code;
	__u64 func;
	__u32 key;
	__u32 stamp_ms; /* when it was read (bpf_ktime_get_ns() >> 20) */
};
#define EMBER_PY_CODE_SLOTS 256 /* a power of two */
#define EMBER_PY_TID_SLOTS 64   /* threads remembered per CPU in front of py_threads */

/* A thread's state as this CPU last found it (a copy of its py_threads entry). */
struct ember_py_tid_slot {
	__u32 tid, tgid;
	__u64 tstate;
	__u32 span;
	__u32 pad;
};
#define EMBER_PY_BULK 8192      /* bytes of 3.11+ data stack read at once (a power of two) */
#define EMBER_PY_FRAME_NEW 80   /* bytes of a 3.11+ _PyInterpreterFrame the walk reads */

/* One CPU's working memory. */
struct ember_py_scratch {
	struct ember_py_proc proc;
	__u8 tstate[EMBER_PY_TSTATE_READ];
	__u8 frame[EMBER_PY_FRAME_READ];
	__u8 code[EMBER_PY_CODE_READ];
	struct ember_py_stack stack;
	/* 3.11+: the frames below the current one, in one read: [bulk_base, bulk_base+bulk_len) */
	__u8 bulk[EMBER_PY_BULK];
	__u64 bulk_base;
	__u64 bulk_low;     /* the lowest frame of the chunk the walk met */
	__u64 chunk;        /* where the current chunk's frames start */
	__u32 bulk_len;
	__u32 now_ms;
	__u32 span;         /* the thread's ember_py_thread.span */
	struct ember_py_code_slot codes[EMBER_PY_CODE_SLOTS];
	struct ember_py_tid_slot tids[EMBER_PY_TID_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tgid */
	__type(value, struct ember_py_proc);
} py_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* TID */
	__type(value, struct ember_py_thread);
} py_threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ember_py_scratch);
} py_scratch SEC(".maps");

/* A field of `type` at a variable offset of a scratch array, 0 when it would not fit (an
 * absent field, EMBER_PY_NO_OFFSET). The check also bounds the offset for the verifier. */
#define EMBER_PY_LD(arr, off, type)                                                      \
	({                                                                                 \
		__u32 _o = (off);                                                          \
		type _v = 0;                                                               \
		barrier_var(_o);                                                           \
		if (_o <= sizeof(arr) - sizeof(type))                                      \
			_v = *(type *)((arr) + _o);                                        \
		_v;                                                                        \
	})

/* Search state for the thread-state lookup (on the program's stack). */
struct ember_py_tsearch {
	__u64 interp;   /* next interpreter to search */
	__u64 ts;       /* thread state being compared, 0: go to the next interpreter */
	__u64 want;     /* the task's fs base */
	__u64 found;
	__u32 ninterp;
	__u16 interp_next, threads_head, ts_next, ts_thread_id;
};

static long ember_py_tsearch_step(__u64 i, void *arg)
{
	struct ember_py_tsearch *w = arg;
	__u64 v = 0;

	if (!w->ts) {
		if (!w->interp || w->ninterp >= EMBER_PY_MAX_INTERPS)
			return 1;
		w->ninterp++;
		if (bpf_probe_read_user(&w->ts, sizeof(w->ts), (void *)(w->interp + w->threads_head)))
			w->ts = 0;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(w->interp + w->interp_next)))
			v = 0;
		w->interp = v;
		return 0;
	}
	if (bpf_probe_read_user(&v, sizeof(v), (void *)(w->ts + w->ts_thread_id))) {
		w->ts = 0; /* a list being changed under us: try the next interpreter */
		return 0;
	}
	if (v == w->want) {
		w->found = w->ts;
		return 1;
	}
	if (bpf_probe_read_user(&v, sizeof(v), (void *)(w->ts + w->ts_next)))
		v = 0;
	w->ts = v;
	return 0;
}

/* The current thread's PyThreadState, its first EMBER_PY_TSTATE_READ bytes in s->tstate; 0
 * when it has none. */
static __always_inline __u64 ember_py_find_tstate(struct ember_py_scratch *s, __u32 tgid,
						  __u32 tid, __u64 fsbase)
{
	const struct ember_py_proc *p = &s->proc;
	struct ember_py_thread *t, nt = { .tgid = tgid };
	struct ember_py_tsearch w = {
		.want = fsbase,
		.interp_next = p->interp_next,
		.threads_head = p->interp_threads_head,
		.ts_next = p->tstate_next,
		.ts_thread_id = p->tstate_thread_id,
	};
	__u64 now = bpf_ktime_get_ns();

	struct ember_py_tid_slot *ts = &s->tids[tid & (EMBER_PY_TID_SLOTS - 1)];

	s->span = 0;
	if (!fsbase)
		return 0;
	/* This CPU's copy first (no map lookup), then the shared cache. */
	if (ts->tid == tid && ts->tgid == tgid && ts->tstate &&
	    !bpf_probe_read_user(s->tstate, sizeof(s->tstate), (void *)ts->tstate) &&
	    EMBER_PY_LD(s->tstate, p->tstate_thread_id, __u64) == fsbase) {
		s->span = ts->span;
		return ts->tstate;
	}
	t = bpf_map_lookup_elem(&py_threads, &tid);
	if (t && t->tgid == tgid) {
		if (t->tstate) {
			if (!bpf_probe_read_user(s->tstate, sizeof(s->tstate), (void *)t->tstate) &&
			    EMBER_PY_LD(s->tstate, p->tstate_thread_id, __u64) == fsbase) {
				s->span = t->span;
				ts->tid = tid;
				ts->tgid = tgid;
				ts->tstate = t->tstate;
				ts->span = t->span;
				return t->tstate;
			}
			/* gone or reused: search again */
		} else if (now < t->retry_ns) {
			return 0;
		}
	}
	if (bpf_probe_read_user(&w.interp, sizeof(w.interp), (void *)p->interp_head))
		w.interp = 0;
	bpf_loop(EMBER_PY_MAX_THREADS + EMBER_PY_MAX_INTERPS, ember_py_tsearch_step, &w, 0);
	if (w.found && bpf_probe_read_user(s->tstate, sizeof(s->tstate), (void *)w.found))
		w.found = 0;
	nt.tstate = w.found;
	nt.retry_ns = w.found ? 0 : now + 1000000000ULL;
	(void)bpf_map_update_elem(&py_threads, &tid, &nt, BPF_ANY);
	return w.found;
}

struct ember_py_fwalk {
	__u64 frame;   /* next frame to read, 0: the chain ended */
	__u32 status;  /* enum ember_py_status once decided, else 0 */
	struct ember_py_scratch *s; /* this CPU's */
};

static long ember_py_frame_step(__u64 i, void *arg)
{
	struct ember_py_fwalk *w = arg;
	struct ember_py_scratch *s;
	const struct ember_py_proc *p;
	struct ember_py_code_slot *cs;
	struct ember_py_frame *f;
	__u64 prev, code, func, flags = 0;
	__s32 instr;
	__u32 n;

	if (!w->frame) {
		w->status = EMBER_PY_COMPLETE;
		return 1;
	}
	s = w->s;
	if (!s) {
		w->status = EMBER_PY_UNREADABLE;
		return 1;
	}
	p = &s->proc;
	n = s->stack.nframes;
	if (n >= EMBER_PY_MAX_FRAMES) {
		w->status = EMBER_PY_TRUNCATED;
		return 1;
	}
	f = &s->stack.frames[n];
	if (w->frame >= s->bulk_base && s->bulk_len >= EMBER_PY_FRAME_NEW &&
	    w->frame - s->bulk_base <= s->bulk_len - EMBER_PY_FRAME_NEW) {
		/* In the data stack read at the start: no read of its own. */
		__u32 off = (__u32)(w->frame - s->bulk_base);

		barrier_var(off);
		if (off > EMBER_PY_BULK - EMBER_PY_FRAME_NEW) {
			w->status = EMBER_PY_UNREADABLE;
			return 1;
		}
		__builtin_memcpy(s->frame, s->bulk + off, EMBER_PY_FRAME_NEW);
		if (w->frame < s->bulk_low)
			s->bulk_low = w->frame;
	} else {
		if (bpf_probe_read_user(s->frame, sizeof(s->frame), (void *)w->frame) &&
		    bpf_probe_read_user(s->frame, EMBER_PY_FRAME_NEW, (void *)w->frame)) {
			/* 3.11+ frames are 80 bytes and may end a chunk: read less on failure. */
			w->status = EMBER_PY_UNREADABLE;
			return 1;
		}
		/* below the bulk read, in its chunk: the next read takes more */
		if (s->bulk_len && w->frame < s->bulk_base && w->frame >= s->chunk &&
		    w->frame < s->bulk_low)
			s->bulk_low = w->frame;
	}
	prev = EMBER_PY_LD(s->frame, p->frame_previous, __u64);
	code = EMBER_PY_LD(s->frame, p->frame_code, __u64) & ~(__u64)p->code_tag_mask;
	if (p->entry_kind >= EMBER_PY_ENTRY_OWNER) {
		__u8 owner = EMBER_PY_LD(s->frame, p->frame_entry, __u8);

		if (owner == 3 || (p->entry_kind == EMBER_PY_ENTRY_OWNER_GE && owner > 3)) {
			f->code = EMBER_PYF_MARKER;
			f->key = 0;
			f->instr = 0;
			s->stack.nframes = n + 1;
			w->frame = prev;
			return 0;
		}
	} else if (p->entry_kind == EMBER_PY_ENTRY_FLAG &&
		   EMBER_PY_LD(s->frame, p->frame_entry, __u8)) {
		flags = EMBER_PYF_ENTRY;
	}
	if (!code || code > EMBER_PYF_ADDR_MASK) {
		w->status = EMBER_PY_UNREADABLE; /* not a frame of this layout */
		return 1;
	}
	if (p->instr_kind == EMBER_PY_INSTR_LASTI) {
		instr = EMBER_PY_LD(s->frame, p->frame_instr, __s32);
	} else {
		__s64 d = (__s64)(EMBER_PY_LD(s->frame, p->frame_instr, __u64) - code);

		instr = (d < -65536 || d > (1LL << 30)) ? (__s32)0x80000000 : (__s32)d;
	}
	/* The key: read from the code object (each such read is most of a walk's cost: code
	 * objects are scattered, a TLB miss each), or taken from this CPU's read for the same
	 * frame, code object and function object less than EMBER_PY_CODE_TTL_MS ago. A live
	 * frame holds references to both objects, so while it runs they cannot change; for the
	 * key to be wrong, the frame must have returned and both objects been freed and made
	 * again at the same addresses, run by a new frame at the same address. */
	func = EMBER_PY_LD(s->frame, p->frame_func, __u64) & ~(__u64)p->code_tag_mask;
	cs = &s->codes[(__u32)(((code ^ (func << 7) ^ (w->frame << 3)) >> 4) * 2654435761ULL >> 16) &
		       (EMBER_PY_CODE_SLOTS - 1)];
	if (cs->frame == w->frame && cs->code == code && cs->func == func &&
	    s->now_ms - cs->stamp_ms < EMBER_PY_CODE_TTL_MS) {
		f->key = cs->key;
	} else if (bpf_probe_read_user(s->code, sizeof(s->code), (void *)code)) {
		f->key = 0;
		flags |= EMBER_PYF_NO_CODE;
	} else {
		f->key = ember_py_code_key(EMBER_PY_LD(s->code, p->code_firstlineno, __u32),
					   EMBER_PY_LD(s->code, p->code_filename, __u64),
					   EMBER_PY_LD(s->code, p->code_name, __u64),
					   EMBER_PY_LD(s->code, p->code_qualname, __u64),
					   EMBER_PY_LD(s->code, p->code_linetable, __u64));
		cs->frame = w->frame;
		cs->code = code;
		cs->func = func;
		cs->key = f->key;
		cs->stamp_ms = s->now_ms;
	}
	f->code = code | flags;
	f->instr = instr;
	s->stack.nframes = n + 1;
	w->frame = prev;
	return 0;
}

/* The Python frames of the current thread of tgid, or NULL when tgid has no py_procs entry
 * (not yet described by the agent). The stack lives in this CPU's scratch until the next
 * walk. */
static __always_inline struct ember_py_stack *ember_py_walk(__u32 tgid)
{
#if defined(__TARGET_ARCH_x86)
	struct task_struct *task = bpf_get_current_task_btf();
	struct ember_py_fwalk w = {};
	struct ember_py_scratch *s;
	struct ember_py_proc *pp;
	__u64 ts, frame;
	__u32 z = 0;

	pp = bpf_map_lookup_elem(&py_procs, &tgid);
	if (!pp)
		return NULL;
	s = bpf_map_lookup_elem(&py_scratch, &z);
	if (!s)
		return NULL;
	s->proc = *pp;
	s->stack.nframes = 0;
	ts = ember_py_find_tstate(s, tgid, (__u32)bpf_get_current_pid_tgid(), task->thread.fsbase);
	if (!ts) {
		s->stack.status = EMBER_PY_NO_TSTATE;
		return &s->stack;
	}
	frame = EMBER_PY_LD(s->tstate, s->proc.tstate_frame, __u64);
	if (frame && s->proc.cframe_current_frame != EMBER_PY_NO_OFFSET &&
	    bpf_probe_read_user(&frame, sizeof(frame), (void *)(frame + s->proc.cframe_current_frame))) {
		s->stack.status = EMBER_PY_UNREADABLE;
		return &s->stack;
	}
	s->now_ms = (__u32)(bpf_ktime_get_ns() >> 20);
	s->bulk_len = 0;
	s->bulk_base = 0;
	if (frame && s->proc.tstate_datastack_chunk != EMBER_PY_NO_OFFSET) {
		/* 3.11+ frames are pushed on a data stack, callers below callees: one read takes
		 * most of a chain: as much as the thread's last walk used and 1 KiB more, never
		 * below the start of the current chunk (mapped with it, so the read cannot fault). */
		__u64 chunk = EMBER_PY_LD(s->tstate, s->proc.tstate_datastack_chunk, __u64) + 24;
		__u64 end = frame + EMBER_PY_FRAME_NEW, len;

		len = s->span ? ((s->span + 1023ULL) & ~511ULL) : EMBER_PY_BULK / 2;
		if (len > EMBER_PY_BULK)
			len = EMBER_PY_BULK;
		s->chunk = chunk;
		if (chunk > 24 && frame >= chunk && end - chunk < len)
			len = end - chunk;
		barrier_var(len);
		if (len >= EMBER_PY_FRAME_NEW && len <= EMBER_PY_BULK && chunk > 24 && frame >= chunk &&
		    !bpf_probe_read_user(s->bulk, len, (void *)(end - len))) {
			s->bulk_base = end - len;
			s->bulk_len = (__u32)len;
		}
	}
	s->bulk_low = s->bulk_base + s->bulk_len;
	w.frame = frame;
	w.s = s;
	bpf_loop(EMBER_PY_MAX_FRAMES + 1, ember_py_frame_step, &w, 0);
	s->stack.status = w.status ? w.status : EMBER_PY_TRUNCATED;
	if (s->bulk_len) {
		/* Remember how much data stack this thread's chain took (when it changed). */
		__u32 span = (__u32)(s->bulk_base + s->bulk_len - s->bulk_low);
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		struct ember_py_thread *t;

		if (span + 512 < s->span || span > s->span) {
			struct ember_py_tid_slot *ts = &s->tids[tid & (EMBER_PY_TID_SLOTS - 1)];

			if (ts->tid == tid)
				ts->span = span;
			t = bpf_map_lookup_elem(&py_threads, &tid);
			if (t && t->tgid == tgid)
				t->span = span;
		}
	}
	return &s->stack;
#else
	return NULL;
#endif
}

/* Bytes of a stack to send: the header and the frames found. */
static __always_inline __u32 ember_py_stack_bytes(const struct ember_py_stack *py)
{
	__u32 n = py->nframes;

	__u32 bytes;

	if (n > EMBER_PY_MAX_FRAMES)
		n = EMBER_PY_MAX_FRAMES;
	/* An add, not the OR clang makes of 8 + n * 16 (the verifier bounds an OR by its bits:
	 * 4088, past the scratch buffer when the stack part is 64 KiB). */
	bytes = n * sizeof(struct ember_py_frame);
	barrier_var(bytes);
	return EMBER_PY_STACK_HDR + bytes;
}

#endif
