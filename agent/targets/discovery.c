/* discovery: the metadata table, the HTTP helper and the public API (see discovery.h); the
 * sources are docker.c and kube.c. */
#include "discovery.h"
#include "discovery_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

/* ---- sanitizing ---- */

static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t want;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		want = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		want = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		want = 4;
	else
		return 0;
	if (n < want)
		return 0;
	for (size_t i = 1; i < want; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return want;
}

void discovery_sanitize_value(const char *in, size_t len, char *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;

	for (size_t i = 0; i < len && in[i];) {
		size_t l = utf8_len(s + i, len - i);

		/* Control bytes, broken UTF-8, and what /ingest's app{k=v,...} names cannot
		 * carry. */
		if (l == 0 || (l == 1 && (s[i] < 0x20 || s[i] == 0x7f || strchr("{},=", s[i])))) {
			if (o + 1 >= DISCOVERY_NAME_MAX)
				break;
			out[o++] = '_';
			i++;
			continue;
		}
		if (o + l >= DISCOVERY_NAME_MAX)
			break;
		memcpy(out + o, s + i, l);
		o += l;
		i += l;
	}
	if (!o)
		out[o++] = '_';
	out[o] = '\0';
}

void discovery_sanitize_service(const char *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len && in[i] && o + 1 < DISCOVERY_NAME_MAX; i++) {
		char c = in[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '.' || c == '-' || c == '/';

		out[o++] = ok ? c : '_';
	}
	if (!o)
		out[o++] = '_';
	out[o] = '\0';
}

/* ---- table ---- */

static size_t slot_of(const char *id, size_t cap)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < 16 && id[i]; i++)
		h = (h ^ (unsigned char)id[i]) * 0x100000001b3ull;
	return (size_t)h & (cap - 1);
}

struct disc_entry *disc_find(struct discovery *d, const char *id)
{
	if (!d->cap)
		return NULL;
	for (size_t i = slot_of(id, d->cap), k = 0; k < d->cap; i = (i + 1) & (d->cap - 1), k++) {
		if (!d->slots[i])
			return NULL;
		if (!strcmp(d->slots[i]->id, id))
			return d->slots[i];
	}
	return NULL;
}

static int grow(struct discovery *d)
{
	size_t cap = d->cap ? d->cap * 2 : 256;
	struct disc_entry **ns = calloc(cap, sizeof(*ns));

	if (!ns)
		return -ENOMEM;
	for (size_t i = 0; i < d->cap; i++) {
		struct disc_entry *e = d->slots[i];
		size_t j;

		if (!e)
			continue;
		for (j = slot_of(e->id, cap); ns[j]; j = (j + 1) & (cap - 1))
			;
		ns[j] = e;
	}
	free(d->slots);
	d->slots = ns;
	d->cap = cap;
	return 0;
}

struct disc_entry *disc_get(struct discovery *d, const char *id)
{
	struct disc_entry *e = disc_find(d, id);
	size_t j;

	if (e)
		return e;
	if (d->n >= DISCOVERY_MAX_ENTRIES) {
		d->st.table_full++;
		return NULL;
	}
	if ((d->n + 1) * 2 > d->cap && grow(d))
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	snprintf(e->id, sizeof(e->id), "%s", id);
	for (j = slot_of(id, d->cap); d->slots[j]; j = (j + 1) & (d->cap - 1))
		;
	d->slots[j] = e;
	d->n++;
	d->st.entries = d->n;
	return e;
}

static void entry_clear(struct disc_entry *e)
{
	free(e->service);
	free(e->labels);
	e->service = e->labels = NULL;
	e->nlabels = 0;
	e->labels_len = 0;
}

