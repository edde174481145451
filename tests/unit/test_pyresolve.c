/* unit.pyresolve: the resolver over a live interpreter (our own child, read with
 * process_vm_readv), found through the shared process cache as the agent finds it: the
 * interpreter described, every code object resolved to what the interpreter says (py_codes.py),
 * the cache answering the second time, a wrong validation key rejected as stale, garbage
 * addresses refused, a process that is not Python said to be none.
 * Usage: unit_pyresolve PY_CODES.PY */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "proccache.h"
#include "pyresolve.h"

static long unhex(char *s)
{
	size_t n = strlen(s), i;

	if (!strcmp(s, "-")) {
		s[0] = '\0';
		return 0;
	}
	for (i = 0; i < n / 2; i++) {
		unsigned int v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		s[i] = (char)v;
	}
	s[i] = '\0';
	return (long)i;
}

/* The key BPF would send for the code object at addr, read the way BPF reads it. */
static uint32_t key_of(pid_t pid, const struct pyoffsets *o, uint64_t addr)
{
	uint8_t b[EMBER_PY_CODE_READ];
	struct iovec l = { b, sizeof(b) }, r = { (void *)(uintptr_t)addr, sizeof(b) };
	uint64_t fn = 0, nm = 0, qn = 0, lt = 0;
	uint32_t first = 0;

	if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)sizeof(b))
		return 0;
	memcpy(&first, b + o->code_firstlineno, 4);
	memcpy(&fn, b + o->code_filename, 8);
	memcpy(&nm, b + o->code_name, 8);
	if (o->code_qualname != PYOFF_NONE)
		memcpy(&qn, b + o->code_qualname, 8);
	memcpy(&lt, b + o->code_linetable, 8);
	return ember_py_code_key(first, fn, nm, qn, lt);
}

