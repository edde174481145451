/* cpuprof: one CPU profile under construction. Symbolizes drained stacks (kernel frames above
 * user frames, leaf first) and adds them to a pprof builder (cpu/nanoseconds, period
 * 1e9/rate, value = hits x period) and a flame graph. Stacks whose user part was lost keep
 * their kernel frames under a "[lost user stack]" frame, so no sample disappears.
 * Not thread-safe; borrows the symbolizer, which must outlive it. */
#ifndef EMBER_CPUPROF_H
#define EMBER_CPUPROF_H

#include <stdint.h>

#include "cpu_collector.h"
#include "symbolizer.h"

struct cpuprof;

int cpuprof_new(struct symbolizer *sym, unsigned sample_rate, const char *title,
		struct cpuprof **ret_p);
void cpuprof_free(struct cpuprof *p);

/* Symbolizes one drained stack and adds it. Returns 0 or -ENOMEM. */
int cpuprof_add(struct cpuprof *p, const struct cpu_stack *s);

/* Sample hits added so far. */
uint64_t cpuprof_hits(const struct cpuprof *p);

/* Adds a pprof comment (e.g. what was lost). Returns 0 or -ENOMEM. */
int cpuprof_comment(struct cpuprof *p, const char *comment);

/* Writes the gzipped pprof to pprof_path and, if svg_path is not NULL, the flame graph.
 * Returns 0 or -errno. */
int cpuprof_write(struct cpuprof *p, int64_t time_nanos, int64_t duration_nanos,
		  const char *pprof_path, const char *svg_path);

#endif