bool disc_set_meta(struct discovery *d, struct disc_entry *e, enum discovery_source src,
		   const struct discovery_meta *m)
{
	size_t len = 0;
	char *labels, *p;

	for (size_t i = 0; i < m->nlabels; i++)
		len += strlen(m->labels[i].name) + strlen(m->labels[i].value) + 2;
	if (e->state == DISC_KNOWN && e->source == src && !strcmp(e->service, m->service) &&
	    e->nlabels == m->nlabels && e->labels_len == len) {
		bool same = true;

		p = e->labels;
		for (size_t i = 0; i < m->nlabels && same; i++) {
			same = !strcmp(p, m->labels[i].name) &&
			       !strcmp(p + strlen(p) + 1, m->labels[i].value);
			p += strlen(p) + 1;
			p += strlen(p) + 1;
		}
		if (same)
			return true; /* nothing new: the generation stays */
	}
	labels = malloc(len ? len : 1);
	if (!labels)
		return false;
	p = labels;
	for (size_t i = 0; i < m->nlabels; i++) {
		p = stpcpy(p, m->labels[i].name) + 1;
		p = stpcpy(p, m->labels[i].value) + 1;
	}
	entry_clear(e);
	e->service = strdup(m->service);
	if (!e->service) {
		free(labels);
		return false;
	}
	e->labels = labels;
	e->labels_len = (uint32_t)len;
	e->nlabels = (uint8_t)m->nlabels;
	e->source = (uint8_t)src;
	e->state = DISC_KNOWN;
	atomic_fetch_add(&d->gen, 1);
	return true;
}

/* Backward-shift deletion keeps probe chains whole. */
static void remove_at(struct discovery *d, size_t i)
{
	size_t j = i;

	entry_clear(d->slots[i]);
	free(d->slots[i]);
	d->slots[i] = NULL;
	d->n--;
	d->st.entries = d->n;
	for (;;) {
		size_t home;

		j = (j + 1) & (d->cap - 1);
		if (!d->slots[j])
			break;
		home = slot_of(d->slots[j]->id, d->cap);
		/* Can the entry at j move to the hole at i? Only if i lies between its home and j. */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			d->slots[i] = d->slots[j];
			d->slots[j] = NULL;
			i = j;
		}
	}
}

void disc_remove(struct discovery *d, const char *id)
{
	if (!d->cap)
		return;
	for (size_t i = slot_of(id, d->cap), k = 0; k < d->cap; i = (i + 1) & (d->cap - 1), k++) {
		if (!d->slots[i])
			return;
		if (!strcmp(d->slots[i]->id, id)) {
			remove_at(d, i);
			atomic_fetch_add(&d->gen, 1);
			return;
		}
	}
}

void disc_sweep(struct discovery *d, enum discovery_source src, uint32_t epoch)
{
	bool again = true;

	/* A removal shifts entries back over the hole: start over until a pass removes none. */
	while (again) {
		again = false;
		for (size_t i = 0; i < d->cap; i++) {
			struct disc_entry *e = d->slots[i];

			if (e && e->state == DISC_KNOWN && e->source == src && e->epoch != epoch) {
				remove_at(d, i);
				atomic_fetch_add(&d->gen, 1);
				again = true;
			}
		}
	}
}

/* ---- HTTP ---- */

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct disc_http *h = arg;
	size_t n = size * nmemb;

	if (h->len + n > h->max) {
		h->overflow = true;
		return 0;
	}
	if (h->len + n + 1 > h->cap) {
		size_t cap = h->cap ? h->cap : 16384;
		char *nb;

		while (cap < h->len + n + 1)
			cap *= 2;
		nb = realloc(h->body, cap);
		if (!nb)
			return 0;
		h->body = nb;
		h->cap = cap;
	}
	memcpy(h->body + h->len, ptr, n);
	h->len += n;
	h->body[h->len] = '\0';
	if (h->on_line) {
		char *nl;

		while ((nl = memchr(h->body, '\n', h->len))) {
			size_t l = (size_t)(nl - h->body);

			*nl = '\0';
			if (l && h->on_line(h->line_ctx, h->body, l) < 0)
				return 0;
			memmove(h->body, nl + 1, h->len - l - 1);
			h->len -= l + 1;
			h->body[h->len] = '\0';
		}
	}
	return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct disc_http *h = arg;

	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return atomic_load(&h->d->stop) ? 1 : 0;
}

