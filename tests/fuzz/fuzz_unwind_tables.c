/* fuzz_unwind_tables: the unwinder's reader of a module's file: ELF program and section
 * headers, .eh_frame_hdr and its table, .eh_frame (through libunwind's FDE and CFI parsers, a
 * few unwinds from the tables' functions), and the file's own .debug_frame, plain or
 * zlib-compressed. Every input must return, without a crash, a leak or a hang (the unwinds
 * are bounded by the accessor-call budget, whatever the CFI says). */
#include <stddef.h>
#include <stdint.h>

#include "unwind_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)unwind_fuzz_tables(data, size);
	return 0;
}
