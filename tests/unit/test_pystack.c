/* unit.pystack: Python runs merged into native stacks as each CPython version lays them out
 * (3.10 one eval frame per Python frame, 3.11 is_entry, 3.12+ entry marker frames), the
 * interpreter's helper frames hidden, unresolvable frames kept in place, a native unwind that
 * stops short marked, and the BPF description refusing offsets the walk cannot read. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "pystack.h"

/* A fake resolver: code address N is function "fN" in "/app.py", line 100 + instr; code 99
 * is an interpreter helper; code 98 is stale; code 97 unreadable. */
static int fake_resolve(void *ctx, const struct ember_py_frame *f, struct pyresolve_frame *ret)
{
	static char names[64][8];
	uint64_t a = f->code & EMBER_PYF_ADDR_MASK;

	(void)ctx;
	if (a == 98)
		return -ESTALE;
	if (a == 97)
		return -EFAULT;
	snprintf(names[a % 64], sizeof(names[0]), "f%u", (unsigned)a);
	ret->name = names[a % 64];
	ret->filename = "/app.py";
	ret->line = 100 + f->instr;
	ret->start_line = 100;
	ret->hidden = a == 99;
	return 0;
}

static struct sym_frame nat(const char *name)
{
	struct sym_frame f;

	symframe_synthetic(&f, name);
	f.address = 0x1000;
	return f;
}

static struct ember_py_frame pyf(uint64_t code, uint64_t flags, int32_t instr)
{
	return (struct ember_py_frame){ .code = code | flags, .key = 1, .instr = instr };
}

static struct ember_py_frame marker(void)
{
	return (struct ember_py_frame){ .code = EMBER_PYF_MARKER };
}

/* "a;b;c" root first, as a flame graph reads. */
static const char *render(const struct sym_frame *f, size_t n)
{
	static char buf[4096];
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = n; i-- > 0;)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", f[i].name, i ? ";" : "");
	return buf;
}

#define EV "_PyEval_EvalFrameDefault"

static void test_311_runs(void)
{
	/* <module> -> main -> (sorted, C) -> key -> leaf; native leaf first. */
	struct sym_frame native[] = { nat("memcpy"), nat(EV), nat("list_sort"), nat("builtin_sorted"),
				      nat(EV), nat("PyEval_EvalCode"), nat("main"), nat("_start") };
	struct ember_py_frame py[] = { pyf(5, 0, 2), pyf(4, EMBER_PYF_ENTRY, 0), pyf(2, 0, 4),
				       pyf(1, EMBER_PYF_ENTRY, 6) };
	struct sym_frame out[64];
	bool rooted;
	size_t n = pystack_merge_with(fake_resolve, NULL, false, native, 8, py, 4, EMBER_PY_COMPLETE,
				      out, 64, &rooted);

	CHECK_STR(render(out, n), "_start;main;PyEval_EvalCode;f1;f2;builtin_sorted;list_sort;f4;f5;memcpy");
	CHECK(!rooted);
	/* file, lines and no address for Python frames; native frames untouched */
	CHECK_STR(out[1].filename, "/app.py");
	CHECK_INT(out[1].line, 102);
	CHECK_INT(out[1].start_line, 100);
	CHECK_INT(out[1].address, 0);
	CHECK_INT(out[0].address, 0x1000);
	CHECK(out[0].filename == NULL);
}

static void test_312_markers_and_helpers(void)
{
	struct sym_frame native[] = { nat(EV), nat("map_next"), nat(EV), nat("Py_RunMain") };
	/* run 1: f7 (helper 99 hidden), marker; run 2: f3, f1, marker */
	struct ember_py_frame py[] = { pyf(7, 0, 0), pyf(99, 0, 0), marker(), pyf(3, 0, 0),
				       pyf(1, 0, 0), marker() };
	struct sym_frame out[64];
	bool rooted;
	size_t n = pystack_merge_with(fake_resolve, NULL, false, native, 4, py, 6, EMBER_PY_COMPLETE,
				      out, 64, &rooted);

	CHECK_STR(render(out, n), "Py_RunMain;f1;f3;map_next;f7");
}

static void test_310_one_per_eval_and_glue(void)
{
	struct sym_frame native[] = { nat(EV), nat("_PyEval_Vector"), nat(EV), nat("_PyEval_Vector"),
				      nat(EV), nat("PyEval_EvalCode"), nat("main") };
	struct ember_py_frame py[] = { pyf(3, 0, 0), pyf(2, 0, 0), pyf(1, 0, 0) };
	struct sym_frame out[64];
	bool rooted;
	size_t n = pystack_merge_with(fake_resolve, NULL, true, native, 7, py, 3, EMBER_PY_COMPLETE,
				      out, 64, &rooted);

	CHECK_STR(render(out, n), "main;PyEval_EvalCode;f1;f2;f3");
}