int disc_http_init(struct disc_http *h, struct discovery *d, enum discovery_source src)
{
	memset(h, 0, sizeof(*h));
	h->d = d;
	h->src = src;
	h->max = DISCOVERY_MAX_BODY;
	h->curl = curl_easy_init();
	return h->curl ? 0 : -ENOMEM;
}

void disc_http_fini(struct disc_http *h)
{
	if (h->curl)
		curl_easy_cleanup(h->curl);
	free(h->body);
	memset(h, 0, sizeof(*h));
}

long disc_http_get(struct disc_http *h, const char *url, const char *unix_socket,
		   const char *auth_header, const char *ca_file, long timeout_ms)
{
	struct curl_slist *hdr = NULL;
	long status = 0;
	CURLcode rc;

	h->len = 0;
	h->overflow = false;
	h->unix_socket = unix_socket;
	if (h->body)
		h->body[0] = '\0';
	curl_easy_reset(h->curl);
	curl_easy_setopt(h->curl, CURLOPT_URL, url);
	curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, unix_socket ? "http" : "https,http");
	curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	if (timeout_ms > 0) {
		curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	} else {
		/* A watch: no total bound, but a dead connection ends within a minute (the
		 * server's bookmarks and our own timeoutSeconds keep a live one moving). */
		curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_TIME, 60L);
	}
	curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(h->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h->curl, CURLOPT_XFERINFODATA, h);
	curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(h->curl, CURLOPT_USERAGENT, "ember-agent");
	h->errbuf[0] = '\0';
	if (unix_socket)
		curl_easy_setopt(h->curl, CURLOPT_UNIX_SOCKET_PATH, unix_socket);
	if (ca_file)
		curl_easy_setopt(h->curl, CURLOPT_CAINFO, ca_file);
	curl_easy_setopt(h->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	hdr = curl_slist_append(hdr, "Accept: application/json");
	if (auth_header)
		hdr = curl_slist_append(hdr, auth_header);
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hdr);
	pthread_mutex_lock(&h->d->lock);
	h->d->st.requests[h->src]++;
	pthread_mutex_unlock(&h->d->lock);
	rc = curl_easy_perform(h->curl);
	/* The token must not outlive the request in curl's memory longer than needed. */
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdr);
	if (h->overflow)
		return -EMSGSIZE;
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return -ETIMEDOUT;
	if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
		return -ECONNREFUSED;
	if (rc == CURLE_ABORTED_BY_CALLBACK && atomic_load(&h->d->stop))
		return -ECANCELED;
	if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && h->on_line))
		return -EIO;
	curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

void disc_http_outcome(struct disc_http *h, bool ok, const char *what, long status)
{
	const char *src = discovery_source_name(h->src);

	pthread_mutex_lock(&h->d->lock);
	h->d->st.up[h->src] = ok;
	pthread_mutex_unlock(&h->d->lock);
	if (ok) {
		if (h->warned)
			log_info("%s: %s answers again: naming containers from it", src, what);
		h->warned = false;
		h->backoff = 0;
		return;
	}
	h->backoff = h->backoff ? h->backoff * 2 : DISC_BACKOFF_MIN_NS;
	if (h->backoff > DISC_BACKOFF_MAX_NS)
		h->backoff = DISC_BACKOFF_MAX_NS;
	if (!h->warned) {
		char why[CURL_ERROR_SIZE + 64];

		if (status == -ETIMEDOUT)
			snprintf(why, sizeof(why), "no answer within %d s", DISC_TIMEOUT_MS / 1000);
		else if (status == -ECONNREFUSED && h->unix_socket)
			snprintf(why, sizeof(why), "cannot connect to %.200s", h->unix_socket);
		else if (status == -ECONNREFUSED)
			snprintf(why, sizeof(why), "cannot connect%s%s", h->errbuf[0] ? ": " : "",
				 h->errbuf);
		else if (status == -EMSGSIZE)
			snprintf(why, sizeof(why), "an answer over %u MiB", DISCOVERY_MAX_BODY >> 20);
		else if (status < 0)
			snprintf(why, sizeof(why), "%s", h->errbuf[0] ? h->errbuf : strerror((int)-status));
		else if (status >= 200 && status < 300)
			snprintf(why, sizeof(why), "an answer that is not what the API documents");
		else
			snprintf(why, sizeof(why), "HTTP %ld", status);
		log_warn("%s: %s: %s; processes keep their executable names, retrying with backoff",
			 src, what, why);
		h->warned = true;
	}
}

