/* pycap_harness: libember_cupti.so's launch path without CUDA, for tests that call it through
 * ctypes (a CDLL call releases the GIL, as PyTorch does around a kernel launch):
 *   - the in-process Python capture alone (cupti/pycap.c), which test_pycap.py judges against
 *     sys._getframe();
 *   - a whole "launch" as the library's launch callback does it (the native walk, the Python
 *     walk, the join of the launch to an activity record) and a flush over the real hand-off
 *     to an agent's socket (protocol version 2), for e2e.gpu_python. */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "handoff.h"
#include "join.h"
#include "pycap.h"
#include "stackcap.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT size_t ember_pycap_harness_capture(struct ember_py_frame *out, size_t max,
					  uint32_t *status);
EXPORT uint32_t ember_pycap_harness_version(void);
EXPORT size_t ember_pycap_harness_c_thread(struct ember_py_frame *out, size_t max,
					   uint32_t *status);
EXPORT int ember_gpu_harness_open(const char *socket_path);
EXPORT int ember_gpu_harness_launch(const char *kernel, uint64_t gpu_ns);
EXPORT int ember_gpu_harness_flush(void);

size_t ember_pycap_harness_capture(struct ember_py_frame *out, size_t max, uint32_t *status)
{
	return pycap_capture(out, max, status);
}

uint32_t ember_pycap_harness_version(void)
{
	(void)pycap_ready();
	return pycap_version();
}

struct c_thread_args {
	struct ember_py_frame *out;
	size_t max, n;
	uint32_t *status;
};

static void *c_thread(void *arg)
{
	struct c_thread_args *a = arg;

	a->n = pycap_capture(a->out, a->max, a->status);
	return NULL;
}

/* A capture from a thread the interpreter never saw (as autograd's engine threads are before
 * they touch Python): no thread state, no frames. */
size_t ember_pycap_harness_c_thread(struct ember_py_frame *out, size_t max, uint32_t *status)
{
	struct c_thread_args a = { .out = out, .max = max, .status = status };
	pthread_t t;

	if (pthread_create(&t, NULL, c_thread, &a))
		return (size_t)-1;
	pthread_join(t, NULL);
	return a.n;
}

/* ---- a launch and a flush, as inject.c does them ---- */

static struct join *hj;
static struct handoff *hh;
static uint32_t hcorr;
static uint64_t t_open;

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int ember_gpu_harness_open(const char *socket_path)
{
	struct ember_gpu_hello hello = { .pid = (uint32_t)getpid(), .flags = EMBER_GPU_HELLO_PYTHON };
	struct join_cfg jc;

	join_default_cfg(&jc);
	if (join_new(&jc, &hj))
		return -1;
	/* This library's own frames are left out, as libember_cupti.so's are. */
	(void)stackcap_ignore_objects(NULL, (const void *)ember_gpu_harness_open);
	t_open = realtime_ns();
	hello.init_realtime_ns = t_open;
	return handoff_new(socket_path, 4u << 20, &hello, &hh);
}

int ember_gpu_harness_launch(const char *kernel, uint64_t gpu_ns)
{
	uint64_t pcs[EMBER_GPU_MAX_FRAMES];
	struct ember_py_frame py[EMBER_GPU_MAX_PY_FRAMES];
	uint32_t st = 0, corr = __atomic_add_fetch(&hcorr, 1, __ATOMIC_RELAXED);
	size_t n, npy = 0;
	bool fallback;
	join_stack_t s;

	n = stackcap_capture(pcs, 64, &fallback);
	if (pycap_ready())
		npy = pycap_capture(py, 64, &st);
	s = join_intern_py(hj, pcs, n, npy ? py : NULL, npy, npy ? st : 0);
	join_launch(hj, corr, s);
	join_record(hj, &(struct join_op){ .op = EMBER_GPU_OP_KERNEL, .name = kernel, .corr = corr,
					    .start = 1000, .end = 1000 + gpu_ns });
	return npy ? (int)npy : -(int)st;
}

static int emit(void *ctx, const struct join_entry *e)
{
	return handoff_batch_add(ctx, e);
}

int ember_gpu_harness_flush(void)
{
	handoff_batch_begin(hh, t_open, realtime_ns());
	(void)join_flush(hj, emit, hh);
	handoff_batch_end(hh);
	handoff_counters(hh);
	handoff_drain(hh, 5000);
	return handoff_queued(hh) == 0 ? 0 : -1;
}
