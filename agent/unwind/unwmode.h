/* unwmode: --unwind auto, decided per process.
 *
 * At a process's first sample: frame pointers (cheap, walked by the kernel in BPF) when its
 * executable keeps them (fpdetect: most functions open with push %rbp; mov %rsp,%rbp), DWARF
 * snapshots otherwise (and when that cannot be told, e.g. a stripped binary). Afterwards, a
 * process on frame pointers whose stacks often stop short of a thread root (they cross code
 * without frame pointers, such as Debian's glibc under a qsort callback) is switched to DWARF:
 * after at least UNWMODE_MIN_STACKS stacks, more than UNWMODE_SHORT_SHARE of them short.
 * Verdicts on executables are cached by (device, inode, size, mtime). The policy only decides:
 * the caller applies its answers to the collector (cpuprof_unwmode_*). Not thread-safe. */
#ifndef EMBER_UNWMODE_H
#define EMBER_UNWMODE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define UNWMODE_MIN_STACKS 20
#define UNWMODE_SHORT_SHARE 0.05

struct unwmode;

int unwmode_new(struct unwmode **ret_u);
void unwmode_free(struct unwmode *u);

/* Should pid start in DWARF mode? (Reads /proc/PID/exe once per distinct executable.) */
bool unwmode_initial_dwarf(struct unwmode *u, pid_t pid);

/* Is a frame-pointer stack whose outermost frame is `root` complete? */
bool unwmode_is_root(const char *root);

/* Counts one frame-pointer stack of pid (hits samples, complete or not). Returns true once,
 * when pid should now switch to DWARF. */
bool unwmode_note_fp_stack(struct unwmode *u, pid_t pid, bool complete, unsigned long hits);

/* pid exited: forget its counters. */
void unwmode_forget(struct unwmode *u, pid_t pid);

#endif
