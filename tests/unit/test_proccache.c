/* test_proccache: the symbolizer and the unwinder share one process and module cache.
 *
 * A process that is both unwound (a snapshot of our own stack, unwind_chain.c) and symbolized
 * is captured once and each of its files (libc first) is opened into one module that carries
 * both the symbol table and the unwind tables, whichever of the two came first. Two different
 * files that claim the same build-id (a copy of a fixture patched to carry another fixture's
 * build-id) get a module and a symbol table each, and each is named by its own. Needs no root.
 * Usage: unit_proccache FIXTURE_DIR */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "elffile.h"
#include "proccache.h"
#include "procmaps.h"
#include "symbolizer.h"
#include "unwind.h"
#include "unwind_chain.h"

#define MAX_FRAMES 128
#define MAX_ADDRS 32

static uint64_t self_start;

static bool is_libc(const char *path)
{
	const char *base = strrchr(path, '/');

	return base && !strncmp(base + 1, "libc.so", 7);
}

/* Unwinds the last snapshot with u and names every frame with s; true if it reads
 * chain_capture ... main. */
static bool unwind_and_name(struct unwinder *u, struct symbolizer *s)
{
	uint64_t pcs[MAX_FRAMES];
	bool truncated, saw_main = false;
	struct sym_info si;
	size_t n = 0;

	CHECK_INT(unwind_stack(u, getpid(), self_start, &chain_snap.regs, chain_snap.stack,
			       chain_snap.len, pcs, MAX_FRAMES, &n, &truncated), 0);
	CHECK(n >= 7);
	for (size_t i = 0; i < n; i++) {
		CHECK_INT(symbolizer_user(s, getpid(), i ? pcs[i] - 1 : pcs[i], &si), 0);
		if (i == 0)
			CHECK_STR(si.name, "chain_capture");
		if (!strcmp(si.name, "main"))
			saw_main = true;
	}
	CHECK(saw_main);
	return n >= 7 && saw_main;
}

/* Every mapping of libc in our entry points to one module, which holds both tables. */
static void check_libc_module(struct proccache *pc)
{
	struct proccache_proc *p = proccache_find(pc, getpid());
	struct proccache_module *libc = NULL;
	size_t nr = 0;

	CHECK(p != NULL);
	if (!p)
		return;
	for (size_t i = 0; i < p->nr_maps; i++) {
		const struct proccache_map *m = &p->maps[i];

		if (!is_libc(m->path))
			continue;
		nr++;
		CHECK(m->mod != NULL);
		if (!libc)
			libc = m->mod;
		CHECK(m->mod == libc);
	}
	CHECK(nr >= 2); /* its r-- and r-x mappings at least */
	CHECK(libc != NULL);
	if (!libc)
		return;
	CHECK(libc->slots[PROCCACHE_SLOT_SYMBOLS].data != NULL);
	CHECK(libc->slots[PROCCACHE_SLOT_UNWIND].data != NULL);
	CHECK(libc->build_id[0] != '\0');
}

/* Symbolized first, then unwound: the unwinder opens nothing. */
static void test_symbolize_then_unwind(void)
{
	struct symbolizer_stats ss1, ss2;
	struct proccache_stats cs;
	struct unwind_stats us;
	struct symbolizer *s = NULL;
	struct unwinder *u = NULL;

	CHECK_INT(symbolizer_new(&s), 0);
	CHECK_INT(symbolizer_track(s, getpid()), 0);
	symbolizer_get_stats(s, &ss1);
	CHECK(ss1.module_opens >= 2); /* the test binary, libc, ... */
	CHECK_INT(unwinder_new_shared(symbolizer_cache(s), &u), 0);
	(void)chain_a();
	unwind_and_name(u, s);
	symbolizer_get_stats(s, &ss2);
	unwind_get_stats(u, &us);
	CHECK_INT(ss2.module_opens, ss1.module_opens);
	CHECK_INT(us.module_opens, ss1.module_opens);
	CHECK_INT(us.processes, 1);
	proccache_get_stats(symbolizer_cache(s), &cs);
	CHECK_INT(cs.captures, 1); /* one read of /proc/PID/maps for both */
	check_libc_module(symbolizer_cache(s));
	fprintf(stderr, "symbolize then unwind: %llu module opens, %llu modules, %llu captures\n",
		(unsigned long long)ss2.module_opens, (unsigned long long)cs.modules,
		(unsigned long long)cs.captures);

	/* the entry stays while either holds it */
	symbolizer_forget(s, getpid());
	proccache_get_stats(symbolizer_cache(s), &cs);
	CHECK_INT(cs.processes, 1);
	unwind_forget(u, getpid());
	proccache_get_stats(symbolizer_cache(s), &cs);
	CHECK_INT(cs.processes, 0);

	unwinder_free(u);
	symbolizer_free(s);
}