static int judge(const char *py, const char *script)
{
	int in[2], out[2], total = 0, good = 0;
	struct pyresolve_stats st0, st1;
	const struct pyresolve_proc *info;
	struct proccache_proc *p;
	struct pyresolve *r;
	struct proccache *pc;
	static char line[1 << 20];
	uint64_t str_type = 0;
	pid_t pid;
	FILE *f;

	if (access(py, X_OK))
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
	CHECK_INT(proccache_new(&pc), 0);
	CHECK_INT(pyresolve_new(pc, &r), 0);
	while (f && fgets(line, sizeof(line), f)) {
		char *tok[8], *save = NULL;
		int nt = 0;

		line[strcspn(line, "\n")] = '\0';
		if (!strcmp(line, "ready"))
			break;
		for (char *t = strtok_r(line, " ", &save); t && nt < 8; t = strtok_r(NULL, " ", &save))
			tok[nt++] = t;
		if (nt == 4 && !strcmp(tok[0], "types")) {
			str_type = strtoull(tok[2], NULL, 10);
			/* Every library is mapped by now: describe the process. */
			CHECK_INT(proccache_get(pc, pid, 0, PROCCACHE_HOLD_SYMBOLIZER, false, false, &p), 0);
			if (pyresolve_process(r, pid, &info)) {
				fprintf(stderr, "pyresolve: %s: not described\n", py);
				check_failures++;
				break;
			}
			CHECK(info->runtime != 0);
			CHECK(info->module && strstr(info->module, "python3"));
			continue;
		}
		if (nt != 7 || strcmp(tok[0], "code") || total >= 400)
			continue;
		{
			uint64_t addr = strtoull(tok[1], NULL, 10);
			long first = strtol(tok[2], NULL, 10);
			struct ember_py_frame fr = { .code = addr, .key = key_of(pid, &info->off, addr),
						     .instr = INT32_MIN };
			struct pyresolve_frame rf;
			int err;

			unhex(tok[3]);
			unhex(tok[5]);
			total++;
			err = pyresolve_frame(r, pid, &fr, &rf);
			if (!err && !strcmp(rf.name, tok[3]) && !strcmp(rf.filename, tok[5]) &&
			    rf.start_line == (first > 0 ? first : 0) && rf.line == 0) {
				good++;
			} else if (total - good < 5) {
				fprintf(stderr, "pyresolve: %s: code at %#llx: %s (got \"%s\", want \"%s\")\n",
					py, (unsigned long long)addr, err ? strerror(-err) : "differs",
					err ? "" : rf.name, tok[3]);
			}
			/* again: from the cache; then a key that is not this object's */
			pyresolve_get_stats(r, &st0);
			CHECK_INT(pyresolve_frame(r, pid, &fr, &rf), 0);
			pyresolve_get_stats(r, &st1);
			CHECK_INT(st1.cache_hits, st0.cache_hits + 1);
			fr.key ^= 0x5a5a;
			CHECK_INT(pyresolve_frame(r, pid, &fr, &rf), -ESTALE);
			pyresolve_get_stats(r, &st0);
			CHECK_INT(st0.stale, st1.stale + 1);
		}
	}
	if (total) {
		struct ember_py_frame junk = { .code = str_type, .key = 0 };
		struct pyresolve_frame rf;

		/* the str type object, an unmapped page, a marker: never a frame */
		CHECK_INT(pyresolve_frame(r, pid, &junk, &rf), -EINVAL);
		junk.code = 0x7ff0;
		CHECK_INT(pyresolve_frame(r, pid, &junk, &rf), -EFAULT);
		junk.code = EMBER_PYF_MARKER;
		CHECK(pyresolve_frame(r, pid, &junk, &rf) < 0);
		pyresolve_get_stats(r, &st0);
		CHECK_INT(st0.processes, 1);
		CHECK(st0.resolved >= (uint64_t)good);
	}
	close(in[1]);
	if (f)
		fclose(f);
	waitpid(pid, NULL, 0);
	pyresolve_free(r);
	proccache_unref(pc);
	printf("pyresolve: %s: %d of %d code objects resolved equal\n", py, good, total);
	CHECK(total > 300);
	CHECK_INT(good, total);
	return total > 300 && good == total;
}

/* A process that is not Python has no interpreter. */
static void not_python(void)
{
	const struct pyresolve_proc *info;
	struct proccache_proc *p;
	struct pyresolve *r;
	struct proccache *pc;
	pid_t pid = fork();

	if (pid == 0) {
		execl("/bin/sleep", "sleep", "5", (char *)NULL);
		_exit(127);
	}
	usleep(100 * 1000);
	CHECK_INT(proccache_new(&pc), 0);
	CHECK_INT(pyresolve_new(pc, &r), 0);
	CHECK_INT(proccache_get(pc, pid, 0, PROCCACHE_HOLD_SYMBOLIZER, false, false, &p), 0);
	CHECK_INT(pyresolve_process(r, pid, &info), -ENOENT);
	CHECK_INT(pyresolve_process(r, 1 << 30, &info), -ESRCH);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	pyresolve_free(r);
	proccache_unref(pc);
}

int main(int argc, char **argv)
{
	const char *home = getenv("HOME");
	char pat[PATH_MAX];
	glob_t g = { 0 };
	int ran = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: unit_pyresolve PY_CODES.PY\n");
		return 2;
	}
	not_python();
	ran += judge("/usr/bin/python3.11", argv[1]);
	snprintf(pat, sizeof(pat), "%s/.pyenv/versions/3.1[0-9]*/bin/python3", home ? home : "/root");
	if (glob(pat, 0, NULL, &g) == 0)
		for (size_t i = 0; i < g.gl_pathc; i++)
			ran += judge(g.gl_pathv[i], argv[1]);
	globfree(&g);
	printf("pyresolve: %d interpreters judged\n", ran);
	CHECK(ran >= 1);
	return check_exit("unit.pyresolve");
}
