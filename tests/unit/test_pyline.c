/* unit.pyline: the line-table decoders judged by CPython itself. Every CPython 3.10+ on the
 * machine (Debian's /usr/bin/python3.11 and pyenv's ~/.pyenv/versions/3.1X*) runs
 * py_dump_lines.py, which streams each stdlib code object's co_linetable, co_firstlineno and
 * PyCode_Addr2Line's answer for every instruction; every answer must equal ours (both the
 * range walk for every instruction and point lookups for a fixed sample). Fails if Debian's
 * python3.11 did not run or fewer than four versions did. Then hostile tables by hand.
 * Usage: unit_pyline PY_DUMP_LINES.PY */
#include <errno.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "pyline.h"

#define DEBIAN_PYTHON "/usr/bin/python3.11"
#define MAX_UNITS (1u << 20)

struct run_stats {
	unsigned long codes, offsets, lookups, mismatches;
};

static int read_exact(FILE *f, void *buf, size_t n)
{
	return fread(buf, 1, n, f) == n ? 0 : -EIO;
}

static void mismatch(struct run_stats *st, const char *py, unsigned long code, uint32_t off,
		     int32_t got, int32_t want, const char *how)
{
	if (st->mismatches++ < 5)
		fprintf(stderr, "pyline: %s: code object %lu offset %u: %s gives %d, CPython %d\n",
			py, code, off, how, got, want);
}

/* Checks one code object; 0 or -EIO (the stream is broken). */
static int check_code(const char *py, enum pyline_format fmt, const uint8_t *tab, uint32_t len,
		      int32_t first, const int32_t *want, uint32_t n, struct run_stats *st)
{
	struct pyline_iter it;
	struct pyline_range r;
	uint32_t unit = 0, stride;
	int32_t line;
	int err;

	if (pyline_iter_init(&it, fmt, tab, len, first))
		return -EIO;
	while ((err = pyline_iter_next(&it, &r)) == 1 && unit < n) {
		for (; unit < n && 2 * unit < r.end; unit++)
			if (r.line != want[unit])
				mismatch(st, py, st->codes, 2 * unit, r.line, want[unit], "walk");
	}
	if (err < 0)
		mismatch(st, py, st->codes, 2 * unit, err, 0, "walk error");
	for (; unit < n; unit++) /* past the table: no line */
		if (want[unit] != PYLINE_NONE)
			mismatch(st, py, st->codes, 2 * unit, PYLINE_NONE, want[unit], "walk end");
	st->offsets += n;

	/* Point lookups are O(len) each: all of a small code object, a fixed sample of a big one. */
	stride = n <= 256 ? 1 : n / 128;
	for (uint32_t i = 0; i < n; i += stride) {
		err = pyline_addr2line(fmt, tab, len, first, (int32_t)(2 * i), &line);
		if (err || line != want[i])
			mismatch(st, py, st->codes, 2 * i, err ? err : line, want[i], "addr2line");
		st->lookups++;
	}
	if (pyline_addr2line(fmt, tab, len, first, -2, &line) || line != first)
		mismatch(st, py, st->codes, UINT32_MAX, line, first, "addr2line(-2)");
	st->codes++;
	return 0;
}

