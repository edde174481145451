/* test_unwind: self-unwinding, in the style of perf's dwarf-unwind test. Chains of functions
 * built with -O2 -fomit-frame-pointer (unwind_chain*.c) capture their own registers and the top
 * of their stack, passing through libc's qsort or bsearch; the unwinder must walk them back to
 * main and past it to the thread's root, and the symbolizer must name every frame. Needs no
 * root. Also prints the cost of one unwind of a 16 KiB snapshot (a number, not a check). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "procmaps.h"
#include "symbolizer.h"
#include "unwind.h"
#include "unwind_chain.h"
#include "unwind_fuzz.h"
#include "unwind_sigmask.h"
#include "util.h"

#define MAX_FRAMES 128

static struct symbolizer *sym;
static struct unwinder *unw;
static uint64_t self_start;

struct frames {
	uint64_t pcs[MAX_FRAMES];
	const char *names[MAX_FRAMES];
	const char *modules[MAX_FRAMES];
	size_t n;
	bool truncated;
};

static int unwind_snapshot(size_t len, struct frames *f)
{
	struct sym_info si;
	int err;

	memset(f, 0, sizeof(*f));
	err = unwind_stack(unw, getpid(), self_start, &chain_snap.regs, chain_snap.stack, len,
			   f->pcs, MAX_FRAMES, &f->n, &f->truncated);
	if (err)
		return err;
	for (size_t i = 0; i < f->n; i++) {
		symbolizer_user(sym, getpid(), i ? f->pcs[i] - 1 : f->pcs[i], &si);
		f->names[i] = si.name;
		f->modules[i] = si.module;
	}
	return 0;
}

static void print_frames(const char *what, const struct frames *f)
{
	fprintf(stderr, "%s: %zu frames%s\n", what, f->n, f->truncated ? " [truncated]" : "");
	for (size_t i = 0; i < f->n; i++)
		fprintf(stderr, "  #%-2zu %#014llx %s (%s)\n", i, (unsigned long long)f->pcs[i],
			f->names[i], f->modules[i]);
}

static bool in_libc(const char *module)
{
	const char *base = strrchr(module, '/');

	return base && !strncmp(base + 1, "libc.so", 7);
}

/* Checks that f reads capture, c, cmp, (libc frames, at least one), b, a, main, and then
 * reaches the root of the thread. */
