/* fileio: small file helpers shared by the commands. */
#ifndef EMBER_FILEIO_H
#define EMBER_FILEIO_H

#include <stddef.h>

/* Writes buf to path through a temporary file in the same directory and rename(2), so readers
 * never see a partial file. Returns 0 or -errno. */
int fileio_write_atomic(const char *path, const void *buf, size_t len);

/* Reads a whole small file (at most max bytes) into a NUL-terminated malloc'd string, with
 * trailing newlines removed. Returns 0, -EFBIG or -errno. */
int fileio_read_secret(const char *path, size_t max, char **ret_str);

#endif
