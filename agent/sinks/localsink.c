#include "localsink.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "log.h"

/* Longest sanitised service or family name, so that "<family>-<ts>-<seq>.pb.gz" fits NAME_MAX. */
#define LOCALSINK_NAME_MAX 128
/* Same-second suffixes tried before giving up (-EEXIST). */
#define LOCALSINK_MAX_SEQ 1000
#define LOCALSINK_PB_SUFFIX ".pb.gz"
/* "YYYYMMDDTHHMMSSZ" */
#define LOCALSINK_TS_LEN 16

/* One .pb.gz file under DIR; the index orders them by (sec, seq), oldest first. */
struct localsink_file {
	char *path;     /* "<service>/<file>", relative to DIR */
	int64_t sec;    /* UTC start of the interval, from the name */
	uint32_t seq;   /* same-second suffix, 0 for none */
	uint64_t size;  /* bytes on disk */
};

struct localsink {
	int dirfd;
	char *dir;
	uint64_t max_bytes;
	mode_t file_mode, dir_mode;    /* of what it writes; the directory too, when it makes it */
	uint64_t total;                /* sum of files[head..n).size */
	struct localsink_file *files;  /* sorted; live entries are [head, n) */
	size_t head, n, cap;
	struct localsink_stats stats;
};

/* Maps a service or family name to one directory/file name component: keeps [A-Za-z0-9_.-],
 * replaces anything else (so '/' too) with '_', and a leading '.' or a '.' after a '.' too,
 * so the result is never ".", "..", hidden, or holds "..". Never empty. */
static void localsink_sanitize(const char *in, char *out, size_t outsz)
{
	size_t j = 0;

	for (size_t i = 0; in && in[i] && j + 1 < outsz && j < LOCALSINK_NAME_MAX; i++) {
		unsigned char c = (unsigned char)in[i];

		if (!(isascii(c) && (isalnum(c) || c == '_' || c == '-' || c == '.')))
			c = '_';
		if (c == '.' && (j == 0 || out[j - 1] == '.'))
			c = '_';
		out[j++] = (char)c;
	}
	if (j == 0)
		out[j++] = '_';
	out[j] = '\0';
}

/* Parses "<family>-YYYYMMDDTHHMMSSZ[-N].pb.gz"; returns false for anything else. */
static bool localsink_parse_name(const char *name, int64_t *ret_sec, uint32_t *ret_seq)
{
	size_t len = strlen(name), slen = strlen(LOCALSINK_PB_SUFFIX);
	const char *end, *ts;
	unsigned long seq = 0;
	struct tm tm = {0};
	int v[6], widths[6] = {4, 2, 2, 2, 2, 2};
	const char *p;

	if (name[0] == '.' || len <= slen || strcmp(name + len - slen, LOCALSINK_PB_SUFFIX))
		return false;
	end = name + len - slen;  /* one past the 'Z', or past the suffix digits */
	if (end[-1] != 'Z') {
		const char *q = end;

		while (q > name && isdigit((unsigned char)q[-1]))
			q--;
		if (q == end || q == name || q[-1] != '-' || end - q > 9)
			return false;
		seq = strtoul(q, NULL, 10);
		if (seq == 0 || *q == '0')
			return false;
		end = q - 1;
	}
	if (end - name < LOCALSINK_TS_LEN + 2)
		return false;
	ts = end - LOCALSINK_TS_LEN;
	if (ts[-1] != '-' || ts[8] != 'T' || ts[15] != 'Z')
		return false;
	p = ts;
	for (int f = 0; f < 6; f++) {
		v[f] = 0;
		for (int k = 0; k < widths[f]; k++, p++) {
			if (!isdigit((unsigned char)*p))
				return false;
			v[f] = v[f] * 10 + (*p - '0');
		}
		if (f == 2)
			p++;  /* 'T' */
	}
	tm.tm_year = v[0] - 1900;
	tm.tm_mon = v[1] - 1;
	tm.tm_mday = v[2];
	tm.tm_hour = v[3];
	tm.tm_min = v[4];
	tm.tm_sec = v[5];
	*ret_sec = (int64_t)timegm(&tm);
	*ret_seq = (uint32_t)seq;
	return true;
}

static int localsink_cmp(const struct localsink_file *a, int64_t sec, uint32_t seq)
{
	if (a->sec != sec)
		return a->sec < sec ? -1 : 1;
	if (a->seq != seq)
		return a->seq < seq ? -1 : 1;
	return 0;
}

