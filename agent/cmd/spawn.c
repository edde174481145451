#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int spawn_stopped(char **argv, pid_t *ret_pid, int *ret_go, int *ret_err)
{
	int go[2], errp[2];
	pid_t pid;

	if (pipe2(go, O_CLOEXEC))
		return -errno;
	if (pipe2(errp, O_CLOEXEC)) {
		close(go[0]);
		close(go[1]);
		return -errno;
	}
	pid = fork();
	if (pid < 0) {
		int err = -errno;

		close(go[0]);
		close(go[1]);
		close(errp[0]);
		close(errp[1]);
		return err;
	}
	if (pid == 0) {
		char c;
		int e;

		close(go[1]);
		close(errp[0]);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		if (read(go[0], &c, 1) != 1)
			_exit(127); /* ember went away before releasing us */
		execvp(argv[0], argv);
		e = errno;
		(void)!write(errp[1], &e, sizeof(e));
		_exit(127);
	}
	close(go[0]);
	close(errp[1]);
	*ret_pid = pid;
	*ret_go = go[1];
	*ret_err = errp[0];
	return 0;
}

int spawn_release(pid_t pid, int go_fd, int err_fd)
{
	int e = 0;
	ssize_t n;

	(void)!write(go_fd, "x", 1);
	close(go_fd);
	n = read(err_fd, &e, sizeof(e));
	close(err_fd);
	if (n == (ssize_t)sizeof(e)) {
		(void)waitpid(pid, NULL, 0);
		return -e;
	}
	return 0;
}


void spawn_terminate(pid_t pid)
{
	kill(pid, SIGTERM);
	for (int i = 0; i < 50 && waitpid(pid, NULL, WNOHANG) == 0; i++)
		usleep(20000);
	if (waitpid(pid, NULL, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
	}
}
