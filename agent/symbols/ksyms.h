/* ksyms: kernel symbols from /proc/kallsyms, sorted by address for binary search.
 *
 * Only text symbols (types t, T, w, W) are kept; a PC belongs to the nearest symbol at or below
 * it (kallsyms has no sizes). The caller owns the table; names live until ksyms_free().
 * Not thread-safe to build, read-only lookups afterwards. */
#ifndef EMBER_KSYMS_H
#define EMBER_KSYMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ksyms;

/* Loads path (normally "/proc/kallsyms"). Returns 0, -ENOENT if no address could be read (file
 * missing, or every address is 0 because of kptr_restrict), or -errno. */
int ksyms_load(const char *path, struct ksyms **ret_ks);
void ksyms_free(struct ksyms *ks);

/* Name of the symbol holding addr, or NULL below the first symbol. *ret_off gets addr minus the
 * symbol's address. The name stays valid until ksyms_free(). */
const char *ksyms_lookup(const struct ksyms *ks, uint64_t addr, uint64_t *ret_off);
/* Address of the first symbol called name (linear search; for tests and setup), or 0. */
uint64_t ksyms_addr(const struct ksyms *ks, const char *name);
size_t ksyms_count(const struct ksyms *ks);

#endif
