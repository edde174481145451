/* test_strset: the interning table and the hash (agent/lib): one copy per distinct string,
 * dense ids, pointers that survive growth, and bounds that refuse and count. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hash.h"
#include "strset.h"

static void test_hash(void)
{
	/* Published FNV-1a 64 test vectors. */
	CHECK(hash_fnv1a64_str("") == 0xcbf29ce484222325ull);
	CHECK(hash_fnv1a64_str("a") == 0xaf63dc4c8601ec8cull);
	CHECK(hash_fnv1a64_str("foobar") == 0x85944171f73967e8ull);
	CHECK(hash_fnv1a64(hash_fnv1a64(HASH_FNV1A64_INIT, "foo", 3), "bar", 3) ==
	      hash_fnv1a64_str("foobar"));
	CHECK(hash_fold32(0x0000000100000002ull) == 3);
}

static void test_intern(void)
{
	struct strset *s = NULL;
	const char *first, *again;
	uint32_t id;
	char buf[32];

	CHECK_INT(strset_new(STRSET_UNBOUNDED, STRSET_UNBOUNDED, &s), 0);
	first = strset_intern_str(s, "main");
	CHECK(first != NULL);
	CHECK_INT(strset_intern(s, "main()", 4, &id), 0);  /* not NUL-terminated at len */
	CHECK_INT(id, 0);
	CHECK(strset_intern_str(s, "main") == first);
	CHECK_INT(strset_count(s), 1);
	CHECK_INT(strset_bytes(s), 5);
	/* 100000 more: pointers and ids stay what they were. */
	for (int i = 0; i < 100000; i++) {
		snprintf(buf, sizeof(buf), "fn_%d", i);
		CHECK_INT(strset_intern(s, buf, strlen(buf), &id), 0);
		if ((uint32_t)i + 1 != id)
			break;
	}
	CHECK_INT(strset_count(s), 100001);
	again = strset_intern_str(s, "main");
	CHECK(again == first);
	CHECK_STR(again, "main");
	CHECK_INT(strset_find(s, "fn_4242", 7, &id), 0);
	CHECK_INT(id, 4243);
	CHECK_STR(strset_str(s, id), "fn_4242");
	CHECK(strset_hash(s, id) == hash_fnv1a64_str("fn_4242"));
	CHECK_INT(strset_find(s, "nope", 4, &id), -ENOENT);
	CHECK_INT(strset_intern(s, "", 0, &id), 0);  /* the empty string is a string */
	CHECK_STR(strset_str(s, id), "");
	{
		/* a string longer than a chunk */
		size_t n = 100000;
		char *big = malloc(n);

		CHECK(big != NULL);
		memset(big, 'x', n);
		CHECK_INT(strset_intern(s, big, n, &id), 0);
		CHECK(strlen(strset_str(s, id)) == n);
		CHECK(strset_intern_str(s, "main") == first);
		free(big);
	}
	CHECK(strset_intern_str(s, NULL) == NULL);
	CHECK_INT(strset_refused(s), 0);
	strset_free(s);
	strset_free(NULL);
}

static void test_bounds(void)
{
	struct strset *s = NULL;
	uint32_t id;

	CHECK_INT(strset_new(0, 10, &s), -EINVAL);
	CHECK_INT(strset_new(3, 10, &s), 0);
	CHECK_INT(strset_intern(s, "abcd", 4, &id), 0);   /* 5 bytes */
	CHECK_INT(strset_intern(s, "efghi", 5, &id), -ENOSPC); /* 6 more > 10 */
	CHECK_INT(strset_intern(s, "efgh", 4, &id), 0);   /* 10: exactly full */
	CHECK_INT(strset_intern(s, "abcd", 4, &id), 0);   /* known strings still found */
	CHECK_INT(id, 0);
	CHECK_INT(strset_intern(s, "", 0, &id), -ENOSPC);
	CHECK_INT(strset_refused(s), 2);
	CHECK_INT(strset_bytes(s), 10);
	strset_free(s);

	CHECK_INT(strset_new(2, STRSET_UNBOUNDED, &s), 0);
	CHECK(strset_intern_str(s, "a") != NULL);
	CHECK(strset_intern_str(s, "b") != NULL);
	CHECK(strset_intern_str(s, "c") == NULL);
	CHECK_INT(strset_refused(s), 1);
	CHECK_INT(strset_count(s), 2);
	strset_free(s);
}

int main(void)
{
	test_hash();
	test_intern();
	test_bounds();
	return check_exit("test_strset");
}
