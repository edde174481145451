/* ember.h: types shared by the BPF programs and the agent. Read by clang for BPF (after
 * vmlinux.h) and by the C compiler for userspace (after <linux/types.h>). Every field has a unit;
 * layouts are pinned with _Static_assert because both sides must agree byte for byte. */
#ifndef EMBER_BPF_SHARED_H
#define EMBER_BPF_SHARED_H

/* Deepest stack the kernel hands out (perf_event_max_stack default). */
#define EMBER_MAX_STACK_DEPTH 127
/* Frames of a user stack unwound in userspace from a snapshot (up to 64 KiB of stack: 200 and
 * more frames in deep programs); the kernel's stack maps stay at EMBER_MAX_STACK_DEPTH. */
#define EMBER_MAX_UNWIND_DEPTH 512

/* Value of the `targets` map, keyed by tgid: a process selected for profiling. */
struct ember_target {
	__u32 service_id; /* index into the agent's service table */
	__u32 flags;      /* EMBER_TARGET_* */
	__u64 cookie;     /* process start time in clock ticks (/proc/PID/stat field 22): with the
			   * tgid it names one process, so a reused pid never mixes symbols */
};
_Static_assert(sizeof(struct ember_target) == 16, "ember_target layout");

enum ember_target_flags {
	EMBER_TARGET_SEEN = 1 << 0, /* first sample already reported to userspace */
};

/* Key of the `counts` maps: one CPU stack of one process. Value: __u64 hit count. */
struct ember_cpu_key {
	__u32 tgid;
	__s32 user_stack_id;   /* id in the stack map, or negative errno (no user stack) */
	__s32 kernel_stack_id; /* id in the stack map, or -1 for a sample taken in user mode */
	__u32 service_id;      /* copied from ember_target */
	__u64 cookie;          /* copied from ember_target */
};
_Static_assert(sizeof(struct ember_cpu_key) == 24, "ember_cpu_key layout");

/* Per-CPU counters (array map `stats`), indexed by this enum; exported as self-metrics.
 * Adding a value: count it in bpf/cpu.bpf.c; give it a series in cpu_collector_write_metrics()
 * (agent/collectors/cpu_collector.c, whose _Static_assert fails until you do); if it is a loss,
 * add it to pipeline_loss_report() (agent/cmd/pipeline.c, record's pprof comment) and to
 * metrics.h's list of names; the deploy consistency test then checks the dashboards' queries. */
enum ember_cpu_stat {
	EMBER_STAT_SAMPLES = 0,        /* samples of selected processes */
	EMBER_STAT_FILTERED,           /* samples of other processes, dropped before any stack */
	EMBER_STAT_USTACK_COLLISION,   /* user stack lost: stack-map hash collision (-EEXIST) */
	EMBER_STAT_USTACK_FAULT,       /* user stack lost: unreadable (-EFAULT) */
	EMBER_STAT_USTACK_ERROR,       /* user stack lost: other error (e.g. -ENOMEM) */
	EMBER_STAT_KSTACK_COLLISION,   /* kernel stack lost: hash collision */
	EMBER_STAT_KSTACK_FAULT,       /* kernel stack lost: -EFAULT */
	EMBER_STAT_KSTACK_ERROR,       /* kernel stack lost: other error */
	EMBER_STAT_COUNTS_FULL,        /* sample lost: counts map full */
	EMBER_STAT_EVENTS_LOST,        /* process event lost: ring buffer full */
	EMBER_STAT_SNAPSHOT_LOST,      /* DWARF mode: snapshot lost, ring buffer full */
	EMBER_STAT_SNAPSHOT_FAULT,     /* DWARF mode: user stack unreadable, no snapshot */
	EMBER_STAT_SNAPSHOT_SHORT,     /* DWARF mode: less stack than --stack-size was readable */
	EMBER_STAT_OFFCPU,             /* off-CPU: blocks recorded (at least --offcpu-min-us, or
					* kept by sampling below it) */
	EMBER_STAT_OFFCPU_SHORT,       /* off-CPU: blocks under the minimum left out by sampling */
	EMBER_STAT_OFFCPU_THINNED,     /* off-CPU: blocks not followed, heavy switching (the
					* ones followed weigh for them) */
	EMBER_STAT_MAX,
};

