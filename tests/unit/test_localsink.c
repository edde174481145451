/* Local sink: paths and contents per service, the latest .svg, same-second uploads, the byte
 * bound (oldest first, total never above it), files of a previous run, service names that
 * try to leave DIR, and an unwritable DIR. Runs in a fresh temp directory; no root. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "localsink.h"

static char root[256];

/* 2026-11-21T23:30:00Z */
static int64_t base_ns(void)
{
	struct tm tm = { .tm_year = 2026 - 1900, .tm_mon = 10, .tm_mday = 21, .tm_hour = 23,
			 .tm_min = 30 };

	return (int64_t)timegm(&tm) * 1000000000LL;
}

static struct upload mk(char *service, char *family, int64_t from_ns, uint8_t *pb, size_t pblen,
			uint8_t *svg, size_t svglen)
{
	return (struct upload){ .service = service, .family = family, .pprof_gz = pb,
				.pprof_len = pblen, .svg = svg, .svg_len = svglen,
				.from_ns = from_ns, .until_ns = from_ns + 15000000000LL };
}

/* The content of a/b as a NUL-terminated string (NULL if missing); caller frees. */
static char *slurp(const char *a, const char *b)
{
	char path[512];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", a, b);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static int exists(const char *a, const char *b)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", a, b);
	return stat(path, &st) == 0;
}

static uint64_t tree_bytes, tree_files;

static int tree_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	size_t len = strlen(path);

	(void)ftw;
	if (type == FTW_F && len > 6 && !strcmp(path + len - 6, ".pb.gz")) {
		tree_bytes += (uint64_t)st->st_size;
		tree_files++;
	}
	return 0;
}

/* Total size and count of the .pb.gz files under dir, by walking the disk. */
static void tree_total(const char *dir)
{
	tree_bytes = tree_files = 0;
	nftw(dir, tree_visit, 16, FTW_PHYS);
}

static int rm_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static void test_paths(void)
{
	char dir[300], *s;
	struct localsink *sink = NULL;
	struct localsink_stats st;
	int64_t t0 = base_ns();
	struct upload u;

	snprintf(dir, sizeof(dir), "%s/paths/nested", root);
	CHECK_INT(localsink_new(dir, 1 << 20, 0644, &sink), 0);
	if (!sink)
		return;
	u = mk("web", "cpu", t0 + 123456789, (uint8_t *)"web-1", 5, (uint8_t *)"<svg>1</svg>", 12);
	CHECK_INT(localsink_write(sink, &u), 0);
	u = mk("db", "cpu", t0, (uint8_t *)"db-1", 4, NULL, 0);
	CHECK_INT(localsink_write(sink, &u), 0);
	u = mk("web", "cpu", t0 + 15000000000LL, (uint8_t *)"web-2", 5, (uint8_t *)"<svg>2</svg>", 12);
	CHECK_INT(localsink_write(sink, &u), 0);
	u = mk("web", "alloc", t0, (uint8_t *)"alloc-1", 7, NULL, 0);
	CHECK_INT(localsink_write(sink, &u), 0);

	s = slurp(dir, "web/cpu-20261121T233000Z.pb.gz");
	CHECK_STR(s, "web-1");
	free(s);
	s = slurp(dir, "web/cpu-20261121T233015Z.pb.gz");
	CHECK_STR(s, "web-2");
	free(s);
	s = slurp(dir, "db/cpu-20261121T233000Z.pb.gz");
	CHECK_STR(s, "db-1");
	free(s);
	s = slurp(dir, "web/alloc-20261121T233000Z.pb.gz");
	CHECK_STR(s, "alloc-1");
	free(s);
	/* The .svg is the latest one; no .svg for a service that never sent one. */
	s = slurp(dir, "web/cpu.svg");
	CHECK_STR(s, "<svg>2</svg>");
	free(s);
	CHECK(!exists(dir, "db/cpu.svg"));
	CHECK(!exists(dir, "web/alloc.svg"));

	/* Same second: a suffix, never an overwrite. */
	u = mk("db", "cpu", t0 + 999999999, (uint8_t *)"db-2", 4, NULL, 0);
	CHECK_INT(localsink_write(sink, &u), 0);
	u = mk("db", "cpu", t0 + 500, (uint8_t *)"db-3", 4, NULL, 0);
	CHECK_INT(localsink_write(sink, &u), 0);
	s = slurp(dir, "db/cpu-20261121T233000Z.pb.gz");
	CHECK_STR(s, "db-1");
	free(s);
	s = slurp(dir, "db/cpu-20261121T233000Z-1.pb.gz");
	CHECK_STR(s, "db-2");
	free(s);
	s = slurp(dir, "db/cpu-20261121T233000Z-2.pb.gz");
	CHECK_STR(s, "db-3");
	free(s);

	/* No temp files left behind. */
	tree_total(dir);
	CHECK_INT(tree_files, 6);
	CHECK_INT(tree_bytes, 5 + 4 + 5 + 7 + 4 + 4);
	localsink_get_stats(sink, &st);
	CHECK_INT(st.files_written, 6);
	CHECK_INT(st.bytes_written, 29);
	CHECK_INT(st.files_deleted, 0);
	CHECK_INT(st.write_errors, 0);
	CHECK_INT(st.files_on_disk, 6);
	CHECK_INT(st.bytes_on_disk, 29);
	{
		DIR *d;
		struct dirent *de;
		char sub[400];

		snprintf(sub, sizeof(sub), "%s/web", dir);
		d = opendir(sub);
		CHECK(d != NULL);
		while (d && (de = readdir(d)))
			CHECK(strncmp(de->d_name, ".ember-", 7) != 0);
		if (d)
			closedir(d);
	}

	/* Bad uploads are refused and counted. */
	u = mk("db", "cpu", -1, (uint8_t *)"x", 1, NULL, 0);
	CHECK_INT(localsink_write(sink, &u), -EINVAL);
	u = mk("db", "cpu", t0, NULL, 0, NULL, 0);
	CHECK_INT(localsink_write(sink, &u), -EINVAL);
	localsink_get_stats(sink, &st);
	CHECK_INT(st.write_errors, 2);
	localsink_free(sink);
}

