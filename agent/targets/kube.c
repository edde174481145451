/* kube: the Kubernetes API source of discovery (see discovery.h): the pods of this node, listed
 * in pages and watched from the list's resourceVersion; a 410 Gone (in the answer or as a watch
 * ERROR event), a failed request or a garbled answer relists after the backoff. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "discovery_internal.h"
#include "log.h"
#include "util.h"

#define KUBE_PAGE 500
#define KUBE_WATCH_S 300
#define KUBE_TOKEN_MAX 16384
#define KUBE_RV_MAX 64

struct kube {
	struct discovery *d;
	struct disc_http h;
	char auth[KUBE_TOKEN_MAX + 32];
	char rv[KUBE_RV_MAX];
	char *selector;         /* URL-encoded fieldSelector value */
	uint32_t epoch;
	bool gone;              /* the watch said 410: relist */
	bool bad;               /* the watch sent something that is not an event */
	uint64_t events;        /* events of the current watch */
	int64_t watch_start;    /* CLOCK_MONOTONIC */
	uint64_t lists;
};

/* The bearer token, read again for every request (it rotates); never logged. */
static bool read_token(struct kube *k)
{
	char buf[KUBE_TOKEN_MAX];
	ssize_t n;
	size_t len;
	int fd;

	fd = open(k->d->kube_token_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	len = (size_t)n;
	while (len && isspace((unsigned char)buf[len - 1]))
		len--;
	for (size_t i = 0; i < len; i++)
		if (!isgraph((unsigned char)buf[i]))
			return false;
	snprintf(k->auth, sizeof(k->auth), "Authorization: Bearer %.*s", (int)len, buf);
	explicit_bzero(buf, sizeof(buf));
	return len > 0;
}

static bool hex_id(const char *s, size_t n)
{
	if (n != CGMETA_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* containerID "containerd://<id>", "cri-o://<id>", "docker://<id>" -> lowercase id. */
static bool status_id(const char *cid, char *id)
{
	const char *p = cid ? strstr(cid, "://") : NULL;

	if (!p || !hex_id(p + 3, strlen(p + 3)))
		return false;
	for (size_t i = 0; i < CGMETA_ID_LEN; i++)
		id[i] = (char)tolower((unsigned char)p[3 + i]);
	id[CGMETA_ID_LEN] = '\0';
	return true;
}

/* Calls fn for each container id of a pod, with its metadata. */
static void pod_containers(json_object *pod, const char *node,
			   void (*fn)(struct kube *k, const char *id, const struct discovery_meta *m),
			   struct kube *k)
{
	static const char *const lists[] = { "containerStatuses", "initContainerStatuses",
					     "ephemeralContainerStatuses" };
	json_object *meta = disc_json_obj(pod, "metadata"), *status = disc_json_obj(pod, "status");
	const char *ns = disc_json_str(meta, "namespace"), *name = disc_json_str(meta, "name");
	const char *ann = disc_json_str(disc_json_obj(meta, "annotations"),
					"pyroscope.io/service_name");

	if (!ns || !name)
		return;
	for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
		json_object *arr = disc_json_arr(status, lists[l]);
		size_t n = arr ? json_object_array_length(arr) : 0;

		for (size_t i = 0; i < n; i++) {
			json_object *cs = json_object_array_get_idx(arr, i);
			const char *cname = disc_json_str(cs, "name");
			char id[CGMETA_ID_LEN + 1], svc[2 * DISCOVERY_NAME_MAX];
			struct discovery_meta m = { 0 };

			if (!cname || !status_id(disc_json_str(cs, "containerID"), id))
				continue;
			if (ann && *ann)
				snprintf(svc, sizeof(svc), "%s", ann);
			else
				snprintf(svc, sizeof(svc), "%s/%s", ns, cname);
			discovery_sanitize_service(svc, strlen(svc), m.service);
			m.labels[0].name = "namespace";
			discovery_sanitize_value(ns, strlen(ns), m.labels[0].value);
			m.labels[1].name = "pod";
			discovery_sanitize_value(name, strlen(name), m.labels[1].value);
			m.labels[2].name = "container";
			discovery_sanitize_value(cname, strlen(cname), m.labels[2].value);
			m.labels[3].name = "node";
			discovery_sanitize_value(node ? node : "", node ? strlen(node) : 0,
						 m.labels[3].value);
			m.nlabels = 4;
			fn(k, id, &m);
		}
	}
}

static void put(struct kube *k, const char *id, const struct discovery_meta *m)
{
	struct disc_entry *e;

	pthread_mutex_lock(&k->d->lock);
	e = disc_get(k->d, id);
	if (e) {
		(void)disc_set_meta(k->d, e, DISC_KUBE, m);
		e->epoch = k->epoch;
	}
	pthread_mutex_unlock(&k->d->lock);
}

static void drop(struct kube *k, const char *id, const struct discovery_meta *m)
{
	struct disc_entry *e;

	(void)m;
	pthread_mutex_lock(&k->d->lock);
	e = disc_find(k->d, id);
	if (e && e->state == DISC_KNOWN && e->source == DISC_KUBE)
		disc_remove(k->d, id);
	pthread_mutex_unlock(&k->d->lock);
}

static void set_rv(struct kube *k, json_object *meta)
{
	const char *rv = disc_json_str(meta, "resourceVersion");

	if (rv && strlen(rv) < sizeof(k->rv) && strspn(rv, "0123456789") == strlen(rv))
		snprintf(k->rv, sizeof(k->rv), "%s", rv);
}

/* A URL-safe copy of s (RFC 3986 unreserved kept, the rest %XX). */
static char *urlenc(const char *s)
{
	size_t n = strlen(s);
	char *o = malloc(3 * n + 1), *p = o;

	if (!o)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
			*p++ = (char)c;
		else
			p += sprintf(p, "%%%02X", c);
	}
	*p = '\0';
	return o;
}

/* The whole list, page by page. 0, or the failing status (negative errno or HTTP). */
static long list(struct kube *k)
{
	char *url = NULL, *cont = NULL;
	long st = 0;

	k->epoch++;
	k->rv[0] = '\0';
	for (int page = 0; page < 100000 && !atomic_load(&k->d->stop); page++) {
		json_object *o, *items;
		const char *next;
		size_t n, len;

		if (!read_token(k)) {
			snprintf(k->h.errbuf, sizeof(k->h.errbuf), "cannot read the token file");
			st = -EACCES;
			break;
		}
		len = strlen(k->d->kube_api) + strlen(k->selector) + (cont ? strlen(cont) : 0) + 128;
		free(url);
		url = malloc(len);
		if (!url) {
			st = -ENOMEM;
			break;
		}
		snprintf(url, len, "%s/api/v1/pods?fieldSelector=spec.nodeName%%3D%s&limit=%d%s%s",
			 k->d->kube_api, k->selector, KUBE_PAGE, cont ? "&continue=" : "",
			 cont ? cont : "");
		st = disc_http_get(&k->h, url, NULL, k->auth, k->d->kube_ca_file, DISC_TIMEOUT_MS);
		if (st != 200)
			break;
		o = disc_json_parse(k->h.body, k->h.len);
		items = disc_json_arr(o, "items");
		if (!items) {
			json_object_put(o);
			st = 200 + 1000; /* garbage: not a PodList */
			break;
		}
		n = json_object_array_length(items);
		for (size_t i = 0; i < n; i++)
			pod_containers(json_object_array_get_idx(items, i), k->d->node_name, put, k);
		set_rv(k, disc_json_obj(o, "metadata"));
		next = disc_json_str(disc_json_obj(o, "metadata"), "continue");
		free(cont);
		cont = next && *next ? urlenc(next) : NULL;
		json_object_put(o);
		if (!cont) {
			st = 0;
			break;
		}
	}
	free(url);
	free(cont);
	if (st == 0) {
		pthread_mutex_lock(&k->d->lock);
		disc_sweep(k->d, DISC_KUBE, k->epoch);
		pthread_mutex_unlock(&k->d->lock);
	}
	return st;
}

static int on_event(void *ctx, const char *line, size_t len)
{
	struct kube *k = ctx;
	json_object *ev = disc_json_parse(line, len), *obj;
	const char *type = disc_json_str(ev, "type");

	obj = disc_json_obj(ev, "object");
	if (!type || !obj) {
		k->bad = true;
		json_object_put(ev);
		return -1;
	}
	if (!strcmp(type, "ERROR")) {
		json_object *code;

		if (json_object_object_get_ex(obj, "code", &code) && json_object_get_int(code) == 410)
			k->gone = true;
		else
			k->bad = true;
		json_object_put(ev);
		return -1;
	}
	if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED"))
		pod_containers(obj, k->d->node_name, put, k);
	else if (!strcmp(type, "DELETED"))
		pod_containers(obj, k->d->node_name, drop, k);
	set_rv(k, disc_json_obj(obj, "metadata"));
	k->events++;
	json_object_put(ev);
	return 0;
}

/* One watch from k->rv until the server ends it. 0 (ended normally), or a status. */
static long watch(struct kube *k)
{
	size_t len = strlen(k->d->kube_api) + strlen(k->selector) + KUBE_RV_MAX + 160;
	char *url = malloc(len);
	long st;

	if (!url)
		return -ENOMEM;
	if (!read_token(k)) {
		snprintf(k->h.errbuf, sizeof(k->h.errbuf), "cannot read the token file");
		free(url);
		return -EACCES;
	}
	snprintf(url, len, "%s/api/v1/pods?fieldSelector=spec.nodeName%%3D%s&watch=true&"
		 "resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%d",
		 k->d->kube_api, k->selector, k->rv, KUBE_WATCH_S);
	k->gone = k->bad = false;
	k->events = 0;
	int64_t t0 = k->watch_start = util_now_ns(CLOCK_MONOTONIC);
	k->h.on_line = on_event;
	k->h.line_ctx = k;
	k->h.max = DISCOVERY_MAX_EVENT;
	st = disc_http_get(&k->h, url, NULL, k->auth, k->d->kube_ca_file, 0);
	k->h.on_line = NULL;
	k->h.max = DISCOVERY_MAX_BODY;
	free(url);
	if (k->gone || st == 410)
		return 410;
	/* A watch that ends at once with nothing in it is not a watch (an answer that is not an
	 * event stream): never a busy loop of watches. */
	if (k->bad || (st == 200 && !k->events && util_now_ns(CLOCK_MONOTONIC) - t0 < 1000000000LL))
		return 200 + 1000;
	return st == 200 ? 0 : st;
}

int disc_kube_parse(struct discovery *d, const char *body, size_t len, bool event)
{
	struct kube k = { .d = d };
	json_object *o, *items;
	int ret = -1;

	if (event)
		return on_event(&k, body, len) < 0 ? (k.gone ? 410 : -1) : 0;
	o = disc_json_parse(body, len);
	items = disc_json_arr(o, "items");
	if (items) {
		size_t n = json_object_array_length(items);

		for (size_t i = 0; i < n; i++)
			pod_containers(json_object_array_get_idx(items, i), d->node_name, put, &k);
		ret = (int)n;
	}
	if (o)
		json_object_put(o);
	return ret;
}

void *disc_kube_main(void *arg)
{
	struct kube k = { .d = arg };
	int64_t gone_wait = 0;
	bool listed = false;

	if (disc_http_init(&k.h, k.d, DISC_KUBE))
		return NULL;
	k.selector = urlenc(k.d->node_name ? k.d->node_name : "");
	if (!k.selector) {
		disc_http_fini(&k.h);
		return NULL;
	}
	while (!atomic_load(&k.d->stop)) {
		long st;

		if (!listed) {
			st = list(&k);
			if (st == -ECANCELED)
				break;
			disc_http_outcome(&k.h, st == 0, "the Kubernetes API (list pods)",
					  st == 1200 ? 200 : st);
			if (st) {
				if (disc_wait(k.d, k.h.backoff))
					break;
				continue;
			}
			if (k.lists++) {
				pthread_mutex_lock(&k.d->lock);
				k.d->st.relists++;
				pthread_mutex_unlock(&k.d->lock);
			}
			listed = true;
		}
		st = watch(&k);
		if (st == -ECANCELED)
			break;
		if (st == 0)
			continue; /* the watch's time is up: watch again from where it was */
		listed = false;
		if (st == 410) {
			/* Expired: relist at once; an API that says so again and again gets the
			 * backoff, not a busy loop of lists. */
			log_debug("kubernetes: the watch's resourceVersion expired (410 Gone): relisting");
			if (util_now_ns(CLOCK_MONOTONIC) - k.watch_start < 1000000000LL) {
				gone_wait = gone_wait ? gone_wait * 2 : 100000000LL;
				if (gone_wait > DISC_BACKOFF_MAX_NS)
					gone_wait = DISC_BACKOFF_MAX_NS;
				if (disc_wait(k.d, gone_wait))
					break;
			} else {
				gone_wait = 0;
			}
			continue;
		}
		gone_wait = 0;
		disc_http_outcome(&k.h, false, "the Kubernetes API (watch pods)", st == 1200 ? 200 : st);
		if (disc_wait(k.d, k.h.backoff))
			break;
	}
	free(k.selector);
	explicit_bzero(k.auth, sizeof(k.auth));
	disc_http_fini(&k.h);
	return NULL;
}
