/* unit.pycode: code objects read from a live interpreter by pycode_resolve() over
 * process_vm_readv (our own child, no root), for every CPython 3.10+ on the machine, each
 * compared with what the interpreter itself says (py_codes.py): qualname, name, file (with
 * 1-, 2- and 4-byte str kinds), first line and line table; then garbage from a buffer.
 * Usage: unit_pycode PY_CODES.PY PY_OFFSETS.PY */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "elffile.h"
#include "pycode.h"

#define DEBIAN_PYTHON "/usr/bin/python3.11"

static int remote_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
	pid_t pid = *(pid_t *)ctx;
	struct iovec l = { buf, len }, r = { (void *)(uintptr_t)addr, len };
	ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EFAULT;
}

struct image {
	uint64_t base;
	const uint8_t *data;
	size_t len;
};

static int image_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
	const struct image *im = ctx;

	if (addr < im->base || addr - im->base > im->len || im->len - (addr - im->base) < len)
		return -EFAULT;
	memcpy(buf, im->data + (addr - im->base), len);
	return 0;
}

/* Hex to bytes in place; "-" is empty. Returns the length or -1. */
static long unhex(char *s)
{
	size_t n = strlen(s), i;

	if (!strcmp(s, "-")) {
		s[0] = '\0';
		return 0;
	}
	if (n % 2)
		return -1;
	for (i = 0; i < n / 2; i++) {
		unsigned int v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		s[i] = (char)v;
	}
	s[i] = '\0';
	return (long)i;
}

static int elf_offsets(const char *py, const char *where_script, struct pyoffsets *ret)
{
	char cmd[4096], line[1024], path[512];
	struct pyoffsets_elf pe;
	unsigned int hex;
	int fd, err = -ENOENT;
	FILE *f;
	Elf *e;

	snprintf(cmd, sizeof(cmd), "'%s' -I -S '%s' where 2>/dev/null", py, where_script);
	f = popen(cmd, "r");
	if (!f)
		return -ENOENT;
	if (!fgets(line, sizeof(line), f) || sscanf(line, "%x %511s", &hex, path) != 2) {
		pclose(f);
		return -ENOENT;
	}
	pclose(f);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (e)
		err = pyoffsets_from_elf(e, path, &pe);
	elf_end(e);
	close(fd);
	if (!err)
		*ret = pe.off;
	return err;
}

