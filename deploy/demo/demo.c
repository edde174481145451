/* ember-demo: a small workload with known answers, so the stack's dashboards show data at first
 * start. CPU: about 60/30/10% of its time in demo_hot_alpha/beta/gamma. Allocations: every
 * round, demo_alloc_small allocates 64 B x 1000, demo_alloc_page 4 KiB x 100 and
 * demo_alloc_large 1 MiB x 1; the small and page blocks are freed at once, the large ones are
 * kept in a ring of 16 so that inuse_space shows about 16 MiB under demo_alloc_large.
 * Each round then sleeps 10 ms, so the demo uses about half a CPU.
 *
 * Usage: ember-demo [--split A,B,C] [SECONDS]   (default: run until killed)
 *   --split A,B,C  milliseconds of work per round in demo_hot_alpha, beta and gamma (default
 *                  6,3,1, i.e. 60/30/10%), so that two copies of the demo (the Compose file's
 *                  `backend` and `detector`) show different flame graphs */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LARGE_KEEP 16

static volatile sig_atomic_t stop;
static volatile uint64_t sink;
static void *large_ring[LARGE_KEEP];

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spin for `ns` nanoseconds of wall time doing integer work the compiler cannot drop. */
static void spin(uint64_t ns)
{
	uint64_t end = now_ns() + ns, x = sink | 1;

	while (now_ns() < end)
		for (int i = 0; i < 1000; i++)
			x = x * 6364136223846793005u + 1442695040888963407u;
	sink = x;
}

static unsigned split_ms[3] = { 6, 3, 1 };

__attribute__((noinline)) static void demo_hot_alpha(void) { spin(split_ms[0] * 1000000ull); }
__attribute__((noinline)) static void demo_hot_beta(void) { spin(split_ms[1] * 1000000ull); }
__attribute__((noinline)) static void demo_hot_gamma(void) { spin(split_ms[2] * 1000000ull); }

/* Allocate `count` blocks of `size` bytes, touch them, free them. */
static void alloc_free(size_t size, int count)
{
	for (int i = 0; i < count; i++) {
		unsigned char *p = malloc(size);

		if (!p)
			continue;
		p[0] = (unsigned char)i;
		p[size - 1] = (unsigned char)i;
		sink += p[0];
		free(p);
	}
}

__attribute__((noinline)) static void demo_alloc_small(void) { alloc_free(64, 1000); }
__attribute__((noinline)) static void demo_alloc_page(void) { alloc_free(4096, 100); }

__attribute__((noinline)) static void demo_alloc_large(unsigned round)
{
	void **slot = &large_ring[round % LARGE_KEEP];
	unsigned char *p;

	free(*slot);
	p = malloc(1 << 20);
	if (p)
		memset(p, (int)(round & 0xff), 1 << 20);
	*slot = p;
}

/* "A,B,C": three whole milliseconds, each at most 1000, not all zero. */
static int parse_split(const char *s)
{
	unsigned v[3], total = 0;
	char *end;

	for (int i = 0; i < 3; i++) {
		unsigned long x = strtoul(s, &end, 10);

		if (end == s || x > 1000 || *end != (i < 2 ? ',' : '\0'))
			return -1;
		v[i] = (unsigned)x;
		total += v[i];
		s = end + 1;
	}
	if (!total)
		return -1;
	memcpy(split_ms, v, sizeof(v));
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = 0;
	uint64_t deadline;
	struct sigaction sa = { .sa_handler = on_signal };
	const struct timespec rest = { .tv_nsec = 10000000 };
	unsigned total;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--split") && i + 1 < argc) {
			if (parse_split(argv[++i])) {
				fprintf(stderr, "ember-demo: --split wants A,B,C (milliseconds, e.g. 6,3,1)\n");
				return 2;
			}
		} else if (argv[i][0] != '-') {
			seconds = strtod(argv[i], NULL);
		} else {
			fprintf(stderr, "usage: ember-demo [--split A,B,C] [SECONDS]\n");
			return 2;
		}
	}
	deadline = seconds > 0 ? now_ns() + (uint64_t)(seconds * 1e9) : 0;
	total = split_ms[0] + split_ms[1] + split_ms[2];
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ember-demo: pid %d, CPU %u/%u/%u%% in demo_hot_alpha/beta/gamma, "
	       "allocations of 64 B, 4 KiB and 1 MiB\n", (int)getpid(), split_ms[0] * 100 / total,
	       split_ms[1] * 100 / total, split_ms[2] * 100 / total);
	for (unsigned round = 0; !stop && (!deadline || now_ns() < deadline); round++) {
		demo_hot_alpha();
		demo_hot_beta();
		demo_hot_gamma();
		demo_alloc_small();
		demo_alloc_page();
		demo_alloc_large(round);
		nanosleep(&rest, NULL);
	}
	for (int i = 0; i < LARGE_KEEP; i++)
		free(large_ring[i]);
	return 0;
}
