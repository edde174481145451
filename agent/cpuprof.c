#include "cpuprof.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "flamegraph.h"
#include "pprof.h"

struct cpuprof {
	struct symbolizer *sym;
	struct pprof_builder *pb;
	struct flamegraph *fg;
	int64_t period;
	uint64_t hits;
};

int cpuprof_new(struct symbolizer *sym, unsigned sample_rate, const char *title,
		struct cpuprof **ret_p)
{
	static const struct pprof_value_type cpu = { "cpu", "nanoseconds" };
	struct cpuprof *p = calloc(1, sizeof(*p));
	int err;

	if (!p)
		return -ENOMEM;
	p->sym = sym;
	p->period = 1000000000LL / (sample_rate ? sample_rate : 1);
	err = pprof_builder_new(&cpu, 1, &cpu, p->period, &p->pb);
	if (err)
		goto err_free;
	p->fg = flamegraph_new(title, "samples");
	if (!p->fg) {
		err = -ENOMEM;
		goto err_free;
	}
	*ret_p = p;
	return 0;
err_free:
	cpuprof_free(p);
	return err;
}

void cpuprof_free(struct cpuprof *p)
{
	if (!p)
		return;
	pprof_builder_free(p->pb);
	flamegraph_free(p->fg);
	free(p);
}

static void to_frame(struct pprof_builder *pb, const struct sym_info *si, uint64_t pc,
		     struct pprof_frame *f)
{
	f->function = si->name;
	f->address = pc;
	f->mapping_id = 0;
	if (si->module && si->map_end > si->map_start) {
		struct pprof_mapping_desc m = {
			.start = si->map_start,
			.limit = si->map_end,
			.file_offset = si->map_pgoff,
			.file = si->module,
			.build_id = si->build_id,
		};

		f->mapping_id = pprof_add_mapping(pb, &m);
	}
}

int cpuprof_add(struct cpuprof *p, const struct cpu_stack *s)
{
	struct pprof_frame frames[2 * EMBER_MAX_STACK_DEPTH + 1];
	const char *names[2 * EMBER_MAX_STACK_DEPTH + 1];
	size_t n = 0;
	int64_t value;
	int err;

	/* Kernel frames first: they are the leaf end of the stack. For every frame but the leaf
	 * the PC is a return address; PC - 1 lies in the call instruction. */
	for (size_t i = 0; i < s->kstack_len; i++) {
		struct sym_info si;
		uint64_t pc = i ? s->kstack[i] - 1 : s->kstack[i];

		(void)symbolizer_kernel(p->sym, pc, &si);
		to_frame(p->pb, &si, pc, &frames[n++]);
	}
	if (s->ustack_len) {
		for (size_t i = 0; i < s->ustack_len; i++) {
			struct sym_info si;
			/* The first user frame is the leaf only when the sample hit user mode. */
			uint64_t pc = (i || s->kstack_len) ? s->ustack[i] - 1 : s->ustack[i];

			(void)symbolizer_user(p->sym, (pid_t)s->key->tgid, pc, &si);
			to_frame(p->pb, &si, pc, &frames[n++]);
		}
	} else if (s->key->user_stack_id != -1) {
		frames[n++] = (struct pprof_frame){ .function = "[lost user stack]" };
	}
	if (n == 0)
		frames[n++] = (struct pprof_frame){ .function = "[unknown]" };

	value = (int64_t)s->count * p->period;
	err = pprof_add_sample(p->pb, frames, n, &value);
	if (err)
		return err;
	for (size_t i = 0; i < n; i++)
		names[i] = frames[n - 1 - i].function;
	err = flamegraph_add(p->fg, names, n, s->count);
	if (err)
		return err;
	p->hits += s->count;
	return 0;
}

uint64_t cpuprof_hits(const struct cpuprof *p)
{
	return p->hits;
}

int cpuprof_comment(struct cpuprof *p, const char *comment)
{
	return pprof_add_comment(p->pb, comment);
}

int cpuprof_write(struct cpuprof *p, int64_t time_nanos, int64_t duration_nanos,
		  const char *pprof_path, const char *svg_path)
{
	int err;

	pprof_set_time(p->pb, time_nanos, duration_nanos);
	err = pprof_write_file(p->pb, pprof_path);
	if (err)
		return err;
	if (svg_path)
		err = flamegraph_write_file(p->fg, svg_path);
	return err;
}
