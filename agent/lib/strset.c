/* strset: open addressing (linear probing, load <= 1/2) over a dense array of entries; the
 * strings themselves in append-only chunks. */
#include "strset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

/* Chunk size for short strings; a longer one gets a chunk of its own. */
#define STRSET_CHUNK 16384

struct strset_chunk {
	struct strset_chunk *next;
	size_t used, size;
	char data[];
};

struct strset_ent {
	const char *str;
	uint64_t hash;
	size_t len;
};

struct strset {
	size_t max_entries, max_bytes;
	struct strset_ent *ents;
	size_t n, cap;
	uint32_t *slots;  /* id + 1; 0 = empty. nslots is a power of two */
	size_t nslots;
	struct strset_chunk *chunks;  /* the first one is the one being filled */
	size_t bytes;
	uint64_t refused;
};

int strset_new(size_t max_entries, size_t max_bytes, struct strset **ret_set)
{
	struct strset *set;

	if (!max_entries || !max_bytes || !ret_set)
		return -EINVAL;
	set = calloc(1, sizeof(*set));
	if (!set)
		return -ENOMEM;
	set->max_entries = max_entries < UINT32_MAX ? max_entries : UINT32_MAX - 1;
	set->max_bytes = max_bytes;
	*ret_set = set;
	return 0;
}

void strset_free(struct strset *set)
{
	struct strset_chunk *c, *next;

	if (!set)
		return;
	for (c = set->chunks; c; c = next) {
		next = c->next;
		free(c);
	}
	free(set->ents);
	free(set->slots);
	free(set);
}

/* Returns the slot holding (str, len), or the empty slot where it goes. nslots > 0. */
static size_t strset_slot(const struct strset *set, const char *str, size_t len, uint64_t h)
{
	size_t mask = set->nslots - 1, j;

	for (j = h & mask; set->slots[j]; j = (j + 1) & mask) {
		const struct strset_ent *e = &set->ents[set->slots[j] - 1];

		if (e->hash == h && e->len == len && !memcmp(e->str, str, len))
			break;
	}
	return j;
}

static int strset_rehash(struct strset *set)
{
	size_t n = set->nslots ? set->nslots * 2 : 64;
	uint32_t *slots;

	if (n > SIZE_MAX / sizeof(*slots))
		return -ENOMEM;
	slots = calloc(n, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < set->n; i++) {
		size_t j;

		for (j = set->ents[i].hash & (n - 1); slots[j]; j = (j + 1) & (n - 1))
			;
		slots[j] = (uint32_t)(i + 1);
	}
	free(set->slots);
	set->slots = slots;
	set->nslots = n;
	return 0;
}

/* Copies len bytes and a NUL into chunk space that never moves. */
static const char *strset_store(struct strset *set, const char *str, size_t len)
{
	struct strset_chunk *c = set->chunks;
	char *p;

	if (!c || c->size - c->used < len + 1) {
		size_t size = len + 1 > STRSET_CHUNK / 4 ? len + 1 : STRSET_CHUNK;

		c = malloc(sizeof(*c) + size);
		if (!c)
			return NULL;
		c->used = 0;
		c->size = size;
		if (size != STRSET_CHUNK && set->chunks) {
			/* a chunk of its own: keep filling the current one */
			c->next = set->chunks->next;
			set->chunks->next = c;
		} else {
			c->next = set->chunks;
			set->chunks = c;
		}
	}
	p = c->data + c->used;
	memcpy(p, str, len);
	p[len] = '\0';
	c->used += len + 1;
	return p;
}

int strset_find(const struct strset *set, const char *str, size_t len, uint32_t *ret_id)
{
	size_t j;

	if (!set->nslots)
		return -ENOENT;
	j = strset_slot(set, str, len, hash_fnv1a64(HASH_FNV1A64_INIT, str, len));
	if (!set->slots[j])
		return -ENOENT;
	*ret_id = set->slots[j] - 1;
	return 0;
}

int strset_intern(struct strset *set, const char *str, size_t len, uint32_t *ret_id)
{
	uint64_t h = hash_fnv1a64(HASH_FNV1A64_INIT, str, len);
	const char *copy;
	size_t j;
	int err;

	if (set->nslots) {
		j = strset_slot(set, str, len, h);
		if (set->slots[j]) {
			if (ret_id)
				*ret_id = set->slots[j] - 1;
			return 0;
		}
	}
	/* bytes <= max_bytes always holds, so the subtraction cannot wrap */
	if (set->n >= set->max_entries || len >= set->max_bytes - set->bytes) {
		set->refused++;
		return -ENOSPC;
	}
	if ((set->n + 1) * 2 > set->nslots) {
		err = strset_rehash(set);
		if (err)
			return err;
	}
	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 64;
		struct strset_ent *ents = reallocarray(set->ents, cap, sizeof(*ents));

		if (!ents)
			return -ENOMEM;
		set->ents = ents;
		set->cap = cap;
	}
	copy = strset_store(set, str, len);
	if (!copy)
		return -ENOMEM;
	j = strset_slot(set, str, len, h);
	set->ents[set->n] = (struct strset_ent){ .str = copy, .hash = h, .len = len };
	set->slots[j] = (uint32_t)(set->n + 1);
	if (ret_id)
		*ret_id = (uint32_t)set->n;
	set->n++;
	set->bytes += len + 1;
	return 0;
}

const char *strset_intern_str(struct strset *set, const char *str)
{
	uint32_t id;

	if (!str || strset_intern(set, str, strlen(str), &id))
		return NULL;
	return set->ents[id].str;
}

const char *strset_str(const struct strset *set, uint32_t id)
{
	return set->ents[id].str;
}

uint64_t strset_hash(const struct strset *set, uint32_t id)
{
	return set->ents[id].hash;
}

size_t strset_count(const struct strset *set)
{
	return set->n;
}

size_t strset_bytes(const struct strset *set)
{
	return set->bytes;
}

uint64_t strset_refused(const struct strset *set)
{
	return set->refused;
}
