/* The symbolizer names PCs in anonymous executable memory from /tmp/perf-PID.map (Python
 * 3.12+ perf trampolines, JITs): a child maps an executable page, describes two functions in
 * its perf map and waits; the parent symbolizes addresses inside them. No root needed. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "symbolizer.h"

int main(void)
{
	struct symbolizer *s = NULL;
	struct sym_info si;
	int pipefd[2];
	uint64_t base = 0;
	char path[64];
	pid_t pid;

	if (pipe(pipefd))
		return 2;
	pid = fork();
	if (pid == 0) {
		void *page = mmap(NULL, 8192, PROT_READ | PROT_WRITE | PROT_EXEC,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		FILE *f;

		snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
		f = fopen(path, "w");
		if (page == MAP_FAILED || !f)
			_exit(1);
		fprintf(f, "%lx 40 py::train_step:/srv/model.py\n", (unsigned long)(uintptr_t)page);
		fprintf(f, "%lx 40 py::forward:/srv/model.py\n", (unsigned long)(uintptr_t)page + 0x40);
		fclose(f);
		base = (uint64_t)(uintptr_t)page;
		(void)!write(pipefd[1], &base, sizeof(base));
		pause();
		_exit(0);
	}
	CHECK(read(pipefd[0], &base, sizeof(base)) == (ssize_t)sizeof(base));
	CHECK_INT(symbolizer_new(&s), 0);
	CHECK_INT(symbolizer_track(s, pid), 0);
	CHECK_INT(symbolizer_user(s, pid, base + 0x10, &si), 0);
	CHECK_STR(si.name, "py::train_step:/srv/model.py");
	CHECK(si.known);
	CHECK_INT(symbolizer_user(s, pid, base + 0x44, &si), 0);
	CHECK_STR(si.name, "py::forward:/srv/model.py");
	CHECK_INT(symbolizer_user(s, pid, base + 0x100, &si), 0);
	CHECK_STR(si.name, "[unknown]");
	CHECK(!si.known);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)pid);
	unlink(path);
	symbolizer_free(s);
	return check_exit("symbolizer_perfmap");
}
