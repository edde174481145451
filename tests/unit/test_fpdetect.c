/* fpdetect on the fixtures: the 60/30/10 program built with and without frame pointers, and
 * Debian's libc (built without them), and the x86insn prologue matcher on hand-written bytes.
 * argv[1] is the fixtures directory. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fpdetect.h"
#include "x86insn.h"

/* The verdict, or the negative errno of fpdetect_fd() (never a verdict: those are >= 0). */
static int classify(const char *path)
{
	enum fpdetect_result r = FPDETECT_UNKNOWN;
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;
	double share = -2;

	if (fd < 0) {
		fprintf(stderr, "cannot open %s\n", path);
		return -100;
	}
	err = fpdetect_fd(fd, &r, &share);
	fprintf(stderr, "%s: err %d, verdict %d (share %.2f)\n", path, err, (int)r, share);
	close(fd);
	if (!err && r != FPDETECT_UNKNOWN)
		CHECK(share >= 0 && share <= 1);
	return err ? err : (int)r;
}

/* The matcher itself, on hand-written bytes. */
static void test_prologue(void)
{
	static const uint8_t plain[] = { 0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10 };
	static const uint8_t cet[] = { 0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5 };
	static const uint8_t nofp[] = { 0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x83, 0xec, 0x18, 0xc3 };
	uint8_t late[40] = { 0 };

	CHECK(x86insn_has_fp_prologue(plain, sizeof(plain)));
	CHECK(x86insn_has_fp_prologue(cet, sizeof(cet)));
	CHECK(!x86insn_has_fp_prologue(nofp, sizeof(nofp)));
	CHECK(!x86insn_has_fp_prologue(plain, 3)); /* cut short: never read past len */
	memcpy(late + 30, plain, 4);                /* beyond the window: not a prologue */
	CHECK(!x86insn_has_fp_prologue(late, sizeof(late)));
	memcpy(late + 10, plain, 4);
	CHECK(x86insn_has_fp_prologue(late, sizeof(late)));
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
	CHECK_INT(classify("/etc/hostname"), -EINVAL); /* an error, told apart from any verdict */
	CHECK(FPDETECT_UNKNOWN >= 0 && FPDETECT_NO_FP >= 0 && FPDETECT_FP >= 0);
	test_prologue();
	return check_exit("fpdetect");
}
