/* test_fileio: the one atomic writer (fileio) in a temporary directory, no root.
 *
 * What a user relies on: the file appears whole with the mode asked for; a symlink planted at
 * the target or at the temporary name is never followed (the file it points to is untouched);
 * temporary names are unique and unpredictable; a failed write leaves no temporary file behind;
 * mkdir -p and "parents of a file path" create what `record -o a/b/x.pb.gz` needs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"
#include "fileio.h"

/* getrandom() as fileio sees it: the test links first, so this one wins. With script_n > 0 the
 * next values come from script[], so that a test can plant the name fileio will try first. */
static uint64_t script[4];
static int script_n, script_i;

ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
	if (script_i < script_n && len == sizeof(uint64_t)) {
		memcpy(buf, &script[script_i++], sizeof(uint64_t));
		return (ssize_t)len;
	}
	return syscall(SYS_getrandom, buf, len, flags);
}

static char root[256];

static char *path_of(const char *name)
{
	static char buf[4][512];
	static int i;
	char *p = buf[i++ % 4];

	snprintf(p, 512, "%s/%s", root, name);
	return p;
}

static int put(const char *path, const char *s)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return -errno;
	fputs(s, f);
	return fclose(f) ? -EIO : 0;
}

/* Reads a small file back, through the other half of fileio. */
static int get(const char *path, char *buf, size_t sz)
{
	char *str = NULL;
	int err = fileio_read_secret(path, sz - 1, &str);

	if (!err)
		snprintf(buf, sz, "%s", str);
	free(str);
	return err;
}

/* Number of fileio temporary files in dir. */
static int count_tmp(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += fileio_is_tmp_name(de->d_name);
	closedir(d);
	return n;
}

