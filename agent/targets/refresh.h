/* refresh: when to re-read a process's maps. After exec only the binary and ld.so are mapped;
 * the libraries arrive during the next milliseconds, so re-reads are scheduled at 20 ms, 200 ms
 * and 1 s; an executable mmap (where the kernel reports it) asks for one at once. Requests for
 * the same pid within 10 ms of each other are merged. Bounded: when full, the caller is told to
 * re-read at once rather than never. Not thread-safe. */
#ifndef EMBER_REFRESH_H
#define EMBER_REFRESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define REFRESH_MAX 256

struct refresh_sched {
	struct {
		pid_t pid;
		int64_t due_ns; /* CLOCK_MONOTONIC */
	} e[REFRESH_MAX];
	size_t n;
};

/* Schedules a re-read of pid delay_ns from now. Returns false when the schedule is full: the
 * caller should re-read now. */
bool refresh_schedule(struct refresh_sched *r, pid_t pid, int64_t delay_ns);
/* The three re-reads after an exec. Returns false if one did not fit (re-read now). */
bool refresh_after_exec(struct refresh_sched *r, pid_t pid);
/* Takes one due entry: returns its pid, or 0 when none is due. */
pid_t refresh_take_due(struct refresh_sched *r, int64_t now_ns);
/* Milliseconds until the next entry is due (0 if one is due), or -1 when empty. */
int refresh_wait_ms(const struct refresh_sched *r, int64_t now_ns);

#endif
