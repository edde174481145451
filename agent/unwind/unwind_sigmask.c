/* unwind_sigmask: lets the unwinder skip libunwind's signal masking.
 *
 * libunwind blocks every signal around each use of its memory pools and register-state cache
 * (sigprocmask to the full set, then back), so that a signal handler that unwinds cannot
 * deadlock on a lock the interrupted code holds. Remote unwinding of one snapshot takes about
 * a dozen of those system calls. Ember's signal handlers only set flags and never call
 * libunwind, so the masking protects nothing here; it is the compile-time choice libunwind
 * offers as --disable-block-signals, which Debian's build does not make.
 *
 * This definition takes the place of libc's for every caller that links against the symbol
 * (libunwind among them) and behaves exactly like it, except on a thread inside
 * unwind_stack(), where it does nothing: there every call is libunwind's, and each block/restore
 * pair opens and closes within one libunwind call. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

#include "unwind_sigmask.h"

__thread bool unwind_skip_sigmask;

int sigprocmask(int how, const sigset_t *set, sigset_t *oldset)
{
	int err;

	if (unwind_skip_sigmask) {
		if (oldset)
			sigemptyset(oldset);
		return 0;
	}
	err = pthread_sigmask(how, set, oldset);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}
