#include "upload.h"

#include <stdlib.h>
#include <string.h>

void upload_free(struct upload *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->nlabels; i++) {
		free(u->labels[i].name);
		free(u->labels[i].value);
	}
	free(u->labels);
	free(u->service);
	free(u->family);
	free(u->pprof_gz);
	free(u->svg);
	free(u);
}

size_t upload_size(const struct upload *u)
{
	size_t n = sizeof(*u) + u->pprof_len + u->svg_len;

	for (size_t i = 0; i < u->nlabels; i++)
		n += strlen(u->labels[i].name) + strlen(u->labels[i].value) + 2 + sizeof(u->labels[i]);
	return n;
}

const char *upload_label(const struct upload *u, const char *name)
{
	for (size_t i = 0; i < u->nlabels; i++)
		if (!strcmp(u->labels[i].name, name))
			return u->labels[i].value;
	return NULL;
}
