/* test_pprof: builds known profiles with the pprof builder, checks what the builder itself
 * reports (ids, dedup, merging, errors), and writes the profiles into OUTDIR for
 * check_pprof.py, which reads them back with independent decoders (pprofdump, protoc).
 *
 * Usage: unit_pprof OUTDIR
 * Files: cpu.pb.gz (pprof_encode + fileio_write_atomic), cpu.pb (pprof_encode without gzip),
 *        mem.pb.gz, big.pb.gz (16000 distinct stacks of 64 frames), py.pb and py.pb.gz
 *        (Python frames: file and line, no address), pybig.pb.gz (16000 Python stacks). */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fileio.h"
#include "pprof.h"

#define CPU_PERIOD (1000000000LL / 97) /* 97 Hz sampling, the eBPF CPU collector's default */

/* A native frame: a PC in a mapping, no source file or line. */
#define NATIVE(fn, pc, map) { .function = (fn), .address = (pc), .mapping_id = (map) }
/* A Python frame: a function in a file, at a line; no address, no mapping. */
#define PY(fn, file, ln, start) { .function = (fn), .filename = (file), .line = (ln), \
				  .start_line = (start) }

static const char *outdir;
static const char *const outputs[] = {
	"cpu.pb", "cpu.pb.gz", "mem.pb.gz", "big.pb.gz", "py.pb", "py.pb.gz", "pybig.pb.gz",
};

static char *out_path(const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", outdir, name) < 0)
		return NULL;
	return p;
}

static int write_bytes(const char *name, const uint8_t *buf, size_t len)
{
	char *path = out_path(name);
	int err;

	if (!path)
		return -ENOMEM;
	err = fileio_write_atomic(path, buf, len);
	free(path);
	return err;
}

/* What pprof_write_file() did before pprof/ stopped writing files: encode, gzip, write. */
static int write_profile(struct pprof_builder *b, const char *path)
{
	uint8_t *buf = NULL;
	size_t len;
	int err;

	err = pprof_encode(b, true, &buf, &len);
	if (!err)
		err = fileio_write_atomic(path, buf, len);
	free(buf);
	return err;
}

static int add_n(struct pprof_builder *b, const struct pprof_frame *frames, size_t n, int times,
		 int64_t value)
{
	int err = 0;

	for (int i = 0; i < times && !err; i++)
		err = pprof_add_sample(b, frames, n, &value);
	return err;
}