/* Unwound first: the module the unwinder makes gets its symbol table all the same, and the
 * symbolizer opens nothing. The symbolizer goes first, the unwinder keeps the cache. */
static void test_unwind_then_symbolize(void)
{
	struct symbolizer_stats ss1, ss2;
	struct unwind_stats us;
	struct symbolizer *s = NULL;
	struct unwinder *u = NULL, *own = NULL;

	CHECK_INT(symbolizer_new(&s), 0);
	CHECK_INT(unwinder_new_shared(symbolizer_cache(s), &u), 0);
	(void)chain_a();
	{
		uint64_t pcs[MAX_FRAMES];
		bool truncated;
		size_t n;

		CHECK_INT(unwind_stack(u, getpid(), self_start, &chain_snap.regs, chain_snap.stack,
				       chain_snap.len, pcs, MAX_FRAMES, &n, &truncated), 0);
	}
	unwind_get_stats(u, &us);
	symbolizer_get_stats(s, &ss1);
	CHECK(us.module_opens >= 2);
	CHECK_INT(ss1.module_opens, us.module_opens);
	unwind_and_name(u, s);
	symbolizer_get_stats(s, &ss2);
	CHECK_INT(ss2.module_opens, ss1.module_opens);
	check_libc_module(symbolizer_cache(s));

	/* an unwinder of its own opens the files again: that is what sharing saves */
	CHECK_INT(unwinder_new(&own), 0);
	unwind_and_name(own, s);
	unwind_get_stats(own, &us);
	CHECK(us.module_opens >= 2);
	unwinder_free(own);

	symbolizer_free(s);
	(void)chain_a();
	{
		uint64_t pcs[MAX_FRAMES];
		bool truncated;
		size_t n;

		CHECK_INT(unwind_stack(u, getpid(), self_start, &chain_snap.regs, chain_snap.stack,
				       chain_snap.len, pcs, MAX_FRAMES, &n, &truncated), 0);
		CHECK(n >= 7);
	}
	unwinder_free(u);
}

/* ---- forged build-ids ---- */

struct fixture {
	pid_t pid;
	int in_fd;
	FILE *out;
	uint64_t pcs[MAX_ADDRS];
	char expect[MAX_ADDRS][256];
	size_t nr;
};

