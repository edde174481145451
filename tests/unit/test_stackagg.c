/* stackagg: merging, folding into "[other]" under the sample and byte limits, and Python frames
 * kept apart by file and line. Writes the profiles into the directory given as argv[1];
 * check_stackagg.py decodes them with pprofdump. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fileio.h"
#include "stackagg.h"

static const struct pprof_value_type cpu = { "cpu", "nanoseconds" };

static void write_result(const char *dir, const char *name, const struct stackagg_result *r)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s.pb.gz", dir, name);
	CHECK_INT(fileio_write_atomic(path, r->pprof_gz, r->pprof_len), 0);
}

int main(int argc, char **argv)
{
	struct stackagg *a = NULL;
	struct stackagg_result r = { 0 };
	struct stackagg_profile p = {
		.types = &cpu, .period_type = &cpu, .period = 10000000, .time_nanos = 1, .duration_nanos = 1,
	};
	char name[64], mod[] = "/usr/bin/app", file_a[] = "/app/a.py";
	struct sym_frame f[3];
	const char *svg_run;
	int64_t v;

	if (argc < 2)
		return 2;
	/* Merging: the same stack twice adds up; frames differing only by address do not merge. */
	CHECK_INT(stackagg_new(1, &a), 0);
	f[0] = (struct sym_frame){ .name = "leaf", .address = 0x1010, .module = mod,
					.map_start = 0x1000, .map_end = 0x2000 };
	f[1] = (struct sym_frame){ .name = "main", .address = 0x1100, .module = mod,
					.map_start = 0x1000, .map_end = 0x2000 };
	v = 3;
	CHECK_INT(stackagg_add(a, f, 2, &v), 0);
	v = 4;
	CHECK_INT(stackagg_add(a, f, 2, &v), 0);
	CHECK_INT(stackagg_count(a), 1);
	CHECK_INT(stackagg_total(a, 0), 7);
	CHECK_INT(stackagg_add(a, f, 0, &v), -22);
	stackagg_free(a);

	/* Sums saturate: two values of INT64_MAX (a GPU client's claim) stay INT64_MAX, not -2;
	 * and so does the total over two stacks. */
	CHECK_INT(stackagg_new(1, &a), 0);
	v = INT64_MAX;
	CHECK_INT(stackagg_add(a, f, 2, &v), 0);
	CHECK_INT(stackagg_add(a, f, 2, &v), 0);
	CHECK_INT(stackagg_total(a, 0), INT64_MAX);
	CHECK_INT(stackagg_add(a, f, 1, &v), 0);
	CHECK_INT(stackagg_total(a, 0), INT64_MAX);
	v = INT64_MIN;
	CHECK_INT(stackagg_add(a, f + 1, 1, &v), 0);
	CHECK_INT(stackagg_add(a, f + 1, 1, &v), 0);
	CHECK_INT(stackagg_count(a), 3);
	stackagg_free(a);

	/* 20000 distinct stacks, stack i worth i+1: the 15999 hottest stay, the rest is [other]. */
	CHECK_INT(stackagg_new(1, &a), 0);
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "fn_%05d", i);
		f[0] = (struct sym_frame){ .name = name, .address = 0x1000 + (uint64_t)i, .module = mod,
						.map_start = 0x1000, .map_end = 0x100000 };
		f[1] = (struct sym_frame){ .name = "main", .address = 0x1000, .module = mod,
						.map_start = 0x1000, .map_end = 0x100000 };
		v = i + 1;
		CHECK_INT(stackagg_add(a, f, 2, &v), 0);
	}
	CHECK_INT(stackagg_total(a, 0), 20000LL * 20001 / 2);
	p.max_samples = 16000;
	CHECK_INT(stackagg_build(a, &p, NULL, &r), 0);
	CHECK_INT(r.samples, 16000);
	CHECK_INT(r.folded, 4001);
	write_result(argv[1], "samples_limit", &r);
	stackagg_result_fini(&r);

	/* A byte limit folds more: the raw profile fits. */
	p.max_samples = 16000;
	p.max_bytes = 100 * 1024;
	CHECK_INT(stackagg_build(a, &p, NULL, &r), 0);
	CHECK(r.pprof_raw_len <= 100 * 1024);
	CHECK(r.folded > 4001);
	write_result(argv[1], "bytes_limit", &r);
	stackagg_result_fini(&r);

	/* No limits: everything kept, with a flame graph. */
	p.max_samples = 0;
	p.max_bytes = 0;
	CHECK_INT(stackagg_build(a, &p, &(struct flamegraph_view){ .title = "CPU: test", .divisor = 1 }, &r), 0);
	CHECK_INT(r.folded, 0);
	CHECK(r.svg && r.svg_len > 0 && strstr((const char *)r.svg, "<svg") != NULL);
	stackagg_result_fini(&r);
	stackagg_free(a);

	/* Python frames: "run" in two files, and "run" at two lines of one file, are separate
	 * frames; the same frame from another copy of its strings merges; a native leaf under
	 * Python keeps its mapping. check_stackagg.py reads the functions and lines back. */
	CHECK_INT(stackagg_new(1, &a), 0);
	symframe_source(&f[0], "run", "/app/a.py", 10, 5);
	symframe_source(&f[1], "<module>", "/app/main.py", 3, 1);
	v = 1;
	CHECK_INT(stackagg_add(a, f, 2, &v), 0);
	symframe_source(&f[0], "run", "/app/a.py", 12, 5);
	v = 2;
	CHECK_INT(stackagg_add(a, f, 2, &v), 0);
	symframe_source(&f[0], "run", "/app/b.py", 20, 18);
	v = 4;
	CHECK_INT(stackagg_add(a, f, 2, &v), 0);
	symframe_source(&f[0], "run", file_a, 10, 5);
	v = 8;
	CHECK_INT(stackagg_add(a, f, 2, &v), 0);
	CHECK_INT(stackagg_count(a), 3);
	f[2] = f[1];
	symframe_source(&f[1], "run", "/app/a.py", 10, 5);
	f[0] = (struct sym_frame){ .name = "memcpy", .address = 0x1010, .module = mod,
				   .map_start = 0x1000, .map_end = 0x2000 };
	v = 16;
	CHECK_INT(stackagg_add(a, f, 3, &v), 0);
	CHECK_INT(stackagg_count(a), 4);
	CHECK_INT(stackagg_build(a, &p, &(struct flamegraph_view){ .title = "CPU: py", .divisor = 1 },
				 &r), 0);
	CHECK_INT(r.samples, 4);
	CHECK_INT(r.folded, 0);
	/* the flame graph is by name: run's four frames are one box under <module> */
	svg_run = r.svg ? strstr((const char *)r.svg, "<title>run (31 samples") : NULL;
	CHECK(svg_run != NULL);
	CHECK(svg_run && !strstr(svg_run + 1, "<title>run ("));
	write_result(argv[1], "python", &r);
	stackagg_result_fini(&r);
	stackagg_free(a);
	return check_exit("stackagg");
}
