/* test_symbolizer: symbolizes live fixture processes (tests/fixtures/sym_*) and compares the
 * names with the fixtures' own expectations and with eu-addr2line (elfutils) as ground truth.
 * Needs no root: without CAP_SYS_ADMIN the files are opened through /proc/PID/root and
 * /proc/PID/exe instead of /proc/PID/map_files. Usage: unit_symbolizer FIXTURE_DIR */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "symbolizer.h"

#define MAX_ADDRS 32

struct fixture_addr {
	uint64_t pc;
	char expect[256];
};

struct fixture {
	pid_t pid;
	int in_fd;
	FILE *out;
	char path[PATH_MAX];
	struct fixture_addr addrs[MAX_ADDRS];
	size_t nr;
};

static const char *fixture_dir;

/* Starts path and reads its "addr <hex> <name>" lines up to "ready". */
static int fixture_start(struct fixture *f, const char *path)
{
	int in[2], out[2];
	char line[512];

	memset(f, 0, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "%s", path);
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
		struct fixture_addr *a = &f->addrs[f->nr];
		unsigned long long pc;
		int pos = 0;

		if (!strcmp(line, "ready\n"))
			return 0;
		if (f->nr < MAX_ADDRS && sscanf(line, "addr %llx %n", &pc, &pos) == 1 && pos) {
			line[strcspn(line, "\n")] = '\0';
			a->pc = pc;
			snprintf(a->expect, sizeof(a->expect), "%s", line + pos);
			if (pc)
				f->nr++;
		}
	}
	fprintf(stderr, "%s: did not get ready\n", path);
	return -EIO;
}

/* Closes the fixture's stdin, which makes it exit, and reaps it. */
static void fixture_stop(struct fixture *f)
{
	int status;

	if (f->in_fd > 0)
		close(f->in_fd);
	f->in_fd = -1;
	if (f->out)
		fclose(f->out);
	f->out = NULL;
	if (f->pid > 0)
		(void)waitpid(f->pid, &status, 0);
	f->pid = -1;
}

static const struct fixture_addr *fixture_find(const struct fixture *f, const char *expect)
{
	for (size_t i = 0; i < f->nr; i++)
		if (!strcmp(f->addrs[i].expect, expect))
			return &f->addrs[i];
	return NULL;
}

/* Ground truth: eu-addr2line -f -C --pid names every fixture address (elfutils reads the maps
 * and the files itself). Fills names[i] for addrs[i]; returns the number read. */
static size_t addr2line_names(const struct fixture *f, char names[][256])
{
	char cmd[4096], line[256];
	size_t len, n = 0;
	FILE *p;

	len = (size_t)snprintf(cmd, sizeof(cmd), "eu-addr2line -f -C --pid=%d", (int)f->pid);
	for (size_t i = 0; i < f->nr && len < sizeof(cmd) - 32; i++)
		len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " 0x%" PRIx64, f->addrs[i].pc);
	p = popen(cmd, "r");
	if (!p)
		return 0;
	/* two lines per address: the function, then file:line */
	while (n < f->nr && fgets(line, sizeof(line), p)) {
		line[strcspn(line, "\n")] = '\0';
		memcpy(names[n], line, sizeof(line));
		if (!fgets(line, sizeof(line), p))
			break;
		n++;
	}
	pclose(p);
	return n;
}

