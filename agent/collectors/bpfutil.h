/* bpfutil: small helpers over libbpf maps shared by the collectors. */
#ifndef EMBER_BPFUTIL_H
#define EMBER_BPFUTIL_H

#include <linux/types.h>

/* Sums keys 0..nkeys-1 of a per-CPU array of __u64 counters into out[nkeys] (a key that cannot
 * be read counts 0). Returns 0 or -errno. */
int bpfutil_percpu_sum(int map_fd, __u32 nkeys, __u64 *out);

/* Sends libbpf's messages to our log at debug level (the caller reports a failure once). */
void bpfutil_route_libbpf_log(void);

#endif
