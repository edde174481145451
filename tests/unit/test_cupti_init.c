/* The init path on a host without a GPU driver: dlopen libember_cupti.so as the CUDA driver
 * would, call InitializeInjection. cuptiSubscribe_v2 fails (CUPTI_ERROR_UNKNOWN without a
 * driver); the library must log one line saying GPU profiling is off and return success, and
 * the application must go on. Also: EMBER_GPU_DISABLE turns it off before touching CUPTI. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"

static int call_init(const char *lib, char *log, size_t logsz)
{
	char tmpl[] = "/tmp/ember-cupti-init-XXXXXX";
	int fd = mkstemp(tmpl), saved = dup(STDERR_FILENO), ret = -1;
	int (*init)(void);
	void *h;
	ssize_t n;

	unlink(tmpl);
	dup2(fd, STDERR_FILENO);
	h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (h) {
		init = (int (*)(void))dlsym(h, "InitializeInjection");
		if (init)
			ret = init();
		/* Calling it twice (a second cuInit) is harmless. */
		if (init && init() != ret)
			ret = -2;
	}
	dup2(saved, STDERR_FILENO);
	close(saved);
	if (!h)
		fprintf(stderr, "dlopen %s: %s\n", lib, dlerror());
	n = pread(fd, log, logsz - 1, 0);
	log[n > 0 ? n : 0] = '\0';
	close(fd);
	/* Not dlclose'd: the driver never unloads an injection library either. */
	return ret;
}

int main(int argc, char **argv)
{
	char log[4096];

	if (argc < 2) {
		fprintf(stderr, "usage: %s LIBEMBER_CUPTI\n", argv[0]);
		return 2;
	}
	if (access("/dev/nvidiactl", F_OK) == 0) {
		fprintf(stderr, "cupti_init: a GPU driver is present; this test is for hosts without one\n");
		return 77;
	}
	setenv("EMBER_GPU_SOCKET", "/nonexistent/gpu.sock", 1);
	CHECK_INT(call_init(argv[1], log, sizeof(log)), 1);
	fprintf(stderr, "library said: %s", log);
	CHECK(strstr(log, "ember-cupti[") != NULL);
	CHECK(strstr(log, "cuptiSubscribe_v2") != NULL);
	CHECK(strstr(log, "GPU profiling is off") != NULL);
	/* The application is still here and can do its work. */
	CHECK_INT(getpid() > 0, 1);
	return check_exit("cupti_init");
}