/* True for names where elfutils picks another alias (glibc's __GI_*): checked literally only. */
static bool libc_alias(const char *expect)
{
	return !strcmp(expect, "qsort") || !strcmp(expect, "malloc");
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* The module a fixture line must land in. */
static void check_module(const struct fixture *f, const struct fixture_addr *a,
			 const struct sym_info *si, const char *lib)
{
	if (libc_alias(a->expect)) {
		CHECK(strstr(si->module, "libc.so.6") != NULL);
	} else if (!strncmp(a->expect, "__vdso_", 7)) {
		CHECK_STR(si->module, "[vdso]");
	} else if (lib && !strncmp(a->expect, "shared_", 7)) {
		CHECK_STR(base_name(si->module), lib);
	} else {
		CHECK_STR(base_name(si->module), base_name(f->path));
	}
}

/* Starts one fixture, symbolizes every address it printed and checks each name twice. */
static void test_fixture(struct symbolizer *s, const char *name, const char *lib)
{
	pid_t pid;
	char path[PATH_MAX], truth[MAX_ADDRS][256];
	struct fixture f;
	size_t nr_truth;

	snprintf(path, sizeof(path), "%s/%s", fixture_dir, name);
	if (fixture_start(&f, path)) {
		CHECK(!"fixture started");
		fixture_stop(&f);
		return;
	}
	CHECK(f.nr >= 4);
	CHECK_INT(symbolizer_track(s, f.pid), 0);
	nr_truth = addr2line_names(&f, truth);
	CHECK_INT(nr_truth, f.nr);
	for (size_t i = 0; i < f.nr; i++) {
		const struct fixture_addr *a = &f.addrs[i];
		struct sym_info si;

		CHECK_INT(symbolizer_user(s, f.pid, a->pc, &si), 0);
		fprintf(stderr, "  %s 0x%" PRIx64 " -> %s (%s)\n", name, a->pc, si.name, si.module);
		CHECK_STR(si.name, a->expect);
		CHECK(si.known);
		CHECK(si.map_start <= a->pc && a->pc < si.map_end);
		check_module(&f, a, &si, lib);
		if (i < nr_truth && !libc_alias(a->expect)) {
			CHECK_STR(truth[i], a->expect);
			CHECK_STR(si.name, truth[i]);
		}
	}
	pid = f.pid;
	fixture_stop(&f);
	symbolizer_forget(s, pid);
}

static void test_cpp(struct symbolizer *s)
{
	pid_t pid;
	char path[PATH_MAX];
	struct sym_info si;
	struct fixture f;

	test_fixture(s, "sym_cpp", NULL);
	/* and the literal the issue asks for */
	snprintf(path, sizeof(path), "%s/sym_cpp", fixture_dir);
	if (fixture_start(&f, path)) {
		CHECK(!"sym_cpp started");
		fixture_stop(&f);
		return;
	}
	CHECK_INT(symbolizer_user(s, f.pid, f.addrs[0].pc, &si), 0);
	CHECK(strstr(si.name, "ns::Widget<int>::spin") != NULL);
	CHECK(si.build_id != NULL && strlen(si.build_id) == 40);
	pid = f.pid;
	fixture_stop(&f);
	symbolizer_forget(s, pid);
}

/* File offset of pc in its mapping, read from /proc/PID/maps by the test itself. */
static uint64_t maps_file_offset(pid_t pid, uint64_t pc)
{
	unsigned long long start, end, pgoff;
	char path[64], line[1024];
	uint64_t off = UINT64_MAX;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%llx-%llx %*s %llx", &start, &end, &pgoff) == 3 && start <= pc &&
		    pc < end)
			off = pc - start + pgoff;
	}
	if (f)
		fclose(f);
	return off;
}

/* sym_bare has no symbol for its own functions: "sym_bare+0x<file offset>", never dropped. */
static void test_unknown(struct symbolizer *s)
{
	pid_t pid;
	struct symbolizer_stats before, after;
	const struct fixture_addr *a;
	char path[PATH_MAX], want[128];
	struct sym_info si;
	struct fixture f;

	snprintf(path, sizeof(path), "%s/sym_bare", fixture_dir);
	if (fixture_start(&f, path)) {
		CHECK(!"sym_bare started");
		fixture_stop(&f);
		return;
	}
	a = fixture_find(&f, "alpha");
	CHECK(a != NULL);
	if (a) {
		snprintf(want, sizeof(want), "sym_bare+0x%" PRIx64, maps_file_offset(f.pid, a->pc));
		symbolizer_get_stats(s, &before);
		CHECK_INT(symbolizer_user(s, f.pid, a->pc, &si), 0);
		CHECK_STR(si.name, want);
		CHECK(!si.known);
		CHECK_STR(base_name(si.module), "sym_bare");
		symbolizer_get_stats(s, &after);
		CHECK_INT(after.lookups, before.lookups + 1);
		CHECK_INT(after.misses, before.misses + 1);
	}
	/* libc still resolves in the same process */
	a = fixture_find(&f, "qsort");
	CHECK(a != NULL);
	if (a) {
		CHECK_INT(symbolizer_user(s, f.pid, a->pc, &si), 0);
		CHECK_STR(si.name, "qsort");
	}
	/* nothing is mapped at page 0 */
	CHECK_INT(symbolizer_user(s, f.pid, 0x10, &si), 0);
	CHECK_STR(si.name, "[unknown]");
	CHECK_STR(si.module, "[unknown]");
	CHECK(!si.known);
	pid = f.pid;
	fixture_stop(&f);
	symbolizer_forget(s, pid);
}