/* Adds a file to the index, after any with the same key. Takes ownership of path. */
static int localsink_index_add(struct localsink *sink, char *path, int64_t sec, uint32_t seq,
			       uint64_t size)
{
	size_t lo, hi;

	if (sink->n == sink->cap && sink->head > 0) {
		memmove(sink->files, sink->files + sink->head,
			(sink->n - sink->head) * sizeof(*sink->files));
		sink->n -= sink->head;
		sink->head = 0;
	}
	if (sink->n == sink->cap) {
		size_t cap = sink->cap ? sink->cap * 2 : 64;
		struct localsink_file *files;

		if (cap > LOCALSINK_MAX_FILES + 1)
			cap = LOCALSINK_MAX_FILES + 1;
		if (cap <= sink->n)
			return -ENOSPC;  /* cannot happen: the bound keeps n <= LOCALSINK_MAX_FILES */
		files = reallocarray(sink->files, cap, sizeof(*files));
		if (!files)
			return -ENOMEM;
		sink->files = files;
		sink->cap = cap;
	}
	lo = sink->head;
	hi = sink->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (localsink_cmp(&sink->files[mid], sec, seq) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(sink->files + lo + 1, sink->files + lo, (sink->n - lo) * sizeof(*sink->files));
	sink->files[lo] = (struct localsink_file){ .path = path, .sec = sec, .seq = seq, .size = size };
	sink->n++;
	sink->total += size;
	return 0;
}

/* Deletes the oldest files until the total is within max_bytes and the count within
 * LOCALSINK_MAX_FILES. A file already gone is just dropped from the index. */
static void localsink_enforce(struct localsink *sink)
{
	while (sink->head < sink->n &&
	       (sink->total > sink->max_bytes || sink->n - sink->head > LOCALSINK_MAX_FILES)) {
		struct localsink_file *f = &sink->files[sink->head];

		if (unlinkat(sink->dirfd, f->path, 0) == 0) {
			sink->stats.files_deleted++;
		} else if (errno != ENOENT) {
			log_debug("localsink: %s/%s: cannot delete: %s", sink->dir, f->path,
				  strerror(errno));
			sink->stats.write_errors++;
		}
		sink->total -= f->size;
		free(f->path);
		sink->head++;
	}
	if (sink->head == sink->n)
		sink->head = sink->n = 0;
}

static int localsink_open_service(struct localsink *sink, const char *svc)
{
	int fd;

	if (mkdirat(sink->dirfd, svc, sink->dir_mode) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(sink->dirfd, svc, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int localsink_write_pprof(struct localsink *sink, int sfd, const char *svc,
				 const char *fam, const struct upload *u)
{
	char tmp[FILEIO_TMP_NAME_MAX], ts[32], name[NAME_MAX + 1];
	int64_t sec = u->from_ns / 1000000000;
	time_t t = (time_t)sec;
	struct tm tm;
	char *path = NULL;
	uint32_t seq;
	int err;

	if (!gmtime_r(&t, &tm) || strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm) != LOCALSINK_TS_LEN)
		return -EINVAL;
	err = fileio_write_tmp_at(sfd, u->pprof_gz, u->pprof_len, sink->file_mode, tmp);
	if (err)
		return err;
	for (seq = 0; seq < LOCALSINK_MAX_SEQ; seq++) {
		if (seq)
			snprintf(name, sizeof(name), "%s-%s-%u" LOCALSINK_PB_SUFFIX, fam, ts, seq);
		else
			snprintf(name, sizeof(name), "%s-%s" LOCALSINK_PB_SUFFIX, fam, ts);
		err = fileio_rename_noreplace_at(sfd, tmp, name);
		if (err != -EEXIST)
			break;
	}
	if (err) {
		(void)unlinkat(sfd, tmp, 0);
		return err;
	}
	if (asprintf(&path, "%s/%s", svc, name) < 0) {
		/* The file stays on disk, outside the index, until a restart counts it. */
		return -ENOMEM;
	}
	err = localsink_index_add(sink, path, sec, seq, u->pprof_len);
	if (err) {
		free(path);
		return err;
	}
	sink->stats.files_written++;
	sink->stats.bytes_written += u->pprof_len;
	return 0;
}

static int localsink_write_svg(const struct localsink *sink, int sfd, const char *fam,
			      const struct upload *u)
{
	char name[NAME_MAX + 1];

	snprintf(name, sizeof(name), "%s.svg", fam);
	return fileio_write_atomic_at(sfd, name, u->svg, u->svg_len, sink->file_mode);
}

int localsink_write(struct localsink *sink, const struct upload *u)
{
	char svc[LOCALSINK_NAME_MAX + 1], fam[LOCALSINK_NAME_MAX + 1];
	int sfd = -1, err;

	if (!sink || !u || !u->pprof_gz || !u->pprof_len || u->from_ns < 0 ||
	    (u->svg_len && !u->svg)) {
		err = -EINVAL;
		goto out;
	}
	if (u->pprof_len > sink->max_bytes) {
		err = -EFBIG;
		goto out;
	}
	localsink_sanitize(u->service, svc, sizeof(svc));
	localsink_sanitize(u->family, fam, sizeof(fam));

	sfd = localsink_open_service(sink, svc);
	if (sfd < 0) {
		err = sfd;
		goto out;
	}
	err = localsink_write_pprof(sink, sfd, svc, fam, u);
	if (err)
		goto out;
	localsink_enforce(sink);
	if (u->svg)
		err = localsink_write_svg(sink, sfd, fam, u);

out:
	if (sfd >= 0)
		close(sfd);
	if (err) {
		log_debug("localsink: %s: cannot write %s/%s: %s", sink ? sink->dir : "?",
			  u && u->service ? u->service : "?", u && u->family ? u->family : "?",
			  strerror(-err));
		if (sink)
			sink->stats.write_errors++;
	}
	return err;
}

/* Indexes the .pb.gz files in one service directory and deletes our stale temp files. */
static int localsink_scan_service(struct localsink *sink, const char *svc)
{
	DIR *d = NULL;
	struct dirent *de;
	int fd, err = 0;

	fd = openat(sink->dirfd, svc, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOTDIR || errno == ELOOP || errno == ENOENT ? 0 : -errno;
	d = fdopendir(fd);
	if (!d) {
		err = -errno;
		close(fd);
		return err;
	}
	while ((errno = 0, de = readdir(d))) {
		const char *name = de->d_name;
		struct stat st;
		int64_t sec;
		uint32_t seq;
		char *path;

		if (fileio_is_tmp_name(name)) {
			(void)unlinkat(dirfd(d), name, 0);
			continue;
		}
		if (!localsink_parse_name(name, &sec, &seq))
			continue;
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (asprintf(&path, "%s/%s", svc, name) < 0) {
			err = -ENOMEM;
			goto cleanup;
		}
		err = localsink_index_add(sink, path, sec, seq, (uint64_t)st.st_size);
		if (err) {
			free(path);
			goto cleanup;
		}
		localsink_enforce(sink);
	}
	if (errno)
		err = -errno;
cleanup:
	closedir(d);
	return err;
}

static int localsink_scan(struct localsink *sink)
{
	DIR *d = NULL;
	struct dirent *de;
	int fd, err = 0;

	fd = openat(sink->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		err = -errno;
		close(fd);
		return err;
	}
	while ((errno = 0, de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		err = localsink_scan_service(sink, de->d_name);
		if (err)
			goto cleanup;
	}
	if (errno)
		err = -errno;
cleanup:
	closedir(d);
	return err;
}

/* Creates and deletes a file, so that an unwritable DIR is refused at start. */
static int localsink_probe(struct localsink *sink)
{
	char name[FILEIO_TMP_NAME_MAX];
	int err;

	err = fileio_write_tmp_at(sink->dirfd, NULL, 0, sink->file_mode, name);
	if (err)
		return err;
	(void)unlinkat(sink->dirfd, name, 0);
	return 0;
}

int localsink_new(const char *dir, uint64_t max_bytes, mode_t file_mode, struct localsink **ret_sink)
{
	struct localsink *sink = NULL;
	int err;

	if (!dir || !*dir || !max_bytes || !ret_sink)
		return -EINVAL;
	sink = calloc(1, sizeof(*sink));
	if (!sink)
		return -ENOMEM;
	sink->dirfd = -1;
	sink->max_bytes = max_bytes;
	sink->file_mode = file_mode & 0666;
	sink->dir_mode = sink->file_mode | ((sink->file_mode & 0444) >> 2);
	sink->dir = strdup(dir);
	if (!sink->dir) {
		err = -ENOMEM;
		goto err_free;
	}
	err = fileio_mkdir_p(dir, sink->dir_mode);
	if (err) {
		log_debug("localsink: %s: cannot create directory: %s", dir, strerror(-err));
		goto err_free;
	}
	sink->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sink->dirfd < 0) {
		err = -errno;
		log_debug("localsink: %s: cannot open directory: %s", dir, strerror(-err));
		goto err_free;
	}
	err = localsink_probe(sink);
	if (err) {
		log_debug("localsink: %s: cannot create a file: %s", dir, strerror(-err));
		goto err_free;
	}
	err = localsink_scan(sink);
	if (err) {
		log_debug("localsink: %s: cannot scan: %s", dir, strerror(-err));
		goto err_free;
	}
	*ret_sink = sink;
	return 0;

err_free:
	localsink_free(sink);
	return err;
}

void localsink_get_stats(const struct localsink *sink, struct localsink_stats *ret_stats)
{
	*ret_stats = sink->stats;
	ret_stats->files_on_disk = sink->n - sink->head;
	ret_stats->bytes_on_disk = sink->total;
}

void localsink_free(struct localsink *sink)
{
	if (!sink)
		return;
	for (size_t i = sink->head; i < sink->n; i++)
		free(sink->files[i].path);
	free(sink->files);
	if (sink->dirfd >= 0)
		close(sink->dirfd);
	free(sink->dir);
	free(sink);
}
