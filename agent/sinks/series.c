#include "series.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int label_cmp(const void *x, const void *y)
{
	return strcmp(((const struct upload_label *)x)->name, ((const struct upload_label *)y)->name);
}

static int add_label(struct series_labels *sl, const char *name, size_t name_len, const char *value)
{
	struct upload_label *nl;

	for (size_t i = 0; i < sl->n; i++) {
		if (strlen(sl->l[i].name) == name_len && !strncmp(sl->l[i].name, name, name_len)) {
			free(sl->l[i].value); /* --label wins over EMBER_TAG_ (added first) */
			sl->l[i].value = strdup(value);
			return sl->l[i].value ? 0 : -ENOMEM;
		}
	}
	nl = realloc(sl->l, (sl->n + 1) * sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	sl->l = nl;
	sl->l[sl->n].name = strndup(name, name_len);
	sl->l[sl->n].value = strdup(value);
	if (!sl->l[sl->n].name || !sl->l[sl->n].value)
		return -ENOMEM;
	sl->n++;
	return 0;
}

int series_labels_init(struct series_labels *sl, const struct strlist *user_labels)
{
	extern char **environ;
	char hostname[256] = "";

	if (gethostname(hostname, sizeof(hostname) - 1))
		snprintf(hostname, sizeof(hostname), "unknown");
	if (add_label(sl, "hostname", 8, hostname))
		return -ENOMEM;
	for (char **e = environ; *e; e++) {
		const char *eq = strchr(*e, '=');
		char key[256];
		size_t len;

		if (strncmp(*e, "EMBER_TAG_", 10) || !eq)
			continue;
		len = (size_t)(eq - *e) - 10;
		if (len == 0 || len >= sizeof(key)) {
			fprintf(stderr, "ember: invalid environment label %.*s\n", (int)(eq - *e), *e);
			return -EINVAL;
		}
		for (size_t i = 0; i < len; i++)
			key[i] = (char)tolower((unsigned char)(*e)[10 + i]);
		key[len] = '\0';
		if (!eq[1] || strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789_.") != len ||
		    isdigit((unsigned char)key[0]) || !strncmp(key, "__", 2) ||
		    !strcmp(key, "service_name") || !strcmp(key, "hostname")) {
			fprintf(stderr, "ember: invalid environment label %.*s: the name must match "
					"[a-z_][a-z0-9_.]*, not start with __ nor be service_name or "
					"hostname, and the value must not be empty\n",
				(int)(eq - *e), *e);
			return -EINVAL;
		}
		if (add_label(sl, key, len, eq + 1))
			return -ENOMEM;
	}
	for (size_t i = 0; i < user_labels->n; i++) {
		const char *l = user_labels->v[i], *eq = strchr(l, '=');

		if (add_label(sl, l, (size_t)(eq - l), eq + 1))
			return -ENOMEM;
	}
	/* __name__ + service_name (+ __delta__) + hostname + user labels + a container's or pod's
	 * metadata labels */
	if (sl->n + 3 + SERIES_META_LABELS > MAX_SERIES_LABELS) {
		fprintf(stderr, "ember: invalid value for --label: %zu labels, but Pyroscope accepts at "
				"most %d per series, %d of them Ember's own\n",
			sl->n - 1, MAX_SERIES_LABELS, 4 + SERIES_META_LABELS);
		return -EINVAL;
	}
	qsort(sl->l, sl->n, sizeof(*sl->l), label_cmp);
	return 0;
}

void series_labels_fini(struct series_labels *sl)
{
	for (size_t i = 0; i < sl->n; i++) {
		free(sl->l[i].name);
		free(sl->l[i].value);
	}
	free(sl->l);
	*sl = (struct series_labels){ 0 };
}

static bool has_label(const struct upload *u, size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(u->labels[i].name) == len && !strncmp(u->labels[i].name, name, len))
			return true;
	return false;
}

static int upload_label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct upload_label *)a)->name, ((const struct upload_label *)b)->name);
}

int series_make_upload(const struct series_labels *sl, const char *service, const char *meta,
		       const struct profile_family *fam, struct stackagg_result *res, int64_t from,
		       int64_t until, struct upload **ret)
{
	struct upload *u = calloc(1, sizeof(*u));
	size_t n = 0;

	if (!u)
		return -ENOMEM;
	u->labels = calloc(sl->n + 3 + SERIES_META_LABELS, sizeof(*u->labels));
	u->service = strdup(service);
	u->family = strdup(fam->family);
	if (!u->labels || !u->service || !u->family)
		goto nomem;
	/* Sorted: "__delta__" < "__name__" < lowercase names. */
	if (fam->delta_false) {
		u->labels[n].name = strdup("__delta__");
		u->labels[n++].value = strdup("false");
	}
	u->labels[n].name = strdup("__name__");
	u->labels[n++].value = strdup(fam->name);
	for (size_t i = 0; i < sl->n; i++) {
		if (strcmp(sl->l[i].name, "service_name") > 0 &&
		    (n == 0 || strcmp(u->labels[n - 1].name, "service_name") < 0)) {
			u->labels[n].name = strdup("service_name");
			u->labels[n++].value = strdup(service);
		}
		u->labels[n].name = strdup(sl->l[i].name);
		u->labels[n++].value = strdup(sl->l[i].value);
	}
	if (!n || strcmp(u->labels[n - 1].name, "service_name") < 0) {
		u->labels[n].name = strdup("service_name");
		u->labels[n++].value = strdup(service);
	}
	/* Metadata labels: the user's labels of the same name win. */
	for (const char *p = meta, *nl; p && *p && n < sl->n + 3 + SERIES_META_LABELS; p = nl + 1) {
		const char *eq = strchr(p, '=');

		nl = strchr(p, '\n');
		if (!nl || !eq || eq > nl)
			break;
		if (has_label(u, n, p, (size_t)(eq - p)))
			continue;
		u->labels[n].name = strndup(p, (size_t)(eq - p));
		u->labels[n++].value = strndup(eq + 1, (size_t)(nl - eq - 1));
	}
	u->nlabels = n;
	for (size_t i = 0; i < n; i++)
		if (!u->labels[i].name || !u->labels[i].value)
			goto nomem;
	qsort(u->labels, n, sizeof(*u->labels), upload_label_cmp);
	u->pprof_gz = res->pprof_gz;
	u->pprof_len = res->pprof_len;
	u->svg = res->svg;
	u->svg_len = res->svg_len;
	res->pprof_gz = NULL;
	res->svg = NULL;
	u->from_ns = from;
	u->until_ns = until;
	*ret = u;
	return 0;
nomem:
	upload_free(u);
	return -ENOMEM;
}

