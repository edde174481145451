/* services: a bounded table of service names (services.h). */
#include "services.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct service {
	char *name;        /* NULL: a free slot */
	char *labels;      /* metadata labels "name=value\n"..., NULL: none */
	int64_t last_used;
};

struct services {
	struct service *s;
	size_t n, cap;     /* slots used (free ones included), allocated */
	size_t max, live;
	uint64_t refused, retired;
};

int services_new(size_t max, struct services **ret)
{
	struct services *t;

	if (!max)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->max = max;
	*ret = t;
	return 0;
}

void services_free(struct services *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->s[i].name);
		free(t->s[i].labels);
	}
	free(t->s);
	free(t);
}

int services_get(struct services *t, const char *name, int64_t now)
{
	return services_get_labeled(t, name, NULL, now);
}

static bool same_labels(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

int services_get_labeled(struct services *t, const char *name, const char *labels, int64_t now)
{
	size_t free_slot = t->n;
	struct service *ns;
	char *copy, *lcopy = NULL;

	if (!name || !*name)
		return -EINVAL;
	if (labels && !*labels)
		labels = NULL;
	for (size_t i = 0; i < t->n; i++) {
		if (!t->s[i].name) {
			if (free_slot == t->n)
				free_slot = i;
		} else if (!strcmp(t->s[i].name, name) && same_labels(t->s[i].labels, labels)) {
			t->s[i].last_used = now;
			return (int)i;
		}
	}
	if (t->live >= t->max) {
		t->refused++;
		return -ENOSPC;
	}
	copy = strdup(name);
	if (labels)
		lcopy = strdup(labels);
	if (!copy || (labels && !lcopy)) {
		free(copy);
		free(lcopy);
		return -ENOMEM;
	}
	if (free_slot == t->n) {
		if (t->n == t->cap) {
			size_t cap = t->cap ? t->cap * 2 : 16;

			ns = realloc(t->s, cap * sizeof(*ns));
			if (!ns) {
				free(copy);
				free(lcopy);
				return -ENOMEM;
			}
			t->s = ns;
			t->cap = cap;
		}
		t->n++;
	}
	t->s[free_slot] = (struct service){ .name = copy, .labels = lcopy, .last_used = now };
	t->live++;
	return (int)free_slot;
}

void services_touch(struct services *t, uint32_t id, int64_t now)
{
	if (id < t->n && t->s[id].name)
		t->s[id].last_used = now;
}

const char *services_name(const struct services *t, uint32_t id)
{
	return id < t->n ? t->s[id].name : NULL;
}

const char *services_labels(const struct services *t, uint32_t id)
{
	return id < t->n && t->s[id].name ? t->s[id].labels : NULL;
}

size_t services_capacity(const struct services *t)
{
	return t->n;
}

size_t services_count(const struct services *t)
{
	return t->live;
}

size_t services_retire(struct services *t, int64_t now, int64_t idle_ns,
		       bool (*in_use)(void *ctx, uint32_t id), void *ctx)
{
	size_t done = 0;

	for (size_t i = 0; i < t->n; i++) {
		struct service *s = &t->s[i];

		if (!s->name || now - s->last_used < idle_ns || (in_use && in_use(ctx, (uint32_t)i)))
			continue;
		free(s->name);
		free(s->labels);
		*s = (struct service){ 0 };
		t->live--;
		done++;
	}
	t->retired += done;
	return done;
}

void services_name_from_path(const char *path, char *buf, size_t n, const char *fallback)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	size_t i;

	for (i = 0; base[i] && i + 1 < n; i++)
		buf[i] = (isalnum((unsigned char)base[i]) || strchr("_.-", base[i])) ? base[i] : '_';
	buf[i] = '\0';
	if (!i)
		snprintf(buf, n, "%s", fallback);
}

uint64_t services_refused(const struct services *t)
{
	return t->refused;
}

uint64_t services_retired(const struct services *t)
{
	return t->retired;
}
