/* fileio: the one atomic file writer, mkdir -p, and small-file reading.
 *
 * Every file Ember writes (ember record's -o and --flamegraph, the local sink's profiles and
 * SVGs, the unit tests' fixtures) goes through fileio_write_atomic*(): a new temporary file with
 * an unpredictable name in the target's own directory, opened O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC
 * (so nothing planted there, symlink or file, is followed or reused), written in full, fsync'd,
 * then rename(2)d over the target; on any failure the temporary file is unlinked. Readers see the
 * old file or the new one, never a partial one. Thread-safe; no state but a name counter. */
#ifndef EMBER_FILEIO_H
#define EMBER_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Mode of files written when the caller has no reason to choose (umask applies). */
#define FILEIO_MODE_DEFAULT 0644
/* Mode of directories made by fileio_mkdir_parents() callers that have no reason to choose. */
#define FILEIO_DIR_MODE_DEFAULT 0755

/* Temporary names are FILEIO_TMP_PREFIX "<pid>-<64 random bits in hex>" FILEIO_TMP_SUFFIX, at
 * most FILEIO_TMP_NAME_MAX bytes with the NUL; fileio_is_tmp_name() tells one (left by a crash)
 * when a directory is scanned. */
#define FILEIO_TMP_PREFIX ".ember-"
#define FILEIO_TMP_SUFFIX ".tmp"
#define FILEIO_TMP_NAME_MAX 64

/* Creates a new file with a fresh temporary name in directory dirfd (O_EXCL, O_NOFOLLOW: an
 * existing entry of that name, symlink or not, makes it try another name), writes all of buf,
 * fsyncs and closes it. Its name goes to ret_name (FILEIO_TMP_NAME_MAX bytes), which the caller
 * renames or unlinks. On failure no file is left. Returns 0 or -errno. */
int fileio_write_tmp_at(int dirfd, const void *buf, size_t len, mode_t mode,
			char ret_name[FILEIO_TMP_NAME_MAX]);

/* Writes buf as name (one path component: -EINVAL for one with a '/') in directory dirfd: a
 * temporary file from fileio_write_tmp_at(), then renameat(2) over name (an existing name, even
 * a symlink, is replaced, never followed). Returns 0 or -errno; on failure nothing is left. */
int fileio_write_atomic_at(int dirfd, const char *name, const void *buf, size_t len, mode_t mode);

/* fileio_write_atomic_at() in the directory of path (".", when path has no '/'). The directory
 * must exist: see fileio_mkdir_parents(). Returns 0 or -errno (-ENOENT: no such directory). */
int fileio_write_atomic_mode(const char *path, const void *buf, size_t len, mode_t mode);

/* fileio_write_atomic_mode(path, buf, len, FILEIO_MODE_DEFAULT). */
int fileio_write_atomic(const char *path, const void *buf, size_t len);

/* Renames from to to, both in dirfd, unless to exists (-EEXIST); falls back to link + unlink on
 * filesystems without RENAME_NOREPLACE. Returns 0 or -errno. */
int fileio_rename_noreplace_at(int dirfd, const char *from, const char *to);

/* mkdir -p: creates path and the missing directories above it with mode (umask applies).
 * An existing directory is fine; an existing non-directory is -ENOTDIR. Returns 0 or -errno. */
int fileio_mkdir_p(const char *path, mode_t mode);

/* Creates the missing parent directories of the file path (as fileio_mkdir_p() on everything
 * before its last '/'); nothing to do when path has no '/'. So that `record -o a/b/x.pb.gz`
 * can make a/b, as `agent --output a/b` does. Returns 0 or -errno. */
int fileio_mkdir_parents(const char *path, mode_t mode);

/* Whether name looks like one of fileio's temporary files. */
bool fileio_is_tmp_name(const char *name);

/* The one way Ember opens a file that someone else controls (a process's perf map, a debug
 * file a .gnu_debuglink names, a library path from a process's environment, a mapped file):
 * for reading, without blocking and without side effects. The path is first opened O_PATH (no
 * open of the file itself: a FIFO never blocks, a device is never opened), must be a regular
 * file of at most max_size bytes (0: any), and only then is it opened O_RDONLY|O_NONBLOCK
 * through that handle, its identity checked again. flags:
 *   FILEIO_UNTRUSTED_NOFOLLOW  a symlink as the last component is refused (-ELOOP)
 *   FILEIO_UNTRUSTED_IN_ROOT   path is resolved with dirfd as "/" (openat2 RESOLVE_IN_ROOT:
 *                              an absolute symlink inside a container's root stays inside it;
 *                              "..", magic links and escapes are refused) — for /proc/PID/root
 *   FILEIO_UNTRUSTED_NO_SYMLINKS no symlink in any component (-ELOOP)
 * dirfd is AT_FDCWD or a directory (required with IN_ROOT). Returns the fd (O_CLOEXEC) and
 * fills *ret_st when given, or -errno: -ELOOP, -EINVAL (not a regular file), -EFBIG (larger than
 * max_size), -ENOENT, -EACCES, -EXDEV (escapes the root)... */
#define FILEIO_UNTRUSTED_NOFOLLOW 1u
#define FILEIO_UNTRUSTED_IN_ROOT 2u
#define FILEIO_UNTRUSTED_NO_SYMLINKS 4u
struct stat;
int fileio_open_untrusted(int dirfd, const char *path, unsigned flags, uint64_t max_size,
			  struct stat *ret_st);

/* Reads a whole small file (at most max bytes) into a NUL-terminated malloc'd string, with
 * trailing newlines removed. Returns 0, -EFBIG or -errno. */
int fileio_read_secret(const char *path, size_t max, char **ret_str);

#endif
