/* spawn: starting the command a recording profiles. The child is forked stopped before exec,
 * so it can be selected as a target before it runs a single instruction of CMD. */
#ifndef EMBER_SPAWN_H
#define EMBER_SPAWN_H

#include <sys/types.h>

/* Forks argv[0] (PATH search) held before exec. *ret_go releases it (spawn_release), *ret_err
 * reports an exec failure. Returns 0 or -errno. */
int spawn_stopped(char **argv, pid_t *ret_pid, int *ret_go, int *ret_err);

/* Lets the child exec; closes both fds. Returns 0, or the exec error as -errno (child reaped). */
int spawn_release(pid_t pid, int go_fd, int err_fd);

/* SIGTERM, up to 1 s of grace, then SIGKILL; reaps the child. */
void spawn_terminate(pid_t pid);

#endif
