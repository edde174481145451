#include "clog.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int clog_level = CLOG_WARN;
static int clog_inited;

void clog_init(void)
{
	const char *s;

	if (__atomic_exchange_n(&clog_inited, 1, __ATOMIC_ACQ_REL))
		return;
	s = getenv("EMBER_GPU_LOG");
	if (!s || !*s)
		return;
	if (!strcmp(s, "off"))
		clog_level = CLOG_OFF;
	else if (!strcmp(s, "error"))
		clog_level = CLOG_ERROR;
	else if (!strcmp(s, "warn"))
		clog_level = CLOG_WARN;
	else if (!strcmp(s, "info"))
		clog_level = CLOG_INFO;
	else if (!strcmp(s, "debug"))
		clog_level = CLOG_DEBUG;
}

void clog_set_level(enum clog_level level)
{
	clog_inited = 1;
	clog_level = level;
}

int clog_enabled(enum clog_level level)
{
	return (int)level <= clog_level;
}

void clog_msg(enum clog_level level, const char *fmt, ...)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	char buf[1024];
	va_list ap;
	int n, m;

	if (!clog_enabled(level) || level < CLOG_ERROR)
		return;
	n = snprintf(buf, sizeof(buf), "ember-cupti[%d]: %s: ", (int)getpid(), names[level]);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return;
	va_start(ap, fmt);
	m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	(void)!write(STDERR_FILENO, buf, (size_t)n);
}
