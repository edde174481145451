/* unit.pyoffsets: CPython offsets read from each interpreter's ELF file (Debian's
 * /usr/bin/python3.11, static, and pyenv's libpython3.1X builds), judged by the interpreter:
 * py_offsets.py reads its own memory at those offsets and compares with the C API and its
 * objects. Then _Py_DebugOffsets images and fake interpreters that must be refused.
 * Usage: unit_pyoffsets PY_OFFSETS.PY FIXTURE_DIR */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "elffile.h"
#include "pyoffsets.h"

#define DEBIAN_PYTHON "/usr/bin/python3.11"

static int offsets_of_file(const char *path, struct pyoffsets_elf *ret)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;
	Elf *e;

	if (fd < 0)
		return -errno;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	err = e ? pyoffsets_from_elf(e, path, ret) : -EINVAL;
	elf_end(e);
	close(fd);
	return err;
}

#define ARG(f) n += snprintf(cmd + n, sizeof(cmd) - n, " " #f "=%u", (unsigned int)o->f)

/* 1 if python ran and every check passed. */
static int judge(const char *py, const char *script, int *ran)
{
	char cmd[8192], line[1024], elf[512];
	unsigned int hex = 0;
	int debug = 0, ft = 0, ok = 0, bad = 0, done = 0, err;
	struct pyoffsets_elf pe;
	const struct pyoffsets *o = &pe.off;
	size_t n;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "'%s' -I -S '%s' where 2>/dev/null", py, script);
	f = popen(cmd, "r");
	if (!f)
		return 0;
	if (!fgets(line, sizeof(line), f) || sscanf(line, "%x %511s %d %d", &hex, elf, &debug, &ft) != 4) {
		pclose(f);
		return 0;
	}
	pclose(f);
	(*ran)++;
	err = offsets_of_file(elf, &pe);
	printf("pyoffsets: %s: CPython %#x in %s%s%s: %s\n", py, hex, elf,
	       debug ? " (debug build)" : "", ft ? " (free-threaded)" : "",
	       err ? strerror(-err) : "offsets found");
	if (debug || ft) { /* must be refused, never guessed */
		CHECK_INT(err, -ENOTSUP);
		return err == -ENOTSUP;
	}
	CHECK_INT(err, 0);
	if (err)
		return 0;
	if (o->version_hex == 0x030a0000)
		CHECK_INT(hex >> 16, 0x030a);
	else
		CHECK_INT(o->version_hex, hex);

	n = (size_t)snprintf(cmd, sizeof(cmd), "'%s' -I -S '%s' check", py, script);
	ARG(instr_kind); ARG(runtime_interpreters_head); ARG(runtime_finalizing);
	ARG(interp_next); ARG(interp_threads_head); ARG(interp_id); ARG(tstate_next);
	ARG(tstate_interp); ARG(tstate_frame); ARG(cframe_current_frame); ARG(tstate_thread_id);
	ARG(tstate_native_thread_id); ARG(frame_previous); ARG(frame_code); ARG(frame_instr);
	ARG(frame_is_entry); ARG(frame_owner); ARG(code_firstlineno); ARG(code_filename);
	ARG(code_name); ARG(code_qualname); ARG(code_linetable); ARG(code_code_adaptive);
	ARG(code_code); ARG(object_type); ARG(unicode_length); ARG(unicode_state);
	ARG(unicode_ascii_data); ARG(unicode_compact_data); ARG(bytes_size); ARG(bytes_sval);
	f = popen(cmd, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "ok ", 3))
			ok++;
		else if (!strcmp(line, "done\n"))
			done = 1;
		else {
			bad++;
			fprintf(stderr, "pyoffsets: %s: %s", py, line);
		}
	}
	CHECK_INT(pclose(f), 0);
	printf("pyoffsets: %s: %s%u.%u, _PyRuntime at %#llx (%llu bytes): %d checks passed, %d failed\n",
	       py, hex >> 24 == 3 && ((hex >> 16) & 0xff) >= 13 ? "_Py_DebugOffsets of " : "table ",
	       hex >> 24, (hex >> 16) & 0xff, (unsigned long long)pe.runtime_addr,
	       (unsigned long long)pe.runtime_size, ok, bad);
	CHECK(done);
	CHECK_INT(bad, 0);
	CHECK(ok >= 24);
	return done && !bad && ok >= 24;
}

/* A valid 3.13 _Py_DebugOffsets image with the 3.13.0 values (PYTHON.md 2). */
static void put(uint8_t *b, uint32_t off, uint64_t v)
{
	memcpy(b + off, &v, 8);
}

