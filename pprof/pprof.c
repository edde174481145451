/* pprof: profile builder and encoder (see pprof.h).
 *
 * Tables are flat arrays that grow by doubling; each has an open-addressing hash index of
 * (hash, id) slots, so every add is O(1) amortized. The protobuf-c messages for mappings,
 * locations, lines and functions are stored in those arrays directly, and pprof_encode() only
 * builds the pointer arrays protobuf-c wants and points samples at the shared id/value arrays,
 * so nothing is copied before packing. */
#include "pprof.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "profile.pb-c.h"

/* Every table is indexed by 32-bit ids; one slot value is reserved for "empty". */
#define PPROF_MAX_ENTRIES (UINT32_MAX - 1)

/* One slot of a hash index: the low 32 bits of the key's hash and the entry's index + 1
 * (0 marks an empty slot). */
struct pprof_slot {
	uint32_t hash;
	uint32_t id;
};

/* Open-addressing hash index with linear probing; cap is a power of two, kept at most half
 * full. Equality is decided by the caller, which owns the entries. */
struct pprof_index {
	struct pprof_slot *slots;
	size_t cap;
	size_t count;
};

/* A distinct stack: location ids stack_ids[off .. off+n), values at values[i * ntypes]. */
struct pprof_sample {
	size_t off;
	uint32_t n;
	uint32_t hash;
};

struct pprof_builder {
	/* The profile's string_table (profile.proto field 6), part of the format: strings[0] is ""
	 * (pprof requires it) and ids are what the message refers to. Not agent/lib's strset on
	 * purpose: pprof/ includes nothing from agent/. */
	char **strings;
	size_t nstrings, strings_cap;
	struct pprof_index string_ix;

	Perftools__Profiles__Function *functions;
	size_t nfunctions, functions_cap;
	struct pprof_index function_ix; /* hashed by (name, filename, start_line) */

	Perftools__Profiles__Mapping *mappings;
	size_t nmappings, mappings_cap;
	struct pprof_index mapping_ix;

	/* locations[i] has exactly one line, lines[i] */
	Perftools__Profiles__Location *locations;
	Perftools__Profiles__Line *lines;
	size_t nlocations, locations_cap, lines_cap;
	struct pprof_index location_ix; /* see location_hash() */

	struct pprof_sample *samples;
	size_t nsamples, samples_cap;
	struct pprof_index sample_ix;
	uint64_t *stack_ids; /* all samples' location ids, back to back */
	size_t nstack_ids, stack_ids_cap;
	int64_t *values; /* nsamples * ntypes */
	size_t values_cap;
	uint64_t *scratch; /* location ids of the stack being added */
	size_t scratch_cap;

	Perftools__Profiles__ValueType *types;
	size_t ntypes;
	Perftools__Profiles__ValueType period_type;
	bool has_period_type;
	int64_t period;
	int64_t time_nanos, duration_nanos;
	int64_t *comments;
	size_t ncomments, comments_cap;
};

/* Grows *arr (elements of elem_size) so that it holds at least `need` elements, doubling, and
 * zeroes the new tail. Returns 0 or -ENOMEM (also when the size would overflow). */
static int grow(void **arr, size_t *cap, size_t need, size_t elem_size)
{
	size_t new_cap, bytes;
	void *p;

	if (need <= *cap)
		return 0;
	new_cap = *cap ? *cap : 16;
	while (new_cap < need) {
		if (__builtin_mul_overflow(new_cap, 2, &new_cap))
			return -ENOMEM;
	}
	if (__builtin_mul_overflow(new_cap, elem_size, &bytes))
		return -ENOMEM;
	p = realloc(*arr, bytes);
	if (!p)
		return -ENOMEM;
	memset((char *)p + *cap * elem_size, 0, (new_cap - *cap) * elem_size);
	*arr = p;
	*cap = new_cap;
	return 0;
}

#define GROW(arr, cap, need) grow((void **)&(arr), &(cap), (need), sizeof(*(arr)))

/* 64-bit finalizer (from splitmix64): spreads every input bit over the whole word. The same as
 * agent/lib/hash.h's hash_mix64(), kept here because pprof/ includes nothing from agent/. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* FNV-1a over the bytes of s; also returns its length. pprof/ keeps its own copy of the hash
 * (agent/lib/hash.h is out of reach: pprof/ includes nothing from agent/). */
