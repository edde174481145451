/* fuzz_discovery: what the Docker and Kubernetes APIs answer and what /proc/PID/cgroup says, as
 * agent/targets parses them: the input's first byte picks the parser (a container list, an
 * inspect, a page of pods, a watch event line, a cgroup file), the rest is the answer. A table
 * kept across inputs (one per process) sees every input's leftovers, as the agent's does; each
 * input must end without a crash, a leak or unbounded memory, and what it put in the table
 * must resolve to sanitized names. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cgmeta.h"
#include "discovery.h"
#include "discovery_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct discovery *d;

static void check_meta(const struct discovery_meta *m)
{
	for (const char *p = m->service; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/", *p))
			abort();
	if (m->nlabels > DISCOVERY_MAX_LABELS)
		abort();
	for (size_t i = 0; i < m->nlabels; i++)
		for (const unsigned char *p = (const unsigned char *)m->labels[i].value; *p; p++)
			if (*p < 0x20 || *p == 0x7f || strchr("{},=", *p))
				abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct discovery_opts o = { .node_name = "node-a" };
	const char *body = (const char *)data + 1;
	struct discovery_meta m;
	struct cgmeta cg;

	if (!size)
		return 0;
	if (!d && discovery_start(&o, &d))
		abort();
	size--;
	switch (data[0] % 5) {
	case 0:
		(void)disc_docker_parse_list(d, body, size, data[0]);
		break;
	case 1:
		(void)disc_docker_parse_inspect(d, ID, body, size, data[0]);
		break;
	case 2:
		(void)disc_kube_parse(d, body, size, false);
		break;
	case 3:
		(void)disc_kube_parse(d, body, size, true);
		break;
	default:
		cgmeta_parse(body, size, &cg);
		if (strlen(cg.container_id) != 0 && strlen(cg.container_id) != CGMETA_ID_LEN)
			abort();
		if (discovery_resolve(d, &cg, &m) == 1)
			check_meta(&m);
		return 0;
	}
	/* Whatever the answer put there, named the sanitized way. */
	memset(&cg, 0, sizeof(cg));
	memcpy(cg.container_id, ID, CGMETA_ID_LEN);
	if (discovery_resolve(d, &cg, &m) == 1)
		check_meta(&m);
	return 0;
}
