/* mloop N: N malloc(64..127)/free pairs in a tight loop (PEERS.md §9's mloop); prints the
 * loop's own CPU time per pair in ns (this thread's, kernel time in uprobe traps included),
 * so tool start-up and time the VM gives to others are not counted. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 10000000;
	struct timespec a, b;
	unsigned x = 1;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	for (long i = 0; i < n; i++) {
		char *volatile p = malloc(64 + (x & 63));

		x = x * 1103515245 + 12345;
		p[0] = 1;
		free(p);
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	printf("%.2f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (double)n);
	return 0;
}
