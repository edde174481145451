/* pingpong: heavy context switching for the off-CPU benchmark. Two threads hand one byte back
 * and forth over two pipes N times: every hand-off blocks one thread and wakes the other (two
 * switches per round trip, tens of thousands a second). Prints the elapsed nanoseconds.
 *
 * Usage: pingpong N */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int a[2], b[2];
static long n;

static void *pong(void *arg)
{
	char c;

	(void)arg;
	for (long i = 0; i < n; i++)
		if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1)
			exit(1);
	return NULL;
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	pthread_t t;
	char c = 'x';

	n = argc > 1 ? atol(argv[1]) : 100000;
	if (pipe(a) || pipe(b))
		return 1;
	pthread_create(&t, NULL, pong, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++)
		if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1)
			return 1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_join(t, NULL);
	printf("%lld\n", (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
	return 0;
}
