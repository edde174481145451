/* unwind_fuzz: entry points into the unwinder's parsers for the fuzzers (tests/fuzz), private
 * to the unwinder and them: no live process, no files. */
#ifndef EMBER_UNWIND_FUZZ_H
#define EMBER_UNWIND_FUZZ_H

#include <stddef.h>

/* img as a module's file: its program headers, .eh_frame_hdr, .eh_frame and .debug_frame read
 * as unwind_stack() reads a mapped file's, then a few unwinds through it (mapped at its
 * vaddrs) from the first and last functions of its tables. 0, -ENOEXEC or -ENOMEM. */
int unwind_fuzz_tables(const void *img, size_t len);

/* df as a module's .debug_frame (the module's code at [0, 2 GiB)): converted, then a few
 * unwinds through the result. Returns the number of FDEs converted, or -errno. */
int unwind_fuzz_debug_frame(const void *df, size_t len);

#endif
