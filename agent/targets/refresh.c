#include "refresh.h"

#include "util.h"

#define MERGE_NS (10 * 1000000LL)

bool refresh_schedule(struct refresh_sched *r, pid_t pid, int64_t delay_ns)
{
	int64_t due = util_now_ns(CLOCK_MONOTONIC) + delay_ns;

	for (size_t i = 0; i < r->n; i++)
		if (r->e[i].pid == pid && r->e[i].due_ns <= due + MERGE_NS && r->e[i].due_ns >= due - MERGE_NS)
			return true;
	if (r->n == REFRESH_MAX)
		return false;
	r->e[r->n].pid = pid;
	r->e[r->n].due_ns = due;
	r->n++;
	return true;
}

bool refresh_after_exec(struct refresh_sched *r, pid_t pid)
{
	bool ok = refresh_schedule(r, pid, 20 * 1000000LL);

	ok &= refresh_schedule(r, pid, 200 * 1000000LL);
	ok &= refresh_schedule(r, pid, NSEC_PER_SEC);
	return ok;
}

pid_t refresh_take_due(struct refresh_sched *r, int64_t now_ns)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->e[i].due_ns <= now_ns) {
			pid_t pid = r->e[i].pid;

			r->e[i] = r->e[--r->n];
			return pid;
		}
	}
	return 0;
}

int refresh_wait_ms(const struct refresh_sched *r, int64_t now_ns)
{
	int64_t next = INT64_MAX;

	if (!r->n)
		return -1;
	for (size_t i = 0; i < r->n; i++)
		if (r->e[i].due_ns < next)
			next = r->e[i].due_ns;
	return next <= now_ns ? 0 : (int)((next - now_ns) / 1000000 + 1);
}
