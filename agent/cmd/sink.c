/* sink: push or local directory for agent and run (sink.h). */
#include "sink.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "localsink.h"
#include "log.h"
#include "metrics.h"
#include "push.h"
#include "series.h"
#include "upload.h"

/* Pyroscope's limits (PYROSCOPE.md §4): 16000 samples per profile, and a 2 MiB ingestion burst
 * per series counted on the uncompressed profile plus its labels: keep a margin for labels. */
#define PROFILE_MAX_SAMPLES 16000
#define PROFILE_MAX_BYTES (2 * 1024 * 1024 - 64 * 1024)

struct sink {
	const struct ember_config *cfg;
	struct push *push;
	struct localsink *local;
	struct series_labels labels; /* hostname + the user's labels, sorted by name */
	char *server_shown;          /* --server without its userinfo, for logs */
	_Atomic uint64_t m_local_written, m_local_errors, m_folded;
};

static void wipe_free(char *secret)
{
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
}

static int open_push(struct sink *s)
{
	const struct ember_config *cfg = s->cfg;
	struct push_opts po = { 0 };
	char *password = NULL, *token = NULL;
	int err;

	if (cfg->basic_auth_user) {
		const char *env = getenv("EMBER_BASIC_AUTH_PASSWORD");

		if (cfg->basic_auth_password_file) {
			err = fileio_read_secret(cfg->basic_auth_password_file, 4096, &password);
			if (err) {
				options_invalid("basic-auth-password-file", "%s: %s",
						cfg->basic_auth_password_file, strerror(-err));
				return err;
			}
		} else if (env) {
			password = strdup(env);
			/* unsetenv() below only unlinks it from environ: the initial environment
			 * block, which /proc/PID/environ shows, keeps the bytes. Wipe them there. */
			explicit_bzero((char *)env, strlen(env));
			if (!password)
				return -ENOMEM;
		} else {
			options_invalid("basic-auth-user", "no password: set EMBER_BASIC_AUTH_PASSWORD "
					"or --basic-auth-password-file");
			return -EINVAL;
		}
	}
	/* The secret stays out of the environment of anything we start and of /proc/PID/environ
	 * readers that come later. */
	unsetenv("EMBER_BASIC_AUTH_PASSWORD");
	if (cfg->bearer_token_file) {
		err = fileio_read_secret(cfg->bearer_token_file, 16384, &token);
		if (err) {
			options_invalid("bearer-token-file", "%s: %s", cfg->bearer_token_file,
					strerror(-err));
			wipe_free(password);
			return err;
		}
	}
	if (cfg->ca_file && access(cfg->ca_file, R_OK)) {
		options_invalid("ca-file", "%s: %s", cfg->ca_file, strerror(errno));
		wipe_free(password);
		wipe_free(token);
		return -EINVAL;
	}
	po.server = cfg->server;
	po.protocol = cfg->protocol == PROTOCOL_INGEST ? PUSH_PROTO_INGEST : PUSH_PROTO_PUSH;
	po.tenant_id = cfg->tenant_id;
	po.basic_user = cfg->basic_auth_user;
	po.basic_password = password;
	po.bearer_token = token;
	po.ca_file = cfg->ca_file;
	err = push_new(&po, &s->push);
	wipe_free(password);
	wipe_free(token);
	if (err)
		options_invalid("server", "%s: %s", s->server_shown, strerror(-err));
	return err;
}

int sink_new(const struct ember_config *cfg, struct sink **ret)
{
	struct sink *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return 1;
	s->cfg = cfg;
	if (cfg->server) {
		/* Credentials inside the URL (http://user:pass@host) never reach a log line. */
		size_t n = strlen(cfg->server) + 4; /* "***" may be longer than the userinfo */

		s->server_shown = malloc(n);
		if (!s->server_shown)
			goto fail;
		(void)push_redact_url(cfg->server, s->server_shown, n);
	}
	if (series_labels_init(&s->labels, &cfg->labels))
		goto fail;
	if (cfg->server) {
		if (open_push(s))
			goto fail;
	} else {
		mode_t file_mode, dir_mode;

		options_output_modes(cfg, &file_mode, &dir_mode);
		err = localsink_new(cfg->output, (uint64_t)cfg->output_max_mb * 1024 * 1024, file_mode,
				    &s->local);
		if (err) {
			options_invalid("output", "cannot write to %s: %s", cfg->output, strerror(-err));
			goto fail;
		}
	}
	*ret = s;
	return 0;
fail:
	sink_free(s);
	return 2;
}

