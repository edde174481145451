/* test_flamegraph: builds flame graphs with known stacks and checks the SVG text; writes
 * fg_basic.svg, fg_names.svg and fg_empty.svg into the directory given as argv[1], where
 * check_svg.py (test unit.flamegraph_svg) parses them as XML and checks the geometry. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "flamegraph.h"

#define ADD(fg, count, ...)                                                            \
	do {                                                                          \
		const char *const f_[] = { __VA_ARGS__ };                             \
		CHECK_INT(flamegraph_add(fg, f_, sizeof(f_) / sizeof(f_[0]), count), 0); \
	} while (0)

#define CXX_NAME "ns::W<int>::f(std::vector<int> const&)"
#define CXX_ESC  "ns::W&lt;int&gt;::f(std::vector&lt;int&gt; const&amp;)"

/* Renders fg into a heap string (NUL-terminated); NULL on failure. */
static char *render(const struct flamegraph *fg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	if (flamegraph_write(fg, f)) {
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	return buf;
}

static size_t count_substr(const char *s, const char *sub)
{
	size_t n = 0;

	while ((s = strstr(s, sub))) {
		n++;
		s += strlen(sub);
	}
	return n;
}

/* The stacks every check here refers to: 100 samples, alpha 60%, beta 40%. */
static void add_basic(struct flamegraph *fg, int reverse)
{
	if (reverse) {
		ADD(fg, 30, "main", "beta");
		ADD(fg, 10, "main", "beta", "qsort", "gamma");
		ADD(fg, 20, "main", "alpha", CXX_NAME);
		ADD(fg, 40, "main", "alpha");
	} else {
		ADD(fg, 40, "main", "alpha");
		ADD(fg, 20, "main", "alpha", CXX_NAME);
		ADD(fg, 10, "main", "beta", "qsort", "gamma");
		ADD(fg, 10, "main", "beta");
		ADD(fg, 20, "main", "beta");	/* merges with the stack above */
	}
}

static void test_basic(const char *dir)
{
	struct flamegraph *fg = flamegraph_new("CPU", "samples");
	struct flamegraph *fg2 = flamegraph_new("CPU", "samples");
	char *svg = NULL, *svg2 = NULL, path[4096];

	CHECK(fg && fg2);
	if (!fg || !fg2)
		goto cleanup;
	add_basic(fg, 0);
	add_basic(fg2, 1);
	CHECK_INT(flamegraph_total(fg), 100);

	svg = render(fg);
	svg2 = render(fg2);
	CHECK(svg && svg2);
	if (!svg || !svg2)
		goto cleanup;
	/* Same stacks in another order give the same bytes: siblings are sorted by name. */
	CHECK(strcmp(svg, svg2) == 0);

	CHECK(strncmp(svg, "<?xml", 5) == 0);
	CHECK(strstr(svg, ">CPU: 100 samples</text>") != NULL);
	CHECK(strstr(svg, "<title>all (100 samples, 100.00%)</title>") != NULL);
	CHECK(strstr(svg, "<title>main (100 samples, 100.00%)</title>") != NULL);
	CHECK(strstr(svg, "<title>alpha (60 samples, 60.00%)</title>") != NULL);
	CHECK(strstr(svg, "<title>beta (40 samples, 40.00%)</title>") != NULL);
	CHECK(strstr(svg, "<title>gamma (10 samples, 10.00%)</title>") != NULL);
	CHECK(strstr(svg, "<title>" CXX_ESC " (20 samples, 20.00%)</title>") != NULL);
	/* 20% of 1180 px holds 31 characters, so the 39-character name is cut. */
	CHECK(strstr(svg, ">ns::W&lt;int&gt;::f(std::vector&lt;int..</text>") != NULL);
	CHECK(strstr(svg, CXX_NAME) == NULL);
	CHECK_INT(count_substr(svg, "<g class=\"f\">"), 7);
	/* alpha sorts before beta, so alpha starts at the left margin, like main */
	CHECK(strstr(svg, "<title>alpha (60 samples, 60.00%)</title><rect x=\"10.00\"") != NULL);
	CHECK(strstr(svg, "<script") != NULL);
	CHECK(strstr(svg, "<![CDATA[") != NULL);
	CHECK_INT(count_substr(svg, "http"), 1);	/* the xmlns, nothing fetched */

	snprintf(path, sizeof(path), "%s/fg_basic.svg", dir);
	CHECK_INT(flamegraph_write_file(fg, path), 0);

cleanup:
	free(svg);
	free(svg2);
	flamegraph_free(fg);
	flamegraph_free(fg2);
}

static void test_names(const char *dir)
{
	struct flamegraph *fg = flamegraph_new("Odd <names> & \"quotes\"", "bytes");
	char *svg = NULL, path[4096];
	const char *const null_frame[] = { "main", NULL };

	CHECK(fg != NULL);
	if (!fg)
		goto cleanup;
	ADD(fg, 400000, "main", "a&b<c>\"d'e");
	ADD(fg, 300000, "main", "bad\xff\xfename");		/* invalid bytes */
	ADD(fg, 100000, "main", "cut\xe2\x82");		/* truncated sequence */
	ADD(fg, 100000, "main", "over\xc0\xaflong");		/* overlong '/' */
	ADD(fg, 50000, "main", "ctl\x01\x1b");			/* XML forbids C0 controls */
	ADD(fg, 49998, "main", "caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x94\xa5");	/* valid UTF-8 */
	ADD(fg, 1, "main", "tiny");				/* 0.001 px: left out */
	ADD(fg, 1, "sys_read_[k]");
	CHECK_INT(flamegraph_add(fg, null_frame, 2, 0), 0);	/* count 0: no-op */
	CHECK_INT(flamegraph_add(NULL, null_frame, 2, 1), -EINVAL);
	CHECK_INT(flamegraph_add(fg, NULL, 2, 1), -EINVAL);
	CHECK_INT(flamegraph_total(fg), 1000000);

	svg = render(fg);
	CHECK(svg != NULL);
	if (!svg)
		goto cleanup;
	CHECK(strstr(svg, ">Odd &lt;names&gt; &amp; &quot;quotes&quot;: 1,000,000 bytes</text>"));
	CHECK(strstr(svg, "<title>a&amp;b&lt;c&gt;&quot;d&apos;e (400,000 bytes, 40.00%)</title>"));
	CHECK(strstr(svg, "<title>bad\xef\xbf\xbd\xef\xbf\xbdname (300,000 bytes, 30.00%)"));
	CHECK(strstr(svg, "<title>cut\xef\xbf\xbd\xef\xbf\xbd (100,000 bytes, 10.00%)"));
	CHECK(strstr(svg, "<title>over\xef\xbf\xbd\xef\xbf\xbdlong (100,000 bytes"));
	CHECK(strstr(svg, "<title>ctl\xef\xbf\xbd\xef\xbf\xbd (50,000 bytes"));
	CHECK(strstr(svg, "<title>caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x94\xa5 (49,998 bytes"));
	CHECK(strstr(svg, "tiny") == NULL);
	CHECK(strstr(svg, "sys_read_[k]") == NULL);	/* 1 of 1,000,000 is too narrow too */
	CHECK(strstr(svg, "<title>main (999,999 bytes, 100.00%)</title>"));
	CHECK(strstr(svg, "\xff") == NULL);
	CHECK(strstr(svg, "\x01") == NULL);

	snprintf(path, sizeof(path), "%s/fg_names.svg", dir);
	CHECK_INT(flamegraph_write_file(fg, path), 0);

cleanup:
	free(svg);
	flamegraph_free(fg);
}

static void test_empty(const char *dir)
{
	struct flamegraph *fg = flamegraph_new("CPU", "samples");
	char *svg = NULL, path[4096];

	CHECK(fg != NULL);
	if (!fg)
		goto cleanup;
	CHECK_INT(flamegraph_total(fg), 0);
	svg = render(fg);
	CHECK(svg != NULL);
	CHECK(svg && strstr(svg, ">no samples</text>"));
	CHECK(svg && strstr(svg, ">CPU: 0 samples</text>"));
	CHECK(svg && !strstr(svg, "<g class=\"f\">"));

	snprintf(path, sizeof(path), "%s/fg_empty.svg", dir);
	CHECK_INT(flamegraph_write_file(fg, path), 0);
	CHECK_INT(flamegraph_write_file(fg, "/nonexistent-dir/x.svg"), -ENOENT);
	CHECK_INT(flamegraph_write_file(NULL, path), -EINVAL);
	CHECK_INT(flamegraph_write(fg, NULL), -EINVAL);

cleanup:
	free(svg);
	flamegraph_free(fg);
	flamegraph_free(NULL);
	CHECK_INT(flamegraph_total(NULL), 0);
}

/* A profile-sized graph: 16000 stacks of 64 frames from a pool of names, each added twice. */
static void test_large(void)
{
	struct flamegraph *fg = flamegraph_new("CPU", "samples");
	const char *frames[64];
	char names[512][16];
	uint32_t seed = 1;
	char *svg = NULL;
	int i, j;

	CHECK(fg != NULL);
	if (!fg)
		return;
	for (i = 0; i < 512; i++)
		snprintf(names[i], sizeof(names[i]), "fn_%03d", i);
	for (i = 0; i < 32000; i++) {
		if (i % 2 == 0)
			seed = (uint32_t)(i / 2) * 2654435761u + 1;
		uint32_t s = seed;

		for (j = 0; j < 64; j++) {
			s = s * 1103515245u + 12345u;
			/* shallow frames repeat often, deep frames rarely */
			frames[j] = names[(s >> 16) % (j < 8 ? 4u : 512u)];
		}
		CHECK_INT(flamegraph_add(fg, frames, 64, 1 + (uint64_t)(i % 7)), 0);
	}
	svg = render(fg);
	CHECK(svg != NULL);
	CHECK(svg && strstr(svg, "<title>all (127,994 samples, 100.00%)</title>"));
	free(svg);
	flamegraph_free(fg);
}

/* More distinct frames than the node limit (2M): stacks are cut, counts are kept. */
static void test_limit(void)
{
	struct flamegraph *fg = flamegraph_new("CPU", "samples");
	char names[64][24];
	const char *frames[64];
	char *svg = NULL;
	int i, j;

	CHECK(fg != NULL);
	if (!fg)
		return;
	for (i = 0; i < 36000; i++) {
		for (j = 0; j < 64; j++) {
			snprintf(names[j], sizeof(names[j]), "s%d_d%d", i, j);
			frames[j] = names[j];
		}
		CHECK_INT(flamegraph_add(fg, frames, 64, 1), 0);
	}
	CHECK_INT(flamegraph_total(fg), 36000);
	svg = render(fg);
	CHECK(svg && strstr(svg, "<title>all (36,000 samples, 100.00%)</title>"));
	free(svg);
	flamegraph_free(fg);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";

	if (mkdir(dir, 0755) && errno != EEXIST) {
		perror(dir);
		return 1;
	}
	test_basic(dir);
	test_names(dir);
	test_empty(dir);
	test_large();
	test_limit();
	return check_exit("test_flamegraph");
}
