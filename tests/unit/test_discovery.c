/* Naming processes by their containers, pods and units, without the APIs: cgroup paths of
 * Docker (systemd and cgroupfs drivers), containerd and CRI-O under kubepods, systemd units;
 * the sanitizing of names and values; the Docker and Kubernetes answers as the sources parse
 * them (lists, inspects, pod pages, watch events, 410, garbage); services keyed by labels. */
#include <stdio.h>
#include <string.h>

#include "cgmeta.h"
#include "check.h"
#include "discovery.h"
#include "discovery_internal.h"
#include "services.h"

#define ID_A "4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c"
#define ID_B "aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999"
#define ID_C "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void parse(const char *text, struct cgmeta *cg)
{
	cgmeta_parse(text, strlen(text), cg);
}

static void test_cgroups(void)
{
	struct cgmeta cg;

	parse("0::/system.slice/docker-" ID_A ".scope\n", &cg);
	CHECK_STR(cg.container_id, ID_A);
	CHECK_STR(cg.unit, "");
	/* cgroupfs driver, v1 lines; upper case ids are lowered */
	parse("12:memory:/docker/4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C\n"
	      "1:name=systemd:/docker/" ID_A "\n0::/\n", &cg);
	CHECK_STR(cg.container_id, ID_A);
	parse("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/"
	      "cri-containerd-" ID_B ".scope\n", &cg);
	CHECK_STR(cg.container_id, ID_B);
	parse("0::/kubepods/besteffort/pod0c2e/" ID_C "\n", &cg);
	CHECK_STR(cg.container_id, ID_C);
	parse("0::/kubepods.slice/kubepods-pod9.slice/crio-" ID_C ".scope\n", &cg);
	CHECK_STR(cg.container_id, ID_C);
	/* a unit, system and user slices; the innermost .service wins */
	parse("0::/system.slice/nginx.service\n", &cg);
	CHECK_STR(cg.container_id, "");
	CHECK_STR(cg.unit, "nginx.service");
	parse("0::/user.slice/user-1000.slice/user@1000.service/app.slice/api.service\n", &cg);
	CHECK_STR(cg.unit, "api.service");
	/* a container inside a unit's slice is the container's */
	parse("0::/system.slice/containerd.service/kubepods-x/" ID_A "\n", &cg);
	CHECK_STR(cg.container_id, ID_A);
	CHECK_STR(cg.unit, "");
	/* a user's delegated subtree names no container: its owner could copy any id */
	parse("0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-" ID_A ".scope\n",
	      &cg);
	CHECK_STR(cg.container_id, "");
	CHECK_STR(cg.unit, "user@1000.service");
	/* hybrid hosts: the name=systemd line when the unified one says nothing */
	parse("1:name=systemd:/system.slice/cron.service\n0::/\n", &cg);
	CHECK_STR(cg.unit, "cron.service");
	/* none of them */
	parse("0::/\n", &cg);
	CHECK(!cg.container_id[0] && !cg.unit[0]);
	parse("0::/user.slice/user-0.slice/session-3.scope\n", &cg);
	CHECK(!cg.container_id[0] && !cg.unit[0]);
	/* 64 hex digits glued to other text are not an id; 63 or 65 are not either */
	parse("0::/x" ID_A "\n", &cg);
	CHECK_STR(cg.container_id, "");
	parse("0::/docker-" ID_A "0\n", &cg);
	CHECK_STR(cg.container_id, "");
	/* garbage, cut lines, no NUL */
	cgmeta_parse("0::/system.slice/a.serv", 20, &cg);
	CHECK(!cg.unit[0]);
	parse("::::\n\n:\n0:", &cg);
	CHECK(!cg.container_id[0] && !cg.unit[0]);
}