static void test_native_stops_short(void)
{
	/* The frame-pointer walk ended inside libpython: the rest of Python goes below a marker. */
	struct sym_frame native[] = { nat("deflate"), nat(EV) };
	struct ember_py_frame py[] = { pyf(4, 0, 0), marker(), pyf(2, 0, 0), pyf(1, 0, 0), marker() };
	struct sym_frame out[64];
	bool rooted;
	size_t n = pystack_merge_with(fake_resolve, NULL, false, native, 2, py, 5, EMBER_PY_COMPLETE,
				      out, 64, &rooted);

	CHECK_STR(render(out, n), "f1;f2;[python: native frames missing];f4;deflate");
	CHECK(rooted);
	/* no native frames at all */
	n = pystack_merge_with(fake_resolve, NULL, false, NULL, 0, py, 5, EMBER_PY_COMPLETE, out, 64,
			       &rooted);
	CHECK_STR(render(out, n), "f1;f2;f4;[python: native frames missing]");
}

static void test_unresolved_and_truncated(void)
{
	struct sym_frame native[] = { nat(EV), nat("main") };
	struct ember_py_frame py[] = { pyf(98, 0, 0), pyf(97, 0, 0), pyf(1, 0, 0) };
	struct sym_frame out[64];
	bool rooted;
	size_t n = pystack_merge_with(fake_resolve, NULL, false, native, 2, py, 3, EMBER_PY_TRUNCATED,
				      out, 64, &rooted);

	CHECK_STR(render(out, n),
		  "main;[python: truncated];f1;[python: unreadable frame];[python: stale frame]");
	/* truncated with the rest below the marker */
	n = pystack_merge_with(fake_resolve, NULL, false, NULL, 0, py + 2, 1, EMBER_PY_TRUNCATED, out,
			       64, &rooted);
	CHECK_STR(render(out, n), "[truncated];f1;[python: native frames missing]");
}

static void test_bounds(void)
{
	struct ember_py_frame py[EMBER_PY_MAX_FRAMES + 10];
	struct sym_frame native[EMBER_MAX_STACK_DEPTH], out[EMBER_MAX_STACK_DEPTH + PYSTACK_EXTRA];
	bool rooted;
	size_t n;

	for (size_t i = 0; i < EMBER_PY_MAX_FRAMES + 10; i++)
		py[i] = pyf(1 + i % 40, EMBER_PYF_ENTRY, 0);
	for (size_t i = 0; i < EMBER_MAX_STACK_DEPTH; i++)
		native[i] = nat(EV);
	/* more frames claimed than the record can hold, a small output: never past max */
	n = pystack_merge_with(fake_resolve, NULL, false, native, EMBER_MAX_STACK_DEPTH, py,
			       EMBER_PY_MAX_FRAMES + 10, EMBER_PY_TRUNCATED, out, 50, &rooted);
	CHECK_INT(n, 50);
	n = pystack_merge_with(fake_resolve, NULL, false, native, EMBER_MAX_STACK_DEPTH, py,
			       EMBER_PY_MAX_FRAMES, EMBER_PY_TRUNCATED, out,
			       EMBER_MAX_STACK_DEPTH + PYSTACK_EXTRA, &rooted);
	CHECK(n <= EMBER_MAX_STACK_DEPTH + PYSTACK_EXTRA);
	CHECK(rooted); /* 160 runs, 127 eval frames */
}

static void test_describe(void)
{
	struct pyresolve_proc info = { .runtime = 0x1000 };
	struct ember_py_proc p;

	CHECK_INT(pyoffsets_for_version(0x030c01f0, &info.off), 0);
	CHECK_INT(pystack_describe(&info, &p), 0);
	CHECK_INT(p.interp_head, 0x1000 + 40);
	CHECK_INT(p.entry_kind, EMBER_PY_ENTRY_OWNER);
	CHECK_INT(p.frame_entry, 70);
	CHECK_INT(p.cframe_current_frame, 0);
	CHECK_INT(p.code_qualname, 128);
	CHECK_INT(pyoffsets_for_version(0x030a0df0, &info.off), 0);
	CHECK_INT(pystack_describe(&info, &p), 0);
	CHECK_INT(p.entry_kind, EMBER_PY_ENTRY_NONE);
	CHECK_INT(p.instr_kind, EMBER_PY_INSTR_LASTI);
	CHECK_INT(p.frame_instr, 96);
	CHECK_INT(p.code_qualname, EMBER_PY_NO_OFFSET);
	CHECK_INT(p.cframe_current_frame, EMBER_PY_NO_OFFSET);
	/* an offset past the walk's reads is refused, never sent */
	info.off.tstate_thread_id = EMBER_PY_TSTATE_READ;
	CHECK_INT(pystack_describe(&info, &p), -ENOTSUP);
	CHECK_INT(pyoffsets_for_version(0x030b07f0, &info.off), 0);
	info.off.code_linetable = 4000;
	CHECK_INT(pystack_describe(&info, &p), -ENOTSUP);
	info.runtime = 0;
	CHECK_INT(pyoffsets_for_version(0x030b07f0, &info.off), 0);
	CHECK_INT(pystack_describe(&info, &p), -ENOTSUP);
}

int main(void)
{
	test_311_runs();
	test_312_markers_and_helpers();
	test_310_one_per_eval_and_glue();
	test_native_stops_short();
	test_unresolved_and_truncated();
	test_bounds();
	test_describe();
	return check_exit("unit.pystack");
}
