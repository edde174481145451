/* fuzz_perfmap: an arbitrary perf map text. The input is split at its first NUL: the part
 * before is the file when it is opened, the part after is appended later (a writer that
 * appends as new code is compiled, maybe in the middle of a line). Lookups at addresses from
 * the input and at every parsed start. Any input must parse or be skipped within the budgets,
 * never crash, leak or hang. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "perfmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void lookups(struct perfmap *pm, const uint8_t *data, size_t size)
{
	uint64_t start;

	for (size_t i = 0; i + 8 <= size && i < 512; i += 4) {
		uint64_t a;

		memcpy(&a, data + i, 8);
		if (perfmap_lookup(pm, a, &start))
			(void)perfmap_lookup(pm, start, NULL);
		(void)perfmap_lookup(pm, a & 0xffffff, NULL);
	}
	for (uint64_t a = 0; a < 0x100; a += 7)
		(void)perfmap_lookup(pm, a, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t first = nul ? (size_t)(nul - data) : size;
	struct perfmap *pm = NULL;
	int fd;

	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/ember-fuzz-perfmap-%d.map", (int)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, data, first) != (ssize_t)first)
		abort();
	if (perfmap_open(path, &pm))
		abort();
	lookups(pm, data, size);
	if (nul && write(fd, nul + 1, size - first - 1) != (ssize_t)(size - first - 1))
		abort();
	close(fd);
	lookups(pm, data, size);
	(void)perfmap_refresh(pm);
	(void)perfmap_count(pm);
	perfmap_free(pm);
	return 0;
}
