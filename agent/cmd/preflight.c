#include "preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CAP_SYS_ADMIN_BIT 21
#define CAP_PERFMON_BIT 38
#define CAP_BPF_BIT 39

static uint64_t effective_caps(void)
{
	char line[256];
	unsigned long long caps = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &caps) == 1)
			break;
	fclose(f);
	return caps;
}

int preflight_check(void)
{
	uint64_t caps = effective_caps();
	bool admin = caps & (1ULL << CAP_SYS_ADMIN_BIT);
	bool bpf = admin || (caps & (1ULL << CAP_BPF_BIT));
	bool perfmon = admin || (caps & (1ULL << CAP_PERFMON_BIT));

	if (!bpf || !perfmon) {
		fprintf(stderr, "ember: needs root, or CAP_BPF and CAP_PERFMON (missing:%s%s)\n",
			bpf ? "" : " CAP_BPF", perfmon ? "" : " CAP_PERFMON");
		return -EPERM;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		fprintf(stderr, "ember: the kernel has no BTF (/sys/kernel/btf/vmlinux: %s); "
			"a kernel built with CONFIG_DEBUG_INFO_BTF=y is required\n", strerror(errno));
		return -ENOSYS;
	}
	return 0;
}

int preflight_writable(const char *path, const char *what)
{
	struct stat st;
	bool existed = stat(path, &st) == 0;
	int fd;

	if (existed && S_ISDIR(st.st_mode)) {
		fprintf(stderr, "ember: cannot write %s '%s': is a directory\n", what, path);
		return -EISDIR;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		int err = -errno;

		fprintf(stderr, "ember: cannot write %s '%s': %s\n", what, path, strerror(-err));
		return err;
	}
	close(fd);
	if (!existed)
		(void)unlink(path);
	return 0;
}
