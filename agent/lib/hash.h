/* hash: the one string/byte hash of the agent, FNV-1a (64-bit), and its 32-bit fold.
 *
 * For in-memory hash tables only: values are never stored or sent, so the function may change.
 * Header-only (static inline): the hot paths (stack dedup per sample) inline it. pprof/ and
 * cupti/ include nothing from agent/ and keep their own. */
#ifndef EMBER_HASH_H
#define EMBER_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a 64-bit offset basis and prime (http://www.isthe.com/chongo/tech/comp/fnv/). */
#define HASH_FNV1A64_INIT 0xcbf29ce484222325ull
#define HASH_FNV1A64_PRIME 0x100000001b3ull

/* Continues hash h over len bytes: start with HASH_FNV1A64_INIT, chain calls to hash several
 * buffers as one. */
static inline uint64_t hash_fnv1a64(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * HASH_FNV1A64_PRIME;
	return h;
}

/* FNV-1a 64 of a NUL-terminated string (without the NUL). */
static inline uint64_t hash_fnv1a64_str(const char *s)
{
	uint64_t h = HASH_FNV1A64_INIT;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * HASH_FNV1A64_PRIME;
	return h;
}

/* 32 bits of a 64-bit hash, both halves mixed in, for tables indexed by uint32_t. */
static inline uint32_t hash_fold32(uint64_t h)
{
	return (uint32_t)(h ^ (h >> 32));
}

/* splitmix64's finaliser: spreads a key that is not itself a hash (ids, pairs of ids). */
static inline uint64_t hash_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

#endif