/* Starts path and reads its "addr <hex> <name>" lines up to "ready". */
static int fixture_start(struct fixture *f, const char *path)
{
	int in[2], out[2];
	char line[512];

	memset(f, 0, sizeof(*f));
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		return -errno;
	f->pid = fork();
	if (f->pid < 0)
		return -errno;
	if (f->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execl(path, path, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	f->in_fd = in[1];
	f->out = fdopen(out[0], "r");
	while (f->out && fgets(line, sizeof(line), f->out)) {
		unsigned long long pc;
		int pos = 0;

		if (!strcmp(line, "ready\n"))
			return 0;
		if (f->nr < MAX_ADDRS && sscanf(line, "addr %llx %n", &pc, &pos) == 1 && pos && pc) {
			line[strcspn(line, "\n")] = '\0';
			f->pcs[f->nr] = pc;
			snprintf(f->expect[f->nr], sizeof(f->expect[0]), "%s", line + pos);
			f->nr++;
		}
	}
	return -EIO;
}

static void fixture_stop(struct fixture *f)
{
	int status;

	if (f->in_fd > 0)
		close(f->in_fd);
	if (f->out)
		fclose(f->out);
	if (f->pid > 0)
		(void)waitpid(f->pid, &status, 0);
	memset(f, 0, sizeof(*f));
}

static int read_file(const char *path, uint8_t **ret, size_t *ret_len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) || !(buf = malloc((size_t)st.st_size))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (read(fd, buf, (size_t)st.st_size) != st.st_size) {
		free(buf);
		close(fd);
		return -1;
	}
	close(fd);
	*ret = buf;
	*ret_len = (size_t)st.st_size;
	return 0;
}

static int write_exe(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	bool ok = fd >= 0 && write(fd, buf, len) == (ssize_t)len;

	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

static int build_id_of(const uint8_t *buf, size_t len, char *hex)
{
	Elf *e;
	int err;

	elffile_init();
	e = elf_memory((char *)buf, len);
	if (!e)
		return -1;
	err = elffile_build_id(e, hex, ELFFILE_BUILD_ID_MAX);
	elf_end(e);
	return err;
}

static void unhex(const char *hex, uint8_t *out, size_t *ret_n)
{
	size_t n = 0;
	unsigned int b;

	for (; hex[0] && hex[1] && sscanf(hex, "%2x", &b) == 1; hex += 2)
		out[n++] = (uint8_t)b;
	*ret_n = n;
}

/* Writes dir/a (sym_pie) and dir/b (sym_nopie whose build-id note is overwritten with a's). */
static int forge(const char *dir, char *a_path, char *b_path, size_t size)
{
	char src[PATH_MAX], a_hex[ELFFILE_BUILD_ID_MAX], b_hex[ELFFILE_BUILD_ID_MAX];
	uint8_t *a = NULL, *b = NULL, a_id[64], b_id[64], *at;
	size_t a_len, b_len, a_n, b_n;
	int err = -1;

	snprintf(a_path, size, "%s/a", dir);
	snprintf(b_path, size, "%s/b", dir);
	snprintf(src, sizeof(src), "%s/sym_pie", getenv("FIXTURE_DIR"));
	if (read_file(src, &a, &a_len))
		goto out;
	snprintf(src, sizeof(src), "%s/sym_nopie", getenv("FIXTURE_DIR"));
	if (read_file(src, &b, &b_len))
		goto out;
	if (build_id_of(a, a_len, a_hex) || build_id_of(b, b_len, b_hex))
		goto out;
	unhex(a_hex, a_id, &a_n);
	unhex(b_hex, b_id, &b_n);
	if (a_n != b_n || !a_n || !(at = memmem(b, b_len, b_id, b_n)))
		goto out;
	memcpy(at, a_id, a_n);
	if (build_id_of(b, b_len, b_hex) || strcmp(a_hex, b_hex))
		goto out;
	if (write_exe(a_path, a, a_len) || write_exe(b_path, b, b_len))
		goto out;
	err = 0;
out:
	free(a);
	free(b);
	return err;
}

static void test_forged_build_id(void)
{
	char dir[] = "/tmp/ember-proccache-XXXXXX", a_path[PATH_MAX], b_path[PATH_MAX];
	struct symbolizer_stats st0, st1;
	struct fixture fa = { 0 }, fb = { 0 };
	const char *a_bid = NULL, *b_bid = NULL;
	struct symbolizer *s = NULL;
	struct sym_info si;

	CHECK(mkdtemp(dir) != NULL);
	if (forge(dir, a_path, b_path, sizeof(a_path))) {
		CHECK(!"forged a copy of sym_nopie with sym_pie's build-id");
		goto out;
	}
	if (fixture_start(&fa, a_path) || fixture_start(&fb, b_path)) {
		CHECK(!"both forged fixtures started");
		goto out;
	}
	CHECK(fa.nr > 0 && fb.nr > 0);
	CHECK_INT(symbolizer_new(&s), 0);
	CHECK_INT(symbolizer_track(s, fa.pid), 0);
	symbolizer_get_stats(s, &st0);
	CHECK_INT(symbolizer_track(s, fb.pid), 0);
	symbolizer_get_stats(s, &st1);
	/* b shares libc and the rest with a, but not a's module */
	CHECK_INT(st1.modules, st0.modules + 1);
	CHECK_INT(st1.module_opens, st0.module_opens + 1);
	for (size_t i = 0; i < fa.nr; i++) {
		CHECK_INT(symbolizer_user(s, fa.pid, fa.pcs[i], &si), 0);
		CHECK_STR(si.name, fa.expect[i]);
		if (!strcmp(si.module, a_path))
			a_bid = si.build_id;
	}
	for (size_t i = 0; i < fb.nr; i++) {
		CHECK_INT(symbolizer_user(s, fb.pid, fb.pcs[i], &si), 0);
		CHECK_STR(si.name, fb.expect[i]); /* b's own table, not a's */
		if (!strcmp(si.module, b_path))
			b_bid = si.build_id;
	}
	/* both claim the same build-id (which stays a hint, reported as is) */
	CHECK(a_bid && b_bid && !strcmp(a_bid, b_bid));
out:
	fixture_stop(&fa);
	fixture_stop(&fb);
	symbolizer_free(s);
	(void)unlink(a_path);
	(void)unlink(b_path);
	(void)rmdir(dir);
}

static int first_function(const struct elffile_sym *sym, void *ctx)
{
	uint64_t *ret = ctx;

	if (sym->size < 8)
		return 0;
	*ret = sym->value;
	return 1;
}

/* A file mapped executable (so the cache makes a module of it), unwound once, then truncated
 * by its owner: the next unwind through it (maps re-read, libunwind's caches flushed) reads
 * the unwinder's copies of the tables, never the file, and the test does not die of SIGBUS. */
static void test_truncated_file(void)
{
	char dir[] = "/tmp/ember-proccache-XXXXXX", src[PATH_MAX], path[PATH_MAX];
	uint64_t stack[64] = { 0 }, pcs[8], fn = 0;
	struct unwind_regs regs = { 0 };
	struct unwinder *u = NULL;
	void *map = MAP_FAILED;
	uint8_t *img = NULL;
	size_t len = 0, n = 0;
	bool truncated;
	Elf *e = NULL;
	int fd = -1;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(src, sizeof(src), "%s/libsym_shared.so", getenv("FIXTURE_DIR"));
	snprintf(path, sizeof(path), "%s/lib.so", dir);
	if (read_file(src, &img, &len) || write_exe(path, img, len)) {
		CHECK(!"copied libsym_shared.so");
		goto out;
	}
	fd = open(path, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	if (fd < 0)
		goto out;
	elffile_init();
	e = elf_begin(fd, ELF_C_READ, NULL);
	CHECK(e && elffile_for_each_symbol(e, ELFFILE_SYM_DYNSYM | ELFFILE_SYM_SYMTAB,
					   first_function, &fn) == 1);
	map = mmap(NULL, len, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	CHECK(map != MAP_FAILED);
	if (!fn || map == MAP_FAILED)
		goto out;
	/* the text segment's file offsets are its vaddrs (ld's layout): one mapping serves */
	regs.ip = (uint64_t)(uintptr_t)map + fn + 1;
	regs.sp = (uint64_t)(uintptr_t)stack;
	CHECK_INT(unwinder_new(&u), 0);
	if (!u)
		goto out;
	CHECK_INT(unwind_stack(u, getpid(), self_start, &regs, stack, sizeof(stack), pcs, 8, &n,
			       &truncated), 0);
	CHECK(n >= 1);
	CHECK_INT(ftruncate(fd, 0), 0);
	unwind_refresh(u, getpid());
	CHECK_INT(unwind_stack(u, getpid(), self_start, &regs, stack, sizeof(stack), pcs, 8, &n,
			       &truncated), 0);
	CHECK(n >= 1);
	fprintf(stderr, "truncated file: unwound after truncation, %zu frames\n", n);
out:
	unwind_forget(u, getpid());
	unwinder_free(u);
	if (map != MAP_FAILED)
		munmap(map, len);
	if (e)
		elf_end(e);
	if (fd >= 0)
		close(fd);
	free(img);
	(void)unlink(path);
	(void)rmdir(dir);
}

int main(int argc, char **argv)
{
	pthread_attr_t attr;
	void *addr;
	size_t size;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
		return 2;
	}
	setenv("FIXTURE_DIR", argv[1], 1);
	signal(SIGPIPE, SIG_IGN);
	alarm(120);
	if (pthread_getattr_np(pthread_self(), &attr) || pthread_attr_getstack(&attr, &addr, &size)) {
		fprintf(stderr, "test_proccache: cannot find the main thread's stack\n");
		return 1;
	}
	pthread_attr_destroy(&attr);
	chain_stack_top = (uintptr_t)addr + size;
	CHECK_INT(procmaps_start_time(getpid(), &self_start), 0);

	test_symbolize_then_unwind();
	test_unwind_then_symbolize();
	test_forged_build_id();
	test_truncated_file();
	return check_exit("test_proccache");
}