/* Process lifecycle events, sent through the `events` ring buffer. */
enum ember_event_type {
	EMBER_EVENT_FIRST_SAMPLE = 1, /* first sample of a target: capture its maps now */
	EMBER_EVENT_EXEC = 2,         /* a process called exec (targets, or all with report_execs) */
	EMBER_EVENT_FORK = 3,         /* a target forked a child that is now a target too */
	EMBER_EVENT_EXIT = 4,         /* the last thread of a target exited */
	EMBER_EVENT_MMAP = 5,         /* a target mapped executable memory (dlopen, ld.so): its
				       * maps are stale */
	EMBER_EVENT_CGROUP = 6,       /* a process moved to another cgroup (report_cgroups) */
};

struct ember_event {
	__u32 type;       /* enum ember_event_type */
	__u32 tgid;
	__u32 ppid;       /* parent tgid (FORK), else 0 */
	__u32 service_id; /* service of the target, if it is one */
	__u64 cookie;     /* start time in clock ticks, as in ember_target */
	char comm[16];    /* task comm at the time of the event */
};
_Static_assert(sizeof(struct ember_event) == 40, "ember_event layout");

/* ---- Python: CPython frames read at each sample (bpf/python.bpf.h, agent/symbols/pyresolve.c) ---- */

/* ember_target.flags: the process runs CPython; its entry in `py_procs` says where and how. */
#define EMBER_TARGET_PYTHON (1u << 2)

#define EMBER_PY_MAX_FRAMES 160   /* frames per sample (Python and entry markers); deeper is truncated */
#define EMBER_PY_MAX_THREADS 1024 /* thread states compared per lookup of a new thread */
#define EMBER_PY_MAX_INTERPS 8    /* interpreters (subinterpreters) searched */
#define EMBER_PY_NO_OFFSET 0xffff /* a field the version does not have */
#define EMBER_PY_CODE_TTL_MS 1000 /* a frame's code-object key is read again after this
				   * (python.bpf.h) */

/* How a version marks the frame where C entered the eval loop (a run of Python frames ends). */
enum ember_py_entry {
	EMBER_PY_ENTRY_NONE = 0,  /* 3.10: one C eval frame per Python frame */
	EMBER_PY_ENTRY_FLAG = 1,  /* 3.11: is_entry (bool at frame_entry) on the run's first frame */
	EMBER_PY_ENTRY_OWNER = 2, /* 3.12/3.13: an extra frame whose owner (char) == 3 */
	EMBER_PY_ENTRY_OWNER_GE = 3, /* 3.14: owner >= 3 (FRAME_OWNED_BY_INTERPRETER / _CSTACK) */
};

/* How a frame says where it is (enum pyoffsets_instr). */
enum ember_py_instr {
	EMBER_PY_INSTR_LASTI = 1,    /* 3.10: int f_lasti, code units */
	EMBER_PY_INSTR_PTR = 2,      /* 3.11+: a pointer into the code object's bytecode */
};

/* Value of `py_procs` (keyed by tgid): where one process's interpreter keeps its threads and
 * frames. Offsets are bytes within each struct; every one is < the read size of its struct. */
struct ember_py_proc {
	__u64 interp_head;        /* address of _PyRuntime.interpreters.head in the target */
	__u32 version_hex;        /* PY_VERSION_HEX, for the agent's logs */
	__u8 instr_kind;          /* enum ember_py_instr */
	__u8 entry_kind;          /* enum ember_py_entry */
	__u8 code_tag_mask;       /* low bits of the frame's code field to clear (3.14: 3) */
	__u8 pad;
	__u16 interp_next, interp_threads_head;
	__u16 tstate_next, tstate_thread_id;
	__u16 tstate_frame;       /* 3.10 frame, 3.11/12 cframe, 3.13+ current_frame */
	__u16 cframe_current_frame; /* 3.11/12: in the _PyCFrame; else EMBER_PY_NO_OFFSET */
	__u16 frame_previous, frame_code, frame_instr, frame_entry;
	__u16 code_firstlineno, code_filename, code_name, code_qualname, code_linetable;
	__u16 frame_func;         /* the frame's function object (3.11+), else EMBER_PY_NO_OFFSET */
	__u16 tstate_datastack_chunk; /* 3.11+: the chunk the frames are on, else NO_OFFSET */
	__u16 pad3[3];
};
_Static_assert(sizeof(struct ember_py_proc) == 56, "ember_py_proc layout");

