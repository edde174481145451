/* cpuprof: turns one drained CPU stack into symbolized frames, leaf first: kernel frames above
 * user frames. A stack whose user part was lost keeps its kernel frames under a
 * "[lost user stack]" frame, and a process whose pid was reused since the sample (the
 * symbolizer holds another process's maps) gets "[unknown]" frames rather than wrong names:
 * no sample disappears and none is misattributed. A DWARF unwind that stopped before the
 * thread's root gets a "[truncated]" root frame. Shared by `record` and `agent`. */
#ifndef EMBER_CPUPROF_H
#define EMBER_CPUPROF_H

#include <stddef.h>

#include "cpu_collector.h"
#include "pystack.h"
#include "symframe.h"
#include "symbolizer.h"
#include "unwmode.h"

/* Room cpuprof_frames() may use. */
#define CPUPROF_MAX_FRAMES (EMBER_MAX_STACK_DEPTH + EMBER_MAX_UNWIND_DEPTH + PYSTACK_EXTRA + 1)

/* Fills frames[CPUPROF_MAX_FRAMES] and returns how many. With py (may be NULL), a sample
 * with Python frames gets them merged in (pystack.h). Frame strings belong to the symbolizer
 * and the resolver (valid until they forget the process); copy them (stackagg does) before
 * then. */
size_t cpuprof_frames(struct symbolizer *sym, struct pyresolve *py, const struct cpu_stack *s,
		      struct sym_frame *frames);

/* --unwind auto applied to the collector: at pid's first sample (and after each exec) set its
 * mode; for each drained frame-pointer stack (frames as cpuprof_frames() made them) count
 * whether it reached a root, and switch pid to DWARF when too many did not. */
void cpuprof_unwmode_first_sample(struct unwmode *u, struct cpu_collector *cc, pid_t pid);
void cpuprof_unwmode_observe(struct unwmode *u, struct cpu_collector *cc, const struct cpu_stack *s,
			     const struct sym_frame *frames, size_t n);

#endif
