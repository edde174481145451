/* cgmeta: what a process's cgroup paths say about who runs it: the container it is in (the
 * 64-hex-digit id that Docker, containerd and CRI-O put in one path component:
 * docker-<id>.scope, /docker/<id>, cri-containerd-<id>.scope, crio-<id>.scope, /<id>) and, for a
 * process in no container, the systemd unit whose cgroup holds it (the innermost
 * .../NAME.service component, system and user slices alike). A container id below a user's
 * delegated subtree (user@UID.service) is not one: that user names those cgroups. Reads /proc/PID/cgroup (cgroup v2
 * and v1 lines), bounded. Thread-safe, no state. */
#ifndef EMBER_CGMETA_H
#define EMBER_CGMETA_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CGMETA_ID_LEN 64
#define CGMETA_UNIT_MAX 256

struct cgmeta {
	char container_id[CGMETA_ID_LEN + 1]; /* lowercase hex, "" if in no container */
	char unit[CGMETA_UNIT_MAX];           /* "NAME.service", "" if none (or in a container) */
};

/* From the text of /proc/PID/cgroup (len bytes, need not be NUL-terminated). */
void cgmeta_parse(const char *text, size_t len, struct cgmeta *ret);
/* Reads pid's cgroups. 0, or -ESRCH when the process is gone. */
int cgmeta_read(pid_t pid, struct cgmeta *ret);

/* The container id in one cgroup path, written lowercase into id[CGMETA_ID_LEN + 1]; false if
 * none. */
bool cgmeta_container_in_path(const char *path, size_t len, char *id);

#endif