static void check_chain(const struct frames *f, const char *c, const char *cmp, const char *b,
			const char *a)
{
	size_t i = 0, libc = 0;

	CHECK(f->n >= 7);
	if (f->n < 7)
		return;
	CHECK_STR(f->names[i++], "chain_capture");
	CHECK_STR(f->names[i++], c);
	CHECK_STR(f->names[i++], cmp);
	while (i < f->n && in_libc(f->modules[i])) {
		i++;
		libc++;
	}
	CHECK(libc >= 1);
	CHECK(i + 3 <= f->n);
	if (i + 3 > f->n)
		return;
	CHECK_STR(f->names[i++], b);
	CHECK_STR(f->names[i++], a);
	CHECK_STR(f->names[i++], "main");
	/* then glibc's start code: __libc_start_call_main, __libc_start_main, _start */
	CHECK(!f->truncated);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void measure(void)
{
	struct unwinder *cold;
	uint64_t pcs[MAX_FRAMES];
	struct unwind_stats st;
	const int iters = 20000;
	double t0, t1, t2;
	bool truncated;
	size_t n;

	/* first unwind of a fresh unwinder: maps read, modules loaded */
	CHECK_INT(unwinder_new(&cold), 0);
	t0 = now_us();
	CHECK_INT(unwind_stack(cold, getpid(), self_start, &chain_snap.regs, chain_snap.stack,
			       chain_snap.len, pcs, MAX_FRAMES, &n, &truncated), 0);
	t1 = now_us();
	unwinder_free(cold);

	for (int i = 0; i < iters; i++)
		(void)unwind_stack(unw, getpid(), self_start, &chain_snap.regs, chain_snap.stack,
				   chain_snap.len, pcs, MAX_FRAMES, &n, &truncated);
	t2 = now_us();
	unwind_get_stats(unw, &st);
	fprintf(stderr,
		"unwind cost: %zu-byte snapshot, %zu frames: first unwind (cold caches) %.1f us, "
		"then %.2f us per unwind over %d unwinds\n",
		chain_snap.len, n, t1 - t0, (t2 - t1) / iters, iters);
	fprintf(stderr, "unwind stats: unwinds %llu, truncated %llu, frames %llu, modules %llu\n",
		(unsigned long long)st.unwinds, (unsigned long long)st.truncated,
		(unsigned long long)st.frames, (unsigned long long)st.modules);
}

/* unwind_sigmask.c: libc's sigprocmask everywhere but inside libunwind on an unwinding
 * thread, where libunwind's block/restore pairs become no-ops. */
static bool blocked(int sig)
{
	sigset_t cur;

	return pthread_sigmask(SIG_SETMASK, NULL, &cur) == 0 && sigismember(&cur, sig) == 1;
}

static void check_sigmask(void)
{
	sigset_t one, old;

	sigemptyset(&one);
	sigaddset(&one, SIGUSR2);
	CHECK(!unwind_skip_sigmask);
	CHECK_INT(sigprocmask(SIG_BLOCK, &one, &old), 0);
	CHECK(blocked(SIGUSR2));
	CHECK(sigismember(&old, SIGUSR2) == 0);
	CHECK_INT(sigprocmask(SIG_SETMASK, &old, NULL), 0);
	CHECK(!blocked(SIGUSR2));
	CHECK_INT(sigprocmask(-1, &one, NULL), -1);
	CHECK_INT(errno, EINVAL);
	unwind_skip_sigmask = true;
	CHECK_INT(sigprocmask(SIG_BLOCK, &one, &old), 0);
	unwind_skip_sigmask = false;
	CHECK(!blocked(SIGUSR2));
}

/* A frame whose CFA expression never ends: libunwind would evaluate it forever. The unwind
 * returns (within its budget), truncated after the leaf and that frame; the module's CFI is
 * then not used again, so the next unwind through it is cheap. An unwinder of its own: the
 * test binary's module is marked. */
static void test_loop(void (*fn)(void), const char *what)
{
	struct unwinder *u = NULL;
	struct unwind_stats st;
	uint64_t pcs[MAX_FRAMES];
	int64_t t0, t1, t2;
	bool truncated = false;
	size_t n = 0;

	CHECK_INT(unwinder_new(&u), 0);
	if (!u)
		return;
	fn();
	t0 = util_now_ns(CLOCK_MONOTONIC);
	CHECK_INT(unwind_stack(u, getpid(), self_start, &chain_snap.regs, chain_snap.stack,
			       chain_snap.len, pcs, MAX_FRAMES, &n, &truncated), 0);
	t1 = util_now_ns(CLOCK_MONOTONIC);
	CHECK(truncated);
	CHECK(n >= 1 && n <= 2); /* chain_capture, then at most the looping frame */
	unwind_get_stats(u, &st);
	CHECK_INT(st.budget_exhausted, 1);
	CHECK_INT(unwind_refused(u, UNWIND_REFUSED_BUDGET), 1);
	CHECK_INT(unwind_refused(u, UNWIND_REFUSED_HOSTILE_CFI), 1);
	/* again: the module's CFI is refused at once */
	CHECK_INT(unwind_stack(u, getpid(), self_start, &chain_snap.regs, chain_snap.stack,
			       chain_snap.len, pcs, MAX_FRAMES, &n, &truncated), 0);
	t2 = util_now_ns(CLOCK_MONOTONIC);
	CHECK(truncated);
	unwind_get_stats(u, &st);
	CHECK_INT(st.budget_exhausted, 1);
	fprintf(stderr, "looping CFA expression (%s): stopped after %.2f ms, then %.3f ms\n", what,
		(double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6);
	unwind_forget(u, getpid());
	unwinder_free(u);
}

/* A .debug_frame of n CIEs, each followed by one FDE naming it: converting it must not compare
 * every FDE with every CIE (200k of each took minutes that way; the ctest timeout catches a
 * relapse). */
static void test_many_cies(size_t n)
{
	const size_t cie = 16, fde = 28; /* both 4-byte aligned, length fields included */
	uint8_t *df = calloc(n, cie + fde), *p = df;
	int err;

	CHECK(df != NULL);
	if (!df)
		return;
	for (size_t i = 0; i < n; i++) {
		uint32_t cie_off = (uint32_t)(p - df), v;
		uint64_t loc = 0x10000 + 16 * (uint64_t)i, range = 16;

		/* CIE: length 12, id 0xffffffff, version 1, "", code align 1, data align -8,
		 * return address r16, DW_CFA_def_cfa r7 8, nops */
		v = 12;
		memcpy(p, &v, 4);
		v = 0xffffffffu;
		memcpy(p + 4, &v, 4);
		memcpy(p + 8, (const uint8_t[]){ 1, 0, 1, 0x78, 16, 0x0c, 7, 8 }, 8);
		p += cie;
		/* FDE: length 24, CIE pointer, initial location, address range, no instructions */
		v = 24;
		memcpy(p, &v, 4);
		memcpy(p + 4, &cie_off, 4);
		memcpy(p + 8, &loc, 8);
		memcpy(p + 16, &range, 8);
		p += fde;
	}
	err = unwind_fuzz_debug_frame(df, (size_t)(p - df));
	CHECK_INT(err, (int)n); /* every FDE converted */
	fprintf(stderr, ".debug_frame with %zu CIEs and %zu FDEs converted\n", n, n);
	free(df);
}

int main(void)
{
	pthread_attr_t attr;
	struct frames f;
	void *addr;
	size_t size;

	if (pthread_getattr_np(pthread_self(), &attr) || pthread_attr_getstack(&attr, &addr, &size)) {
		fprintf(stderr, "test_unwind: cannot find the main thread's stack\n");
		return 1;
	}
	pthread_attr_destroy(&attr);
	chain_stack_top = (uintptr_t)addr + size;
	CHECK_INT(procmaps_start_time(getpid(), &self_start), 0);
	CHECK_INT(symbolizer_new(&sym), 0);
	CHECK_INT(unwinder_new(&unw), 0);
	if (!sym || !unw)
		return check_exit("unit_unwind");

	test_many_cies(200000);

	/* .eh_frame all the way, through qsort's internals */
	(void)chain_a();
	CHECK(chain_snap.len >= 1024);
	CHECK_INT(unwind_snapshot(chain_snap.len, &f), 0);
	print_frames("qsort chain", &f);
	check_chain(&f, "chain_c", "chain_cmp", "chain_b", "chain_a");
	measure();
	/* unwind_stack() hands masking back when it returns */
	check_sigmask();

	/* a 256-byte snapshot ends inside libc: truncated, and the leaf is still there */
	CHECK_INT(unwind_snapshot(256, &f), 0);
	print_frames("qsort chain, 256-byte snapshot", &f);
	CHECK(f.truncated);
	CHECK(f.n >= 1 && f.n < 7);
	CHECK(f.n >= 1 && f.pcs[0] == chain_snap.regs.ip);

	/* no stack at all: only the leaf */
	CHECK_INT(unwind_snapshot(0, &f), 0);
	CHECK(f.truncated);

	/* .debug_frame for the chain_df_* functions, .eh_frame for bsearch and main */
	(void)chain_df_a();
	CHECK_INT(unwind_snapshot(chain_snap.len, &f), 0);
	print_frames("bsearch chain (.debug_frame)", &f);
	check_chain(&f, "chain_df_c", "chain_df_cmp", "chain_df_b", "chain_df_a");

	/* a pid that does not exist */
	{
		uint64_t pcs[4];
		size_t n;
		bool t;

		CHECK_INT(unwind_stack(unw, 0x3fffffff, 0, &chain_snap.regs, NULL, 0, pcs, 4, &n, &t),
			  -ESRCH);
	}
	unwind_forget(unw, getpid());
	unwinder_free(unw);
	test_loop(chain_loop_skip, "DW_OP_skip -3");
	test_loop(chain_loop_bra, "DW_OP_lit1; DW_OP_bra -4");
	symbolizer_free(sym);
	return check_exit("unit_unwind");
}