static void test_sanitize(void)
{
	char out[DISCOVERY_NAME_MAX], big[1000];

	discovery_sanitize_service("shop/api-v2.1", 13, out);
	CHECK_STR(out, "shop/api-v2.1");
	discovery_sanitize_service("a b{c}=\xc3\xa9", 9, out);
	CHECK_STR(out, "a_b_c____");
	discovery_sanitize_service("", 0, out);
	CHECK_STR(out, "_");
	discovery_sanitize_value("caf\xc3\xa9 ok", 8, out);
	CHECK_STR(out, "caf\xc3\xa9 ok");
	discovery_sanitize_value("a\nb\x01\xff{x=y}", 10, out);
	CHECK_STR(out, "a_b___x_y_");
	memset(big, 'v', sizeof(big));
	memcpy(big + 254, "\xc3\xa9", 2);
	discovery_sanitize_value(big, sizeof(big), out);
	CHECK_INT(strlen(out), 254); /* cut before the 2-byte character that does not fit */
}

static const char *label(const struct discovery_meta *m, const char *name)
{
	for (size_t i = 0; i < m->nlabels; i++)
		if (!strcmp(m->labels[i].name, name))
			return m->labels[i].value;
	return "(none)";
}

static int resolve_id(struct discovery *d, const char *id, struct discovery_meta *m)
{
	struct cgmeta cg = { 0 };

	snprintf(cg.container_id, sizeof(cg.container_id), "%s", id);
	return discovery_resolve(d, &cg, m);
}

