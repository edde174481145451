/* cgmeta: container ids and systemd units from cgroup paths (see cgmeta.h). */
#include "cgmeta.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Bytes of /proc/PID/cgroup read: a v1 host lists a dozen hierarchies, each path well under
 * 512 bytes in practice; longer text is cut (the unified line comes first on hybrid hosts). */
#define CGROUP_READ 8192

bool cgmeta_container_in_path(const char *path, size_t len, char *id)
{
	size_t i = 0;

	while (i < len) {
		size_t clen = 0;

		while (i + clen < len && path[i + clen] != '/')
			clen++;
		/* Below user@UID.service the cgroups are delegated to that user, who may name one
		 * after any container: nothing there speaks for a container runtime. */
		if (clen > 5 && !memcmp(path + i, "user@", 5))
			return false;
		for (size_t off = 0; off + CGMETA_ID_LEN <= clen; off++) {
			const char *c = path + i;
			bool hex = true;

			/* The id starts the component or follows "docker-", "crio-", ... */
			if (off && c[off - 1] != '-' && c[off - 1] != ':')
				continue;
			for (size_t k = 0; k < CGMETA_ID_LEN && hex; k++)
				hex = isxdigit((unsigned char)c[off + k]);
			if (hex && (off + CGMETA_ID_LEN == clen || c[off + CGMETA_ID_LEN] == '.')) {
				for (size_t k = 0; k < CGMETA_ID_LEN; k++)
					id[k] = (char)tolower((unsigned char)c[off + k]);
				id[CGMETA_ID_LEN] = '\0';
				return true;
			}
		}
		i += clen + 1;
	}
	return false;
}

/* The innermost "NAME.service" component of a path; false if none. */
static bool unit_in_path(const char *path, size_t len, char *unit, size_t n)
{
	bool found = false;
	size_t i = 0;

	while (i < len) {
		size_t clen = 0;

		while (i + clen < len && path[i + clen] != '/')
			clen++;
		if (clen > 8 && clen < n && !memcmp(path + i + clen - 8, ".service", 8)) {
			memcpy(unit, path + i, clen);
			unit[clen] = '\0';
			found = true;
		}
		i += clen + 1;
	}
	return found;
}

void cgmeta_parse(const char *text, size_t len, struct cgmeta *ret)
{
	char unit_v2[CGMETA_UNIT_MAX] = "", unit_sd[CGMETA_UNIT_MAX] = "";
	size_t i = 0;

	memset(ret, 0, sizeof(*ret));
	while (i < len) {
		size_t l = 0, c1, c2;

		while (i + l < len && text[i + l] != '\n')
			l++;
		/* "hierarchy-id:controllers:path" */
		const char *line = text + i;
		const char *a = memchr(line, ':', l), *b;

		if (a && (b = memchr(a + 1, ':', l - (size_t)(a + 1 - line)))) {
			const char *path = b + 1;
			size_t plen = l - (size_t)(path - line);

			c1 = (size_t)(a - line);
			c2 = (size_t)(b - a - 1);
			if (!ret->container_id[0])
				(void)cgmeta_container_in_path(path, plen, ret->container_id);
			if (c2 == 0 && c1 == 1 && line[0] == '0')
				(void)unit_in_path(path, plen, unit_v2, sizeof(unit_v2));
			else if (c2 == 12 && !memcmp(a + 1, "name=systemd", 12))
				(void)unit_in_path(path, plen, unit_sd, sizeof(unit_sd));
		}
		i += l + 1;
	}
	if (ret->container_id[0])
		return; /* a container's processes are named after the container */
	snprintf(ret->unit, sizeof(ret->unit), "%s", unit_v2[0] ? unit_v2 : unit_sd);
}

int cgmeta_read(pid_t pid, struct cgmeta *ret)
{
	char path[64], buf[CGROUP_READ];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ESRCH;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0)
		return -ESRCH;
	cgmeta_parse(buf, (size_t)n, ret);
	return 0;
}