/* 1 if the interpreter ran and every code object matched. */
static int judge(const char *py, const char *script, const char *where_script)
{
	int in[2], out[2], matched = 0, bad = 0, total = 0, nonascii = 0;
	struct pycode_types types = { 0 };
	static struct pycode_info info;
	static char line[1 << 20];
	struct pyoffsets off;
	pid_t pid;
	FILE *f;

	if (elf_offsets(py, where_script, &off))
		return 0;
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		return 0;
	pid = fork();
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execl(py, py, "-I", "-S", script, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	f = fdopen(out[0], "r");
	while (f && fgets(line, sizeof(line), f)) {
		char *tok[8], *save = NULL;
		int nt = 0;

		line[strcspn(line, "\n")] = '\0';
		if (!strcmp(line, "ready"))
			break;
		for (char *t = strtok_r(line, " ", &save); t && nt < 8; t = strtok_r(NULL, " ", &save))
			tok[nt++] = t;
		if (nt == 4 && !strcmp(tok[0], "types")) {
			types.code = strtoull(tok[1], NULL, 10);
			types.str = strtoull(tok[2], NULL, 10);
			types.bytes = strtoull(tok[3], NULL, 10);
			continue;
		}
		if (nt != 7 || strcmp(tok[0], "code"))
			continue;
		{
			uint64_t addr = strtoull(tok[1], NULL, 10);
			long first = strtol(tok[2], NULL, 10), tl;
			int err;

			unhex(tok[3]);
			unhex(tok[4]);
			unhex(tok[5]);
			tl = unhex(tok[6]);
			total++;
			err = pycode_resolve(remote_read, &pid, &off, &types, addr, &info);
			if (!err && !strcmp(info.qualname, tok[3]) && !strcmp(info.name, tok[4]) &&
			    !strcmp(info.filename, tok[5]) && info.firstlineno == first &&
			    (long)info.linetable_len == tl &&
			    (!tl || !memcmp(info.linetable, tok[6], (size_t)tl))) {
				matched++;
				for (const char *p = info.qualname; *p; p++)
					if (*p & 0x80) {
						nonascii++;
						break;
					}
			} else if (bad++ < 5) {
				fprintf(stderr, "pycode: %s: code at %#llx: %s (got \"%s\" \"%s\" %d, "
					"want \"%s\" \"%s\" %ld)\n",
					py, (unsigned long long)addr, err ? strerror(-err) : "differs",
					err ? "" : info.qualname, err ? "" : info.filename,
					err ? 0 : info.firstlineno, tok[3], tok[5], first);
			}
			pycode_info_fini(&info);
		}
	}
	/* Not code objects: the str type, a NULL page, an unmapped address. */
	if (types.str) {
		CHECK_INT(pycode_resolve(remote_read, &pid, &off, &types, types.str, &info), -EINVAL);
		CHECK(pycode_resolve(remote_read, &pid, &off, &types, 0x10, &info) < 0);
		CHECK_INT(pycode_resolve(remote_read, &pid, &off, &types, 0x7ff0, &info), -EFAULT);
	}
	close(in[1]);
	if (f)
		fclose(f);
	waitpid(pid, NULL, 0);
	printf("pycode: %s: CPython %#x: %d of %d code objects read back equal (%d non-ASCII "
	       "qualnames), %d differ\n", py, off.version_hex, matched, total, nonascii, bad);
	CHECK(total > 300);
	CHECK_INT(bad, 0);
	CHECK(nonascii >= 3);
	return total > 300 && !bad && nonascii >= 3;
}

static void put64(uint8_t *b, uint32_t at, uint64_t v)
{
	memcpy(b + at, &v, 8);
}

/* A 3.12 code object with ASCII strings in a buffer, then ways to break it. */
static void test_image(void)
{
	static uint8_t mem[4096];
	static struct pycode_info info;
	struct image im = { 0x10000, mem, sizeof(mem) };
	struct pyoffsets off;
	int32_t line, boff;

	CHECK_INT(pyoffsets_for_version(0x030c01f0, &off), 0);
	/* code at +0, name str at +512, qualname +640, file +768, linetable bytes at +1024; every
	 * object live (reference count 1) */
	put64(mem, 0, 1);
	put64(mem, 8, 0x1234);
	memcpy(mem + off.code_firstlineno, &(int32_t){ 7 }, 4);
	put64(mem, off.code_name, 0x10000 + 512);
	put64(mem, off.code_qualname, 0x10000 + 640);
	put64(mem, off.code_filename, 0x10000 + 768);
	put64(mem, off.code_linetable, 0x10000 + 1024);
	for (uint32_t s = 512; s <= 768; s += 128) {
		const char *txt = s == 512 ? "run" : s == 640 ? "Job.run" : "/app/job.py";
		put64(mem, s, 1);
		put64(mem, s + 16, strlen(txt));
		memcpy(mem + s + 32, &(uint32_t){ (1u << 2) | (1u << 5) | (1u << 6) }, 4);
		memcpy(mem + s + 40, txt, strlen(txt));
	}
	put64(mem, 1024, 1);
	put64(mem, 1024 + 16, 3);
	memcpy(mem + 1024 + 32, "\x80\x00\xd8", 3); /* 1 unit same line, then +1 (ONE_LINE1) */
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), 0);
	CHECK_STR(info.qualname, "Job.run");
	CHECK_STR(info.name, "run");
	CHECK_STR(info.filename, "/app/job.py");
	CHECK_INT(info.firstlineno, 7);
	CHECK_INT(pycode_instr_offset(&off, 0x10000, 0x10000 + 192 + 2, &boff), 0);
	CHECK_INT(boff, 2);
	CHECK_INT(pycode_line(&info, boff, &line), 0);
	CHECK_INT(line, 8);
	CHECK_INT(pycode_instr_offset(&off, 0x10000, 0x10000 + 190, &boff), 0);
	CHECK_INT(boff, -1);
	CHECK_INT(pycode_line(&info, boff, &line), 0);
	CHECK_INT(line, 7);
	CHECK_INT(pycode_instr_offset(&off, 0x10000, 0x10000 + 193, &boff), -EINVAL);
	CHECK_INT(pycode_instr_offset(&off, 0x10000, 0x1000, &boff), -EINVAL);
	pycode_info_fini(&info);
	pycode_info_fini(&info);
	pycode_info_fini(NULL);

	/* A wrong type, a negative or huge length, a non-compact str, a bad kind, a NUL. */
	{
		struct pycode_types t = { .code = 0x9999 };
		CHECK_INT(pycode_resolve(image_read, &im, &off, &t, 0x10000, &info), -EINVAL);
	}
	/* Freed by pymalloc under the sample: the reference count holds 0 or a free-list pointer
	 * (the code object's, or its name's, whose memory now holds another string). */
	put64(mem, 0, 0);
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), -EINVAL);
	put64(mem, 0, 0x7f1234567000ULL);
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), -EINVAL);
	put64(mem, 0, 0xffffffffULL); /* 3.12's immortal objects: live */
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), 0);
	pycode_info_fini(&info);
	put64(mem, 512, 0x55d0c0ffe000ULL);
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), -EINVAL);
	put64(mem, 512, 1);
	put64(mem, 512 + 16, (uint64_t)-1);
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), -EINVAL);
	put64(mem, 512 + 16, PYCODE_NAME_MAX + 1);
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), -E2BIG);
	put64(mem, 512 + 16, 3);
	memcpy(mem + 512 + 32, &(uint32_t){ (1u << 2) | (1u << 6) }, 4);
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), -EINVAL);
	memcpy(mem + 512 + 32, &(uint32_t){ (3u << 2) | (1u << 5) }, 4);
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), -EINVAL);
	memcpy(mem + 512 + 32, &(uint32_t){ (1u << 2) | (1u << 5) | (1u << 6) }, 4);
	mem[512 + 41] = 0;
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), -EINVAL);
	mem[512 + 41] = 'u';
	put64(mem, 1024 + 16, PYLINE_MAX_TABLE + 1);
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), -E2BIG);
	put64(mem, 1024 + 16, 5000); /* runs past the image */
	CHECK_INT(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info), -EFAULT);
	put64(mem, 1024, 1);
	put64(mem, 1024 + 16, 3);
	put64(mem, off.code_filename, UINT64_MAX - 8);
	CHECK(pycode_resolve(image_read, &im, &off, NULL, 0x10000, &info) < 0);
	CHECK(pycode_resolve(image_read, &im, &off, NULL, 0, &info) < 0);
	CHECK(pycode_resolve(image_read, &im, &off, NULL, UINT64_MAX - 4, &info) < 0);
}