void sink_profile(void *ctx, const struct pipeline_profile *p)
{
	struct sink *s = ctx;
	struct stackagg_profile d = *p->desc;
	static const struct {
		const char *family, *label;
	} titles[] = { { "cpu", "CPU" }, { "alloc", "Allocated bytes" }, { "gpu", "GPU time" } };
	struct stackagg_result res = { 0 };
	struct flamegraph_view fg;
	struct upload *u = NULL;
	char title[300];
	int err;

	d.max_samples = PROFILE_MAX_SAMPLES;
	d.max_bytes = PROFILE_MAX_BYTES;
	/* The local directory keeps the latest flame graph of each series beside its profiles. */
	snprintf(title, sizeof(title), "%s: %s", p->fam->family, p->service);
	for (size_t i = 0; i < sizeof(titles) / sizeof(titles[0]); i++)
		if (!strcmp(titles[i].family, p->fam->family))
			snprintf(title, sizeof(title), "%s: %s", titles[i].label, p->service);
	flamegraph_view_of(p->fam->family, d.period, title, &fg);
	err = stackagg_build(p->agg, &d, s->local ? &fg : NULL, &res);
	if (err) {
		log_warn("agent: cannot encode the %s %s profile: %s", p->service, p->fam->family,
			 strerror(-err));
		return;
	}
	if (res.folded) {
		atomic_fetch_add_explicit(&s->m_folded, res.folded, memory_order_relaxed);
		log_debug("agent: %s: %zu cold stacks folded into [other]", p->service, res.folded);
	}
	err = series_make_upload(&s->labels, p->service, p->labels, p->fam, &res, p->desc->time_nanos,
				 p->until, &u);
	stackagg_result_fini(&res);
	if (err)
		return;
	if (s->push) {
		(void)push_submit(s->push, u); /* takes ownership */
		return;
	}
	err = localsink_write(s->local, u);
	if (err) {
		atomic_fetch_add_explicit(&s->m_local_errors, 1, memory_order_relaxed);
		log_warn("agent: cannot write the %s profile under %s: %s", p->service, s->cfg->output,
			 strerror(-err));
	} else {
		atomic_fetch_add_explicit(&s->m_local_written, 1, memory_order_relaxed);
	}
	upload_free(u);
}

void sink_write_metrics(void *ctx, struct metrics_writer *w)
{
	struct sink *s = ctx;

	metrics_counter(w, "ember_stacks_folded_total",
			"Cold stacks folded into [other] to respect the server's limits", NULL,
			(double)atomic_load_explicit(&s->m_folded, memory_order_relaxed));
	if (s->push) {
		push_write_metrics(s->push, w);
		return;
	}
	metrics_counter(w, "ember_profiles_sent_total", "Profiles written to the local directory",
			NULL, (double)atomic_load_explicit(&s->m_local_written, memory_order_relaxed));
	metrics_counter(w, "ember_profiles_failed_total", "Profiles that could not be written",
			NULL, (double)atomic_load_explicit(&s->m_local_errors, memory_order_relaxed));
	metrics_gauge(w, "ember_upload_queue_bytes", "Bytes waiting in the upload queue", NULL, 0);
}

const char *sink_describe(const struct sink *s)
{
	return s->push ? s->server_shown : s->cfg->output;
}

void sink_stop(struct sink *s, double timeout_s)
{
	if (s && s->push)
		push_stop(s->push, timeout_s);
}

void sink_free(struct sink *s)
{
	if (!s)
		return;
	push_free(s->push);
	localsink_free(s->local);
	series_labels_fini(&s->labels);
	free(s->server_shown);
	free(s);
}
