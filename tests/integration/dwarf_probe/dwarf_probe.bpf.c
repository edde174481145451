// SPDX-License-Identifier: GPL-2.0
/* dwarf_probe.bpf.c: a stand-in for cpu.bpf.c's DWARF path until it is wired there: samples one
 * process and sends every sample through ember_snapshot(). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "ember.h"
#include "ember.bpf.h"
#include "stack_snapshot.bpf.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;
const volatile __u32 stack_size = 16384;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* set to the number of possible CPUs */
	__type(key, __u32);
	__type(value, struct ember_snapshot_buf);
} snapshot_buf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} snapshots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 4096);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, EMBER_MAX_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

/* Per-CPU count of each enum ember_snapshot_result. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} results SEC(".maps");

SEC("perf_event")
int dwarf_probe_sample(struct bpf_perf_event_data *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, r;
	struct ember_target t = {};
	__s32 kid = -1;
	__u64 *v;

	if (tgid != target_tgid)
		return 0;
	if ((__s64)PT_REGS_IP(&ctx->regs) < 0)
		kid = bpf_get_stackid(ctx, &stacks, 0);
	r = ember_snapshot(&snapshot_buf, &snapshots, &t, tgid, kid, 0, stack_size);
	v = bpf_map_lookup_elem(&results, &r);
	if (v)
		(*v)++;
	return 0;
}