/* The CPU profile whose exact decoded content check_pprof.py asserts. */
static void test_cpu(void)
{
	const struct pprof_value_type cpu = { "cpu", "nanoseconds" };
	const struct pprof_mapping_desc app = {
		.start = 0x400000, .limit = 0x500000, .file_offset = 0,
		.file = "/usr/bin/app", .build_id = "0123456789abcdef0123456789abcdef01234567",
	};
	const struct pprof_mapping_desc libc = {
		.start = 0x7f0000000000, .limit = 0x7f0000200000, .file_offset = 0x28000,
		.file = "/usr/lib/x86_64-linux-gnu/libc.so.6", .build_id = "fedcba9876543210",
	};
	struct pprof_mapping_desc app_other_offset = app;
	struct pprof_builder *b = NULL;
	uint8_t *buf = NULL, *buf2 = NULL;
	size_t len = 0, len2 = 0;
	uint32_t m_app, m_libc;
	char *path = NULL;
	int err;

	err = pprof_builder_new(&cpu, 1, &cpu, CPU_PERIOD, &b);
	CHECK_INT(err, 0);
	if (err)
		return;

	m_app = pprof_add_mapping(b, &app);
	m_libc = pprof_add_mapping(b, &libc);
	CHECK_INT(m_app, 1);
	CHECK_INT(m_libc, 2);
	/* same description: same mapping; a different offset is a different mapping, so it is
	 * only probed here on a throwaway builder below, not added to the checked profile */
	CHECK_INT(pprof_add_mapping(b, &app), 1);
	app_other_offset.file_offset = 0x1000;

	{
		const struct pprof_frame s1[] = {
			NATIVE("hot_alpha", 0x401100, m_app), NATIVE("main", 0x401000, m_app) };
		const struct pprof_frame s2[] = {
			NATIVE("memcpy", 0x7f0000001000, m_libc), NATIVE("hot_beta", 0x401200, m_app),
			NATIVE("main", 0x401000, m_app) };
		const struct pprof_frame s3[] = {
			NATIVE("ns::Vec<int, std::less<int> >::at(int&) const && \"q\"", 0x401300, m_app),
			NATIVE("main", 0x401000, m_app) };
		const struct pprof_frame s4[] = { NATIVE("[other]", 0, 0) };
		const struct pprof_frame s5[] = {
			NATIVE("hot_alpha", 0x401104, m_app), NATIVE("main", 0x401000, m_app) };
		const struct pprof_frame s6[] = {
			NATIVE("bad\xff" "name\xc3", 0x401400, m_app), NATIVE("main", 0x401000, m_app) };
		const struct pprof_frame s7[] = { NATIVE("main", 0x401000, m_app) };
		const struct pprof_frame bad_mapping[] = { NATIVE("main", 0x401000, 3) };
		const struct pprof_frame no_name[] = { NATIVE(NULL, 0x401000, m_app) };
		int64_t v = CPU_PERIOD;

		/* duplicates interleaved with other stacks must still merge into their first sample */
		CHECK_INT(add_n(b, s1, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, s2, 3, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, s1, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, s3, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, s1, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, s3, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, s4, 1, 5, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, s5, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, s6, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, s7, 1, 4, CPU_PERIOD), 0);
		/* a prefix of s1 is a different stack from s1 */
		CHECK_INT(pprof_sample_count(b), 7);

		CHECK_INT(pprof_add_sample(b, s1, 0, &v), -EINVAL);
		CHECK_INT(pprof_add_sample(b, bad_mapping, 1, &v), -EINVAL);
		CHECK_INT(pprof_add_sample(b, no_name, 1, &v), -EINVAL);
		CHECK_INT(pprof_sample_count(b), 7);
	}

	pprof_set_time(b, 1700000000123456789LL, 10000000000LL);
	CHECK_INT(pprof_add_comment(b, "ember unit test"), 0);
	CHECK_INT(pprof_add_comment(b, "second <comment> & more"), 0);

	/* encoding does not change the builder: two encodes give the same bytes */
	CHECK_INT(pprof_encode(b, false, &buf, &len), 0);
	CHECK_INT(pprof_encode(b, false, &buf2, &len2), 0);
	CHECK(buf && buf2 && len == len2 && len > 0 && !memcmp(buf, buf2, len));
	if (buf)
		CHECK_INT(write_bytes("cpu.pb", buf, len), 0);

	path = out_path("cpu.pb.gz");
	CHECK(path != NULL);
	CHECK_INT(write_profile(b, path), 0);
	free(path);
	path = out_path("no-such-dir/cpu.pb.gz");
	CHECK_INT(write_profile(b, path), -ENOENT);
	free(path);

	free(buf2);
	free(buf);
	pprof_builder_free(b);

	/* mapping dedup keys on every field */
	err = pprof_builder_new(&cpu, 1, NULL, 0, &b);
	CHECK_INT(err, 0);
	if (!err) {
		CHECK_INT(pprof_add_mapping(b, &app), 1);
		CHECK_INT(pprof_add_mapping(b, &app_other_offset), 2);
		CHECK_INT(pprof_add_mapping(b, &app), 1);
		CHECK_INT(pprof_add_mapping(b, &libc), 3);
	}
	pprof_builder_free(b);
}

