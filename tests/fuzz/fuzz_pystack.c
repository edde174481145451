/* fuzz_pystack: the merge of Python frames into native stacks over arbitrary records, as a
 * hostile process could make BPF send them (any flags, counts past the limit, markers
 * anywhere, code objects that are stale, unreadable or helpers) beside any mix of native
 * frames. Input: byte 0 the status, byte 1 bit 0 "3.10", byte 2 the native frame count, then
 * one byte per native frame (picks a name), then 16-byte Python frames. The result must fit
 * the room given and every frame must have a name. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pystack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int resolve(void *ctx, const struct ember_py_frame *f, struct pyresolve_frame *ret)
{
	(void)ctx;
	switch (f->key & 7) {
	case 0:
		return -ESTALE;
	case 1:
		return -EFAULT;
	default:
		ret->name = "fn";
		ret->filename = "/f.py";
		ret->line = f->instr;
		ret->start_line = 1;
		ret->hidden = (f->key & 7) == 2;
		return 0;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "_PyEval_EvalFrameDefault", "_PyEval_Vector",
					     "_PyEval_EvalFrameDefault.cold", "main", "x" };
	struct sym_frame native[EMBER_MAX_STACK_DEPTH], out[EMBER_MAX_STACK_DEPTH + PYSTACK_EXTRA];
	struct ember_py_frame py[EMBER_PY_MAX_FRAMES + 8];
	size_t nn, npy, room, n;
	bool rooted;

	if (size < 3)
		return 0;
	nn = data[2] % (EMBER_MAX_STACK_DEPTH + 1);
	if (size < 3 + nn)
		return 0;
	for (size_t i = 0; i < nn; i++)
		symframe_synthetic(&native[i], names[data[3 + i] % 5]);
	npy = (size - 3 - nn) / sizeof(struct ember_py_frame);
	if (npy > sizeof(py) / sizeof(py[0]))
		npy = sizeof(py) / sizeof(py[0]);
	memcpy(py, data + 3 + nn, npy * sizeof(struct ember_py_frame));
	room = (data[0] >> 4) ? (size_t)(data[0] >> 4) * 16 : sizeof(out) / sizeof(out[0]);
	if (room > sizeof(out) / sizeof(out[0]))
		room = sizeof(out) / sizeof(out[0]);
	n = pystack_merge_with(resolve, NULL, data[1] & 1, native, nn, py, npy, data[0] & 7, out,
			       room, &rooted);
	if (n > room)
		abort();
	for (size_t i = 0; i < n; i++)
		if (!out[i].name)
			abort();
	return 0;
}
