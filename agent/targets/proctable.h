/* proctable: the agent's processes by pid, with the start time that identifies each (the BPF
 * target cookie), its service and whether it has exited. Open addressing with backward-shift
 * deletion, grown by doubling at half load. Not thread-safe. */
#ifndef EMBER_PROCTABLE_H
#define EMBER_PROCTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct proc_entry {
	pid_t pid;       /* 0: free slot */
	uint64_t cookie; /* start time, clock ticks */
	uint32_t service;
	bool exited;     /* forgotten after the next drain has used its maps */
};

struct proctable {
	struct proc_entry *e;
	size_t cap; /* power of two, or 0 */
	size_t n;
};

/* The entry of pid, or NULL. Valid until the next put or del. */
struct proc_entry *proctable_get(struct proctable *t, pid_t pid);
/* Inserts or replaces pid's entry. Returns it, or NULL when out of memory. */
struct proc_entry *proctable_put(struct proctable *t, pid_t pid, uint64_t cookie, uint32_t service);
void proctable_del(struct proctable *t, pid_t pid);
/* The sweep of exited processes: removes one entry marked exited and returns its pid, or 0 when
 * none is left. Call until 0. */
pid_t proctable_take_exited(struct proctable *t);
void proctable_fini(struct proctable *t);

#endif
