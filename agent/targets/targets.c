#include "targets.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgmeta.h"
#include "discovery.h"

enum sel_kind { SEL_PID, SEL_COMM, SEL_EXE, SEL_CGROUP, SEL_CONTAINER, SEL_DOCKER, SEL_K8S,
		SEL_UNIT };

struct service {
	char *name;
	enum sel_kind kind;
	char *arg;
	pid_t pid;
};

struct targets {
	struct service *svc;
	size_t n;
	struct discovery *disc;
};

int targets_new(const struct strlist *services, struct targets **ret_t)
{
	struct targets *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->svc = calloc(services->n ? services->n : 1, sizeof(*t->svc));
	if (!t->svc)
		goto nomem;
	for (size_t i = 0; i < services->n; i++) {
		const char *s = services->v[i], *eq = strchr(s, '='), *colon;
		struct service *v = &t->svc[t->n++];

		if (!eq || !(colon = strchr(eq, ':')))
			goto inval;
		v->name = strndup(s, (size_t)(eq - s));
		v->arg = strdup(colon + 1);
		if (!v->name || !v->arg)
			goto nomem;
		if (!strncmp(eq + 1, "pid:", 4)) {
			v->kind = SEL_PID;
			v->pid = (pid_t)strtol(v->arg, NULL, 10);
		} else if (!strncmp(eq + 1, "comm:", 5)) {
			v->kind = SEL_COMM;
		} else if (!strncmp(eq + 1, "exe:", 4)) {
			v->kind = SEL_EXE;
		} else if (!strncmp(eq + 1, "cgroup:", 7)) {
			v->kind = SEL_CGROUP;
			/* Normalize: no trailing slash, leading slash present. */
			size_t len = strlen(v->arg);

			while (len > 1 && v->arg[len - 1] == '/')
				v->arg[--len] = '\0';
		} else if (!strncmp(eq + 1, "container:", 10)) {
			v->kind = SEL_CONTAINER;
			for (char *p = v->arg; *p; p++)
				*p = (char)tolower((unsigned char)*p);
		} else if (!strncmp(eq + 1, "docker:", 7)) {
			v->kind = SEL_DOCKER;
		} else if (!strncmp(eq + 1, "k8s:", 4)) {
			v->kind = SEL_K8S;
		} else if (!strncmp(eq + 1, "unit:", 5)) {
			v->kind = SEL_UNIT;
		} else {
			goto inval;
		}
	}
	*ret_t = t;
	return 0;
inval:
	targets_free(t);
	return -EINVAL;
nomem:
	targets_free(t);
	return -ENOMEM;
}

void targets_free(struct targets *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->svc[i].name);
		free(t->svc[i].arg);
	}
	free(t->svc);
	free(t);
}

size_t targets_count(const struct targets *t)
{
	return t->n;
}

const char *targets_service_name(const struct targets *t, uint32_t id)
{
	return id < t->n ? t->svc[id].name : NULL;
}

bool targets_need_execs(const struct targets *t)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->svc[i].kind != SEL_PID)
			return true;
	return false;
}

bool targets_need_cgroups(const struct targets *t)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->svc[i].kind >= SEL_CGROUP)
			return true;
	return false;
}

bool targets_need_metadata(const struct targets *t)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->svc[i].kind == SEL_DOCKER || t->svc[i].kind == SEL_K8S)
			return true;
	return false;
}

void targets_set_discovery(struct targets *t, struct discovery *d)
{
	t->disc = d;
}

static const char *meta_label(const struct discovery_meta *m, const char *name)
{
	for (size_t i = 0; i < m->nlabels; i++)
		if (!strcmp(m->labels[i].name, name))
			return m->labels[i].value;
	return NULL;
}

/* docker:, k8s:, unit: against what discovery knows of the process. */
static bool meta_matches(const struct service *s, const struct cgmeta *cg,
			 const struct discovery_meta *m, bool known)
{
	const char *ns, *cont;
	char both[2 * DISCOVERY_NAME_MAX];

	switch (s->kind) {
	case SEL_UNIT:
		if (!cg->unit[0])
			return false;
		if (!fnmatch(s->arg, cg->unit, 0))
			return true;
		snprintf(both, sizeof(both), "%.*s", (int)(strlen(cg->unit) - 8), cg->unit);
		return !fnmatch(s->arg, both, 0);
	case SEL_DOCKER:
		if (!known || meta_label(m, "namespace") || !cg->container_id[0])
			return false;
		cont = meta_label(m, "container");
		return !fnmatch(s->arg, m->service, 0) || (cont && !fnmatch(s->arg, cont, 0));
	case SEL_K8S:
		ns = known ? meta_label(m, "namespace") : NULL;
		cont = known ? meta_label(m, "container") : NULL;
		if (!ns || !cont)
			return false;
		snprintf(both, sizeof(both), "%s/%s", ns, cont);
		return !fnmatch(s->arg, both, 0);
	default:
		return false;
	}
}