/* Bytes read per struct; offsets above must leave room for their field. */
#define EMBER_PY_TSTATE_READ 320
#define EMBER_PY_FRAME_READ 104   /* 3.10 PyFrameObject up to f_lasti; 3.11+ frames are 80 */
#define EMBER_PY_CODE_READ 144    /* a code object up to co_linetable (3.11+: 136 + 8) */

/* ember_py_frame.code: the code object's address in the low 56 bits, flags above. */
#define EMBER_PYF_ADDR_MASK ((1ULL << 56) - 1)
#define EMBER_PYF_ENTRY (1ULL << 56)  /* 3.11: entered from C (is_entry): its run ends here */
#define EMBER_PYF_MARKER (1ULL << 57) /* 3.12+: the eval loop's entry frame (no code): the run
				       * above ends here */
#define EMBER_PYF_NO_CODE (1ULL << 58) /* the code object was unreadable at sample time: key 0 */

/* One Python frame as sampled. */
struct ember_py_frame {
	__u64 code;  /* code object address | EMBER_PYF_* */
	__u32 key;   /* ember_py_code_key() of the code object at sample time (0: not read) */
	__s32 instr; /* 3.10: f_lasti; 3.11+: instruction pointer - code address, bytes, or
		      * INT32_MIN when out of range */
};
_Static_assert(sizeof(struct ember_py_frame) == 16, "ember_py_frame layout");

/* What the walk of one sample found. */
enum ember_py_status {
	EMBER_PY_COMPLETE = 1,    /* the chain ended (NULL previous) within the frame limit */
	EMBER_PY_TRUNCATED = 2,   /* more than EMBER_PY_MAX_FRAMES frames */
	EMBER_PY_NO_TSTATE = 3,   /* the thread has no thread state (C thread, not started) */
	EMBER_PY_UNREADABLE = 4,  /* a read failed mid-walk (popped frame, process exiting) */
	EMBER_PY_STATUS_MAX,
};

/* Frames of one sample, innermost first; only nframes entries are sent. */
struct ember_py_stack {
	__u32 nframes;
	__u32 status;             /* enum ember_py_status */
	struct ember_py_frame frames[EMBER_PY_MAX_FRAMES];
};
#define EMBER_PY_STACK_HDR 8
_Static_assert(sizeof(struct ember_py_stack) == EMBER_PY_STACK_HDR + 16 * EMBER_PY_MAX_FRAMES,
	       "ember_py_stack layout");

/* A code object's validation key: its first line and the addresses of its file, name,
 * qualified name and line table, as read from the object; the agent compares the key of its
 * own, later read to tell a live code object from a reused address. Never 0. */
static inline __u32 ember_py_code_key(__u32 firstlineno, __u64 filename, __u64 name,
				      __u64 qualname, __u64 linetable)
{
	__u64 h = 0xcbf29ce484222325ULL;

	h = (h ^ firstlineno) * 0x100000001b3ULL;
	h = (h ^ filename) * 0x100000001b3ULL;
	h = (h ^ name) * 0x100000001b3ULL;
	h = (h ^ qualname) * 0x100000001b3ULL;
	h = (h ^ linetable) * 0x100000001b3ULL;
	h ^= h >> 32;
	return (__u32)h ? (__u32)h : 1;
}

/* ---- DWARF mode: user stack snapshots (bpf/stack_snapshot.bpf.h) ---- */

/* ember_target.flags: this process's user stacks are unwound from snapshots in userspace
 * (--unwind dwarf, or auto's choice) instead of frame pointers in BPF. */
#define EMBER_TARGET_DWARF (1u << 1)

/* Largest user stack copy per sample: the upper bound of --stack-size. A power of two. */
#define EMBER_SNAPSHOT_STACK_MAX 65536
/* --stack-size 0 (the default) when the stack's mapping cannot be looked up. */
#define EMBER_SNAPSHOT_DEFAULT 16384

/* Order of ember_stack_snapshot.regs: x86-64 user registers as in struct pt_regs, callee-saved
 * first. The agent's struct unwind_regs (agent/unwind.h) has the same order. */
