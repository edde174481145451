/* targets: container ids in the cgroup paths Docker, containerd and CRI-O write, and selector
 * matching against real processes (our own pid, comm and executable). */
#include <stdio.h>
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
	return check_exit("targets");
}
