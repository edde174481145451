/* fuzz_elf_symbols: an arbitrary ELF image through the symbol reader, loaded the way the
 * symbolizer loads a mapped file (elfsyms_load_fd() on an fd, libelf reading with pread, the
 * debug-file lookup included) and the way it loads the vDSO (elfsyms_load_mem()), then a few
 * lookups: at every segment's start and end, at the first symbols' addresses, and at addresses
 * taken from the input. Any input must load or be refused, never crash, leak or hang. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "elfsyms.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;

static void lookups(struct elfsyms *es, const uint8_t *data, size_t size)
{
	uint64_t vaddr, symoff;

	(void)elfsyms_build_id(es);
	(void)elfsyms_debug_path(es);
	(void)elfsyms_count(es);
	for (size_t i = 0; i + 8 <= size && i < 256; i += 8) {
		uint64_t a;

		memcpy(&a, data + i, 8);
		(void)elfsyms_lookup(es, a, &symoff);
		if (elfsyms_off_to_vaddr(es, a & 0xffffff, &vaddr))
			(void)elfsyms_lookup(es, vaddr, NULL);
	}
	for (uint64_t off = 0; off < 0x10000; off += 0x400)
		if (elfsyms_off_to_vaddr(es, off, &vaddr))
			(void)elfsyms_lookup(es, vaddr, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct elfsyms *es = NULL;
	char bid[ELFSYMS_BUILD_ID_MAX];

	if (memfd < 0) {
		memfd = memfd_create("fuzz_elf", MFD_CLOEXEC);
		if (memfd < 0)
			abort();
	}
	if (ftruncate(memfd, 0) || (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
		abort();
	(void)elfsyms_read_build_id(memfd, bid, sizeof(bid));
	/* path: as the process saw it; its debuglink candidates do not exist */
	if (!elfsyms_load_fd(memfd, "/nonexistent/fuzz/lib.so", NULL, &es)) {
		lookups(es, data, size);
		elfsyms_free(es);
	}
	if (size && !elfsyms_load_mem(data, size, &es)) {
		lookups(es, data, size);
		elfsyms_free(es);
	}
	return 0;
}
