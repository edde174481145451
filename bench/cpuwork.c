/* cpuwork: a fixed amount of CPU-bound work through a call chain 12 deep, built with frame
 * pointers. Prints its own CPU time so benchmarks can compute the slowdown under a profiler. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

#define LEVEL(n, next)                                                          \
	__attribute__((noinline)) static unsigned long level##n(unsigned long i) \
	{                                                                       \
		unsigned long r = next(i + n);                                  \
		__asm__ volatile("" ::: "memory");                              \
		return r ^ n;                                                   \
	}

__attribute__((noinline)) static unsigned long leaf(unsigned long seed)
{
	unsigned long x = seed;

	for (int k = 0; k < 2000; k++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	return x;
}

LEVEL(12, leaf)
LEVEL(11, level12)
LEVEL(10, level11)
LEVEL(9, level10)
LEVEL(8, level9)
LEVEL(7, level8)
LEVEL(6, level7)
LEVEL(5, level6)
LEVEL(4, level5)
LEVEL(3, level4)
LEVEL(2, level3)
LEVEL(1, level2)

int main(int argc, char **argv)
{
	unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
	struct timespec a, b;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
	for (unsigned long i = 0; i < iters; i++)
		sink += level1(i);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
	printf("cpu_seconds %.6f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
}
