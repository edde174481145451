/* ksyms: see ksyms.h. */
#include "ksyms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct ksym {
	uint64_t addr;
	uint32_t name_off; /* into ks->names */
	uint32_t rank;     /* 0 global, 1 weak, 2 local: prefers the global alias at one address */
};

struct ksyms {
	struct ksym *syms;
	size_t nr, cap;
	char *names;
	size_t names_len, names_cap;
};

static int ksym_cmp(const void *a, const void *b)
{
	const struct ksym *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	/* name_off grows with file order: keeps the sort stable */
	return x->name_off < y->name_off ? -1 : x->name_off > y->name_off;
}

/* Appends one symbol; name is copied with its " [module]" suffix dropped. */
static int ksyms_add(struct ksyms *ks, uint64_t addr, char type, const char *name, size_t len)
{
	struct ksym *k;
	int err;

	if (ks->names_len + len + 1 > UINT32_MAX)
		return -E2BIG;
	err = util_grow((void **)&ks->syms, &ks->cap, ks->nr + 1, sizeof(*ks->syms));
	if (err)
		return err;
	err = util_grow((void **)&ks->names, &ks->names_cap, ks->names_len + len + 1, 1);
	if (err)
		return err;
	k = &ks->syms[ks->nr++];
	k->addr = addr;
	k->name_off = (uint32_t)ks->names_len;
	k->rank = type == 'T' ? 0 : type == 'W' || type == 'w' ? 1 : 2;
	memcpy(ks->names + ks->names_len, name, len);
	ks->names[ks->names_len + len] = '\0';
	ks->names_len += len + 1;
	return 0;
}

int ksyms_load(const char *path, struct ksyms **ret_ks)
{
	struct ksyms *ks = NULL;
	char *line = NULL;
	size_t line_cap = 0, out = 0;
	bool nonzero = false;
	FILE *f = NULL;
	ssize_t n;
	int err;

	f = fopen(path, "re");
	if (!f) {
		err = -errno;
		log_debug("ksyms: %s: %s", path, strerror(-err));
		return err;
	}
	ks = calloc(1, sizeof(*ks));
	if (!ks) {
		err = -ENOMEM;
		goto err_close;
	}
	while ((n = getline(&line, &line_cap, f)) > 0) {
		char *p, *end, type;
		uint64_t addr;
		size_t len;

		addr = strtoull(line, &p, 16);
		if (p == line || *p != ' ' || !p[1] || p[2] != ' ')
			continue;
		type = p[1];
		if (type != 't' && type != 'T' && type != 'w' && type != 'W')
			continue;
		if (addr)
			nonzero = true;
		p += 3;
		end = p + strcspn(p, " \t\n");
		len = (size_t)(end - p);
		if (!len)
			continue;
		err = ksyms_add(ks, addr, type, p, len);
		if (err)
			goto err_free;
	}
	if (!nonzero || !ks->nr) {
		log_debug("ksyms: %s: no usable addresses (kptr_restrict?)", path);
		err = -ENOENT;
		goto err_free;
	}
	qsort(ks->syms, ks->nr, sizeof(*ks->syms), ksym_cmp);
	/* one entry per address: the global alias sorts first */
	for (size_t i = 0; i < ks->nr; i++) {
		if (out && ks->syms[out - 1].addr == ks->syms[i].addr)
			continue;
		ks->syms[out++] = ks->syms[i];
	}
	ks->nr = out;
	free(line);
	fclose(f);
	*ret_ks = ks;
	return 0;

err_free:
	ksyms_free(ks);
err_close:
	free(line);
	fclose(f);
	return err;
}

void ksyms_free(struct ksyms *ks)
{
	if (!ks)
		return;
	free(ks->syms);
	free(ks->names);
	free(ks);
}

const char *ksyms_lookup(const struct ksyms *ks, uint64_t addr, uint64_t *ret_off)
{
	size_t lo = 0, hi = ks->nr;

	/* first symbol above addr */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ks->syms[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return NULL;
	if (ret_off)
		*ret_off = addr - ks->syms[lo - 1].addr;
	return ks->names + ks->syms[lo - 1].name_off;
}

uint64_t ksyms_addr(const struct ksyms *ks, const char *name)
{
	for (size_t i = 0; i < ks->nr; i++)
		if (!strcmp(ks->names + ks->syms[i].name_off, name))
			return ks->syms[i].addr;
	return 0;
}

size_t ksyms_count(const struct ksyms *ks)
{
	return ks->nr;
}
