/* fuzz_options: the option table, the environment-free command line and the config file.
 * The input is split at its first NUL: before it, a config file's text (read through
 * --config); after it, NUL-separated command-line words for `ember agent`, then for
 * `ember record` and `ember run`. Every input must give 0, 1 (help) or -EINVAL/-ENOMEM with a
 * line on stderr (sent to /dev/null here), never a crash, a leak or a hang. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "options.h"

#define MAX_WORDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char config_path[64];

static void quiet_stderr(void)
{
	static int done;
	int fd;

	if (done)
		return;
	done = 1;
	fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	/* EMBER_* variables of the machine running the fuzzer must not change the answers. */
	for (char **e = __environ; e && *e;) {
		if (!strncmp(*e, "EMBER_", 6)) {
			char name[256];
			size_t n = strcspn(*e, "=");

			snprintf(name, sizeof(name), "%.*s", (int)(n < 255 ? n : 255), *e);
			unsetenv(name);
		} else {
			e++;
		}
	}
	snprintf(config_path, sizeof(config_path), "/tmp/ember-fuzz-options-%d.conf", (int)getpid());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum ember_command cmds[] = { CMD_AGENT, CMD_RECORD, CMD_RUN };
	const uint8_t *nul = memchr(data, 0, size);
	size_t cfg_len = nul ? (size_t)(nul - data) : size;
	char *words = NULL, *argv[MAX_WORDS + 3];
	int argc = 0, fd;

	quiet_stderr();
	fd = open(config_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return 0;
	if (write(fd, data, cfg_len) != (ssize_t)cfg_len) {
		close(fd);
		return 0;
	}
	close(fd);
	if (nul) {
		size_t n = size - cfg_len - 1;

		words = malloc(n + 1);
		if (!words)
			return 0;
		memcpy(words, nul + 1, n);
		words[n] = '\0';
		for (size_t i = 0; i <= n && argc < MAX_WORDS; i += strlen(words + i) + 1)
			argv[argc++] = words + i;
	}
	argv[argc++] = "--config";
	argv[argc++] = config_path;
	argv[argc] = NULL;
	for (size_t c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++) {
		struct ember_config cfg = { 0 };

		(void)options_parse(cmds[c], argc, argv, &cfg);
		options_free(&cfg);
	}
	free(words);
	return 0;
}
