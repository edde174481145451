/* fuzz_pycode: pycode_resolve() over an arbitrary memory image, as a hostile process would
 * present it. Input: byte 0 picks the layout (0-2: the 3.10/3.11/3.12 tables; 3: the rest of
 * the input is first decoded as a _Py_DebugOffsets image and, if accepted, its offsets are
 * used), byte 1 the code object's place (x 8) in the image, the rest is memory at 0x10000.
 * A resolved code object's line table is then walked for its first 64 instructions. Every
 * input must end in 0 or a negative errno: no crash, leak, hang or read outside the image. */
#include <stdint.h>
#include <string.h>

#include "pycode.h"

#define BASE 0x10000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct image {
	const uint8_t *data;
	size_t len;
};

static int image_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
	const struct image *im = ctx;

	if (addr < BASE || addr - BASE > im->len || im->len - (addr - BASE) < len)
		return -14; /* -EFAULT */
	memcpy(buf, im->data + (addr - BASE), len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t versions[] = { 0x030a0df0, 0x030b07f0, 0x030c01f0 };
	static struct pycode_info info;
	struct pyoffsets off;
	struct image im;
	int32_t line, boff;

	if (size < 2)
		return 0;
	im.data = data + 2;
	im.len = size - 2;
	if ((data[0] & 3) == 3) {
		if (pyoffsets_from_debug(im.data, im.len, 0, &off))
			return 0;
	} else if (pyoffsets_for_version(versions[data[0] & 3], &off)) {
		return 0;
	}
	if (pycode_resolve(image_read, &im, &off, NULL, BASE + 8u * data[1], &info))
		return 0;
	for (uint64_t i = 0; i < 64; i++) {
		uint64_t instr = off.instr_kind == PYOFF_INSTR_LASTI ? i - 1 :
				 BASE + 8u * data[1] + off.code_code_adaptive + 2 * i - 2;

		if (pycode_instr_offset(&off, BASE + 8u * data[1], instr, &boff) == 0)
			(void)pycode_line(&info, boff, &line);
	}
	pycode_info_fini(&info);
	return 0;
}
