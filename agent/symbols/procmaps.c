/* procmaps: see procmaps.h. */
#include "procmaps.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "log.h"

#define DELETED_SUFFIX " (deleted)"

/* Opening /proc/PID/x of a pid that does not exist fails with ENOENT: report it as ESRCH. */
static int proc_errno(int err)
{
	return err == ENOENT ? -ESRCH : -err;
}

static int parse_line(char *line, struct procmaps_entry *e)
{
	char perms[5] = "";
	unsigned long long start, end, pgoff, inode;
	unsigned int maj, min;
	size_t len;
	int pos = 0;
	char *path;

	if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu %n", &start, &end, perms, &pgoff, &maj,
		   &min, &inode, &pos) < 7 || !pos)
		return -EINVAL;
	path = line + pos;
	len = strcspn(path, "\n");
	path[len] = '\0';
	memset(e, 0, sizeof(*e));
	if (inode && len > strlen(DELETED_SUFFIX) &&
	    !strcmp(path + len - strlen(DELETED_SUFFIX), DELETED_SUFFIX)) {
		len -= strlen(DELETED_SUFFIX);
		path[len] = '\0';
		e->deleted = true;
	}
	e->path = strdup(path);
	if (!e->path)
		return -ENOMEM;
	e->start = start;
	e->end = end;
	e->pgoff = pgoff;
	e->inode = inode;
	e->dev_major = maj;
	e->dev_minor = min;
	e->exec = perms[2] == 'x';
	return 0;
}

int procmaps_read(pid_t pid, struct procmaps_entry **ret_maps, size_t *ret_nr)
{
	struct procmaps_entry *maps = NULL;
	size_t nr = 0, cap = 0, line_cap = 0;
	char path[64], *line = NULL;
	FILE *f;
	int err = 0;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f) {
		err = proc_errno(errno);
		log_debug("procmaps: %s: %s", path, strerror(-err));
		return err;
	}
	while (getline(&line, &line_cap, f) > 0) {
		if (nr == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			void *p;

			if (ncap > SIZE_MAX / sizeof(*maps)) {
				err = -ENOMEM;
				goto out;
			}
			p = realloc(maps, ncap * sizeof(*maps));
			if (!p) {
				err = -ENOMEM;
				goto out;
			}
			maps = p;
			cap = ncap;
		}
		err = parse_line(line, &maps[nr]);
		if (err == -EINVAL) {
			err = 0;
			continue;
		}
		if (err)
			goto out;
		nr++;
	}
	/* a process that exits while we read leaves an empty file behind */
	if (ferror(f))
		err = proc_errno(errno);
	else if (!nr && kill(pid, 0) && errno == ESRCH)
		err = -ESRCH;
out:
	free(line);
	fclose(f);
	if (err) {
		procmaps_free(maps, nr);
		return err;
	}
	*ret_maps = maps;
	*ret_nr = nr;
	return 0;
}

void procmaps_free(struct procmaps_entry *maps, size_t nr)
{
	if (!maps)
		return;
	for (size_t i = 0; i < nr; i++)
		free(maps[i].path);
	free(maps);
}

/* Fields 3.. of /proc/PID/stat into buf (NUL-terminated): the part after comm. 0 or -errno. */
static int stat_fields(pid_t pid, char *buf, size_t size, char **ret_fields)
{
	char path[64], *p;
	ssize_t n;
	int fd, err;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return proc_errno(errno);
	n = read(fd, buf, size - 1);
	err = n < 0 ? proc_errno(errno) : 0;
	close(fd);
	if (err)
		return err;
	buf[n] = '\0';
	/* comm (field 2) may hold spaces and parentheses: fields resume after the last ')' */
	p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	*ret_fields = p + 1;
	return 0;
}

int procmaps_start_time(pid_t pid, uint64_t *ret_start)
{
	char buf[1024], *p;
	unsigned long long start;
	int err = stat_fields(pid, buf, sizeof(buf), &p);

	if (err)
		return err;
	/* after ") " come fields 3..: state is 3, starttime is 22, so skip 19 fields */
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -EINVAL;
	}
	if (sscanf(p, " %llu", &start) != 1)
		return -EINVAL;
	*ret_start = start;
	return 0;
}