enum ember_snapshot_reg {
	EMBER_SNAP_IP = 0, EMBER_SNAP_SP, EMBER_SNAP_BP, EMBER_SNAP_BX,
	EMBER_SNAP_R12, EMBER_SNAP_R13, EMBER_SNAP_R14, EMBER_SNAP_R15,
	EMBER_SNAP_AX, EMBER_SNAP_CX, EMBER_SNAP_DX, EMBER_SNAP_SI, EMBER_SNAP_DI,
	EMBER_SNAP_R8, EMBER_SNAP_R9, EMBER_SNAP_R10, EMBER_SNAP_R11,
	EMBER_SNAP_NR_REGS,
};

/* ember_stack_snapshot.flags */
#define EMBER_SNAP_SHORT (1u << 0) /* the full --stack-size was not readable: stack_len is less */
#define EMBER_SNAP_FP (1u << 1)    /* a frame-pointer sample (no stack bytes): the user stack is
				    * user_stack_id, sent here because Python frames come with it */
#define EMBER_SNAP_PY (1u << 2)    /* a struct ember_py_stack (its header and nframes frames)
				    * follows the stack bytes */
#define EMBER_SNAP_OFFCPU_START (1u << 3) /* a target thread blocked: its stacks (as a CPU
					   * sample's), kept until its END with offcpu_seq */
#define EMBER_SNAP_OFFCPU_END (1u << 4)   /* it ran again: header only, offcpu_ns and
					   * offcpu_switches are the block's weighted values */

/* One CPU sample of a process in DWARF mode, sent through the `snapshots` ring buffer:
 * registers and the top of the user stack, for the agent to unwind. Variable size:
 * sizeof(struct ember_stack_snapshot) + stack_len bytes (+ the Python frames with
 * EMBER_SNAP_PY). A Python process in frame-pointer mode sends the same record with
 * EMBER_SNAP_FP, no stack bytes and its user stack id. */
struct ember_stack_snapshot {
	__u32 tgid;
	__u32 tid;
	__u64 cookie;            /* copied from ember_target (process start time, clock ticks) */
	__u32 service_id;        /* copied from ember_target */
	__s32 kernel_stack_id;   /* id in stacks<stack_map>, -1 for a sample in user mode, or
				  * a negative errno (kernel stack lost) */
	__u32 stack_map;         /* which stack map pair (0 or 1, `active`) the id refers to */
	__u32 stack_len;         /* bytes in stack[], copied from regs[EMBER_SNAP_SP] upward */
	__u32 flags;             /* EMBER_SNAP_* */
	__s32 user_stack_id;     /* EMBER_SNAP_FP: id in stacks<stack_map>, or a negative errno */
	__u64 offcpu_ns;         /* EMBER_SNAP_OFFCPU_END: blocked time, weighted */
	__u64 offcpu_switches;   /* EMBER_SNAP_OFFCPU_END: the blocks it stands for */
	__u32 offcpu_seq;        /* EMBER_SNAP_OFFCPU_*: the block's number in its thread */
	__u32 reserved;
	__u64 regs[EMBER_SNAP_NR_REGS]; /* user registers (bytes: addresses and values) */
	__u8 stack[];            /* stack_len bytes of user stack, lowest address first */
};
_Static_assert(sizeof(struct ember_stack_snapshot) == 200, "ember_stack_snapshot layout");
/* ---- Allocation profiling (alloc collector: bpf/alloc.bpf.c, agent/alloc_collector.c) ---- */

/* What an allocator probe is attached to: the BPF cookie of each uprobe. */
enum ember_alloc_kind {
	EMBER_ALLOC_MALLOC = 0,     /* malloc(size), valloc(size), pvalloc(size) */
	EMBER_ALLOC_CALLOC,         /* calloc(n, size) */
	EMBER_ALLOC_REALLOC,        /* realloc(ptr, size): frees ptr, allocates size */
	EMBER_ALLOC_POSIX_MEMALIGN, /* posix_memalign(&ptr, align, size): address via *memptr */
	EMBER_ALLOC_MEMALIGN,       /* memalign(align, size), aligned_alloc(align, size) */
	EMBER_ALLOC_FREE,           /* free(ptr); probed past its entry (see alloc_collector.h) */
	EMBER_ALLOC_KIND_MAX,
};
/* Uprobe cookie bit beside the kind: the allocator is glibc's, whose realloc(NULL, n) and
 * memalign-family calls with an alignment of 16 or less call malloc itself (the probed
 * entry): those outer calls are left to the inner malloc, so they count once. */
