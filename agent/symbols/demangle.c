/* demangle: see demangle.h. */
#include "demangle.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Names come from files their owners wrote. A mangled name longer than this is kept mangled
 * (real ones, libLLVM's templates included, are shorter), and a demangled one is cut here:
 * substitutions let a short name demangle into a long one. */
#define DEMANGLE_MAX_IN 4096
#define DEMANGLE_MAX_OUT 16384

/* libstdc++ (cxxabi.h); declared here because this is C. */
char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

bool demangle_wanted(const char *name)
{
	return name[0] == '_' && name[1] == 'Z';
}

char *demangle(const char *name)
{
	int status = 0;
	char *out;

	if (!demangle_wanted(name) || strnlen(name, DEMANGLE_MAX_IN + 1) > DEMANGLE_MAX_IN)
		return NULL;
	out = __cxa_demangle(name, NULL, NULL, &status);
	if (status != 0) {
		free(out);
		return NULL;
	}
	if (strlen(out) > DEMANGLE_MAX_OUT)
		memcpy(out + DEMANGLE_MAX_OUT - 3, "...", 4);
	return out;
}