/* Value and size of a symbol of file, from binutils' nm; false if absent. */
static bool nm_symbol(const char *file, const char *want, uint64_t *ret_value, uint64_t *ret_size)
{
	char cmd[PATH_MAX + 64], line[512], name[256], type;
	unsigned long long value, size;
	bool found = false;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "nm -S --defined-only '%s'", file);
	p = popen(cmd, "r");
	while (p && fgets(line, sizeof(line), p)) {
		int n = sscanf(line, "%llx %llx %c %255s", &value, &size, &type, name);

		if (n < 4) {
			size = 0;
			n = sscanf(line, "%llx %c %255s", &value, &type, name) == 3 ? 4 : 0;
		}
		if (n == 4 && !strcmp(name, want)) {
			*ret_value = value;
			*ret_size = size;
			found = true;
		}
	}
	if (p)
		pclose(p);
	return found;
}

/* Sizes are honoured: past the end of _start (in the padding before the next function) is
 * "sym_pie+0x<offset>"; the sizeless _init extends to the next symbol. */
static void test_sizes(struct symbolizer *s)
{
	uint64_t alpha_v, alpha_sz, start_v, start_sz, init_v, init_sz, next_v, next_sz, bias, pc;
	const struct fixture_addr *a;
	char path[PATH_MAX], want[128];
	struct sym_info si;
	struct fixture f;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/sym_pie", fixture_dir);
	if (!nm_symbol(path, "alpha", &alpha_v, &alpha_sz) ||
	    !nm_symbol(path, "_start", &start_v, &start_sz) ||
	    !nm_symbol(path, "_init", &init_v, &init_sz) ||
	    !nm_symbol(path, "deregister_tm_clones", &next_v, &next_sz)) {
		CHECK(!"nm found alpha, _start, _init and deregister_tm_clones in sym_pie");
		return;
	}
	if (fixture_start(&f, path)) {
		CHECK(!"sym_pie started");
		fixture_stop(&f);
		return;
	}
	pid = f.pid;
	a = fixture_find(&f, "alpha");
	CHECK(a != NULL && a->pc % 4096 == alpha_v % 4096);
	if (a && start_sz && start_v + start_sz < next_v) {
		bias = a->pc - alpha_v;
		pc = bias + start_v + start_sz;
		CHECK_INT(symbolizer_user(s, pid, pc - 1, &si), 0);
		CHECK_STR(si.name, "_start");
		CHECK_INT(symbolizer_user(s, pid, pc, &si), 0);
		snprintf(want, sizeof(want), "sym_pie+0x%" PRIx64, maps_file_offset(pid, pc));
		CHECK_STR(si.name, want);
		CHECK(!si.known);
		if (!init_sz) {
			CHECK_INT(symbolizer_user(s, pid, bias + init_v + 4, &si), 0);
			CHECK_STR(si.name, "_init");
		}
	} else {
		fprintf(stderr, "  sizes: no padding after _start in this build, skipped\n");
	}
	fixture_stop(&f);
	symbolizer_forget(s, pid);
}