#define EMBER_ALLOC_GLIBC_NESTS (1ULL << 8)
#define EMBER_ALLOC_KIND_MASK 0xffULL

/* Key of the `live` map: one sampled allocation still in use. */
struct ember_alloc_key {
	__u32 tgid;
	__u32 pad;
	__u64 addr;  /* address the allocator returned */
};
_Static_assert(sizeof(struct ember_alloc_key) == 16, "ember_alloc_key layout");

struct ember_alloc_live {
	__u64 size;  /* bytes requested */
	__u64 id;    /* sample id, as in ember_alloc_event (cpu << 56 | per-CPU sequence) */
};
_Static_assert(sizeof(struct ember_alloc_live) == 16, "ember_alloc_live layout");

enum ember_alloc_event_flags {
	EMBER_ALLOC_EV_TRACKED = 1 << 0, /* in the live map: its free will be seen */
	EMBER_ALLOC_EV_PRELOAD = 1 << 1, /* from libember_alloc.so: its frames lead the stack */
	EMBER_ALLOC_EV_PY = 1 << 2,      /* a struct ember_py_stack follows (ember_alloc_py_event) */
};

/* One sampled allocation, sent through the `samples` ring buffer. */
struct ember_alloc_event {
	__u32 tgid;
	__u32 flags;      /* EMBER_ALLOC_EV_* */
	__u64 size;       /* bytes requested */
	__u64 addr;       /* returned address */
	__u64 id;         /* sample id (key of the userspace record) */
	__u64 interval;   /* mean sampling interval in bytes that selected it */
	__s32 ustack_len; /* bytes of ips filled, or negative errno (stack lost) */
	__u32 pad;
	__u64 cookie;     /* the process's start time in clock ticks (as ember_target.cookie) */
	__u64 ips[EMBER_MAX_STACK_DEPTH]; /* user stack, innermost first */
};
_Static_assert(sizeof(struct ember_alloc_event) == 56 + 8 * EMBER_MAX_STACK_DEPTH,
	       "ember_alloc_event layout");

/* Per-CPU counters (array map `alloc_stats`), indexed by this enum. Adding a value: count it in
 * bpf/alloc.bpf.c (and in collectors/alloc_preload.c's table when preload mode can lose it);
 * give it a series in alloc_collector_write_metrics() (agent/collectors/alloc_collector.c,
 * whose _Static_assert fails until you do); a loss of the live set also belongs in
 * alloc_collector_live_incomplete() and allocprof_comment() (the memory profile's comment). */
enum ember_alloc_stat {
	EMBER_ASTAT_CALLS = 0,       /* allocation calls seen (uprobe mode) */
	EMBER_ASTAT_SAMPLED,         /* allocations sampled */
	EMBER_ASTAT_FREES,           /* free probe hits (uprobe mode), sampled frees (preload) */
	EMBER_ASTAT_FREES_MATCHED,   /* frees that removed a live sampled allocation */
	EMBER_ASTAT_LIVE_FULL,       /* sampled allocation not tracked: live map full */
	EMBER_ASTAT_UNTRACKED,       /* not tracked for another reason (preload table full) */
	EMBER_ASTAT_PENDING_FULL,    /* sample lost between entry and return: pending map full */
	EMBER_ASTAT_EVENTS_LOST,     /* sample lost: ring buffer full */
	EMBER_ASTAT_STACK_LOST,      /* sample kept without a user stack */
	EMBER_ASTAT_NO_RESULT,       /* sampled call failed (returned NULL) */
	EMBER_ASTAT_MAX,
};

/* A sampled allocation of a Python process: the event and the Python frames of the
 * allocating thread. Sent whole; only the first EMBER_PY_STACK_HDR + 16 * py.nframes bytes of
 * py are meaningful. */
struct ember_alloc_py_event {
	struct ember_alloc_event ev; /* ev.flags has EMBER_ALLOC_EV_PY */
	struct ember_py_stack py;
};

#endif
