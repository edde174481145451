#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Names tried before giving up with -EEXIST: each is 64 fresh random bits, so a collision
 * means someone is planting names on purpose. */
#define FILEIO_TMP_TRIES 16

static int fileio_write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* 64 bits nobody can guess in advance; a counter and the clock stand in if getrandom fails. */
static uint64_t fileio_random(void)
{
	static _Atomic uint64_t counter;
	struct timespec ts;
	uint64_t r;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
		return r;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	r = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ (counter++ << 40);
	return r * 0x9e3779b97f4a7c15ull;
}

/* Opens a new temporary file in dirfd, its name in ret_name. Returns the fd or -errno. */
static int fileio_open_tmp(int dirfd, mode_t mode, char ret_name[FILEIO_TMP_NAME_MAX])
{
	for (int i = 0; i < FILEIO_TMP_TRIES; i++) {
		int fd;

		snprintf(ret_name, FILEIO_TMP_NAME_MAX, FILEIO_TMP_PREFIX "%ld-%016llx" FILEIO_TMP_SUFFIX,
			 (long)getpid(), (unsigned long long)fileio_random());
		fd = openat(dirfd, ret_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

int fileio_write_tmp_at(int dirfd, const void *buf, size_t len, mode_t mode,
			char ret_name[FILEIO_TMP_NAME_MAX])
{
	int fd, err;

	if (!buf && len)
		return -EINVAL;
	fd = fileio_open_tmp(dirfd, mode, ret_name);
	if (fd < 0)
		return fd;
	err = fileio_write_all(fd, buf, len);
	if (err)
		goto err_unlink;
	if (fsync(fd) < 0) {
		err = -errno;
		goto err_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		err = -errno;
		goto err_unlink;
	}
	return 0;

err_unlink:
	if (fd >= 0)
		close(fd);
	(void)unlinkat(dirfd, ret_name, 0);
	return err;
}

int fileio_write_atomic_at(int dirfd, const char *name, const void *buf, size_t len, mode_t mode)
{
	char tmp[FILEIO_TMP_NAME_MAX];
	int err;

	/* The temporary file must sit in the same directory as name for rename to be atomic. */
	if (!name || !*name || strchr(name, '/'))
		return -EINVAL;
	err = fileio_write_tmp_at(dirfd, buf, len, mode, tmp);
	if (err)
		return err;
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		err = -errno;
		(void)unlinkat(dirfd, tmp, 0);
		return err;
	}
	return 0;
}

int fileio_write_atomic_mode(const char *path, const void *buf, size_t len, mode_t mode)
{
	const char *slash, *base;
	char *dir = NULL;
	int dfd, err;

	if (!path || !*path)
		return -EINVAL;
	slash = strrchr(path, '/');
	base = slash ? slash + 1 : path;
	if (!*base)
		return -EISDIR;
	if (slash) {
		dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
		if (!dir)
			return -ENOMEM;
	}
	dfd = open(dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	err = dfd < 0 ? -errno : 0;
	free(dir);
	if (err)
		return err;
	err = fileio_write_atomic_at(dfd, base, buf, len, mode);
	close(dfd);
	return err;
}

int fileio_write_atomic(const char *path, const void *buf, size_t len)
{
	return fileio_write_atomic_mode(path, buf, len, FILEIO_MODE_DEFAULT);
}

int fileio_rename_noreplace_at(int dirfd, const char *from, const char *to)
{
	if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (linkat(dirfd, from, dirfd, to, 0) < 0)
		return -errno;
	(void)unlinkat(dirfd, from, 0);
	return 0;
}

/* mkdir(2) that accepts an existing directory (but not an existing file). */
static int fileio_mkdir_one(const char *path, mode_t mode)
{
	struct stat st;

	if (mkdir(path, mode) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int fileio_mkdir_p(const char *path, mode_t mode)
{
	char *p, *s;
	int err = 0;

	if (!path || !*path)
		return -EINVAL;
	p = strdup(path);
	if (!p)
		return -ENOMEM;
	for (s = p + 1; ; s++) {
		char c = *s;

		if (c != '/' && c != '\0')
			continue;
		if (s[-1] != '/') {  /* skip "//" and a trailing '/' */
			*s = '\0';
			err = fileio_mkdir_one(p, mode);
			*s = c;
			if (err)
				break;
		}
		if (!c)
			break;
	}
	free(p);
	return err;
}

int fileio_mkdir_parents(const char *path, mode_t mode)
{
	const char *slash;
	char *dir;
	int err;

	if (!path || !*path)
		return -EINVAL;
	slash = strrchr(path, '/');
	if (!slash || slash == path)
		return 0;
	dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return -ENOMEM;
	err = fileio_mkdir_p(dir, mode);
	free(dir);
	return err;
}

bool fileio_is_tmp_name(const char *name)
{
	size_t len = strlen(name), plen = strlen(FILEIO_TMP_PREFIX), slen = strlen(FILEIO_TMP_SUFFIX);

	return len > plen + slen && !strncmp(name, FILEIO_TMP_PREFIX, plen) &&
	       !strcmp(name + len - slen, FILEIO_TMP_SUFFIX);
}

static int open_path(int dirfd, const char *path, unsigned flags)
{
	struct open_how how = { .flags = O_PATH | O_CLOEXEC };
	long fd;

	if (!(flags & (FILEIO_UNTRUSTED_IN_ROOT | FILEIO_UNTRUSTED_NO_SYMLINKS))) {
		fd = openat(dirfd, path, O_PATH | O_CLOEXEC |
					 (flags & FILEIO_UNTRUSTED_NOFOLLOW ? O_NOFOLLOW : 0));
		return fd < 0 ? -errno : (int)fd;
	}
	if (flags & FILEIO_UNTRUSTED_NOFOLLOW)
		how.flags |= O_NOFOLLOW;
	how.resolve = RESOLVE_NO_MAGICLINKS;
	if (flags & FILEIO_UNTRUSTED_IN_ROOT)
		how.resolve |= RESOLVE_IN_ROOT;
	if (flags & FILEIO_UNTRUSTED_NO_SYMLINKS)
		how.resolve |= RESOLVE_NO_SYMLINKS;
	fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
	return fd < 0 ? -errno : (int)fd;
}

int fileio_open_untrusted(int dirfd, const char *path, unsigned flags, uint64_t max_size,
			  struct stat *ret_st)
{
	struct stat st, st2;
	char proc[64];
	int pfd, fd, err;

	if (!path || !*path)
		return -EINVAL;
	pfd = open_path(dirfd, path, flags);
	if (pfd < 0)
		return pfd;
	if (fstat(pfd, &st)) {
		err = -errno;
		close(pfd);
		return err;
	}
	if (S_ISLNK(st.st_mode)) {
		close(pfd);
		return -ELOOP; /* O_PATH|O_NOFOLLOW opens the link itself */
	}
	if (!S_ISREG(st.st_mode)) {
		close(pfd);
		return -EINVAL;
	}
	if (max_size && (uint64_t)st.st_size > max_size) {
		close(pfd);
		return -EFBIG;
	}
	/* Reopen the very inode the O_PATH handle names, for reading, never blocking. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	fd = open(proc, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	err = fd < 0 ? -errno : 0;
	close(pfd);
	if (err)
		return err;
	if (fstat(fd, &st2) || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino ||
	    !S_ISREG(st2.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if (ret_st)
		*ret_st = st2;
	return fd;
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
