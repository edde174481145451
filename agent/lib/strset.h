/* strset: the agent's one string-interning table. Each distinct string is stored once and gets
 * a dense id (0, 1, 2... in order of first intern) and a pointer that stays valid, unchanged,
 * until strset_free(): strings live in append-only chunks that are never moved.
 *
 * Bounded: at most max_entries strings and max_bytes bytes of string data (NULs included); an
 * intern beyond either is refused with -ENOSPC and counted (strset_refused()), so a caller can
 * cap what a profiled process can make it allocate. Not thread-safe: one owner. */
#ifndef EMBER_STRSET_H
#define EMBER_STRSET_H

#include <stddef.h>
#include <stdint.h>

struct strset;

/* No bound: for tables already bounded by their owner (e.g. a profile under Pyroscope's limits). */
#define STRSET_UNBOUNDED SIZE_MAX

/* Returns 0 or -ENOMEM / -EINVAL (a zero bound). */
int strset_new(size_t max_entries, size_t max_bytes, struct strset **ret_set);
void strset_free(struct strset *set);

/* Interns the len bytes at str (which need not be NUL-terminated and must not contain a NUL).
 * Writes the id to *ret_id (may be NULL). Returns 0, -ENOSPC (a bound; counted) or -ENOMEM. */
int strset_intern(struct strset *set, const char *str, size_t len, uint32_t *ret_id);

/* strset_intern() of a C string, returning the stored copy, or NULL when refused or out of
 * memory (NULL for a NULL str too). */
const char *strset_intern_str(struct strset *set, const char *str);

/* Looks str up without adding it. Returns 0 with *ret_id, or -ENOENT. */
int strset_find(const struct strset *set, const char *str, size_t len, uint32_t *ret_id);

/* The string of id (NUL-terminated), and its hash_fnv1a64(); id must be < strset_count(). */
const char *strset_str(const struct strset *set, uint32_t id);
uint64_t strset_hash(const struct strset *set, uint32_t id);

size_t strset_count(const struct strset *set);
/* Bytes of string data held (NULs included), as counted against max_bytes. */
size_t strset_bytes(const struct strset *set);
/* Interns refused because of a bound since strset_new(). */
uint64_t strset_refused(const struct strset *set);

#endif