static void image_313(uint8_t *b)
{
	memset(b, 0, 584);
	memcpy(b, "xdebugpy", 8);
	put(b, 8, 0x030d00f0);
	put(b, 24, 283320); put(b, 32, 1520); put(b, 40, 632);		 /* runtime */
	put(b, 48, 95000); put(b, 56, 7272); put(b, 64, 7264); put(b, 72, 7344); /* interp */
	put(b, 152, 320); put(b, 160, 0); put(b, 168, 8); put(b, 176, 16); /* tstate */
	put(b, 184, 72); put(b, 192, 152); put(b, 200, 160); put(b, 216, 32);
	put(b, 224, 80); put(b, 232, 8); put(b, 240, 0); put(b, 248, 56); /* frame */
	put(b, 256, 72); put(b, 264, 70);
	put(b, 272, 208); put(b, 280, 112); put(b, 288, 120); put(b, 296, 128); /* code */
	put(b, 304, 136); put(b, 312, 68); put(b, 320, 52); put(b, 344, 200);
	put(b, 352, 16); put(b, 360, 8);				 /* pyobject */
	put(b, 512, 33); put(b, 520, 16); put(b, 528, 32);		 /* bytes */
	put(b, 536, 40); put(b, 544, 32); put(b, 552, 16); put(b, 560, 40); /* unicode */
}

/* A 3.14 image: the sub-struct places of py-spy's v3_14_0.rs, the values of PYTHON.md 1.3.
 * Not checked against a real 3.14 here (none on the machine): it pins the decoder's layout. */
static void image_314(uint8_t *b)
{
	memset(b, 0, 760);
	memcpy(b, "xdebugpy", 8);
	put(b, 8, 0x030e00f0);
	put(b, 24, 300000); put(b, 40, 808);					/* runtime */
	put(b, 48, 100000); put(b, 56, 7280); put(b, 64, 7272); put(b, 72, 7344); /* interp */
	put(b, 176, 400); put(b, 192, 8); put(b, 200, 16); put(b, 208, 72);	/* tstate */
	put(b, 216, 152); put(b, 224, 160);
	put(b, 248, 88); put(b, 256, 8); put(b, 264, 0); put(b, 272, 56); put(b, 288, 74); /* frame */
	put(b, 312, 216); put(b, 320, 112); put(b, 328, 120); put(b, 336, 128);	/* code */
	put(b, 344, 136); put(b, 352, 68); put(b, 384, 208);
	put(b, 400, 16); put(b, 408, 8);					/* pyobject */
	put(b, 592, 33); put(b, 600, 16); put(b, 608, 32);			/* bytes */
	put(b, 616, 40); put(b, 624, 32); put(b, 632, 16); put(b, 640, 40);	/* unicode */
}

