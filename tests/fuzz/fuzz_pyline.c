/* fuzz_pyline: the CPython line-table decoders over arbitrary tables. Input: byte 0 picks the
 * format (bit 0: 3.10 / 3.11+), bytes 1-4 firstlineno, the rest is the table. The walk must
 * give contiguous, growing ranges and end within len steps; every point lookup must agree with
 * the walk. No crash, no read past the table. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pyline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum pyline_format fmt;
	struct pyline_iter it;
	struct pyline_range r;
	int32_t first, line;
	uint32_t end = 0;
	size_t steps = 0;
	int err;

	if (size < 5)
		return 0;
	fmt = data[0] & 1 ? PYLINE_FORMAT_310 : PYLINE_FORMAT_311;
	memcpy(&first, data + 1, 4);
	data += 5;
	size -= 5;
	if (pyline_iter_init(&it, fmt, data, size, first))
		return 0;
	while ((err = pyline_iter_next(&it, &r)) == 1) {
		if (r.start != end || r.end <= r.start || ++steps > size)
			abort();
		if (steps <= 16 && (pyline_addr2line(fmt, data, size, first, (int32_t)r.start, &line) ||
				    line != r.line))
			abort();
		end = r.end;
	}
	if (err != 0 && err != -22 /* -EINVAL */)
		abort();
	return 0;
}