static void test_bound(void)
{
	char dir[300], stale[400], other[400], *s;
	struct localsink *sink = NULL;
	struct localsink_stats st;
	static uint8_t blob[1000], big[5000];
	int64_t t0 = base_ns();
	struct upload u;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/bound", root);
	CHECK_INT(localsink_new(dir, 4096, 0644, &sink), 0);
	if (!sink)
		return;
	for (int i = 0; i < 10; i++) {
		memset(blob, 'a' + i, sizeof(blob));
		/* Alternate services so the oldest-first order spans directories. */
		u = mk(i % 2 ? "odd" : "even", "cpu", t0 + i * 15000000000LL, blob, sizeof(blob),
		       (uint8_t *)"<svg/>", 6);
		CHECK_INT(localsink_write(sink, &u), 0);
		tree_total(dir);
		CHECK(tree_bytes <= 4096);
	}
	/* The four newest remain (i = 6..9), the six oldest went first. */
	tree_total(dir);
	CHECK_INT(tree_files, 4);
	CHECK_INT(tree_bytes, 4000);
	CHECK(!exists(dir, "even/cpu-20261121T233000Z.pb.gz"));
	CHECK(!exists(dir, "even/cpu-20261121T233100Z.pb.gz"));    /* i = 4 */
	CHECK(!exists(dir, "odd/cpu-20261121T233115Z.pb.gz"));     /* i = 5 */
	CHECK(exists(dir, "even/cpu-20261121T233130Z.pb.gz"));     /* i = 6 */
	CHECK(exists(dir, "odd/cpu-20261121T233215Z.pb.gz"));      /* i = 9 */
	/* The bound never deletes the latest .svg files. */
	CHECK(exists(dir, "even/cpu.svg"));
	CHECK(exists(dir, "odd/cpu.svg"));
	localsink_get_stats(sink, &st);
	CHECK_INT(st.files_written, 10);
	CHECK_INT(st.files_deleted, 6);
	CHECK_INT(st.files_on_disk, 4);
	CHECK_INT(st.bytes_on_disk, 4000);

	/* A profile larger than the whole bound is refused, not written then deleted. */
	u = mk("even", "cpu", t0 + 1000 * 1000000000LL, big, sizeof(big), NULL, 0);
	CHECK_INT(localsink_write(sink, &u), -EFBIG);
	localsink_free(sink);
	sink = NULL;

	/* A new run counts the files of the previous one; a smaller bound applies at once,
	 * oldest first; a stale temp file is removed and files that are not ours stay. */
	snprintf(stale, sizeof(stale), "%s/odd/.ember-1-7.tmp", dir);
	snprintf(other, sizeof(other), "%s/odd/notes.pb.gz", dir);
	f = fopen(stale, "w");
	if (f)
		fclose(f);
	f = fopen(other, "w");
	if (f) {
		fputs("not ember's", f);
		fclose(f);
	}
	CHECK_INT(localsink_new(dir, 4096, 0644, &sink), 0);
	if (!sink)
		return;
	localsink_get_stats(sink, &st);
	CHECK_INT(st.files_on_disk, 4);
	CHECK_INT(st.bytes_on_disk, 4000);
	CHECK_INT(st.files_deleted, 0);
	CHECK(access(stale, F_OK) != 0);
	/* One more file: the previous run's oldest (i = 6) goes. */
	memset(blob, 'z', sizeof(blob));
	u = mk("even", "cpu", t0 + 10 * 15000000000LL, blob, sizeof(blob), NULL, 0);
	CHECK_INT(localsink_write(sink, &u), 0);
	CHECK(!exists(dir, "even/cpu-20261121T233130Z.pb.gz"));
	CHECK(exists(dir, "odd/cpu-20261121T233145Z.pb.gz"));      /* i = 7 */
	localsink_get_stats(sink, &st);
	CHECK_INT(st.files_deleted, 1);
	CHECK_INT(st.bytes_on_disk, 4000);
	localsink_free(sink);
	sink = NULL;

	CHECK_INT(localsink_new(dir, 2500, 0644, &sink), 0);
	if (!sink)
		return;
	localsink_get_stats(sink, &st);
	CHECK_INT(st.files_deleted, 2);
	CHECK_INT(st.files_on_disk, 2);
	CHECK(!exists(dir, "odd/cpu-20261121T233145Z.pb.gz"));     /* i = 7 */
	CHECK(!exists(dir, "even/cpu-20261121T233200Z.pb.gz"));    /* i = 8 */
	CHECK(exists(dir, "odd/cpu-20261121T233215Z.pb.gz"));      /* i = 9 */
	CHECK(exists(dir, "even/cpu-20261121T233230Z.pb.gz"));     /* i = 10 */
	s = slurp(dir, "odd/notes.pb.gz");
	CHECK_STR(s, "not ember's");
	free(s);
	localsink_free(sink);
}