/* Runs one interpreter over the dump script. 1 if it ran and was checked, 0 if absent. */
static int run_python(const char *py, const char *script, unsigned long *total_mismatches)
{
	char cmd[4096], magic[8];
	uint32_t hdr[2];
	uint8_t *tab = NULL;
	int32_t *want = NULL;
	struct run_stats st = { 0 };
	enum pyline_format fmt;
	FILE *f;
	int ok = 0;

	snprintf(cmd, sizeof(cmd), "'%s' -I -S '%s'", py, script);
	f = popen(cmd, "r");
	if (!f) {
		fprintf(stderr, "pyline: %s: cannot start\n", py);
		return 0;
	}
	tab = malloc(PYLINE_MAX_TABLE);
	want = malloc(MAX_UNITS * sizeof(*want));
	if (!tab || !want)
		goto out;
	if (read_exact(f, magic, 8) || memcmp(magic, "EMBPYLN1", 8) || read_exact(f, hdr, 8)) {
		fprintf(stderr, "pyline: %s: no dump\n", py);
		goto out;
	}
	if (pyline_format_for_version(hdr[0], &fmt)) {
		fprintf(stderr, "pyline: %s: version %#x not supported\n", py, hdr[0]);
		goto out;
	}
	for (;;) {
		int32_t first;
		uint32_t len, n;

		if (read_exact(f, &first, 4) || read_exact(f, &len, 4))
			goto broken;
		if (len == UINT32_MAX)
			break;
		if (len > PYLINE_MAX_TABLE) {
			fprintf(stderr, "pyline: %s: a %u-byte line table, over PYLINE_MAX_TABLE\n",
				py, len);
			goto broken;
		}
		if (read_exact(f, tab, len) || read_exact(f, &n, 4) ||
		    n > MAX_UNITS || read_exact(f, want, 4ul * n))
			goto broken;
		if (check_code(py, fmt, tab, len, first, want, n, &st))
			goto broken;
	}
	printf("pyline: %s: CPython %u.%u.%u, judge %s: %lu code objects, %lu offsets walked, "
	       "%lu point lookups, %lu mismatches\n", py, hdr[0] >> 24, (hdr[0] >> 16) & 0xff,
	       (hdr[0] >> 8) & 0xff, hdr[1] == 1 ? "PyCode_Addr2Line" : "co_lines()", st.codes,
	       st.offsets, st.lookups, st.mismatches);
	CHECK(st.codes > 1000);
	*total_mismatches += st.mismatches;
	ok = 1;
	goto out;
broken:
	fprintf(stderr, "pyline: %s: truncated or malformed dump\n", py);
out:
	if (pclose(f) != 0 && ok) {
		fprintf(stderr, "pyline: %s: dump script failed\n", py);
		ok = 0;
	}
	free(tab);
	free(want);
	return ok;
}

/* A 3.11+ table of (byte...) and the expected lines of units 0..n-1. */
static void expect_lines(enum pyline_format fmt, const uint8_t *tab, size_t len, int32_t first,
			 const int32_t *want, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		int32_t line = -7;

		CHECK_INT(pyline_addr2line(fmt, tab, len, first, (int32_t)(2 * i), &line), 0);
		CHECK_INT(line, want[i]);
	}
}

