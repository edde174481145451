/* dwarf_probe: needs root. Runs CMD, samples it at HZ with cpu-clock through
 * dwarf_probe.bpf.o (ember_snapshot()), unwinds every snapshot with the unwinder and names the
 * frames with the symbolizer; prints how many samples reach main, the share of each leaf
 * function, and the agent CPU time per sample. A stand-in for the wired cpu collector.
 * Usage: dwarf_probe BPF_OBJ HZ STACK_SIZE -- CMD ARGS... */
#include <errno.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "ember.h"
#include "symbolizer.h"
#include "unwind.h"

_Static_assert(sizeof(struct unwind_regs) == EMBER_SNAP_NR_REGS * sizeof(__u64), "regs");

#define MAX_LEAVES 64

static struct unwinder *unw;
static struct symbolizer *sym;
static unsigned long nr, reached_main, truncated, bytes;
static double cpu_ns;
static struct { char name[128]; unsigned long n; } leaves[MAX_LEAVES];
static size_t nr_leaves;

static double thread_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int on_snapshot(void *ctx, void *data, size_t size)
{
	const struct ember_stack_snapshot *s = data;
	struct unwind_regs regs;
	uint64_t pcs[128];
	struct sym_info si;
	bool trunc, main_seen = false;
	double t0 = thread_ns();
	size_t n = 0, i;

	(void)ctx;
	if (size < sizeof(*s) || size - sizeof(*s) < s->stack_len)
		return 0;
	memcpy(&regs, s->regs, sizeof(regs));
	if (unwind_stack(unw, s->tgid, 0, &regs, s->stack, s->stack_len, pcs, 128, &n, &trunc))
		return 0;
	for (i = 0; i < n; i++) {
		symbolizer_user(sym, s->tgid, i ? pcs[i] - 1 : pcs[i], &si);
		if (!strcmp(si.name, "main"))
			main_seen = true;
		if (i == 0) {
			size_t j;

			for (j = 0; j < nr_leaves && strcmp(leaves[j].name, si.name); j++)
				;
			if (j == nr_leaves && nr_leaves < MAX_LEAVES)
				snprintf(leaves[nr_leaves++].name, sizeof(leaves[0].name), "%s", si.name);
			if (j < nr_leaves)
				leaves[j].n++;
		}
	}
	cpu_ns += thread_ns() - t0;
	if (trunc && getenv("DWARF_PROBE_VERBOSE") && truncated < 3) {
		fprintf(stderr, "truncated stack, %zu bytes of stack:\n", (size_t)s->stack_len);
		for (i = 0; i < n; i++) {
			symbolizer_user(sym, s->tgid, i ? pcs[i] - 1 : pcs[i], &si);
			fprintf(stderr, "  %#llx %s (%s)\n", (unsigned long long)pcs[i], si.name,
				si.module);
		}
	}
	nr++;
	bytes += sizeof(*s) + s->stack_len;
	reached_main += main_seen;
	truncated += trunc;
	return 0;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj = NULL;
	struct bpf_program *prog;
	struct bpf_link *link = NULL;
	struct ring_buffer *rb = NULL;
	struct perf_event_attr attr = { 0 };
	int go[2], pfd = -1, status, err = 1;
	pid_t child;

	if (argc < 5 || strcmp(argv[4], "--")) {
		fprintf(stderr, "usage: %s BPF_OBJ HZ STACK_SIZE -- CMD ARGS...\n", argv[0]);
		return 2;
	}
	if (geteuid()) {
		fprintf(stderr, "dwarf_probe: needs root, skipping\n");
		return 77;
	}
	if (pipe(go))
		return 1;
	child = fork();
	if (child == 0) {
		char c;

		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(127);
		execvp(argv[5], argv + 5);
		_exit(127);
	}
	close(go[0]);

	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj)
		goto out;
	{
		struct bpf_map *rodata = bpf_object__find_map_by_name(obj, ".rodata");
		struct { __u32 tgid, stack_size; } *ro;
		size_t sz;

		ro = (void *)bpf_map__initial_value(rodata, &sz);
		ro->tgid = (__u32)child;
		ro->stack_size = (__u32)atoi(argv[3]);
	}
	bpf_map__set_max_entries(bpf_object__find_map_by_name(obj, "snapshot_buf"),
				 (__u32)libbpf_num_possible_cpus());
	if (bpf_object__load(obj)) {
		fprintf(stderr, "dwarf_probe: load failed\n");
		goto out;
	}
	prog = bpf_object__find_program_by_name(obj, "dwarf_probe_sample");
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.size = sizeof(attr);
	attr.freq = 1;
	attr.sample_freq = (__u64)atoi(argv[2]);
	pfd = (int)syscall(SYS_perf_event_open, &attr, child, -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (pfd < 0) {
		perror("perf_event_open");
		goto out;
	}
	link = bpf_program__attach_perf_event(prog, pfd);
	if (!link)
		goto out;
	rb = ring_buffer__new(bpf_map__fd(bpf_object__find_map_by_name(obj, "snapshots")),
			      on_snapshot, NULL, NULL);
	if (!rb || unwinder_new(&unw) || symbolizer_new(&sym))
		goto out;
	if (write(go[1], "x", 1) != 1)
		goto out;
	while (waitpid(child, &status, WNOHANG) == 0)
		ring_buffer__poll(rb, 100);
	ring_buffer__consume(rb);
	{
		__u64 vals[256], tot[8] = { 0 };
		int ncpu = libbpf_num_possible_cpus();

		for (__u32 k = 0; k < 8; k++) {
			if (bpf_map_lookup_elem(bpf_map__fd(bpf_object__find_map_by_name(obj, "results")),
						&k, vals))
				continue;
			for (int c = 0; c < ncpu && c < 256; c++)
				tot[k] += vals[c];
		}
		printf("bpf: ok %llu short %llu no_user %llu fault %llu no_scratch %llu lost %llu\n",
		       (unsigned long long)tot[0], (unsigned long long)tot[1],
		       (unsigned long long)tot[2], (unsigned long long)tot[3],
		       (unsigned long long)tot[4], (unsigned long long)tot[5]);
	}
	printf("samples %lu, reach main %lu (%.2f%%), truncated %lu, bytes/sample %.0f, "
	       "agent cpu/sample %.1f us\n",
	       nr, reached_main, nr ? 100.0 * reached_main / nr : 0, truncated,
	       nr ? (double)bytes / nr : 0, nr ? cpu_ns / nr / 1e3 : 0);
	for (size_t i = 0; i < nr_leaves; i++)
		if (leaves[i].n * 100 >= nr)
			printf("  leaf %-32s %5.1f%%\n", leaves[i].name, 100.0 * leaves[i].n / nr);
	err = 0;
out:
	if (err)
		kill(child, SIGKILL);
	ring_buffer__free(rb);
	bpf_link__destroy(link);
	if (pfd >= 0)
		close(pfd);
	bpf_object__close(obj);
	unwinder_free(unw);
	symbolizer_free(sym);
	return err;
}