static int read_small(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return -errno;
	r = read(fd, buf, n - 1);
	close(fd);
	if (r < 0)
		return -errno;
	buf[r] = '\0';
	return (int)r;
}

/* Does a cgroup path (from /proc/PID/cgroup) name the container id prefix? Docker
 * (docker-<id>.scope, /docker/<id>), containerd (cri-containerd-<id>.scope, /<id>) and CRI-O
 * (crio-<id>.scope) all put the 64-hex-digit id in one path component, maybe with a prefix. */
bool targets_cgroup_has_container(const char *path, const char *prefix)
{
	char id[CGMETA_ID_LEN + 1];

	return cgmeta_container_in_path(path, strlen(path), id) &&
	       !strncasecmp(id, prefix, strlen(prefix));
}

static int read_cgroup(pid_t pid, char *buf, size_t n)
{
	char path[64];
	int r;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	r = read_small(path, buf, n);
	return r < 0 ? -ESRCH : 0;
}

int targets_match(const struct targets *t, pid_t pid)
{
	char path[64], comm[32] = "", exe[PATH_MAX] = "", cg[4096] = "";
	bool have_comm = false, have_exe = false, have_cg = false, have_meta = false, known = false;
	struct discovery_meta meta;
	struct cgmeta cgm;
	int r;

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (access(path, F_OK))
		return -ESRCH;
	for (size_t i = 0; i < t->n; i++) {
		const struct service *s = &t->svc[i];

		switch (s->kind) {
		case SEL_PID:
			if (s->pid == pid)
				return (int)i;
			break;
		case SEL_DOCKER:
		case SEL_K8S:
		case SEL_UNIT:
			if (!have_meta) {
				if (cgmeta_read(pid, &cgm))
					return -ESRCH;
				known = discovery_resolve(t->disc, &cgm, &meta) == 1;
				have_meta = true;
			}
			if (meta_matches(s, &cgm, &meta, known))
				return (int)i;
			break;
		case SEL_COMM:
			if (!have_comm) {
				snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
				if (read_small(path, comm, sizeof(comm)) < 0)
					return -ESRCH;
				comm[strcspn(comm, "\n")] = '\0';
				have_comm = true;
			}
			if (!strcmp(comm, s->arg))
				return (int)i;
			break;
		case SEL_EXE:
			if (!have_exe) {
				snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
				r = (int)readlink(path, exe, sizeof(exe) - 1);
				exe[r > 0 ? r : 0] = '\0';
				have_exe = true;
			}
			if (s->arg[0] == '/' && !strpbrk(s->arg, "*?[")) {
				/* An exact path names a file: the one the process runs, compared by
				 * identity (a user namespace or a container can show any path string). */
				struct stat want, got;

				snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
				if (!stat(s->arg, &want) && !stat(path, &got) && want.st_dev == got.st_dev &&
				    want.st_ino == got.st_ino)
					return (int)i;
				break;
			}
			if (exe[0] && !fnmatch(s->arg, exe, 0))
				return (int)i;
			/* A bare name matches the executable's basename. */
			if (exe[0] && !strchr(s->arg, '/') && strrchr(exe, '/') &&
			    !fnmatch(s->arg, strrchr(exe, '/') + 1, 0))
				return (int)i;
			break;
		case SEL_CGROUP:
		case SEL_CONTAINER:
			if (!have_cg) {
				if (read_cgroup(pid, cg, sizeof(cg)) < 0)
					return -ESRCH;
				have_cg = true;
			}
			for (char *line = cg; line && *line;) {
				char *nl = strchr(line, '\n'), *cpath;

				if (nl)
					*nl = '\0';
				/* cgroup v2 line: "0::/path" */
				cpath = strstr(line, "::");
				if (cpath) {
					cpath += 2;
					if (s->kind == SEL_CGROUP) {
						size_t len = strlen(s->arg);

						if (!strcmp(s->arg, "/") ||
						    (!strncmp(cpath, s->arg, len) &&
						     (cpath[len] == '\0' || cpath[len] == '/'))) {
							if (nl)
								*nl = '\n';
							return (int)i;
						}
					} else if (targets_cgroup_has_container(cpath, s->arg)) {
						if (nl)
							*nl = '\n';
						return (int)i;
					}
				}
				if (nl)
					*nl = '\n';
				line = nl ? nl + 1 : NULL;
			}
			break;
		}
	}
	return -ENOENT;
}

int targets_scan(const struct targets *t, targets_visit_fn fn, void *ctx)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int found = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		int id;

		if (*end || pid <= 0)
			continue;
		id = targets_match(t, (pid_t)pid);
		if (id >= 0) {
			fn(ctx, (pid_t)pid, (uint32_t)id);
			found++;
		}
	}
	closedir(d);
	return found;
}