/* A heap-style profile: four values per sample, each summed on merge. */
static void test_memory(void)
{
	const struct pprof_value_type types[] = {
		{ "alloc_objects", "count" }, { "alloc_space", "bytes" },
		{ "inuse_objects", "count" }, { "inuse_space", "bytes" },
	};
	const struct pprof_value_type space = { "space", "bytes" };
	const struct pprof_mapping_desc app = {
		.start = 0x400000, .limit = 0x500000, .file = "/usr/bin/app", .build_id = NULL,
	};
	struct pprof_builder *b = NULL;
	uint32_t m;
	char *path;
	int err;

	err = pprof_builder_new(types, 4, &space, 524288, &b);
	CHECK_INT(err, 0);
	if (err)
		return;
	m = pprof_add_mapping(b, &app);
	CHECK_INT(m, 1);
	{
		const struct pprof_frame a[] = {
			NATIVE("site_a", 0x401010, m), NATIVE("main", 0x401000, m) };
		const struct pprof_frame c[] = {
			NATIVE("site_b", 0x401020, m), NATIVE("main", 0x401000, m) };
		const int64_t va[] = { 1, 64, 1, 64 };
		const int64_t vc[] = { 3, 3000, 0, 0 };

		CHECK_INT(pprof_add_sample(b, a, 2, va), 0);
		CHECK_INT(pprof_add_sample(b, c, 2, vc), 0);
		CHECK_INT(pprof_add_sample(b, a, 2, va), 0);
	}
	CHECK_INT(pprof_sample_count(b), 2);
	path = out_path("mem.pb.gz");
	CHECK(path != NULL);
	CHECK_INT(write_profile(b, path), 0);
	free(path);
	pprof_builder_free(b);
}

/* The largest profile Pyroscope takes (16000 samples) at 64 frames each: every stack distinct,
 * frames shared between stacks as in a real process. */
static void test_big(void)
{
	const struct pprof_value_type cpu = { "cpu", "nanoseconds" };
	const struct pprof_mapping_desc app = {
		.start = 0x400000, .limit = 0x800000, .file = "/usr/bin/big", .build_id = "beef",
	};
	struct pprof_frame frames[64];
	struct pprof_builder *b = NULL;
	char names[64][32];
	uint32_t m;
	char *path;
	int err;

	err = pprof_builder_new(&cpu, 1, &cpu, CPU_PERIOD, &b);
	CHECK_INT(err, 0);
	if (err)
		return;
	m = pprof_add_mapping(b, &app);
	for (int s = 0; s < 16000 && !err; s++) {
		for (int i = 0; i < 64; i++) {
			/* frame i of stack s: one of 64 * 251 functions, so stacks share frames */
			unsigned fn = (unsigned)i * 251 + (unsigned)(s * (i + 1)) % 251;

			snprintf(names[i], sizeof(names[i]), "fn_%u", fn);
			frames[i] = (struct pprof_frame)NATIVE(names[i], 0x400000 + (uint64_t)fn * 16, m);
		}
		frames[0].address += (uint64_t)s << 20; /* leaf unique per stack: 16000 stacks */
		frames[0].mapping_id = 0;
		err = pprof_add_sample(b, frames, 64, &(int64_t){ CPU_PERIOD });
	}
	CHECK_INT(err, 0);
	CHECK_INT(pprof_sample_count(b), 16000);
	path = out_path("big.pb.gz");
	CHECK(path != NULL);
	CHECK_INT(write_profile(b, path), 0);
	free(path);
	pprof_builder_free(b);
}

/* The Python profile whose exact decoded content check_pprof.py asserts: "run" in two files is
 * two functions, "run" at two lines of one file is one function at two locations, a function
 * defined again lower in its file is another function, and a native frame under Python keeps
 * its address and mapping. */