int procmaps_state(pid_t pid, char *ret_state)
{
	char buf[1024], *p;
	int err = stat_fields(pid, buf, sizeof(buf), &p);

	if (err)
		return err;
	if (sscanf(p, " %c", ret_state) != 1)
		return -EINVAL;
	return 0;
}

int procmaps_parent(pid_t pid, pid_t *ret_ppid)
{
	char buf[1024], *p, state;
	int ppid, err = stat_fields(pid, buf, sizeof(buf), &p);

	if (err)
		return err;
	if (sscanf(p, " %c %d", &state, &ppid) != 2 || ppid < 0)
		return -EINVAL;
	*ret_ppid = (pid_t)ppid;
	return 0;
}

static bool same_inode(int fd, uint64_t inode)
{
	struct stat st;

	return fstat(fd, &st) == 0 && (uint64_t)st.st_ino == inode;
}

static bool same_mntns(pid_t pid)
{
	char path[64], ns[64], self[64];
	ssize_t n, m;

	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	n = readlink(path, ns, sizeof(ns) - 1);
	m = readlink("/proc/self/ns/mnt", self, sizeof(self) - 1);
	if (n <= 0 || m <= 0)
		return false;
	ns[n] = self[m] = '\0';
	return !strcmp(ns, self);
}

/* Opens the file behind a mapping: /proc/PID/map_files (the very file mapped, even deleted;
 * needs CAP_SYS_ADMIN), /proc/PID/root/PATH (other mount namespaces, resolved inside that
 * root), /proc/PID/exe (the main binary, even deleted, for the process's own user), then PATH in
 * our mount namespace. Every way but the first is checked against the mapped inode, so a
 * replaced file is not misread. The paths are the process's to change (a FIFO or a device put
 * where a mapped file was): every open goes through fileio_open_untrusted(), which opens only
 * regular files and never blocks. */
int procmaps_open_file(pid_t pid, const struct procmaps_entry *e)
{
	char path[PATH_MAX + 64], exe[PATH_MAX];
	ssize_t n;
	int fd, rootfd;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, e->start,
		 e->end);
	fd = fileio_open_untrusted(AT_FDCWD, path, 0, 0, NULL);
	if (fd >= 0)
		return fd;
	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	rootfd = e->path[0] == '/' ? open(path, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
	if (rootfd >= 0) {
		fd = fileio_open_untrusted(rootfd, e->path, FILEIO_UNTRUSTED_IN_ROOT, 0, NULL);
		close(rootfd);
		if (fd >= 0 && same_inode(fd, e->inode))
			return fd;
		if (fd >= 0)
			close(fd);
	}
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		if (!strncmp(exe, e->path, strlen(e->path)) &&
		    (!exe[strlen(e->path)] || !strcmp(exe + strlen(e->path), " (deleted)"))) {
			fd = fileio_open_untrusted(AT_FDCWD, path, 0, 0, NULL);
			if (fd >= 0 && same_inode(fd, e->inode))
				return fd;
			if (fd >= 0)
				close(fd);
		}
	}
	if (!e->deleted && same_mntns(pid)) {
		fd = fileio_open_untrusted(AT_FDCWD, e->path, 0, 0, NULL);
		if (fd >= 0 && same_inode(fd, e->inode))
			return fd;
		if (fd >= 0)
			close(fd);
	}
	return -ENOENT;
}

int procmaps_self_vdso(uint64_t *ret_start, size_t *ret_size)
{
	struct procmaps_entry *maps = NULL;
	unsigned long base = getauxval(AT_SYSINFO_EHDR);
	size_t nr = 0;
	int err = -ENOENT;

	if (!base || procmaps_read(getpid(), &maps, &nr))
		return -ENOENT;
	for (size_t i = 0; i < nr; i++) {
		if (maps[i].start == base && !strcmp(maps[i].path, "[vdso]")) {
			*ret_start = base;
			*ret_size = maps[i].end - maps[i].start;
			err = 0;
			break;
		}
	}
	procmaps_free(maps, nr);
	return err;
}