static void test_names(void)
{
	static const char *const evil[] = { "../evil", "..", ".", "", "a/b", "/abs", ".hidden",
					    "x/../../y", "sp ace\n" };
	char dir[300], outside[400];
	struct localsink *sink = NULL;
	DIR *d;
	struct dirent *de;
	int64_t t0 = base_ns();
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/names/out", root);
	CHECK_INT(localsink_new(dir, 1 << 20, 0644, &sink), 0);
	if (!sink)
		return;
	for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
		struct upload u = mk((char *)evil[i], "../cpu", t0 + (int64_t)i * 1000000000LL,
				     (uint8_t *)"p", 1, (uint8_t *)"s", 1);

		CHECK_INT(localsink_write(sink, &u), 0);
	}
	localsink_free(sink);

	/* Nothing outside DIR; inside, only plain, visible service directories. */
	snprintf(outside, sizeof(outside), "%s/names", root);
	d = opendir(outside);
	while (d && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			CHECK_STR(de->d_name, "out");
	}
	if (d)
		closedir(d);
	CHECK(!exists(root, "evil"));
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		CHECK(de->d_name[0] != '.');
		CHECK(strstr(de->d_name, "..") == NULL);
		CHECK(strchr(de->d_name, '\n') == NULL);
		n++;
	}
	if (d)
		closedir(d);
	CHECK(n >= 5);
	tree_total(dir);
	CHECK_INT(tree_files, sizeof(evil) / sizeof(evil[0]));
	CHECK(exists(dir, "_._evil/_._cpu-20261121T233000Z.pb.gz"));
}

static void test_errors(void)
{
	char file[300], dir[400];
	struct localsink *sink = NULL;
	FILE *f;

	snprintf(file, sizeof(file), "%s/regular", root);
	f = fopen(file, "w");
	if (f)
		fclose(f);
	snprintf(dir, sizeof(dir), "%s/sub/dir", file);
	CHECK_INT(localsink_new(dir, 1 << 20, 0644, &sink), -ENOTDIR);
	CHECK(sink == NULL);
	CHECK_INT(localsink_new(file, 1 << 20, 0644, &sink), -ENOTDIR);
	CHECK_INT(localsink_new("", 1 << 20, 0644, &sink), -EINVAL);
	CHECK_INT(localsink_new(root, 0, 0644, &sink), -EINVAL);
	CHECK(sink == NULL);
	localsink_free(NULL);
}

/* Profiles hold every process's stacks: the caller's mode (0600 by default), directories with
 * x where r is given, whatever the umask lets through. */
static void test_modes(void)
{
	char dir[300], path[400];
	struct localsink *sink = NULL;
	struct upload u;
	struct stat st;
	mode_t old = umask(0);

	snprintf(dir, sizeof(dir), "%s/modes", root);
	CHECK_INT(localsink_new(dir, 1 << 20, 0600, &sink), 0);
	if (sink) {
		u = mk("web", "cpu", base_ns(), (uint8_t *)"x", 1, (uint8_t *)"<svg/>", 6);
		CHECK_INT(localsink_write(sink, &u), 0);
		localsink_free(sink);
	}
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
	snprintf(path, sizeof(path), "%s/web", dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);
	snprintf(path, sizeof(path), "%s/web/cpu.svg", dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	snprintf(dir, sizeof(dir), "%s/modes-shared", root);
	sink = NULL;
	CHECK_INT(localsink_new(dir, 1 << 20, 0640, &sink), 0);
	if (sink) {
		u = mk("web", "cpu", base_ns(), (uint8_t *)"x", 1, (uint8_t *)"<svg/>", 6);
		CHECK_INT(localsink_write(sink, &u), 0);
		localsink_free(sink);
	}
	snprintf(path, sizeof(path), "%s/web", dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0750);
	snprintf(path, sizeof(path), "%s/web/cpu.svg", dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);
	umask(old);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(root, sizeof(root), "%s/ember-localsink-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	test_paths();
	test_bound();
	test_names();
	test_errors();
	test_modes();
	nftw(root, rm_visit, 16, FTW_DEPTH | FTW_PHYS);
	return check_exit("localsink");
}