static void test_python(void)
{
	const struct pprof_value_type cpu = { "cpu", "nanoseconds" };
	const struct pprof_mapping_desc libc = {
		.start = 0x7f0000000000, .limit = 0x7f0000200000, .file_offset = 0x28000,
		.file = "/usr/lib/x86_64-linux-gnu/libc.so.6", .build_id = "fedcba9876543210",
	};
	struct pprof_builder *b = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	uint32_t m;
	char *path;
	int err;

	err = pprof_builder_new(&cpu, 1, &cpu, CPU_PERIOD, &b);
	CHECK_INT(err, 0);
	if (err)
		return;
	m = pprof_add_mapping(b, &libc);
	CHECK_INT(m, 1);
	{
		const struct pprof_frame p1[] = {
			PY("run", "/app/a.py", 10, 5), PY("<module>", "/app/main.py", 3, 1) };
		const struct pprof_frame p2[] = {
			PY("run", "/app/b.py", 20, 18), PY("<module>", "/app/main.py", 3, 1) };
		const struct pprof_frame p3[] = {
			PY("run", "/app/a.py", 12, 5), PY("<module>", "/app/main.py", 3, 1) };
		const struct pprof_frame p4[] = {
			PY("read", "/app/caf\xe9.py", 7, 6), PY("<module>", "/app/main.py", 4, 1) };
		const struct pprof_frame p4_sanitized[] = {
			PY("read", "/app/caf?.py", 7, 6), PY("<module>", "/app/main.py", 4, 1) };
		const struct pprof_frame p5[] = {
			NATIVE("memcpy", 0x7f0000001000, m), PY("run", "/app/a.py", 10, 5),
			PY("<module>", "/app/main.py", 3, 1) };
		const struct pprof_frame p6[] = {
			PY("run", "/app/a.py", 40, 38), PY("<module>", "/app/main.py", 5, 1) };

		CHECK_INT(add_n(b, p1, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, p2, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, p1, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, p3, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, p4, 2, 1, CPU_PERIOD), 0);
		/* an invalid filename is stored sanitized: the same raw bytes again, and the
		 * sanitized name, are the same frames */
		CHECK_INT(add_n(b, p4, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, p4_sanitized, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, p5, 3, 1, CPU_PERIOD), 0);
		CHECK_INT(add_n(b, p6, 2, 1, CPU_PERIOD), 0);
		CHECK_INT(pprof_sample_count(b), 6);
	}
	CHECK_INT(pprof_encode(b, false, &buf, &len), 0);
	if (buf)
		CHECK_INT(write_bytes("py.pb", buf, len), 0);
	free(buf);
	path = out_path("py.pb.gz");
	CHECK(path != NULL);
	CHECK_INT(write_profile(b, path), 0);
	free(path);
	pprof_builder_free(b);
}

/* 16000 distinct Python stacks of 32 frames, all at address 0 without a mapping, so the
 * location index holds ~24000 entries that differ only by function, file and line. */
static void test_python_big(void)
{
	const struct pprof_value_type cpu = { "cpu", "nanoseconds" };
	struct pprof_frame frames[32];
	struct pprof_builder *b = NULL;
	char names[32][32], files[32][32];
	char *path;
	int err;

	err = pprof_builder_new(&cpu, 1, &cpu, CPU_PERIOD, &b);
	CHECK_INT(err, 0);
	if (err)
		return;
	for (int s = 0; s < 16000 && !err; s++) {
		for (int i = 0; i < 32; i++) {
			/* frame i of stack s: function i of 32 (one per file), at one of 251 lines */
			int64_t line = 100 + (s * (i + 1)) % 251;

			snprintf(names[i], sizeof(names[i]), "fn_%d", i);
			snprintf(files[i], sizeof(files[i]), "/app/mod_%d.py", i);
			frames[i] = (struct pprof_frame)PY(names[i], files[i], line, 100);
		}
		frames[0].line = 1000 + s; /* leaf line unique per stack: 16000 stacks */
		err = pprof_add_sample(b, frames, 32, &(int64_t){ CPU_PERIOD });
	}
	CHECK_INT(err, 0);
	CHECK_INT(pprof_sample_count(b), 16000);
	path = out_path("pybig.pb.gz");
	CHECK(path != NULL);
	CHECK_INT(write_profile(b, path), 0);
	free(path);
	pprof_builder_free(b);
}

static void test_new_errors(void)
{
	const struct pprof_value_type dash = { "alloc-space", "bytes" };
	const struct pprof_value_type ok = { "cpu", "nanoseconds" };
	struct pprof_builder *b = NULL;

	CHECK_INT(pprof_builder_new(&ok, 0, NULL, 0, &b), -EINVAL);
	/* Pyroscope rejects sample types containing '-' */
	CHECK_INT(pprof_builder_new(&dash, 1, NULL, 0, &b), -EINVAL);
	CHECK(b == NULL);
	pprof_builder_free(NULL);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "%s: mkdir %s: %s\n", argv[0], outdir, strerror(errno));
		return 1;
	}
	/* a stale file from an earlier run must not pass for this run's output */
	for (size_t i = 0; i < sizeof(outputs) / sizeof(outputs[0]); i++) {
		char *path = out_path(outputs[i]);

		if (path)
			(void)unlink(path);
		free(path);
	}
	test_new_errors();
	test_cpu();
	test_memory();
	test_big();
	test_python();
	test_python_big();
	return check_exit("test_pprof");
}
