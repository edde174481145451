/* targets: container ids in the cgroup paths Docker, containerd and CRI-O write, and selector
 * matching against real processes (our own pid, comm and executable). */
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "targets.h"

#define ID "4f2a9c1be07d8e6f5a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f"

int main(void)
{
	struct targets *t = NULL;
	char comm[32] = "", sel_pid[64], sel_comm[64];
	char *svcs[4];
	struct strlist l = { .v = svcs, .n = 0 };
	FILE *f;

	/* Docker with systemd cgroup driver, cgroupfs driver, containerd (CRI), CRI-O, podman. */
	CHECK(targets_cgroup_has_container("/system.slice/docker-" ID ".scope", "4f2a9c"));
	CHECK(targets_cgroup_has_container("/docker/" ID, "4f2a9c1be07d"));
	CHECK(targets_cgroup_has_container("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-" ID ".scope", "4f2a"));
	CHECK(targets_cgroup_has_container("/kubepods/besteffort/pod1234/" ID, "4f2a9c1b"));
	CHECK(targets_cgroup_has_container("/machine.slice/libpod-" ID ".scope/container", "4f2a"));
	CHECK(targets_cgroup_has_container("/kubepods.slice/crio-" ID ".scope", ID));
	/* Not matches: another id, a prefix that is not at the id's start, a shorter hex run. */
	CHECK(!targets_cgroup_has_container("/docker/" ID, "9999"));
	CHECK(!targets_cgroup_has_container("/docker/" ID, "2a9c1b"));
	CHECK(!targets_cgroup_has_container("/system.slice/docker-4f2a9c.scope", "4f2a9c"));
	CHECK(!targets_cgroup_has_container("/user.slice/user-0.slice/session-1.scope", "4f2a"));
	CHECK(!targets_cgroup_has_container("/", "4f"));

	/* Selector matching on this very process. */
	f = fopen("/proc/self/comm", "r");
	CHECK(f && fgets(comm, sizeof(comm), f));
	if (f)
		fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	snprintf(sel_pid, sizeof(sel_pid), "mine=pid:%d", (int)getpid());
	snprintf(sel_comm, sizeof(sel_comm), "bycomm=comm:%s", comm);
	svcs[l.n++] = "other=comm:no-such-comm";
	svcs[l.n++] = "byexe=exe:*/unit_targets";
	svcs[l.n++] = sel_comm;
	svcs[l.n++] = sel_pid;
	CHECK_INT(targets_new(&l, &t), 0);
	CHECK_INT(targets_count(t), 4);
	CHECK_STR(targets_service_name(t, 3), "mine");
	/* First match wins: the exe glob (service 1) before comm (2) and pid (3). */
	CHECK_INT(targets_match(t, getpid()), 1);
	CHECK(targets_need_execs(t));
	CHECK(!targets_need_cgroups(t));
	CHECK_INT(targets_match(t, 999999), -3 /* -ESRCH */);
	targets_free(t);

	/* An exact exe: path is compared by file identity: a link to our executable names it,
	 * a copy of it at another path (same bytes, another file) does not. */
	{
		char exe[PATH_MAX], link[PATH_MAX], copy[PATH_MAX], sel[3][PATH_MAX + 32], cmd[3 * PATH_MAX];
		char *v[3] = { sel[0], sel[1], sel[2] };
		struct strlist l3 = { .v = v, .n = 1 };
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

		CHECK(n > 0);
		exe[n > 0 ? n : 0] = '\0';
		snprintf(link, sizeof(link), "/tmp/ember-unit-targets-link-%d", (int)getpid());
		snprintf(copy, sizeof(copy), "/tmp/ember-unit-targets-copy-%d", (int)getpid());
		CHECK_INT(symlink(exe, link), 0);
		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", exe, copy);
		CHECK_INT(system(cmd), 0);
		snprintf(sel[0], sizeof(sel[0]), "byfile=exe:%s", link);
		CHECK_INT(targets_new(&l3, &t), 0);
		CHECK_INT(targets_match(t, getpid()), 0);
		targets_free(t);
		snprintf(sel[0], sizeof(sel[0]), "bycopy=exe:%s", copy);
		CHECK_INT(targets_new(&l3, &t), 0);
		CHECK_INT(targets_match(t, getpid()), -2 /* -ENOENT: no match */);
		targets_free(t);
		unlink(link);
		unlink(copy);
	}
	return check_exit("targets");
}