/* A binary deleted before it is tracked is read through the process. */
static void test_deleted(struct symbolizer *s)
{
	pid_t pid;
	char dir[] = "/tmp/ember-sym-XXXXXX", copy[PATH_MAX], src[PATH_MAX], cmd[PATH_MAX * 2 + 16];
	const struct fixture_addr *a;
	struct sym_info si;
	struct fixture f;

	if (!mkdtemp(dir)) {
		CHECK(!"mkdtemp");
		return;
	}
	snprintf(src, sizeof(src), "%s/sym_nobid", fixture_dir);
	snprintf(copy, sizeof(copy), "%s/sym_gone", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", src, copy);
	CHECK_INT(system(cmd), 0);
	if (fixture_start(&f, copy)) {
		CHECK(!"deleted fixture started");
		fixture_stop(&f);
		return;
	}
	CHECK_INT(unlink(copy), 0);
	CHECK_INT(rmdir(dir), 0);
	CHECK_INT(symbolizer_track(s, f.pid), 0);
	for (size_t i = 0; i < f.nr; i++) {
		a = &f.addrs[i];
		CHECK_INT(symbolizer_user(s, f.pid, a->pc, &si), 0);
		CHECK_STR(si.name, a->expect);
	}
	a = fixture_find(&f, "beta");
	CHECK(a != NULL);
	if (a) {
		CHECK_INT(symbolizer_user(s, f.pid, a->pc, &si), 0);
		CHECK_STR(si.module, copy);
		CHECK(si.build_id == NULL); /* linked with --build-id=none */
	}
	pid = f.pid;
	fixture_stop(&f);
	symbolizer_forget(s, pid);
}

/* Tracked, then gone: the capture and the symbols outlive the process. */
static void test_exited(struct symbolizer *s)
{
	char path[PATH_MAX];
	struct sym_info si;
	struct fixture f;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/sym_nopie", fixture_dir);
	if (fixture_start(&f, path)) {
		CHECK(!"sym_nopie started");
		fixture_stop(&f);
		return;
	}
	pid = f.pid;
	CHECK_INT(symbolizer_track(s, pid), 0);
	fixture_stop(&f);
	CHECK(kill(pid, 0) != 0);
	for (size_t i = 0; i < f.nr; i++) {
		CHECK_INT(symbolizer_user(s, pid, f.addrs[i].pc, &si), 0);
		CHECK_STR(si.name, f.addrs[i].expect);
	}
	/* and an address outside its mappings cannot trigger a refresh of a dead process */
	CHECK_INT(symbolizer_user(s, pid, 0x10, &si), 0);
	CHECK_STR(si.name, "[unknown]");
	CHECK_INT(symbolizer_refresh(s, pid), -ESRCH);
	CHECK_INT(symbolizer_user(s, pid, f.addrs[0].pc, &si), 0);
	CHECK_STR(si.name, f.addrs[0].expect);
	symbolizer_forget(s, pid);
}

/* Two processes of one binary share its module (and libc's). */
static void test_shared_cache(struct symbolizer *s)
{
	struct symbolizer_stats st1, st2;
	struct fixture a, b;
	char path[PATH_MAX];
	struct sym_info si;

	snprintf(path, sizeof(path), "%s/sym_pie", fixture_dir);
	if (fixture_start(&a, path) || fixture_start(&b, path)) {
		CHECK(!"two sym_pie started");
		fixture_stop(&a);
		fixture_stop(&b);
		return;
	}
	CHECK_INT(symbolizer_track(s, a.pid), 0);
	symbolizer_get_stats(s, &st1);
	CHECK_INT(symbolizer_track(s, b.pid), 0);
	CHECK_INT(symbolizer_track(s, b.pid), 0); /* same process again: nothing new */
	symbolizer_get_stats(s, &st2);
	CHECK_INT(st2.modules, st1.modules);
	CHECK_INT(st2.processes, st1.processes + 1);
	for (size_t i = 0; i < b.nr; i++) {
		CHECK_INT(symbolizer_user(s, b.pid, b.addrs[i].pc, &si), 0);
		CHECK_STR(si.name, b.addrs[i].expect);
	}
	symbolizer_forget(s, a.pid);
	symbolizer_forget(s, b.pid);
	fixture_stop(&a);
	fixture_stop(&b);
	symbolizer_get_stats(s, &st2);
	CHECK_INT(st2.processes, st1.processes - 1);
}

static void test_gone(struct symbolizer *s)
{
	struct sym_info si;
	pid_t pid;
	int status;

	pid = fork();
	if (pid == 0)
		_exit(0);
	(void)waitpid(pid, &status, 0);
	CHECK_INT(symbolizer_track(s, pid), -ESRCH);
	CHECK_INT(symbolizer_user(s, pid, 0x401000, &si), -ESRCH);
	CHECK_STR(si.name, "[unknown]");

	/* not ours to read (as non-root): named "[unknown]", kept so samples stay cheap */
	if (getuid() != 0 && access("/proc/1/maps", R_OK) != 0) {
		struct symbolizer_stats st1, st2;

		symbolizer_get_stats(s, &st1);
		CHECK(symbolizer_track(s, 1) < 0);
		CHECK_INT(symbolizer_user(s, 1, 0x401000, &si), 0);
		CHECK_STR(si.name, "[unknown]");
		symbolizer_get_stats(s, &st2);
		CHECK_INT(st2.processes, st1.processes + 1);
		CHECK(symbolizer_track(s, 1) < 0); /* a placeholder is tried again */
		symbolizer_forget(s, 1);
	}
}

static uint64_t kallsyms_addr(const char *want)
{
	char line[512], type, name[256];
	unsigned long long addr;
	uint64_t found = 0;
	FILE *f = fopen("/proc/kallsyms", "re");

	while (f && !found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx %c %255s", &addr, &type, name) == 3 && (type == 'T' || type == 't') &&
		    !strcmp(name, want))
			found = addr ? addr : 1;
	if (f)
		fclose(f);
	return found;
}

static void test_kernel(struct symbolizer *s)
{
	uint64_t addr = kallsyms_addr("schedule");
	struct sym_info si;
	int err;

	if (!addr) {
		fprintf(stderr, "  kernel: no 'schedule' in /proc/kallsyms, skipped\n");
		return;
	}
	err = symbolizer_kernel(s, addr + 1, &si);
	if (addr == 1) {
		fprintf(stderr, "  kernel: kallsyms addresses hidden (not root?), checking the fallback\n");
		CHECK_INT(err, -ENOENT);
		CHECK_STR(si.name, "[kernel]");
		return;
	}
	CHECK_INT(err, 0);
	CHECK_STR(si.name, "schedule");
	CHECK_STR(si.module, "[kernel.kallsyms]");
	CHECK(si.known);
}

int main(int argc, char **argv)
{
	struct symbolizer *s = NULL;
	struct symbolizer_stats st;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
		return 2;
	}
	fixture_dir = argv[1];
	signal(SIGPIPE, SIG_IGN);
	alarm(120);
	if (symbolizer_new(&s)) {
		fprintf(stderr, "symbolizer_new failed\n");
		return 1;
	}
	fprintf(stderr, "running as uid %d\n", (int)getuid());
	test_fixture(s, "sym_pie", NULL);
	test_fixture(s, "sym_nopie", NULL);
	test_fixture(s, "sym_stripped", NULL);
	test_fixture(s, "sym_nobid_stripped", NULL);
	test_fixture(s, "sym_uses_shared", "libsym_shared.so");
	test_cpp(s);
	test_unknown(s);
	test_sizes(s);
	test_deleted(s);
	test_exited(s);
	test_shared_cache(s);
	test_gone(s);
	test_kernel(s);
	symbolizer_get_stats(s, &st);
	CHECK_INT(st.processes, 0);
	CHECK(st.modules >= 8);
	CHECK(st.lookups > 50);
	CHECK(st.misses >= 3);
	symbolizer_free(s);
	return check_exit("test_symbolizer");
}
