/* fuzz_debug_frame: the .debug_frame to .eh_frame converter (CIEs, FDEs, their index), then a
 * few unwinds through the converted table with libunwind's parsers. The input is a
 * .debug_frame section's bytes. Every input must return, without a crash, a leak or a hang. */
#include <stddef.h>
#include <stdint.h>

#include "unwind_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)unwind_fuzz_debug_frame(data, size);
	return 0;
}