int main(int argc, char **argv)
{
	const char *script = argc > 1 ? argv[1] : "py_codes.py";
	const char *where = argc > 2 ? argv[2] : "py_offsets.py";
	const char *home = getenv("HOME");
	char pattern[1024];
	int ran = 0, debian;
	glob_t g = { 0 };

	signal(SIGPIPE, SIG_IGN);
	elffile_init();
	test_image();
	debian = judge(DEBIAN_PYTHON, script, where);
	ran += debian;
	snprintf(pattern, sizeof(pattern), "%s/.pyenv/versions/3.1[0-9]*/bin/python3",
		 home ? home : "/root");
	if (getenv("PYENV_ROOT"))
		snprintf(pattern, sizeof(pattern), "%s/versions/3.1[0-9]*/bin/python3",
			 getenv("PYENV_ROOT"));
	if (glob(pattern, 0, NULL, &g) == 0)
		for (size_t i = 0; i < g.gl_pathc; i++)
			ran += judge(g.gl_pathv[i], script, where);
	globfree(&g);
	printf("pycode: %d CPython version(s) matched; Debian's %s %s\n", ran, DEBIAN_PYTHON,
	       debian ? "matched" : "DID NOT MATCH OR RUN");
	CHECK(debian);
	CHECK(ran >= 4);
	return check_exit("unit.pycode");
}
