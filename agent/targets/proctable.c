#include "proctable.h"

#include <errno.h>
#include <stdlib.h>

static struct proc_entry *slot_of(struct proctable *t, pid_t pid)
{
	size_t mask = t->cap - 1;

	for (size_t i = (size_t)pid * 2654435761u & mask;; i = (i + 1) & mask)
		if (t->e[i].pid == pid || t->e[i].pid == 0)
			return &t->e[i];
}

struct proc_entry *proctable_get(struct proctable *t, pid_t pid)
{
	struct proc_entry *e;

	if (!t->cap)
		return NULL;
	e = slot_of(t, pid);
	return e->pid == pid ? e : NULL;
}

static int grow(struct proctable *t)
{
	struct proc_entry *old = t->e;
	size_t old_cap = t->cap;

	t->cap = old_cap ? old_cap * 2 : 1024;
	t->e = calloc(t->cap, sizeof(*t->e));
	if (!t->e) {
		t->e = old;
		t->cap = old_cap;
		return -ENOMEM;
	}
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].pid)
			*slot_of(t, old[i].pid) = old[i];
	free(old);
	return 0;
}

struct proc_entry *proctable_put(struct proctable *t, pid_t pid, uint64_t cookie, uint32_t service)
{
	struct proc_entry *e;

	if ((t->n + 1) * 2 > t->cap && grow(t))
		return NULL;
	e = slot_of(t, pid);
	if (e->pid != pid)
		t->n++;
	*e = (struct proc_entry){ .pid = pid, .cookie = cookie, .service = service };
	return e;
}

void proctable_del(struct proctable *t, pid_t pid)
{
	size_t mask = t->cap - 1, i, j;
	struct proc_entry *e = proctable_get(t, pid);

	if (!e)
		return;
	/* Backward-shift deletion keeps probe chains intact without tombstones. */
	i = (size_t)(e - t->e);
	t->e[i].pid = 0;
	for (j = (i + 1) & mask; t->e[j].pid; j = (j + 1) & mask) {
		size_t home = (size_t)t->e[j].pid * 2654435761u & mask;

		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			t->e[i] = t->e[j];
			t->e[j].pid = 0;
			i = j;
		}
	}
	t->n--;
}

pid_t proctable_take_exited(struct proctable *t)
{
	for (size_t i = 0; i < t->cap; i++) {
		if (t->e[i].pid && t->e[i].exited) {
			pid_t pid = t->e[i].pid;

			proctable_del(t, pid);
			return pid;
		}
	}
	return 0;
}

void proctable_fini(struct proctable *t)
{
	free(t->e);
	*t = (struct proctable){ 0 };
}