static void test_by_hand(void)
{
	enum pyline_format fmt;
	int32_t line;

	CHECK_INT(pyline_format_for_version(0x030a0df0, &fmt), 0);
	CHECK_INT(fmt, PYLINE_FORMAT_310);
	CHECK_INT(pyline_format_for_version(0x030e00f0, &fmt), 0);
	CHECK_INT(fmt, PYLINE_FORMAT_311);
	CHECK_INT(pyline_format_for_version(0x030900f0, &fmt), -ENOTSUP);
	CHECK_INT(pyline_format_for_version(0x030f00a0, &fmt), -ENOTSUP);
	CHECK_INT(pyline_format_for_version(0x020712f0, &fmt), -ENOTSUP);

	/* 3.10: a one-line function is the single pair (12, 0): line firstlineno for 6 units. */
	{
		const uint8_t t[] = { 12, 0 };
		const int32_t w[] = { 5, 5, 5, 5, 5, 5, -1 };
		expect_lines(PYLINE_FORMAT_310, t, sizeof(t), 5, w, 7);
	}
	/* 3.10: an empty range moves the line; -128 is "no line" and keeps the running line. */
	{
		const uint8_t t[] = { 2, 1, 0, 3, 2, 0x80, 2, 0xff };
		const int32_t w[] = { 11, -1, 13, -1 };
		expect_lines(PYLINE_FORMAT_310, t, sizeof(t), 10, w, 4);
	}
	/* 3.10: an odd length is malformed once the walk reaches the lone byte. */
	{
		const uint8_t t[] = { 2, 0, 7 };
		CHECK_INT(pyline_addr2line(PYLINE_FORMAT_310, t, 3, 1, 0, &line), 0);
		CHECK_INT(line, 1);
		CHECK_INT(pyline_addr2line(PYLINE_FORMAT_310, t, 3, 1, 2, &line), -EINVAL);
	}
	/* 3.11+: short form (code 0, 2 units), ONE_LINE1 (+1), NONE (keeps the line), LONG -2. */
	{
		const uint8_t t[] = { 0x80 | (0 << 3) | 1, 0x05,	 /* short, 2 units */
				      0x80 | (11 << 3) | 0, 4, 9,	 /* one line +1, 1 unit */
				      0x80 | (15 << 3) | 0,		 /* none, 1 unit */
				      0x80 | (14 << 3) | 0, 5, 0, 1, 2,	 /* long, svarint -2 */
				      0x80 | (13 << 3) | 0, 0x46, 0x01 }; /* no columns, +35 */
		const int32_t w[] = { 20, 20, 21, -1, 19, 54, -1 };
		expect_lines(PYLINE_FORMAT_311, t, sizeof(t), 20, w, 7);
	}
	/* 3.11+: a table starting inside an entry, a varint that runs off the end or too long. */
	{
		const uint8_t t1[] = { 0x05, 0x80 };
		const uint8_t t2[] = { 0x80 | (13 << 3), 0x40 };
		const uint8_t t3[] = { 0x80 | (13 << 3), 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x00 };
		CHECK_INT(pyline_addr2line(PYLINE_FORMAT_311, t1, 2, 1, 0, &line), -EINVAL);
		CHECK_INT(pyline_addr2line(PYLINE_FORMAT_311, t2, 2, 1, 0, &line), -EINVAL);
		CHECK_INT(pyline_addr2line(PYLINE_FORMAT_311, t3, 8, 1, 0, &line), -EINVAL);
	}
	/* A line pushed past int32 is refused, not wrapped. */
	{
		const uint8_t t[] = { 0x80 | (12 << 3), 0, 0 };
		CHECK_INT(pyline_addr2line(PYLINE_FORMAT_311, t, 3, INT32_MAX - 1, 0, &line), -EINVAL);
	}
	/* Empty table: every offset has no line; a negative offset is firstlineno; bad args. */
	CHECK_INT(pyline_addr2line(PYLINE_FORMAT_311, NULL, 0, 3, 0, &line), 0);
	CHECK_INT(line, PYLINE_NONE);
	CHECK_INT(pyline_addr2line(PYLINE_FORMAT_311, NULL, 0, 3, -2, &line), 0);
	CHECK_INT(line, 3);
	CHECK_INT(pyline_addr2line(PYLINE_FORMAT_311, NULL, 4, 3, 0, &line), -EINVAL);
	CHECK_INT(pyline_addr2line((enum pyline_format)9, (const uint8_t *)"", 0, 3, 0, &line), -EINVAL);
	{
		static uint8_t big[PYLINE_MAX_TABLE + 1];
		CHECK_INT(pyline_addr2line(PYLINE_FORMAT_310, big, sizeof(big), 1, 0, &line), -E2BIG);
	}
	CHECK_INT(pyline_start_line(17), 17);
	CHECK_INT(pyline_start_line(0), 0);
	CHECK_INT(pyline_start_line(-4), 0);

	/* Random tables: every walk ends within len steps with contiguous, growing ranges. */
	srand(13);
	for (int round = 0; round < 20000; round++) {
		uint8_t t[64];
		size_t len = (size_t)rand() % sizeof(t);
		struct pyline_iter it;
		struct pyline_range r;
		uint32_t end = 0;
		int steps = 0, err;

		for (size_t i = 0; i < len; i++)
			t[i] = (uint8_t)rand();
		CHECK_INT(pyline_iter_init(&it, round & 1 ? PYLINE_FORMAT_311 : PYLINE_FORMAT_310, t,
					   len, rand() - RAND_MAX / 2), 0);
		while ((err = pyline_iter_next(&it, &r)) == 1 && steps++ <= 64) {
			CHECK(r.start == end && r.end > r.start);
			end = r.end;
		}
		CHECK(steps <= 64);
	}
}

int main(int argc, char **argv)
{
	const char *script = argc > 1 ? argv[1] : "py_dump_lines.py";
	const char *home = getenv("HOME");
	char pattern[1024];
	unsigned long mismatches = 0;
	int ran = 0, debian = 0;
	glob_t g = { 0 };

	test_by_hand();

	debian = run_python(DEBIAN_PYTHON, script, &mismatches);
	ran += debian;
	snprintf(pattern, sizeof(pattern), "%s/versions/3.1[0-9]*/bin/python3",
		 getenv("PYENV_ROOT") ? getenv("PYENV_ROOT") : "");
	if (!getenv("PYENV_ROOT"))
		snprintf(pattern, sizeof(pattern), "%s/.pyenv/versions/3.1[0-9]*/bin/python3",
			 home ? home : "/root");
	if (glob(pattern, 0, NULL, &g) == 0)
		for (size_t i = 0; i < g.gl_pathc; i++)
			ran += run_python(g.gl_pathv[i], script, &mismatches);
	globfree(&g);

	printf("pyline: %d CPython version(s) ran; Debian's %s %s; %lu mismatches in all\n", ran,
	       DEBIAN_PYTHON, debian ? "ran" : "DID NOT RUN", mismatches);
	CHECK(debian);
	CHECK(ran >= 4);
	CHECK_INT(mismatches, 0);
	return check_exit("unit.pyline");
}