static void test_sources_parsed(void)
{
	struct discovery_opts o = { .node_name = "node-a" };
	struct discovery *d = NULL;
	struct discovery_meta m;
	struct cgmeta unit = { .unit = "billing.service" };
	const char *list =
		"[{\"Id\":\"" ID_A "\",\"Names\":[\"/shop-web-1\"],\"Image\":\"web:1\","
		"\"Labels\":{\"com.docker.compose.service\":\"web\",\"com.docker.compose.project\":"
		"\"shop\"}},{\"Id\":\"" ID_B "\",\"Names\":[\"/redis\"],\"Labels\":{}},"
		"{\"Id\":\"short\",\"Names\":[\"/x\"]},{\"Id\":7},\"junk\"]";
	uint64_t g0;

	CHECK_INT(discovery_start(&o, &d), 0);
	if (!d)
		return;
	/* units need no API */
	CHECK_INT(discovery_resolve(d, &unit, &m), 1);
	CHECK_STR(m.service, "billing");
	CHECK_STR(label(&m, "unit"), "billing.service");
	/* an id no source knows, with no Docker to ask: the executable's name, not pending */
	CHECK_INT(resolve_id(d, ID_C, &m), 0);
	CHECK(!discovery_pending(d, ID_C));

	g0 = discovery_generation(d);
	CHECK(disc_docker_parse_list(d, list, strlen(list), 1));
	CHECK(discovery_generation(d) > g0);
	CHECK_INT(resolve_id(d, ID_A, &m), 1);
	CHECK_STR(m.service, "web");
	CHECK_STR(label(&m, "container"), "shop-web-1");
	CHECK_STR(label(&m, "compose_project"), "shop");
	CHECK_INT(resolve_id(d, ID_B, &m), 1);
	CHECK_STR(m.service, "redis");
	CHECK_STR(label(&m, "compose_project"), "(none)");
	/* garbage and wrong shapes change nothing */
	CHECK(!disc_docker_parse_list(d, "{\"Id\": [", 8, 2));
	CHECK(!disc_docker_parse_list(d, "{\"a\":1}", 7, 2));
	CHECK_INT(resolve_id(d, ID_A, &m), 1);
	/* a relist without redis removes it */
	{
		const char *one = "[{\"Id\":\"" ID_A "\",\"Names\":[\"/shop-web-1\"],\"Labels\":"
				  "{\"com.docker.compose.service\":\"web\"}}]";

		CHECK(disc_docker_parse_list(d, one, strlen(one), 4));
		CHECK_INT(resolve_id(d, ID_B, &m), 0);
	}
	/* inspect: the id must be the one asked */
	{
		const char *in = "{\"Id\":\"" ID_C "\",\"Name\":\"/late\",\"Config\":{\"Labels\":"
				 "{\"com.docker.compose.service\":\"late svc\"}}}";

		CHECK_INT(disc_docker_parse_inspect(d, ID_B, in, strlen(in), 4), -1);
		CHECK_INT(disc_docker_parse_inspect(d, ID_C, in, strlen(in), 4), 1);
		CHECK_INT(resolve_id(d, ID_C, &m), 1);
		CHECK_STR(m.service, "late_svc");
	}
	/* Kubernetes: a page of pods; the annotation names the service, else NS/CONTAINER; it
	 * wins over Docker for the same id */
	{
		const char *page =
			"{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":["
			"{\"metadata\":{\"name\":\"api-7d9f\",\"namespace\":\"shop\",\"annotations\":"
			"{\"pyroscope.io/service_name\":\"shop-api\"}},\"status\":{\"containerStatuses\":"
			"[{\"name\":\"api\",\"containerID\":\"containerd://" ID_A "\"}]}},"
			"{\"metadata\":{\"name\":\"llm-0\",\"namespace\":\"ml\"},\"status\":{"
			"\"containerStatuses\":[{\"name\":\"server\",\"containerID\":\"cri-o://" ID_B "\"},"
			"{\"name\":\"bad\",\"containerID\":\"containerd://123\"}],"
			"\"initContainerStatuses\":[{\"name\":\"init\",\"containerID\":\"docker://" ID_C
			"\"}]}}]}";
		const char *del = "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"llm-0\","
				  "\"namespace\":\"ml\",\"resourceVersion\":\"12\"},\"status\":{"
				  "\"containerStatuses\":[{\"name\":\"server\",\"containerID\":"
				  "\"cri-o://" ID_B "\"}]}}}";
		const char *gone = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,"
				   "\"reason\":\"Expired\"}}";

		CHECK_INT(disc_kube_parse(d, page, strlen(page), false), 2);
		CHECK_INT(resolve_id(d, ID_A, &m), 1);
		CHECK_STR(m.service, "shop-api");
		CHECK_STR(label(&m, "namespace"), "shop");
		CHECK_STR(label(&m, "pod"), "api-7d9f");
		CHECK_STR(label(&m, "container"), "api");
		CHECK_STR(label(&m, "node"), "node-a");
		CHECK_INT(resolve_id(d, ID_B, &m), 1);
		CHECK_STR(m.service, "ml/server");
		CHECK_INT(resolve_id(d, ID_C, &m), 1);
		CHECK_STR(m.service, "ml/init");
		/* Docker's later word on a pod's container does not replace the pod's */
		{
			const char *one = "[{\"Id\":\"" ID_A "\",\"Names\":[\"/k8s_api\"]}]";

			CHECK(disc_docker_parse_list(d, one, strlen(one), 5));
			CHECK_INT(resolve_id(d, ID_A, &m), 1);
			CHECK_STR(m.service, "shop-api");
		}
		CHECK_INT(disc_kube_parse(d, del, strlen(del), true), 0);
		CHECK_INT(resolve_id(d, ID_B, &m), 0);
		CHECK_INT(disc_kube_parse(d, gone, strlen(gone), true), 410);
		CHECK_INT(disc_kube_parse(d, "{\"type\":", 8, true), -1);
		CHECK_INT(disc_kube_parse(d, "[1,2]", 5, false), -1);
	}
	discovery_stop(d);
}

static void test_services_labels(void)
{
	struct services *t = NULL;
	int a, b, c;

	CHECK_INT(services_new(16, &t), 0);
	a = services_get_labeled(t, "web", "compose_project=shop\ncontainer=shop-web-1\n", 1);
	b = services_get_labeled(t, "web", "compose_project=blog\ncontainer=blog-web-1\n", 1);
	c = services_get_labeled(t, "web", "compose_project=shop\ncontainer=shop-web-1\n", 2);
	CHECK(a >= 0 && b >= 0 && a != b && c == a);
	CHECK_INT(services_get(t, "web", 3) != a && services_get(t, "web", 3) != b, 1);
	CHECK_STR(services_labels(t, (uint32_t)b), "compose_project=blog\ncontainer=blog-web-1\n");
	services_free(t);
}

int main(void)
{
	test_cgroups();
	test_sanitize();
	test_sources_parsed();
	test_services_labels();
	return check_exit("discovery");
}
