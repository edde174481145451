/* docker: the Docker Engine API source of discovery (see discovery.h): GET /containers/json
 * at start and every DOCKER_RELIST_NS, GET /containers/{id}/json for ids asked about. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "discovery_internal.h"
#include "log.h"
#include "util.h"

#define DOCKER_RELIST_NS (30 * 1000000000LL)

static bool hex_id(const char *s)
{
	if (!s || strlen(s) != CGMETA_ID_LEN)
		return false;
	for (size_t i = 0; i < CGMETA_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* The metadata of a container: name (without Docker's leading '/') and labels. */
static void container_meta(const char *name, json_object *labels, struct discovery_meta *m)
{
	const char *svc = disc_json_str(labels, "com.docker.compose.service");
	const char *proj = disc_json_str(labels, "com.docker.compose.project");

	memset(m, 0, sizeof(*m));
	if (name && name[0] == '/')
		name++;
	if (!name || !*name)
		name = "unnamed";
	discovery_sanitize_service(svc && *svc ? svc : name, strlen(svc && *svc ? svc : name),
				   m->service);
	m->labels[m->nlabels].name = "container";
	discovery_sanitize_value(name, strlen(name), m->labels[m->nlabels++].value);
	if (proj && *proj) {
		m->labels[m->nlabels].name = "compose_project";
		discovery_sanitize_value(proj, strlen(proj), m->labels[m->nlabels++].value);
	}
}

static void put(struct discovery *d, const char *id, const struct discovery_meta *m,
		uint32_t epoch)
{
	struct disc_entry *e;

	pthread_mutex_lock(&d->lock);
	e = disc_get(d, id);
	/* Kubernetes knows more about a pod's containers: it wins. */
	if (e && !(e->state == DISC_KNOWN && e->source == DISC_KUBE)) {
		(void)disc_set_meta(d, e, DISC_DOCKER, m);
		e->epoch = epoch;
	}
	pthread_mutex_unlock(&d->lock);
}

bool disc_docker_parse_list(struct discovery *d, const char *body, size_t len, uint32_t epoch)
{
	json_object *arr = disc_json_parse(body, len);
	bool ok = arr && json_object_is_type(arr, json_type_array);

	if (ok) {
		size_t n = json_object_array_length(arr);

		for (size_t i = 0; i < n; i++) {
			json_object *c = json_object_array_get_idx(arr, i), *names;
			const char *id = disc_json_str(c, "Id"), *name = NULL;
			struct discovery_meta m;

			if (!hex_id(id))
				continue;
			names = disc_json_arr(c, "Names");
			if (names && json_object_array_length(names) > 0 &&
			    json_object_is_type(json_object_array_get_idx(names, 0), json_type_string))
				name = json_object_get_string(json_object_array_get_idx(names, 0));
			container_meta(name, disc_json_obj(c, "Labels"), &m);
			put(d, id, &m, epoch);
		}
		pthread_mutex_lock(&d->lock);
		disc_sweep(d, DISC_DOCKER, epoch);
		pthread_mutex_unlock(&d->lock);
	}
	if (arr)
		json_object_put(arr);
	return ok;
}

int disc_docker_parse_inspect(struct discovery *d, const char *id, const char *body,
			      size_t len, uint32_t epoch)
{
	json_object *o = disc_json_parse(body, len);
	const char *got = disc_json_str(o, "Id");
	struct discovery_meta m;
	int ret = -1;

	if (got && hex_id(id) && !strcmp(got, id)) {
		container_meta(disc_json_str(o, "Name"),
			       disc_json_obj(disc_json_obj(o, "Config"), "Labels"), &m);
		put(d, id, &m, epoch);
		ret = 1;
	}
	if (o)
		json_object_put(o);
	return ret;
}

static bool list(struct disc_http *h, const char *sock, uint32_t epoch)
{
	long st = disc_http_get(h, "http://docker/containers/json", sock, NULL, NULL,
				DISC_TIMEOUT_MS);
	bool ok = st == 200 && disc_docker_parse_list(h->d, h->body, h->len, epoch);

	disc_http_outcome(h, ok, "the Docker API (GET /containers/json)", st);
	return ok;
}

/* 1 found, 0 not there, -1 the request failed. */
static int inspect(struct disc_http *h, const char *sock, const char *id, uint32_t epoch)
{
	char url[128];
	long st;
	int ret = -1;

	snprintf(url, sizeof(url), "http://docker/containers/%s/json", id);
	st = disc_http_get(h, url, sock, NULL, NULL, DISC_TIMEOUT_MS);
	if (st == 404)
		ret = 0;
	else if (st == 200)
		ret = disc_docker_parse_inspect(h->d, id, h->body, h->len, epoch);
	disc_http_outcome(h, ret >= 0, "the Docker API (GET /containers/ID/json)", st);
	return ret;
}

void *disc_docker_main(void *arg)
{
	struct discovery *d = arg;
	const char *sock = d->docker_socket;
	int64_t next_list = 0;
	struct disc_http h;
	uint32_t epoch = 0;

	if (disc_http_init(&h, d, DISC_DOCKER))
		return NULL;
	while (!atomic_load(&d->stop)) {
		int64_t now = util_now_ns(CLOCK_MONOTONIC), wait;
		char id[CGMETA_ID_LEN + 1] = "";

		if (now >= next_list) {
			bool ok = list(&h, sock, ++epoch);

			next_list = now + (ok ? DOCKER_RELIST_NS : h.backoff);
		}
		pthread_mutex_lock(&d->lock);
		if (d->qlen && !h.backoff) {
			snprintf(id, sizeof(id), "%s", d->queue[d->qhead]);
			d->qhead = (d->qhead + 1) % DISC_QUEUE;
			d->qlen--;
		}
		pthread_mutex_unlock(&d->lock);
		if (id[0]) {
			int r = inspect(&h, sock, id, epoch);
			struct disc_entry *e;

			pthread_mutex_lock(&d->lock);
			d->st.lookups[DISC_DOCKER][r > 0 ? DISC_FOUND : r == 0 ? DISC_NOT_FOUND
										: DISC_ERROR]++;
			e = disc_find(d, id);
			if (e && e->state == DISC_QUEUED) {
				e->state = r == 0 ? DISC_ABSENT : DISC_FAILED;
				e->until = util_now_ns(CLOCK_MONOTONIC) +
					   (r == 0 ? DISC_ABSENT_NS : h.backoff);
				atomic_fetch_add(&d->gen, 1);
			}
			pthread_mutex_unlock(&d->lock);
			continue;
		}
		wait = next_list - util_now_ns(CLOCK_MONOTONIC);
		if (h.backoff && wait > h.backoff)
			wait = h.backoff;
		/* Queued ids wake us; during an outage they wait for the next try. */
		pthread_mutex_lock(&d->lock);
		if (d->qlen && !h.backoff)
			wait = 0;
		pthread_mutex_unlock(&d->lock);
		if (wait > 0 && disc_wait(d, wait))
			break;
		if (h.backoff) {
			/* The outage's retry: the list says whether the daemon is back. */
			next_list = 0;
		}
	}
	disc_http_fini(&h);
	return NULL;
}
