/* perfmap: a synthetic perf map as CPython's perf trampolines write it, then appended to while
 * in use (reload on growth), a line being written (ignored until complete), duplicates (the
 * later line wins), junk lines, and a replaced file. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "perfmap.h"

static void append(const char *path, const char *text)
{
	FILE *f = fopen(path, "ae");

	fputs(text, f);
	fclose(f);
}

int main(void)
{
	char path[] = "/tmp/ember-perfmap-XXXXXX";
	int fd = mkstemp(path);
	struct perfmap *pm = NULL;
	uint64_t start = 0;

	close(fd);
	append(path, "7f0000001000 40 py::main:/app/train.py\n"
		     "0x7f0000001040 0x40 py::step:/app/train.py\n"
		     "not a line\n"
		     "7f0000002000 0 zero size\n"
		     "7f0000000800 100 py::<module>:/app/train.py\n");
	CHECK_INT(perfmap_open(path, &pm), 0);
	CHECK_INT(perfmap_count(pm), 3);
	CHECK_STR(perfmap_lookup(pm, 0x7f0000001000, &start), "py::main:/app/train.py");
	CHECK(start == 0x7f0000001000);
	CHECK_STR(perfmap_lookup(pm, 0x7f000000103f, NULL), "py::main:/app/train.py");
	CHECK_STR(perfmap_lookup(pm, 0x7f0000001050, NULL), "py::step:/app/train.py");
	CHECK_STR(perfmap_lookup(pm, 0x7f0000000810, NULL), "py::<module>:/app/train.py");
	CHECK(perfmap_lookup(pm, 0x7f0000001080, NULL) == NULL);
	CHECK(perfmap_lookup(pm, 0x1000, NULL) == NULL);

	/* The interpreter appends as new functions run; a half-written line waits. */
	append(path, "7f0000003000 20 py::forward:/app/model.py\n7f0000004000 2");
	CHECK_STR(perfmap_lookup(pm, 0x7f0000003010, NULL), "py::forward:/app/model.py");
	CHECK(perfmap_lookup(pm, 0x7f0000004000, NULL) == NULL);
	append(path, "0 py::backward:/app/model.py\n"
		     "7f0000001000 40 py::main_v2:/app/train.py\n");
	CHECK_STR(perfmap_lookup(pm, 0x7f0000004010, NULL), "py::backward:/app/model.py");
	/* Same start address later in the file: the later line wins (code was reused). */
	CHECK_STR(perfmap_lookup(pm, 0x7f0000001000, NULL), "py::main_v2:/app/train.py");
	CHECK_INT(perfmap_count(pm), 5);
	CHECK_INT(perfmap_refresh(pm), 0);

	/* Replaced by a new process's file: parsed from the start. */
	unlink(path);
	append(path, "1000 10 other\n");
	CHECK_STR(perfmap_lookup(pm, 0x1008, NULL), "other");
	CHECK_INT(perfmap_count(pm), 1);
	CHECK(perfmap_lookup(pm, 0x7f0000003010, NULL) == NULL);
	perfmap_free(pm);
	unlink(path);

	/* A file that does not exist yet: lookups miss, no error. */
	CHECK_INT(perfmap_open("/nonexistent/perf-1.map", &pm), 0);
	CHECK(perfmap_lookup(pm, 0x1000, NULL) == NULL);
	perfmap_free(pm);
	/* A process's own path. */
	CHECK_INT(perfmap_open_pid(getpid(), &pm), 0);
	perfmap_free(pm);
	perfmap_free(NULL);
	return check_exit("perfmap");
}