static void test_refusals(const char *fixtures)
{
	uint8_t img[1024];
	struct pyoffsets o;
	struct pyoffsets_elf pe;
	char path[1024];

	CHECK_INT(pyoffsets_for_version(0x030900f0, &o), -ENOTSUP);
	CHECK_INT(pyoffsets_for_version(0x030d00f0, &o), -ENOTSUP); /* 3.13+: debug offsets only */
	CHECK_INT(pyoffsets_for_version(0x040000f0, &o), -ENOTSUP);
	CHECK_INT(pyoffsets_for_version(0x030c01f0, &o), 0);
	CHECK_INT(o.code_code_adaptive, 192);
	CHECK_INT(o.frame_read, 78);

	image_313(img);
	CHECK_INT(pyoffsets_from_debug(img, 584, 0x030d00f0, &o), 0);
	CHECK_INT(o.runtime_interpreters_head, 632);
	CHECK_INT(o.interp_threads_head, 7344);
	CHECK_INT(o.tstate_frame, 72);
	CHECK_INT(o.frame_instr, 56);
	CHECK_INT(o.code_code_adaptive, 200);
	CHECK_INT(o.unicode_compact_data, 56);
	CHECK_INT(o.instr_kind, PYOFF_INSTR_PTR);
	CHECK_INT(o.frame_code_tag_mask, 0);
	CHECK_INT(pyoffsets_from_debug(img, 583, 0, &o), -EINVAL);
	CHECK_INT(pyoffsets_from_debug(img, 16, 0, &o), -EINVAL);
	CHECK_INT(pyoffsets_from_debug(img, 584, 0x030d01f0, &o), -ENOTSUP); /* not Py_Version */
	put(img, 16, 1);
	CHECK_INT(pyoffsets_from_debug(img, 584, 0, &o), -ENOTSUP); /* free-threaded */
	image_314(img);
	CHECK_INT(pyoffsets_from_debug(img, 760, 0x030e00f0, &o), 0);
	CHECK_INT(o.runtime_interpreters_head, 808);
	CHECK_INT(o.interp_next, 7272);
	CHECK_INT(o.interp_threads_head, 7344);
	CHECK_INT(o.frame_owner, 74);
	CHECK_INT(o.code_code_adaptive, 208);
	CHECK_INT(o.frame_code_tag_mask, 3);
	CHECK_INT(pyoffsets_from_debug(img, 759, 0, &o), -EINVAL);
	image_313(img);
	put(img, 8, 0x030e00f0); /* a 3.13 layout claiming 3.14: the fixed values catch it */
	CHECK_INT(pyoffsets_from_debug(img, 760, 0, &o), -EINVAL);
	image_313(img);
	put(img, 8, 0x030f00a1);
	CHECK_INT(pyoffsets_from_debug(img, 584, 0, &o), -ENOTSUP); /* no decoder */
	image_313(img);
	img[0] = 'X';
	CHECK_INT(pyoffsets_from_debug(img, 584, 0, &o), -ENOENT);
	image_313(img);
	put(img, 248, 80); /* instr_ptr at the frame's size */
	CHECK_INT(pyoffsets_from_debug(img, 584, 0, &o), -EINVAL);
	image_313(img);
	put(img, 360, 24); /* ob_type of a free-threaded header */
	CHECK_INT(pyoffsets_from_debug(img, 584, 0, &o), -EINVAL);
	image_313(img);
	put(img, 224, 0); /* a zero size */
	CHECK_INT(pyoffsets_from_debug(img, 584, 0, &o), -EINVAL);
	image_313(img);
	put(img, 344, 1u << 30); /* co_code_adaptive past the code object */
	CHECK_INT(pyoffsets_from_debug(img, 584, 0, &o), -EINVAL);

	/* Fake interpreters: a plain 3.11, a debug 3.11, a free-threaded 3.13, a 3.13 without the
	 * cookie, 3.15, a 3.10 by name and an unknown one without Py_Version. */
#define FIX(name) (snprintf(path, sizeof(path), "%s/libpyfix_%s.so", fixtures, name), path)
	CHECK_INT(offsets_of_file(FIX("311"), &pe), 0);
	CHECK_INT(pe.off.version_hex, 0x030b07f0);
	CHECK_INT(pe.runtime_size, 4096);
	CHECK_INT(offsets_of_file(FIX("311d"), &pe), -ENOTSUP);
	CHECK_INT(offsets_of_file(FIX("313t"), &pe), -ENOTSUP);
	CHECK_INT(offsets_of_file(FIX("313nocookie"), &pe), -EINVAL);
	CHECK_INT(offsets_of_file(FIX("315"), &pe), -ENOTSUP);
	CHECK_INT(offsets_of_file(FIX("nover"), &pe), -ENOTSUP);
	{
		int fd = open(FIX("nover"), O_RDONLY | O_CLOEXEC);
		Elf *e = fd >= 0 ? elf_begin(fd, ELF_C_READ_MMAP, NULL) : NULL;

		CHECK(e != NULL);
		CHECK_INT(pyoffsets_from_elf(e, "/usr/lib/libpython3.10.so.1.0", &pe), 0);
		CHECK_INT(pe.off.version_hex, 0x030a0000);
		CHECK_INT(pe.off.line_format, PYLINE_FORMAT_310);
		CHECK_INT(pyoffsets_from_elf(e, "/usr/lib/libpython3.9.so.1.0", &pe), -ENOTSUP);
		CHECK_INT(pyoffsets_from_elf(e, "/usr/bin/python3.100", &pe), -ENOTSUP);
		elf_end(e);
		if (fd >= 0)
			close(fd);
	}
	CHECK_INT(offsets_of_file("/bin/sh", &pe), -ENOENT);
}

int main(int argc, char **argv)
{
	const char *script = argc > 1 ? argv[1] : "py_offsets.py";
	const char *fixtures = argc > 2 ? argv[2] : ".";
	const char *home = getenv("HOME");
	char pattern[1024];
	int ran = 0, passed = 0, debian = 0;
	glob_t g = { 0 };

	elffile_init();
	test_refusals(fixtures);

	debian = judge(DEBIAN_PYTHON, script, &ran);
	passed += debian;
	if (getenv("PYENV_ROOT"))
		snprintf(pattern, sizeof(pattern), "%s/versions/3.1[0-9]*/bin/python3",
			 getenv("PYENV_ROOT"));
	else
		snprintf(pattern, sizeof(pattern), "%s/.pyenv/versions/3.1[0-9]*/bin/python3",
			 home ? home : "/root");
	if (glob(pattern, 0, NULL, &g) == 0)
		for (size_t i = 0; i < g.gl_pathc; i++)
			passed += judge(g.gl_pathv[i], script, &ran);
	globfree(&g);
	printf("pyoffsets: %d CPython version(s) ran, %d matched their own memory; Debian's %s %s\n",
	       ran, passed, DEBIAN_PYTHON, debian ? "matched" : "DID NOT MATCH OR RUN");
	CHECK(debian);
	CHECK(passed >= 4);
	CHECK_INT(passed, ran);
	return check_exit("unit.pyoffsets");
}
