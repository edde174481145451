/* gpu_dump: a stand-in for the agent in the GPU benchmark. Listens on a GPU hand-off socket
 * (gpu_receiver), and when told to stop (SIGINT/SIGTERM) drains what it received, symbolizes it
 * (gpuprof, Python frames resolved as the agent does) and prints one JSON object per sample
 * on stdout ("stack": names leaf first, "python": how many of them are Python frames), then
 * the library counters.
 *
 * Usage: gpu_dump SOCKET */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gpu_receiver.h"
#include "gpuprof.h"
#include "pyresolve.h"

struct dump {
	struct symbolizer *sym;
	struct pyresolve *py;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void on_sample(void *ctx, const struct gpu_sample *s)
{
	struct sym_frame frames[GPUPROF_MAX_FRAMES];
	struct dump *d = ctx;
	size_t n = gpuprof_frames(d->sym, d->py, s, frames), npy = 0;

	for (size_t i = 0; i < n; i++)
		npy += frames[i].filename != NULL;
	printf("{\"pid\":%d,\"op\":%u,\"flags\":%u,\"gpu_ns\":%lld,\"launches\":%lld,"
	       "\"python\":%zu,\"stack\":[",
	       (int)s->pid, s->op, s->flags, (long long)s->gpu_ns, (long long)s->launches, npy);
	for (size_t i = 0; i < n; i++) {
		if (i)
			putchar(',');
		json_str(frames[i].name);
	}
	printf("]}\n");
}

int main(int argc, char **argv)
{
	struct gpu_receiver *r = NULL;
	struct gpu_receiver_stats st;
	struct dump d = { 0 };
	int err;

	if (argc != 2) {
		fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	err = gpu_receiver_start(argv[1], &r);
	if (err || symbolizer_new(&d.sym) || pyresolve_new(symbolizer_cache(d.sym), &d.py)) {
		fprintf(stderr, "gpu_dump: %s: %s\n", argv[1], strerror(-err));
		return 1;
	}
	fprintf(stderr, "gpu_dump: listening on %s\n", argv[1]);
	/* Samples are symbolized while the processes are alive: drain every 200 ms. */
	while (!stop) {
		usleep(200000);
		(void)gpu_receiver_drain(r, on_sample, &d);
	}
	usleep(300000);
	(void)gpu_receiver_drain(r, on_sample, &d);
	gpu_receiver_get_stats(r, &st);
	printf("{\"counters\":{\"entries\":%llu,\"rejected\":%llu,\"api_calls\":%llu,"
	       "\"stacks\":%llu,\"unsampled\":%llu,\"unw_fallbacks\":%llu,\"records\":%llu,"
	       "\"zero_ts\":%llu,\"cupti_dropped\":%llu,\"no_stack\":%llu,\"handoff_dropped\":%llu}}\n",
	       (unsigned long long)st.entries, (unsigned long long)st.rejected,
	       (unsigned long long)st.lib[EMBER_GPU_CTR_API_CALLS],
	       (unsigned long long)st.lib[EMBER_GPU_CTR_STACKS_CAPTURED],
	       (unsigned long long)st.lib[EMBER_GPU_CTR_UNSAMPLED],
	       (unsigned long long)st.lib[EMBER_GPU_CTR_UNW_FALLBACKS],
	       (unsigned long long)st.lib[EMBER_GPU_CTR_RECORDS],
	       (unsigned long long)st.lib[EMBER_GPU_CTR_ZERO_TS],
	       (unsigned long long)st.lib[EMBER_GPU_CTR_CUPTI_DROPPED],
	       (unsigned long long)st.lib[EMBER_GPU_CTR_NO_STACK],
	       (unsigned long long)st.lib[EMBER_GPU_CTR_HANDOFF_DROPPED]);
	pyresolve_free(d.py);
	symbolizer_free(d.sym);
	gpu_receiver_stop(r);
	return 0;
}