static void test_write(void)
{
	char buf[64];
	struct stat st;

	CHECK_INT(fileio_write_atomic(path_of("a.txt"), "hello", 5), 0);
	CHECK_INT(get(path_of("a.txt"), buf, sizeof(buf)), 0);
	CHECK_STR(buf, "hello");
	CHECK_INT(stat(path_of("a.txt"), &st), 0);
	CHECK_INT(st.st_mode & 07777, 0644);
	/* Replaces the old content, with the caller's mode. */
	CHECK_INT(fileio_write_atomic_mode(path_of("a.txt"), "bye", 3, 0600), 0);
	CHECK_INT(get(path_of("a.txt"), buf, sizeof(buf)), 0);
	CHECK_STR(buf, "bye");
	CHECK_INT(stat(path_of("a.txt"), &st), 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK_INT(fileio_write_atomic(path_of("empty"), NULL, 0), 0);
	CHECK_INT(stat(path_of("empty"), &st), 0);
	CHECK_INT(st.st_size, 0);
	CHECK_INT(fileio_write_atomic(path_of("no-such-dir/x"), "x", 1), -ENOENT);
	CHECK_INT(fileio_write_atomic(path_of(""), "x", 1), -EISDIR);
	CHECK_INT(fileio_write_atomic("", "x", 1), -EINVAL);
	CHECK_INT(count_tmp(root), 0);
}

static void test_unique_names(void)
{
	char names[64][FILEIO_TMP_NAME_MAX], pid[32];
	int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	CHECK(dfd >= 0);
	snprintf(pid, sizeof(pid), FILEIO_TMP_PREFIX "%ld-", (long)getpid());
	for (int i = 0; i < 64; i++) {
		CHECK_INT(fileio_write_tmp_at(dfd, "x", 1, 0644, names[i]), 0);
		CHECK(fileio_is_tmp_name(names[i]));
		CHECK(strncmp(names[i], pid, strlen(pid)) == 0);
		for (int j = 0; j < i; j++)
			CHECK(strcmp(names[i], names[j]) != 0);
	}
	for (int i = 0; i < 64; i++)
		CHECK_INT(unlinkat(dfd, names[i], 0), 0);
	CHECK(!fileio_is_tmp_name("x.pb.gz"));
	CHECK(!fileio_is_tmp_name(".ember-.tmp"));
	close(dfd);
}

/* A symlink where fileio would put its temporary file, or at the target, is not followed. */
static void test_symlinks(void)
{
	char buf[64], planted[FILEIO_TMP_NAME_MAX], link[512];
	struct stat st;
	ssize_t n;

	CHECK_INT(put(path_of("victim"), "precious"), 0);

	/* The name fileio will try first (scripted getrandom) is a symlink to the victim. */
	script[0] = 0x1111222233334444ull;
	script[1] = 0x5555666677778888ull;
	script_n = 2;
	script_i = 0;
	snprintf(planted, sizeof(planted), FILEIO_TMP_PREFIX "%ld-%016llx" FILEIO_TMP_SUFFIX,
		 (long)getpid(), (unsigned long long)script[0]);
	CHECK_INT(symlink(path_of("victim"), path_of(planted)), 0);
	CHECK_INT(fileio_write_atomic(path_of("out"), "new", 3), 0);
	CHECK_INT(script_i, 2);  /* it took the second name */
	script_n = script_i = 0;
	CHECK_INT(get(path_of("victim"), buf, sizeof(buf)), 0);
	CHECK_STR(buf, "precious");
	n = readlink(path_of(planted), link, sizeof(link) - 1);
	CHECK(n > 0);
	CHECK_INT(unlink(path_of(planted)), 0);
	CHECK_INT(get(path_of("out"), buf, sizeof(buf)), 0);
	CHECK_STR(buf, "new");

	/* The old writer's predictable name, NAME.tmp.PID, is not used at all. */
	snprintf(planted, sizeof(planted), "out.tmp.%d", (int)getpid());
	CHECK_INT(symlink(path_of("victim"), path_of(planted)), 0);
	CHECK_INT(fileio_write_atomic(path_of("out"), "newer", 5), 0);
	CHECK_INT(get(path_of("victim"), buf, sizeof(buf)), 0);
	CHECK_STR(buf, "precious");
	CHECK_INT(unlink(path_of(planted)), 0);

	/* A symlink at the target is replaced by the file, not written through. */
	CHECK_INT(symlink(path_of("victim"), path_of("target")), 0);
	CHECK_INT(fileio_write_atomic(path_of("target"), "mine", 4), 0);
	CHECK_INT(lstat(path_of("target"), &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_INT(get(path_of("victim"), buf, sizeof(buf)), 0);
	CHECK_STR(buf, "precious");

	/* The planted name comes up again and again: fileio keeps drawing new names. */
	script_n = 4;
	script_i = 0;
	for (int i = 0; i < 4; i++)
		script[i] = 0xabcdef;
	snprintf(planted, sizeof(planted), FILEIO_TMP_PREFIX "%ld-%016llx" FILEIO_TMP_SUFFIX,
		 (long)getpid(), 0xabcdefull);
	CHECK_INT(symlink(path_of("victim"), path_of(planted)), 0);
	CHECK_INT(fileio_write_atomic(path_of("out2"), "x", 1), 0);
	CHECK_INT(script_i, 4);
	script_n = script_i = 0;
	CHECK_INT(unlink(path_of(planted)), 0);
	CHECK_INT(count_tmp(root), 0);
}

/* Failures after the temporary file exists leave none behind. */
static void test_failures(void)
{
	struct rlimit old, lim = { .rlim_cur = 4096, .rlim_max = 0 };
	static char big[8192];
	struct stat st;

	/* rename() fails: the target is a directory. */
	CHECK_INT(mkdir(path_of("isdir"), 0755), 0);
	CHECK_INT(put(path_of("isdir/keep"), "x"), 0);
	CHECK(fileio_write_atomic(path_of("isdir"), "x", 1) < 0);
	CHECK_INT(count_tmp(root), 0);

	/* write() fails: RLIMIT_FSIZE below the size (SIGXFSZ ignored, so write says -EFBIG). */
	CHECK_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim.rlim_max = old.rlim_max;
	signal(SIGXFSZ, SIG_IGN);
	CHECK_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
	CHECK_INT(fileio_write_atomic(path_of("big"), big, sizeof(big)), -EFBIG);
	CHECK_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
	CHECK_INT(count_tmp(root), 0);
	CHECK(stat(path_of("big"), &st) < 0);

	CHECK_INT(fileio_write_atomic(path_of("bad"), NULL, 3), -EINVAL);
	CHECK_INT(count_tmp(root), 0);
}

static void test_rename_noreplace(void)
{
	int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	CHECK_INT(put(path_of("r1"), "1"), 0);
	CHECK_INT(put(path_of("r2"), "2"), 0);
	CHECK_INT(fileio_rename_noreplace_at(dfd, "r1", "r2"), -EEXIST);
	CHECK_INT(fileio_write_atomic_at(dfd, "m/x", "x", 1, 0644), -EINVAL); /* one component */
	CHECK_INT(fileio_rename_noreplace_at(dfd, "r1", "r3"), 0);
	CHECK(access(path_of("r1"), F_OK) < 0);
	close(dfd);
}

static void test_mkdir(void)
{
	struct stat st;

	CHECK_INT(fileio_mkdir_p(path_of("m/a/b/c"), 0755), 0);
	CHECK_INT(stat(path_of("m/a/b/c"), &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_INT(fileio_mkdir_p(path_of("m/a/b/c"), 0755), 0);   /* exists: fine */
	CHECK_INT(fileio_mkdir_p(path_of("m//x/y/"), 0755), 0);    /* "//" and a trailing '/' */
	CHECK_INT(stat(path_of("m/x/y"), &st), 0);
	CHECK_INT(put(path_of("m/file"), "x"), 0);
	CHECK_INT(fileio_mkdir_p(path_of("m/file/sub"), 0755), -ENOTDIR);
	CHECK_INT(fileio_mkdir_p(path_of("m/file"), 0755), -ENOTDIR);
	CHECK_INT(fileio_mkdir_p("", 0755), -EINVAL);

	/* record -o a/b/x.pb.gz: the parents, not the file. */
	CHECK_INT(fileio_mkdir_parents(path_of("p/q/x.pb.gz"), 0755), 0);
	CHECK_INT(stat(path_of("p/q"), &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK(stat(path_of("p/q/x.pb.gz"), &st) < 0);
	CHECK_INT(fileio_write_atomic(path_of("p/q/x.pb.gz"), "pb", 2), 0);
	CHECK_INT(fileio_mkdir_parents("x.pb.gz", 0755), 0);      /* no '/': nothing to make */
	CHECK_INT(fileio_mkdir_parents("/x.pb.gz", 0755), 0);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/* fileio_open_untrusted: what a hostile process can put where Ember reads. */
static void test_untrusted(void)
{
	char dir[PATH_MAX / 2], reg[PATH_MAX], fifo[PATH_MAX], link[PATH_MAX], in[PATH_MAX];
	char rootdir[PATH_MAX], abslink[PATH_MAX];
	struct stat st;
	int fd, rfd;

	snprintf(dir, sizeof(dir), "%s/untrusted", root);
	CHECK_INT(mkdir(dir, 0700), 0);
	snprintf(reg, sizeof(reg), "%s/reg", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	snprintf(link, sizeof(link), "%s/link", dir);
	write_file(reg, "0123456789");
	CHECK_INT(mkfifo(fifo, 0600), 0);
	CHECK_INT(symlink(reg, link), 0);

	fd = fileio_open_untrusted(AT_FDCWD, reg, FILEIO_UNTRUSTED_NOFOLLOW, 0, &st);
	CHECK(fd >= 0 && st.st_size == 10 && S_ISREG(st.st_mode));
	CHECK(fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC));
	if (fd >= 0)
		close(fd);
	/* A FIFO is refused at once (no reader waits for a writer), a device never opened. */
	CHECK_INT(fileio_open_untrusted(AT_FDCWD, fifo, 0, 0, NULL), -EINVAL);
	CHECK_INT(fileio_open_untrusted(AT_FDCWD, "/dev/zero", 0, 0, NULL), -EINVAL);
	CHECK_INT(fileio_open_untrusted(AT_FDCWD, dir, 0, 0, NULL), -EINVAL);
	/* A symlink as the last component, with NOFOLLOW; without it, followed to a regular file. */
	CHECK_INT(fileio_open_untrusted(AT_FDCWD, link, FILEIO_UNTRUSTED_NOFOLLOW, 0, NULL), -ELOOP);
	fd = fileio_open_untrusted(AT_FDCWD, link, 0, 0, NULL);
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	CHECK_INT(fileio_open_untrusted(AT_FDCWD, link, FILEIO_UNTRUSTED_NO_SYMLINKS, 0, NULL), -ELOOP);
	/* The size bound. */
	CHECK_INT(fileio_open_untrusted(AT_FDCWD, reg, 0, 9, NULL), -EFBIG);
	CHECK_INT(fileio_open_untrusted(AT_FDCWD, "", 0, 0, NULL), -EINVAL);

	/* IN_ROOT: an absolute symlink inside a "container root" resolves inside it, never to the
	 * host file of the same name. */
	snprintf(rootdir, sizeof(rootdir), "%s/ctr", dir);
	CHECK_INT(mkdir(rootdir, 0700), 0);
	snprintf(in, sizeof(in), "%s/ctr/tmp", dir);
	CHECK_INT(mkdir(in, 0700), 0);
	snprintf(abslink, sizeof(abslink), "%s/ctr/tmp/map", dir);
	CHECK_INT(symlink(reg, abslink), 0); /* absolute: the host's reg */
	rfd = open(rootdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	CHECK(rfd >= 0);
	CHECK_INT(fileio_open_untrusted(rfd, "/tmp/map", FILEIO_UNTRUSTED_IN_ROOT, 0, NULL), -ENOENT);
	CHECK_INT(fileio_open_untrusted(rfd, "../../reg", FILEIO_UNTRUSTED_IN_ROOT, 0, NULL), -ENOENT);
	if (rfd >= 0)
		close(rfd);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	char cmd[300];

	umask(022);
	snprintf(root, sizeof(root), "%s/ember-fileio-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	test_write();
	test_unique_names();
	test_symlinks();
	test_failures();
	test_rename_noreplace();
	test_mkdir();
	test_untrusted();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "test_fileio: could not remove %s\n", root);
	return check_exit("test_fileio");
}
