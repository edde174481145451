/* The service table: bounded, refusals counted, idle services retired and their ids reused,
 * services in use or recently sampled kept. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "services.h"

#define S 1000000000LL

static bool used_ids[64];

static bool in_use(void *ctx, uint32_t id)
{
	(void)ctx;
	return id < 64 && used_ids[id];
}

int main(void)
{
	struct services *t = NULL;
	char name[32];
	int id, first;

	CHECK_INT(services_new(0, &t), -EINVAL);
	CHECK_INT(services_new(8, &t), 0);
	if (!t)
		return check_exit("services");
	CHECK_INT(services_get(t, "", 0), -EINVAL);
	first = services_get(t, "web", 0);
	CHECK_INT(first, 0);
	CHECK_INT(services_get(t, "web", 1), 0); /* the same name, the same id */
	for (int i = 1; i < 8; i++) {
		snprintf(name, sizeof(name), "short-lived-%d", i);
		CHECK_INT(services_get(t, name, 0), i);
	}
	/* Full: a new name is refused and counted, a known one still answers. */
	CHECK_INT(services_get(t, "root-service", 2 * S), -ENOSPC);
	CHECK_INT(services_get(t, "root-service", 2 * S), -ENOSPC);
	CHECK_INT((int)services_refused(t), 2);
	CHECK_INT(services_get(t, "short-lived-3", 8 * S), 3);
	CHECK_INT((int)services_count(t), 8);

	/* Retirement: idle (last sample before now - idle) and not in use. "web" is in use,
	 * short-lived-3 was sampled just now, short-lived-5 is touched. */
	used_ids[0] = true;
	services_touch(t, 5, 9 * S);
	CHECK_INT((int)services_retire(t, 10 * S, 5 * S, in_use, NULL), 5);
	CHECK_STR(services_name(t, 0), "web");
	CHECK_STR(services_name(t, 3), "short-lived-3");
	CHECK_STR(services_name(t, 5), "short-lived-5");
	CHECK(services_name(t, 1) == NULL && services_name(t, 7) == NULL);
	CHECK_INT((int)services_retired(t), 5);
	CHECK_INT((int)services_count(t), 3);
	/* The root service started later gets a slot (a retired one's id). */
	id = services_get(t, "root-service", 10 * S);
	CHECK(id == 1);
	CHECK_INT((int)services_capacity(t), 8);
	/* Nothing idle: nothing retired. */
	CHECK_INT((int)services_retire(t, 11 * S, 5 * S, in_use, NULL), 0);
	services_free(t);
	services_free(NULL);
	return check_exit("services");
}
