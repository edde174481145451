/* unwind: turns a user stack snapshot (registers + a copy of the top of the user stack, taken by
 * BPF at a sample) into the PCs of the call chain, with libunwind's remote API.
 *
 * Unwind info comes from each module's .eh_frame_hdr/.eh_frame, then from .debug_frame (in the
 * file, or in its separate debug file found by build-id or .gnu_debuglink). Those sections are
 * copied (pread, bounded) into our memory when the file is opened: no file stays mapped, so a
 * file its owner truncates or rewrites later cannot fault the agent. Memory reads are served
 * from the snapshot, else from those copies (a read of a writable file-backed segment, which
 * libunwind does only for C++ personality pointers it does not use, gives zeros), else fail.
 * Every unwind has a budget of libunwind accessor calls that no unwind info can escape (a
 * DWARF expression that jumps to itself ends there), and every table a byte budget; what is
 * refused is counted (unwind_refused()). Captures of the processes' mappings, keyed by (pid, start
 * time), and the modules, keyed by file identity, are a proccache's (symbols/proccache.h): the
 * symbolizer's, handed to unwinder_new_shared(), so that each file is opened once for both, or
 * the unwinder's own. The unwinder keeps its tables in the cache's UNWIND slots.
 * Not thread-safe (nor is the cache): one thread drives the unwinder and the symbolizer. */
#ifndef EMBER_UNWIND_H
#define EMBER_UNWIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct unwinder;

/* x86-64 user registers at the sample (struct pt_regs of the user side). The unwinder reads
 * ip, sp and whatever the CFI of the leaf frames refers to: the callee-saved bp, bx, r12-r15
 * matter most; the others are used only by hand-written CFI expressions. */
struct unwind_regs {
	uint64_t ip, sp, bp, bx, r12, r13, r14, r15;
	uint64_t ax, cx, dx, si, di, r8, r9, r10, r11;
};

struct unwind_stats {
	uint64_t unwinds;     /* unwind_stack() calls that produced a stack */
	uint64_t truncated;   /* ... of which ended before the thread's root */
	uint64_t frames;      /* PCs returned */
	uint64_t no_info;     /* truncations at a PC without unwind info */
	uint64_t mem_faults;  /* reads outside the snapshot and the read-only mapped files */
	uint64_t processes;   /* processes whose mappings are held now */
	uint64_t modules;     /* modules cached now */
	uint64_t module_opens; /* files opened into a new module (shared with the symbolizer) */
	uint64_t budget_exhausted; /* unwinds stopped by the accessor-call budget (truncated) */
	uint64_t table_reopens; /* files opened again for their tables or debug file */
	uint64_t table_bytes;   /* bytes of unwind tables held now, all modules */
};

/* What the unwinder refused, by reason. Counted with atomics: unwind_refused() is safe on
 * another thread (the metrics thread) while the unwinder runs. */
enum unwind_refusal {
	UNWIND_REFUSED_BUDGET,          /* an unwind spent its accessor-call budget */
	UNWIND_REFUSED_OVERSIZED_TABLE, /* .eh_frame_hdr + .eh_frame over the per-module bound */
	UNWIND_REFUSED_TOTAL_TABLES,    /* a module's tables over what all modules may hold */
	UNWIND_REFUSED_DEBUG_FRAME,     /* a .debug_frame over its bound (raw, decompressed, converted) */
	UNWIND_REFUSED_ENTRY,           /* a CIE or FDE skipped: oversized, or unknown CIE */
	UNWIND_REFUSED_BAD_ELF,         /* headers out of bounds (too many, outside the file) */
	UNWIND_REFUSED_HOSTILE_CFI,     /* a module whose CFI spent a step's whole budget: not used again */
	UNWIND_REFUSED_CFI_REWRITTEN,   /* CIEs/FDEs naming a register libunwind would index unchecked */
	UNWIND_REFUSED_MAX,
};

/* The metric label of r: "budget", "oversized_table", ... */
const char *unwind_refusal_name(enum unwind_refusal r);
uint64_t unwind_refused(const struct unwinder *u, enum unwind_refusal r);

struct proccache;

/* An unwinder over its own process and module cache. */
int unwinder_new(struct unwinder **ret_u);
/* An unwinder over pc (e.g. symbolizer_cache()), which it references; NULL: its own. */
int unwinder_new_shared(struct proccache *pc, struct unwinder **ret_u);
void unwinder_free(struct unwinder *u);

/* Unwinds one snapshot of pid. start_time is the process's start in clock ticks (the BPF
 * target cookie, /proc/PID/stat field 22), or 0 to read it now; a pid whose start time changed
 * is recaptured. stack holds stack_len bytes copied from regs->sp upward.
 *
 * On success ret_pcs[0..*ret_n) holds the leaf PC then the return addresses of its callers
 * (pass pc - 1 to a symbolizer for every entry but the first), at least one entry.
 * *ret_truncated is false only when the walk reached the thread's root: a frame whose CFI
 * marks the return address undefined (glibc's _start, the thread start in clone/clone3, as the
 * x86-64 ABI asks). It is true when the snapshot ran out, a PC had no unwind info, the walk
 * went round in a loop, or max frames were filled. Frames are never guessed from rbp.
 * Returns 0, -EINVAL on bad arguments, -ESRCH when pid is gone and was never captured, or
 * -ENOMEM. */
int unwind_stack(struct unwinder *u, pid_t pid, uint64_t start_time,
		 const struct unwind_regs *regs, const void *stack, size_t stack_len,
		 uint64_t *ret_pcs, size_t max, size_t *ret_n, bool *ret_truncated);

/* Re-reads pid's mappings at its next snapshot (after exec, dlopen, an MMAP event). */
void unwind_refresh(struct unwinder *u, pid_t pid);


/* Drops pid's mappings (at exit). Modules stay cached until the cache is full. */
void unwind_forget(struct unwinder *u, pid_t pid);

void unwind_get_stats(const struct unwinder *u, struct unwind_stats *ret_stats);

#endif