bool disc_wait(struct discovery *d, int64_t ns)
{
	struct timespec ts;

	if (atomic_load(&d->stop))
		return true;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ns / 1000000000LL;
	ts.tv_nsec += ns % 1000000000LL;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&d->lock);
	if (!atomic_load(&d->stop))
		(void)pthread_cond_timedwait(&d->wake, &d->lock, &ts);
	pthread_mutex_unlock(&d->lock);
	return atomic_load(&d->stop);
}

/* ---- JSON ---- */

const char *disc_json_str(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

json_object *disc_json_obj(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_object))
		return NULL;
	return v;
}

json_object *disc_json_arr(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
		return NULL;
	return v;
}

json_object *disc_json_parse(const char *s, size_t len)
{
	struct json_tokener *tok;
	json_object *o;

	if (!s || !len || len > INT32_MAX)
		return NULL;
	tok = json_tokener_new_ex(64);
	if (!tok)
		return NULL;
	o = json_tokener_parse_ex(tok, s, (int)len);
	if (o && json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* ---- public API ---- */

const char *discovery_source_name(enum discovery_source s)
{
	static const char *const names[] = { "docker", "kubernetes", "systemd" };

	return s < DISC_SOURCE_COUNT ? names[s] : "?";
}

const char *discovery_outcome_name(enum discovery_outcome o)
{
	static const char *const names[] = { "found", "not_found", "error" };

	return o < DISC_OUTCOME_COUNT ? names[o] : "?";
}

static char *dup_opt(const char *s, bool *fail)
{
	char *c;

	if (!s || !*s)
		return NULL;
	c = strdup(s);
	if (!c)
		*fail = true;
	return c;
}

int discovery_start(const struct discovery_opts *o, struct discovery **ret)
{
	struct discovery *d = calloc(1, sizeof(*d));
	pthread_condattr_t ca;
	bool fail = false;

	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->wake, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&d->stop, false);
	atomic_init(&d->gen, 1);
	d->docker_socket = dup_opt(o->docker_socket, &fail);
	d->kube_api = dup_opt(o->kube_api, &fail);
	d->kube_token_file = dup_opt(o->kube_token_file, &fail);
	d->kube_ca_file = dup_opt(o->kube_ca_file, &fail);
	d->node_name = dup_opt(o->node_name, &fail);
	if (fail) {
		discovery_stop(d);
		return -ENOMEM;
	}
	if (d->docker_socket && pthread_create(&d->threads[d->nthreads], NULL, disc_docker_main, d) == 0)
		d->nthreads++;
	if (d->kube_api && pthread_create(&d->threads[d->nthreads], NULL, disc_kube_main, d) == 0)
		d->nthreads++;
	*ret = d;
	return 0;
}

void discovery_stop(struct discovery *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	atomic_store(&d->stop, true);
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	for (int i = 0; i < d->nthreads; i++)
		pthread_join(d->threads[i], NULL);
	for (size_t i = 0; i < d->cap; i++) {
		if (d->slots[i]) {
			entry_clear(d->slots[i]);
			free(d->slots[i]);
		}
	}
	free(d->slots);
	free(d->docker_socket);
	free(d->kube_api);
	free(d->kube_token_file);
	free(d->kube_ca_file);
	free(d->node_name);
	pthread_cond_destroy(&d->wake);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static void copy_meta(const struct disc_entry *e, struct discovery_meta *ret)
{
	static const char *const known[] = { "namespace", "pod", "container", "node",
					     "compose_project", "unit" };
	const char *p = e->labels;

	memset(ret, 0, sizeof(*ret));
	snprintf(ret->service, sizeof(ret->service), "%s", e->service);
	for (size_t i = 0; i < e->nlabels && i < DISCOVERY_MAX_LABELS; i++) {
		const char *name = p, *value = p + strlen(p) + 1;

		ret->labels[i].name = "label";
		for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			if (!strcmp(known[k], name))
				ret->labels[i].name = known[k];
		snprintf(ret->labels[i].value, sizeof(ret->labels[i].value), "%s", value);
		ret->nlabels++;
		p = value + strlen(value) + 1;
	}
}

int discovery_resolve(struct discovery *d, const struct cgmeta *cg, struct discovery_meta *ret)
{
	int64_t now = util_now_ns(CLOCK_MONOTONIC);
	struct disc_entry *e;
	int found = 0;

	if (cg->container_id[0]) {
		if (!d)
			return 0;
		pthread_mutex_lock(&d->lock);
		e = disc_find(d, cg->container_id);
		if (e && e->state == DISC_KNOWN) {
			copy_meta(e, ret);
			d->st.lookups[e->source][DISC_FOUND]++;
			found = 1;
		} else if (d->docker_socket &&
			   (!e || ((e->state == DISC_ABSENT || e->state == DISC_FAILED) &&
				   now >= e->until)) &&
			   d->qlen < DISC_QUEUE && (e || (e = disc_get(d, cg->container_id)))) {
			/* Ask Docker; the generation moves when it answers. */
			e->state = DISC_QUEUED;
			snprintf(d->queue[(d->qhead + d->qlen) % DISC_QUEUE], CGMETA_ID_LEN + 1, "%s",
				 cg->container_id);
			d->qlen++;
			pthread_cond_broadcast(&d->wake);
		}
		pthread_mutex_unlock(&d->lock);
		return found;
	}
	if (cg->unit[0]) {
		size_t len = strlen(cg->unit);

		memset(ret, 0, sizeof(*ret));
		discovery_sanitize_service(cg->unit, len > 8 ? len - 8 : len, ret->service);
		ret->labels[0].name = "unit";
		discovery_sanitize_value(cg->unit, len, ret->labels[0].value);
		ret->nlabels = 1;
		if (d) {
			pthread_mutex_lock(&d->lock);
			d->st.lookups[DISC_SYSTEMD][DISC_FOUND]++;
			pthread_mutex_unlock(&d->lock);
		}
		return 1;
	}
	return 0;
}

uint64_t discovery_generation(struct discovery *d)
{
	return d ? atomic_load(&d->gen) : 0;
}

bool discovery_pending(struct discovery *d, const char *container_id)
{
	struct disc_entry *e;
	bool pending;

	if (!d || !container_id[0])
		return false;
	pthread_mutex_lock(&d->lock);
	e = disc_find(d, container_id);
	/* Docker answers what it was asked; Kubernetes tells of new pods by itself. */
	pending = (e && (e->state == DISC_QUEUED || e->state == DISC_FAILED)) ||
		  (d->kube_api && (!e || e->state != DISC_KNOWN));
	pthread_mutex_unlock(&d->lock);
	return pending;
}

void discovery_get_stats(struct discovery *d, struct discovery_stats *ret)
{
	if (!d) {
		memset(ret, 0, sizeof(*ret));
		return;
	}
	pthread_mutex_lock(&d->lock);
	*ret = d->st;
	pthread_mutex_unlock(&d->lock);
}
