/* demangle: C++ (Itanium ABI) names through libstdc++'s __cxa_demangle, so that names read as
 * `eu-addr2line -C` and `c++filt` print them. Thread-safe. */
#ifndef EMBER_DEMANGLE_H
#define EMBER_DEMANGLE_H

#include <stdbool.h>

/* True if name looks mangled ("_Z..."); cheap, no allocation. */
bool demangle_wanted(const char *name);
/* Returns a malloc'ed demangled name (caller frees), or NULL when name is not mangled or cannot
 * be demangled. */
char *demangle(const char *name);

#endif
