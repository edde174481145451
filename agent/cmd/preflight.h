/* preflight: checks made before any BPF work so that a missing privilege or kernel feature is
 * reported as one clear line instead of a libbpf error. */
#ifndef EMBER_PREFLIGHT_H
#define EMBER_PREFLIGHT_H

/* Returns 0 when the process may load BPF and open perf events (root, or CAP_BPF plus
 * CAP_PERFMON), and the kernel has BTF; otherwise prints one line and returns -EPERM/-ENOSYS. */
int preflight_check(void);

/* Checks that path can be created or overwritten (without leaving a file behind).
 * Prints one line naming `what` and returns -errno on failure. */
int preflight_writable(const char *path, const char *what);

#endif
