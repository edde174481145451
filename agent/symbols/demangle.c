/* demangle: see demangle.h. */
#include "demangle.h"

#include <stddef.h>

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

	if (!demangle_wanted(name))
		return NULL;
	out = __cxa_demangle(name, NULL, NULL, &status);
	return status == 0 ? out : NULL;
}
