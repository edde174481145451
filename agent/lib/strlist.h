/* strlist: a list of strings (repeatable options such as --service and --label), shared by the
 * options that fill it and the modules that read it. The strings belong to whoever filled the
 * list. */
#ifndef EMBER_STRLIST_H
#define EMBER_STRLIST_H

#include <stddef.h>

struct strlist {
	char **v;
	size_t n;
};

#endif
