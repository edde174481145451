/* pycap_harness: libember_cupti.so's in-process Python capture (cupti/pycap.c), exported for
 * test_pycap.py, which calls it through ctypes (a CDLL call releases the GIL, as PyTorch does
 * around a kernel launch) and judges the frames against sys._getframe(). */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "pycap.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT size_t ember_pycap_harness_capture(struct ember_py_frame *out, size_t max,
					  uint32_t *status);
EXPORT uint32_t ember_pycap_harness_version(void);
EXPORT size_t ember_pycap_harness_c_thread(struct ember_py_frame *out, size_t max,
					   uint32_t *status);

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
