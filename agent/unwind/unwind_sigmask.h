/* unwind_sigmask: private to the unwinder (unwind.c and unwind_sigmask.c; the unit test
 * checks it). Set by unwind_stack() on its thread while libunwind runs: the sigprocmask defined
 * in unwind_sigmask.c then does nothing (see there why that is safe). */
#ifndef EMBER_UNWIND_SIGMASK_H
#define EMBER_UNWIND_SIGMASK_H

#include <stdbool.h>

extern __thread bool unwind_skip_sigmask;

#endif