static uint64_t hash_str(const char *s, size_t *ret_len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const unsigned char *p = (const unsigned char *)s;

	for (; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	*ret_len = (size_t)(p - (const unsigned char *)s);
	return h;
}

/* Iterates the ids in ix whose stored hash equals hash: start with *pos = hash, call until 0. */
static uint32_t index_next(const struct pprof_index *ix, uint32_t hash, size_t *pos)
{
	size_t mask = ix->cap - 1;

	if (!ix->cap)
		return 0;
	for (;; (*pos)++) {
		const struct pprof_slot *s = &ix->slots[*pos & mask];

		if (!s->id)
			return 0;
		if (s->hash == hash) {
			(*pos)++;
			return s->id;
		}
	}
}

static void index_put(struct pprof_slot *slots, size_t cap, uint32_t hash, uint32_t id)
{
	size_t i = hash & (cap - 1);

	while (slots[i].id)
		i = (i + 1) & (cap - 1);
	slots[i].hash = hash;
	slots[i].id = id;
}

/* Adds id (>= 1) under hash, rehashing into a table twice the size when half full. */
static int index_add(struct pprof_index *ix, uint32_t hash, uint32_t id)
{
	if ((ix->count + 1) * 2 > ix->cap) {
		size_t new_cap = ix->cap ? ix->cap * 2 : 64;
		struct pprof_slot *slots;

		if (new_cap > SIZE_MAX / sizeof(*slots) || new_cap < ix->cap)
			return -ENOMEM;
		slots = calloc(new_cap, sizeof(*slots));
		if (!slots)
			return -ENOMEM;
		for (size_t i = 0; i < ix->cap; i++) {
			if (ix->slots[i].id)
				index_put(slots, new_cap, ix->slots[i].hash, ix->slots[i].id);
		}
		free(ix->slots);
		ix->slots = slots;
		ix->cap = new_cap;
	}
	index_put(ix->slots, ix->cap, hash, id);
	ix->count++;
	return 0;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if p starts an invalid one. Rejects
 * overlong forms, surrogates and code points above U+10FFFF, as Go's utf8.Valid does. */
static size_t utf8_seq_len(const unsigned char *p)
{
	unsigned char c = p[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

		if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

		if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		return 4;
	}
	return 0;
}

/* Returns a malloc'd copy of s (len bytes) in which every byte that is not part of a valid
 * UTF-8 sequence is replaced by '?': Pyroscope rejects a whole profile over one invalid
 * string (pkg/validation/validate.go), and a corrupt symbol must not cost the profile. */
static char *utf8_sanitized(const char *s, size_t len)
{
	char *out = malloc(len + 1);
	size_t i = 0;

	if (!out)
		return NULL;
	memcpy(out, s, len + 1);
	while (i < len) {
		size_t n = utf8_seq_len((const unsigned char *)out + i);

		if (!n) {
			out[i++] = '?';
			continue;
		}
		i += n;
	}
	return out;
}

/* Finds s in the string table; returns its index or -1. */
static int64_t string_find(const struct pprof_builder *b, const char *s, uint32_t hash)
{
	size_t pos = hash;
	uint32_t id;

	while ((id = index_next(&b->string_ix, hash, &pos))) {
		if (!strcmp(b->strings[id - 1], s))
			return id - 1;
	}
	return -1;
}

/* Returns the string-table index of s (NULL is ""), adding a copy when new. Invalid UTF-8 is
 * stored sanitized; a later lookup of the same raw bytes finds the sanitized entry again.
 * Returns the index (>= 0) or -ENOMEM. */
static int64_t string_intern(struct pprof_builder *b, const char *s)
{
	char *copy = NULL;
	size_t len, i;
	uint64_t h64;
	uint32_t hash;
	int64_t idx;
	int err;

	if (!s || !*s)
		return 0;
	h64 = hash_str(s, &len);
	hash = (uint32_t)h64;
	idx = string_find(b, s, hash);
	if (idx >= 0)
		return idx;

	for (i = 0; i < len;) {
		size_t n = utf8_seq_len((const unsigned char *)s + i);

		if (!n)
			break;
		i += n;
	}
	if (i < len) {
		copy = utf8_sanitized(s, len);
		if (!copy)
			return -ENOMEM;
		h64 = hash_str(copy, &len);
		hash = (uint32_t)h64;
		idx = string_find(b, copy, hash);
		if (idx >= 0) {
			free(copy);
			return idx;
		}
	} else {
		copy = strdup(s);
		if (!copy)
			return -ENOMEM;
	}

	err = -ENOMEM;
	if (b->nstrings >= PPROF_MAX_ENTRIES)
		goto err_copy;
	err = GROW(b->strings, b->strings_cap, b->nstrings + 1);
	if (err)
		goto err_copy;
	err = index_add(&b->string_ix, hash, (uint32_t)b->nstrings + 1);
	if (err)
		goto err_copy;
	b->strings[b->nstrings] = copy;
	return (int64_t)b->nstrings++;

err_copy:
	free(copy);
	return err;
}

static uint32_t function_hash(int64_t name, int64_t filename, int64_t start_line)
{
	return (uint32_t)mix64((uint64_t)name ^ mix64((uint64_t)filename ^
						       mix64((uint64_t)start_line)));
}

/* Returns the id (>= 1) of the function (name, filename, start_line), adding it when new, or
 * -ENOMEM. One name in two files is two functions, as pprof itself keys them. */
static int64_t function_intern(struct pprof_builder *b, const char *name, const char *filename,
			       int64_t start_line)
{
	Perftools__Profiles__Function *f;
	int64_t sname, sfile;
	uint32_t hash, id;
	size_t pos;
	int err;

	sname = string_intern(b, name);
	if (sname < 0)
		return sname;
	sfile = string_intern(b, filename);
	if (sfile < 0)
		return sfile;
	hash = function_hash(sname, sfile, start_line);
	pos = hash;
	while ((id = index_next(&b->function_ix, hash, &pos))) {
		f = &b->functions[id - 1];
		if (f->name == sname && f->filename == sfile && f->start_line == start_line)
			return id;
	}

	if (b->nfunctions >= PPROF_MAX_ENTRIES)
		return -ENOMEM;
	err = GROW(b->functions, b->functions_cap, b->nfunctions + 1);
	if (err)
		return err;
	err = index_add(&b->function_ix, hash, (uint32_t)b->nfunctions + 1);
	if (err)
		return err;
	f = &b->functions[b->nfunctions];
	perftools__profiles__function__init(f);
	f->id = b->nfunctions + 1;
	f->name = sname;
	f->system_name = sname; /* we only know one name; pprof shows `name` */
	f->filename = sfile;
	f->start_line = start_line;
	b->nfunctions++;
	return (int64_t)f->id;
}

/* Hash of a location's key (mapping_id, address, function, line). A native frame's address
 * tells its locations apart, so its hash skips the strings and a repeated frame costs no
 * string hashing. A frame without an address (Python: address 0, no mapping) hashes its
 * function's name and filename too, or all of them would probe one chain. */
static uint32_t location_hash(uint64_t mapping_id, uint64_t address, int64_t line,
			      const char *name, const char *filename)
{
	uint64_t h = mix64(address ^ mix64(mapping_id + 1)) ^ (uint64_t)line;
	size_t len;

	if (!address) {
		h = mix64(h ^ hash_str(name, &len));
		h = mix64(h ^ hash_str(filename ? filename : "", &len));
	}
	return (uint32_t)mix64(h);
}

/* Whether location id is frame f, comparing its function by the stored strings (no
 * interning). */
static bool location_is(const struct pprof_builder *b, uint32_t id, const struct pprof_frame *f)
{
	const Perftools__Profiles__Location *loc = &b->locations[id - 1];
	const Perftools__Profiles__Line *ln = &b->lines[id - 1];
	const Perftools__Profiles__Function *fn;

	if (loc->mapping_id != f->mapping_id || loc->address != f->address || ln->line != f->line)
		return false;
	fn = &b->functions[ln->function_id - 1];
	return fn->start_line == f->start_line && !strcmp(b->strings[fn->name], f->function) &&
	       !strcmp(b->strings[fn->filename], f->filename ? f->filename : "");
}

/* Returns the id (>= 1) of the location for frame f, adding it when new, or -errno.
 * A location is indexed under the hash of its stored (sanitized) strings; a frame is first
 * looked up by its own, which are the same unless they hold invalid UTF-8. */
static int64_t location_intern(struct pprof_builder *b, const struct pprof_frame *f)
{
	Perftools__Profiles__Location *loc;
	const Perftools__Profiles__Function *fn;
	uint32_t hash = location_hash(f->mapping_id, f->address, f->line, f->function, f->filename);
	size_t pos = hash;
	int64_t fid;
	uint32_t id;
	int err;

	while ((id = index_next(&b->location_ix, hash, &pos))) {
		if (location_is(b, id, f))
			return id;
	}

	/* Not found by raw strings: intern the function (its stored strings may be sanitized)
	 * and look again by function id before adding. */
	fid = function_intern(b, f->function, f->filename, f->start_line);
	if (fid < 0)
		return fid;
	fn = &b->functions[fid - 1];
	hash = location_hash(f->mapping_id, f->address, f->line, b->strings[fn->name],
			     b->strings[fn->filename]);
	pos = hash;
	while ((id = index_next(&b->location_ix, hash, &pos))) {
		loc = &b->locations[id - 1];
		if (loc->mapping_id == f->mapping_id && loc->address == f->address &&
		    b->lines[id - 1].function_id == (uint64_t)fid && b->lines[id - 1].line == f->line)
			return id;
	}

	if (b->nlocations >= PPROF_MAX_ENTRIES)
		return -ENOMEM;
	err = GROW(b->locations, b->locations_cap, b->nlocations + 1);
	if (err)
		return err;
	err = GROW(b->lines, b->lines_cap, b->nlocations + 1);
	if (err)
		return err;
	err = index_add(&b->location_ix, hash, (uint32_t)b->nlocations + 1);
	if (err)
		return err;
	loc = &b->locations[b->nlocations];
	perftools__profiles__location__init(loc);
	loc->id = b->nlocations + 1;
	loc->mapping_id = f->mapping_id;
	loc->address = f->address;
	perftools__profiles__line__init(&b->lines[b->nlocations]);
	b->lines[b->nlocations].function_id = (uint64_t)fid;
	b->lines[b->nlocations].line = f->line;
	b->nlocations++;
	return (int64_t)loc->id;
}

int pprof_builder_new(const struct pprof_value_type *types, size_t ntypes,
		      const struct pprof_value_type *period_type, int64_t period,
		      struct pprof_builder **ret_builder)
{
	struct pprof_builder *b;
	int64_t t, u;
	int err;

	if (!types || !ntypes || ntypes > 1024 || !ret_builder)
		return -EINVAL;
	for (size_t i = 0; i < ntypes; i++) {
		/* Pyroscope rejects sample type names containing '-' (validate.go) */
		if (!types[i].type || !*types[i].type || !types[i].unit || strchr(types[i].type, '-'))
			return -EINVAL;
	}
	if (period_type && (!period_type->type || !period_type->unit))
		return -EINVAL;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	err = -ENOMEM;
	b->strings_cap = 64;
	b->strings = calloc(b->strings_cap, sizeof(*b->strings));
	if (!b->strings)
		goto err_free;
	b->strings[0] = strdup("");
	if (!b->strings[0])
		goto err_free;
	b->nstrings = 1;
	b->types = calloc(ntypes, sizeof(*b->types));
	if (!b->types)
		goto err_free;
	b->ntypes = ntypes;
	for (size_t i = 0; i < ntypes; i++) {
		perftools__profiles__value_type__init(&b->types[i]);
		t = string_intern(b, types[i].type);
		u = string_intern(b, types[i].unit);
		if (t < 0 || u < 0)
			goto err_free;
		b->types[i].type = t;
		b->types[i].unit = u;
	}
	perftools__profiles__value_type__init(&b->period_type);
	if (period_type) {
		t = string_intern(b, period_type->type);
		u = string_intern(b, period_type->unit);
		if (t < 0 || u < 0)
			goto err_free;
		b->period_type.type = t;
		b->period_type.unit = u;
		b->has_period_type = true;
	}
	b->period = period;
	*ret_builder = b;
	return 0;

err_free:
	pprof_builder_free(b);
	return err;
}

void pprof_builder_free(struct pprof_builder *b)
{
	if (!b)
		return;
	if (b->strings) {
		for (size_t i = 0; i < b->nstrings; i++)
			free(b->strings[i]);
	}
	free(b->strings);
	free(b->string_ix.slots);
	free(b->functions);
	free(b->function_ix.slots);
	free(b->mappings);
	free(b->mapping_ix.slots);
	free(b->locations);
	free(b->lines);
	free(b->location_ix.slots);
	free(b->samples);
	free(b->sample_ix.slots);
	free(b->stack_ids);
	free(b->values);
	free(b->scratch);
	free(b->types);
	free(b->comments);
	free(b);
}

void pprof_set_time(struct pprof_builder *b, int64_t time_nanos, int64_t duration_nanos)
{
	b->time_nanos = time_nanos;
	b->duration_nanos = duration_nanos;
}

int pprof_add_comment(struct pprof_builder *b, const char *comment)
{
	int64_t idx;
	int err;

	idx = string_intern(b, comment);
	if (idx < 0)
		return (int)idx;
	err = GROW(b->comments, b->comments_cap, b->ncomments + 1);
	if (err)
		return err;
	b->comments[b->ncomments++] = idx;
	return 0;
}

uint32_t pprof_add_mapping(struct pprof_builder *b, const struct pprof_mapping_desc *m)
{
	Perftools__Profiles__Mapping *mp;
	int64_t file, build_id;
	uint32_t hash, id;
	size_t pos;

	if (!m)
		return 0;
	file = string_intern(b, m->file);
	build_id = string_intern(b, m->build_id);
	if (file < 0 || build_id < 0)
		return 0;
	hash = (uint32_t)mix64(m->start ^ mix64(m->limit ^ mix64(m->file_offset ^
		mix64((uint64_t)file ^ ((uint64_t)build_id << 32)))));
	pos = hash;
	while ((id = index_next(&b->mapping_ix, hash, &pos))) {
		mp = &b->mappings[id - 1];
		if (mp->memory_start == m->start && mp->memory_limit == m->limit &&
		    mp->file_offset == m->file_offset && mp->filename == file &&
		    mp->build_id == build_id)
			return id;
	}

	if (b->nmappings >= PPROF_MAX_ENTRIES)
		return 0;
	if (GROW(b->mappings, b->mappings_cap, b->nmappings + 1))
		return 0;
	if (index_add(&b->mapping_ix, hash, (uint32_t)b->nmappings + 1))
		return 0;
	mp = &b->mappings[b->nmappings];
	perftools__profiles__mapping__init(mp);
	mp->id = b->nmappings + 1;
	mp->memory_start = m->start;
	mp->memory_limit = m->limit;
	mp->file_offset = m->file_offset;
	mp->filename = file;
	mp->build_id = build_id;
	/* locations carry function names, so Pyroscope need not symbolize this mapping */
	mp->has_functions = true;
	b->nmappings++;
	return (uint32_t)mp->id;
}

static uint32_t stack_hash(const uint64_t *ids, size_t n)
{
	uint64_t h = n;

	for (size_t i = 0; i < n; i++)
		h = mix64(h ^ ids[i]) + i;
	return (uint32_t)(h ^ (h >> 32));
}

int pprof_add_sample(struct pprof_builder *b, const struct pprof_frame *frames, size_t nframes,
		     const int64_t *values)
{
	struct pprof_sample *s;
	uint32_t hash, id;
	size_t pos, nvalues;
	int64_t *dst;
	int err;

	if (!frames || !nframes || nframes > UINT32_MAX || !values)
		return -EINVAL;
	for (size_t i = 0; i < nframes; i++) {
		if (!frames[i].function || frames[i].mapping_id > b->nmappings)
			return -EINVAL;
	}
	err = GROW(b->scratch, b->scratch_cap, nframes);
	if (err)
		return err;
	for (size_t i = 0; i < nframes; i++) {
		int64_t lid = location_intern(b, &frames[i]);

		if (lid < 0)
			return (int)lid;
		b->scratch[i] = (uint64_t)lid;
	}

	hash = stack_hash(b->scratch, nframes);
	pos = hash;
	while ((id = index_next(&b->sample_ix, hash, &pos))) {
		s = &b->samples[id - 1];
		if (s->n != nframes ||
		    memcmp(&b->stack_ids[s->off], b->scratch, nframes * sizeof(*b->scratch)))
			continue;
		dst = &b->values[(id - 1) * b->ntypes];
		for (size_t i = 0; i < b->ntypes; i++) {
			/* saturate rather than wrap: a wrapped value would turn negative and
			 * Pyroscope drops samples with negative values */
			if (__builtin_add_overflow(dst[i], values[i], &dst[i]))
				dst[i] = values[i] > 0 ? INT64_MAX : INT64_MIN;
		}
		return 0;
	}

	if (b->nsamples >= PPROF_MAX_ENTRIES || b->nstack_ids > SIZE_MAX - nframes)
		return -ENOMEM;
	err = GROW(b->stack_ids, b->stack_ids_cap, b->nstack_ids + nframes);
	if (err)
		return err;
	err = GROW(b->samples, b->samples_cap, b->nsamples + 1);
	if (err)
		return err;
	if (__builtin_mul_overflow(b->nsamples + 1, b->ntypes, &nvalues))
		return -ENOMEM;
	err = GROW(b->values, b->values_cap, nvalues);
	if (err)
		return err;
	err = index_add(&b->sample_ix, hash, (uint32_t)b->nsamples + 1);
	if (err)
		return err;
	s = &b->samples[b->nsamples];
	s->off = b->nstack_ids;
	s->n = (uint32_t)nframes;
	s->hash = hash;
	memcpy(&b->stack_ids[b->nstack_ids], b->scratch, nframes * sizeof(*b->scratch));
	b->nstack_ids += nframes;
	memcpy(&b->values[b->nsamples * b->ntypes], values, b->ntypes * sizeof(*values));
	b->nsamples++;
	return 0;
}

size_t pprof_sample_count(const struct pprof_builder *b)
{
	return b->nsamples;
}

/* Gzips in[0..len) into a malloc'd buffer (fastest level: the agent's CPU matters more than a
 * few KiB on the wire; Alloy's eBPF reporter makes the same choice). Returns 0, -ENOMEM or
 * -EIO for a zlib error. */
static int gzip_buffer(const uint8_t *in, size_t len, uint8_t **ret_buf, size_t *ret_len)
{
	z_stream zs;
	uint8_t *out = NULL;
	size_t cap, done = 0;
	int zerr, err;

	memset(&zs, 0, sizeof(zs));
	/* windowBits 15 + 16: a gzip header and trailer instead of zlib's */
	zerr = deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
	if (zerr != Z_OK)
		return zerr == Z_MEM_ERROR ? -ENOMEM : -EIO;
	cap = len + len / 1000 + 64; /* above deflateBound() for any input: one pass */
	out = malloc(cap);
	err = -ENOMEM;
	if (!out)
		goto err_end;

	zs.next_in = (Bytef *)in;
	do {
		size_t in_left = len - (size_t)(zs.next_in - in);
		uInt chunk = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
		int flush = in_left > UINT_MAX ? Z_NO_FLUSH : Z_FINISH;

		if (cap - done < 64) {
			uint8_t *p;

			if (cap > SIZE_MAX / 2)
				goto err_end;
			p = realloc(out, cap * 2);
			if (!p)
				goto err_end;
			out = p;
			cap *= 2;
		}
		zs.avail_in = chunk;
		zs.next_out = out + done;
		zs.avail_out = cap - done > UINT_MAX ? UINT_MAX : (uInt)(cap - done);
		zerr = deflate(&zs, flush);
		done = (size_t)(zs.next_out - out);
		if (zerr == Z_STREAM_ERROR) {
			err = -EIO;
			goto err_end;
		}
	} while (zerr != Z_STREAM_END);

	(void)deflateEnd(&zs);
	*ret_buf = out;
	*ret_len = done;
	return 0;

err_end:
	(void)deflateEnd(&zs);
	free(out);
	return err;
}

int pprof_encode(struct pprof_builder *b, bool gzip, uint8_t **ret_buf, size_t *ret_len)
{
	Perftools__Profiles__Profile prof = PERFTOOLS__PROFILES__PROFILE__INIT;
	Perftools__Profiles__ValueType **type_ptrs = NULL;
	Perftools__Profiles__Sample *samples = NULL, **sample_ptrs = NULL;
	Perftools__Profiles__Mapping **mapping_ptrs = NULL;
	Perftools__Profiles__Location **location_ptrs = NULL;
	Perftools__Profiles__Line **line_ptrs = NULL;
	Perftools__Profiles__Function **function_ptrs = NULL;
	uint8_t *buf = NULL;
	size_t len;
	int err = -ENOMEM;

	/* calloc(0) may return NULL; ask for at least one element so NULL means failure */
	type_ptrs = calloc(b->ntypes, sizeof(*type_ptrs));
	samples = calloc(b->nsamples + 1, sizeof(*samples));
	sample_ptrs = calloc(b->nsamples + 1, sizeof(*sample_ptrs));
	mapping_ptrs = calloc(b->nmappings + 1, sizeof(*mapping_ptrs));
	location_ptrs = calloc(b->nlocations + 1, sizeof(*location_ptrs));
	line_ptrs = calloc(b->nlocations + 1, sizeof(*line_ptrs));
	function_ptrs = calloc(b->nfunctions + 1, sizeof(*function_ptrs));
	if (!type_ptrs || !samples || !sample_ptrs || !mapping_ptrs || !location_ptrs ||
	    !line_ptrs || !function_ptrs)
		goto cleanup;

	for (size_t i = 0; i < b->ntypes; i++)
		type_ptrs[i] = &b->types[i];
	for (size_t i = 0; i < b->nsamples; i++) {
		Perftools__Profiles__Sample *s = &samples[i];

		perftools__profiles__sample__init(s);
		s->n_location_id = b->samples[i].n;
		s->location_id = &b->stack_ids[b->samples[i].off];
		s->n_value = b->ntypes;
		s->value = &b->values[i * b->ntypes];
		sample_ptrs[i] = s;
	}
	for (size_t i = 0; i < b->nmappings; i++)
		mapping_ptrs[i] = &b->mappings[i];
	for (size_t i = 0; i < b->nlocations; i++) {
		line_ptrs[i] = &b->lines[i];
		b->locations[i].n_line = 1;
		b->locations[i].line = &line_ptrs[i];
		location_ptrs[i] = &b->locations[i];
	}
	for (size_t i = 0; i < b->nfunctions; i++)
		function_ptrs[i] = &b->functions[i];

	prof.n_sample_type = b->ntypes;
	prof.sample_type = type_ptrs;
	prof.n_sample = b->nsamples;
	prof.sample = sample_ptrs;
	prof.n_mapping = b->nmappings;
	prof.mapping = mapping_ptrs;
	prof.n_location = b->nlocations;
	prof.location = location_ptrs;
	prof.n_function = b->nfunctions;
	prof.function = function_ptrs;
	prof.n_string_table = b->nstrings;
	prof.string_table = b->strings;
	prof.time_nanos = b->time_nanos;
	prof.duration_nanos = b->duration_nanos;
	prof.period_type = b->has_period_type ? &b->period_type : NULL;
	prof.period = b->period;
	prof.n_comment = b->ncomments;
	prof.comment = b->comments;

	len = perftools__profiles__profile__get_packed_size(&prof);
	buf = malloc(len ? len : 1);
	if (!buf)
		goto cleanup;
	if (perftools__profiles__profile__pack(&prof, buf) != len) {
		err = -EIO;
		goto cleanup;
	}

	if (gzip) {
		uint8_t *gz;
		size_t gz_len;

		err = gzip_buffer(buf, len, &gz, &gz_len);
		if (err)
			goto cleanup;
		free(buf);
		buf = gz;
		len = gz_len;
	}
	*ret_buf = buf;
	*ret_len = len;
	buf = NULL;
	err = 0;

cleanup:
	/* the locations must not keep pointers into line_ptrs, which is freed here */
	for (size_t i = 0; i < b->nlocations; i++) {
		b->locations[i].n_line = 0;
		b->locations[i].line = NULL;
	}
	free(buf);
	free(function_ptrs);
	free(line_ptrs);
	free(location_ptrs);
	free(mapping_ptrs);
	free(sample_ptrs);
	free(samples);
	free(type_ptrs);
	return err;
}
