/* fpdetect on the fixtures: the 60/30/10 program built with and without frame pointers, and
 * Debian's libc (built without them). argv[1] is the fixtures directory. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "check.h"
#include "fpdetect.h"

static int classify(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0) {
		fprintf(stderr, "cannot open %s\n", path);
		return -100;
	}
	r = fpdetect_fd(fd);
	fprintf(stderr, "%s: %d (share %.2f)\n", path, r, fpdetect_last_share());
	close(fd);
	return r;
}

int main(int argc, char **argv)
{
	char path[512];

	if (argc < 2)
		return 2;
	snprintf(path, sizeof(path), "%s/cpu_split_fp", argv[1]);
	CHECK_INT(classify(path), FPDETECT_FP);
	snprintf(path, sizeof(path), "%s/cpu_split_nofp", argv[1]);
	CHECK_INT(classify(path), FPDETECT_NO_FP);
	CHECK_INT(classify("/lib/x86_64-linux-gnu/libc.so.6"), FPDETECT_NO_FP);
	CHECK(classify("/etc/hostname") < 0);
	return check_exit("fpdetect");
}
