#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fileio_write_atomic(const char *path, const void *buf, size_t len)
{
	char *tmp = NULL;
	const char *p = buf;
	int fd = -1, err = 0;

	if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto out_unlink;
		}
		p += w;
		len -= (size_t)w;
	}
	if (close(fd)) {
		fd = -1;
		err = -errno;
		goto out_unlink;
	}
	fd = -1;
	if (rename(tmp, path)) {
		err = -errno;
		goto out_unlink;
	}
	goto out;
out_unlink:
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp);
out:
	free(tmp);
	return err;
}

int fileio_read_secret(const char *path, size_t max, char **ret_str)
{
	char *buf;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;

	if (fd < 0)
		return -errno;
	buf = malloc(max + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	n = read(fd, buf, max + 1);
	err = n < 0 ? -errno : 0;
	close(fd);
	if (!err && (size_t)n > max)
		err = -EFBIG;
	if (err) {
		free(buf);
		return err;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	*ret_str = buf;
	return 0;
}
