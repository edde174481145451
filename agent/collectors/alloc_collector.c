#include "alloc_collector.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpfutil.h"
#include "alloc.skel.h"
#include "elffile.h"
#include "fileio.h"
#include "log.h"
#include "metrics.h"
#include "procmaps.h"
#include "x86insn.h"

/* Not in Debian 12's uapi headers (kernel 6.1): uprobe_multi links (6.6) and their session
 * attach type (6.13). Layout from include/uapi/linux/bpf.h. */
#define ALLOC_BPF_TRACE_UPROBE_SESSION 57
#define ALLOC_MAX_PROBES 16
/* Largest library probed (libtorch_cuda.so is about 1 GB); a larger file is refused. */
#define ALLOC_MAX_LIB_BYTES (2ull << 30)

struct alloc_link_create_attr {
	__u32 prog_fd;
	__u32 target_fd;
	__u32 attach_type;
	__u32 flags;
	__u64 path;
	__u64 offsets;
	__u64 ref_ctr_offsets;
	__u64 cookies;
	__u32 cnt;
	__u32 multi_flags;
	__u32 pid;
	__u32 pad;
};

/* One sampled allocation as userspace keeps it. */
struct rec {
	__u64 id;
	__u64 size, interval;
	__u64 cookie;
	__u32 tgid;
	__u32 nips;
	__u64 *ips;   /* nips PCs, then npy Python frames (struct ember_py_frame): one allocation */
	__u32 npy, py_status;
	bool preload;
	bool seen;    /* found in the live map during this drain */
};

/* A copy of the stacks of r taken from the event (PCs, then the Python frames), or NULL. */
static __u64 *copy_stacks(const struct rec *r, const __u64 *ips, const struct ember_py_frame *py)
{
	size_t bytes = r->nips * sizeof(__u64) + r->npy * sizeof(struct ember_py_frame);
	__u64 *out;

	if (!bytes)
		return NULL;
	out = malloc(bytes);
	if (!out)
		return NULL;
	memcpy(out, ips, r->nips * sizeof(__u64));
	if (r->npy)
		memcpy(out + r->nips, py, r->npy * sizeof(struct ember_py_frame));
	return out;
}

/* One library attached in one process. */
struct attachment {
	dev_t dev;
	ino_t ino;
	struct bpf_link *links[2 * ALLOC_MAX_PROBES]; /* libbpf links (classic, USDT) */
	int nlinks;
	int link_fd;                                   /* session link, or -1 */
};

struct target {
	pid_t pid;
	__u64 cookie;
	bool dead;
	bool sampled; /* first sample reported */
	struct attachment *att;
	size_t natt;
};

/* Allocator symbols of one file, cached by (dev, ino). */
struct libinfo {
	dev_t dev;
	ino_t ino;
	size_t nprobes; /* 0: not an allocator */
	__u64 offsets[ALLOC_MAX_PROBES];
	__u64 cookies[ALLOC_MAX_PROBES];
};

struct alloc_collector {
	struct alloc_bpf *skel;
	struct ring_buffer *rb;
	enum alloc_mode mode;
	bool session;          /* session links work */
	bool free_at_entry;
	__u64 interval;
	struct target *targets;
	size_t ntargets;
	struct libinfo *libs;
	size_t nlibs;
	/* Preload mode: the library attached for every process that maps it (dev 0: none). */
	struct attachment everyone;
	__u32 untargeted_tgid; /* the last process seen without a target */
	__u64 untargeted_cookie;
	/* Samples of the current interval, and live ones (open addressing by id). */
	struct rec *fresh;
	size_t nfresh, capfresh;
	size_t nvisited;       /* fresh records alloc_collector_visit_python() has shown */
	struct rec *live;      /* slots with id 0 are empty */
	size_t livecap, nlive;
	bool incomplete;
	alloc_first_fn first_fn;
	void *first_ctx;
};

/* ---- sampling math ---- */

double alloc_collector_weight(__u64 size, __u64 interval)
{
	double p;

	if (!size || !interval)
		return 1.0;
	p = -expm1(-(double)size / (double)interval);
	return p > 0 ? 1.0 / p : 1.0;
}

/* ---- allocator symbols ---- */

static const struct {
	const char *name;
	__u64 kind;
} alloc_funcs[] = {
	{ "malloc", EMBER_ALLOC_MALLOC },
	{ "calloc", EMBER_ALLOC_CALLOC },
	{ "realloc", EMBER_ALLOC_REALLOC },
	{ "free", EMBER_ALLOC_FREE },
	{ "posix_memalign", EMBER_ALLOC_POSIX_MEMALIGN },
	{ "aligned_alloc", EMBER_ALLOC_MEMALIGN },
	{ "memalign", EMBER_ALLOC_MEMALIGN },
	{ "valloc", EMBER_ALLOC_MALLOC },
	{ "pvalloc", EMBER_ALLOC_MALLOC },
};
#define NFUNCS (sizeof(alloc_funcs) / sizeof(alloc_funcs[0]))

struct alloc_syms {
	__u64 vaddr[NFUNCS];
	bool glibc; /* __libc_malloc: glibc, whose realloc(NULL) and memalign call malloc */
};

/* Keeps the first definition of each allocator function. */
static int find_alloc_func(const struct elffile_sym *sym, void *arg)
{
	struct alloc_syms *as = arg;

	for (size_t f = 0; f < NFUNCS; f++)
		if (!as->vaddr[f] && !strcmp(sym->name, alloc_funcs[f].name))
			as->vaddr[f] = sym->value;
	if (!strcmp(sym->name, "__libc_malloc"))
		as->glibc = true;
	return 0;
}

/* Fills li with the probe points of the allocator functions the ELF file on fd defines.
 * Returns 0 (li->nprobes may be 0) or -errno. */
static int read_allocator(int fd, const char *path, bool free_at_entry, struct libinfo *li)
{
	struct alloc_syms as = { .glibc = false };
	__u64 *vaddr = as.vaddr;
	Elf *elf = NULL;
	size_t nph;
	int err = 0;

	elffile_init();
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		err = -ENOEXEC;
		goto out;
	}
	(void)elffile_for_each_symbol(elf, ELFFILE_SYM_SYMTAB | ELFFILE_SYM_DYNSYM |
					     ELFFILE_SYM_NO_LOCAL, find_alloc_func, &as);
	if (!vaddr[0] || elf_getphdrnum(elf, &nph)) /* no malloc: not an allocator */
		goto out;
	for (size_t f = 0; f < NFUNCS && li->nprobes < ALLOC_MAX_PROBES; f++) {
		__u64 off = 0;
		bool found = false, dup = false;

		if (!vaddr[f])
			continue;
		for (size_t i = 0; i < nph; i++) {
			GElf_Phdr ph;

			if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X) &&
			    vaddr[f] >= ph.p_vaddr && vaddr[f] < ph.p_vaddr + ph.p_filesz) {
				off = vaddr[f] - ph.p_vaddr + ph.p_offset;
				found = true;
				break;
			}
		}
		if (!found)
			continue;
		{
			uint8_t code[32];
			size_t skip = 0;
			ssize_t n = pread(fd, code, sizeof(code), (off_t)off);

			if (n > 0 && x86insn_uprobe_offset(code, (size_t)n, &skip) == 0) {
				if (skip && !(free_at_entry && alloc_funcs[f].kind == EMBER_ALLOC_FREE))
					log_debug("alloc: %s: probing %s at +%zu (first emulated instruction)",
						  path, alloc_funcs[f].name, skip);
				if (!(free_at_entry && alloc_funcs[f].kind == EMBER_ALLOC_FREE))
					off += skip;
			} else {
				log_debug("alloc: %s: %s starts with unknown code: probing its entry "
					  "(single-stepped, slow)", path, alloc_funcs[f].name);
			}
		}
		/* aligned_alloc and memalign are one function in glibc: one probe. */
		for (size_t i = 0; i < li->nprobes; i++)
			dup |= li->offsets[i] == off;
		if (dup)
			continue;
		li->offsets[li->nprobes] = off;
		li->cookies[li->nprobes] = alloc_funcs[f].kind | (as.glibc ? EMBER_ALLOC_GLIBC_NESTS : 0);
		li->nprobes++;
	}
out:
	elf_end(elf);
	return err;
}

static struct libinfo *lib_lookup(struct alloc_collector *c, const char *path, dev_t dev, ino_t ino)
{
	struct libinfo li = { .dev = dev, .ino = ino }, *grown;
	int fd;

	for (size_t i = 0; i < c->nlibs; i++)
		if (c->libs[i].dev == dev && c->libs[i].ino == ino)
			return &c->libs[i];
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)read_allocator(fd, path, c->free_at_entry, &li);
		close(fd);
	}
	grown = reallocarray(c->libs, c->nlibs + 1, sizeof(*c->libs));
	if (!grown)
		return NULL;
	c->libs = grown;
	c->libs[c->nlibs] = li;
	return &c->libs[c->nlibs++];
}

/* ---- ring buffer ---- */

static int push_rec(struct rec **arr, size_t *n, size_t *cap, const struct rec *r)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 256;
		struct rec *g = reallocarray(*arr, ncap, sizeof(**arr));

		if (!g)
			return -ENOMEM;
		*arr = g;
		*cap = ncap;
	}
	(*arr)[(*n)++] = *r;
	return 0;
}

static size_t live_slot(const struct alloc_collector *c, __u64 id)
{
	__u64 h = id * 0x9e3779b97f4a7c15ULL;

	return (size_t)(h >> 20) & (c->livecap - 1);
}

static struct rec *live_find(struct alloc_collector *c, __u64 id)
{
	for (size_t i = live_slot(c, id), n = 0; n < c->livecap; i = (i + 1) & (c->livecap - 1), n++) {
		if (c->live[i].id == id)
			return &c->live[i];
		if (!c->live[i].id)
			return NULL;
	}
	return NULL;
}

static int live_grow(struct alloc_collector *c);

static int live_insert(struct alloc_collector *c, const struct rec *r)
{
	size_t i;

	if ((c->nlive + 1) * 2 > c->livecap && live_grow(c))
		return -ENOMEM;
	for (i = live_slot(c, r->id); c->live[i].id; i = (i + 1) & (c->livecap - 1))
		if (c->live[i].id == r->id)
			break;
	if (c->live[i].id)
		free(c->live[i].ips);
	else
		c->nlive++;
	c->live[i] = *r;
	return 0;
}

static int live_grow(struct alloc_collector *c)
{
	size_t ocap = c->livecap, ncap = ocap ? ocap * 2 : 1024;
	struct rec *old = c->live, *nl = calloc(ncap, sizeof(*nl));

	if (!nl)
		return -ENOMEM;
	c->live = nl;
	c->livecap = ncap;
	c->nlive = 0;
	for (size_t i = 0; i < ocap; i++)
		if (old[i].id)
			(void)live_insert(c, &old[i]);
	free(old);
	return 0;
}

/* Rebuilds the table without the records not seen in the live map (freed). */
static void live_sweep(struct alloc_collector *c)
{
	size_t ocap = c->livecap;
	struct rec *old = c->live, *nl;

	if (!ocap)
		return;
	nl = calloc(ocap, sizeof(*nl));
	if (!nl)
		return;
	c->live = nl;
	c->nlive = 0;
	for (size_t i = 0; i < ocap; i++) {
		if (!old[i].id)
			continue;
		if (old[i].seen) {
			old[i].seen = false;
			(void)live_insert(c, &old[i]);
		} else {
			free(old[i].ips);
		}
	}
	free(old);
}

static struct target *find_target(struct alloc_collector *c, pid_t pid)
{
	for (size_t i = 0; i < c->ntargets; i++)
		if (c->targets[i].pid == pid)
			return &c->targets[i];
	return NULL;
}

static int handle_sample(void *ctx, void *data, size_t size)
{
	struct alloc_collector *c = ctx;
	const struct ember_alloc_event *e = data;
	const struct ember_alloc_py_event *pe = data;
	const struct ember_py_frame *py = NULL;
	struct target *t;
	struct rec r = { 0 };

	if (size < sizeof(*e))
		return 0;
	t = find_target(c, (pid_t)e->tgid);
	if (t && !t->sampled) {
		t->sampled = true;
		if (c->first_fn)
			c->first_fn(c->first_ctx, t->pid);
	} else if (!t && (e->tgid != c->untargeted_tgid || e->cookie != c->untargeted_cookie)) {
		/* A process the library was armed for before anyone named it: its maps now,
		 * while it is alive. */
		c->untargeted_tgid = e->tgid;
		c->untargeted_cookie = e->cookie;
		if (c->first_fn)
			c->first_fn(c->first_ctx, (pid_t)e->tgid);
	}
	r.id = e->id;
	r.size = e->size;
	r.interval = e->interval ? e->interval : c->interval;
	r.tgid = e->tgid;
	r.cookie = e->cookie ? e->cookie : t ? t->cookie : 0;
	r.preload = e->flags & EMBER_ALLOC_EV_PRELOAD;
	if (e->ustack_len > 0) {
		r.nips = (__u32)((size_t)e->ustack_len / sizeof(__u64));
		if (r.nips > EMBER_MAX_STACK_DEPTH)
			r.nips = EMBER_MAX_STACK_DEPTH;
	}
	if ((e->flags & EMBER_ALLOC_EV_PY) && size >= sizeof(*pe) && pe->py.nframes <= EMBER_PY_MAX_FRAMES &&
	    pe->py.status > 0 && pe->py.status < EMBER_PY_STATUS_MAX) {
		py = pe->py.frames;
		r.npy = pe->py.nframes;
		r.py_status = pe->py.status;
	}
	r.ips = copy_stacks(&r, e->ips, py);
	if (!r.ips)
		r.nips = r.npy = 0;
	if (push_rec(&c->fresh, &c->nfresh, &c->capfresh, &r)) {
		free(r.ips);
		return 0;
	}
	if (!(e->flags & EMBER_ALLOC_EV_TRACKED)) {
		c->incomplete = true;
		return 0;
	}
	r.ips = copy_stacks(&r, e->ips, py);
	if (!r.ips)
		r.nips = r.npy = 0;
	if (live_insert(c, &r))
		free(r.ips);
	return 0;
}

/* ---- lifecycle ---- */

static int open_skel(struct alloc_collector *c, const struct alloc_collector_opts *opts, bool session)
{
	c->skel = alloc_bpf__open();
	if (!c->skel)
		return -errno;
	c->skel->rodata->sample_interval = c->interval;
	{
		long ticks = sysconf(_SC_CLK_TCK);

		c->skel->rodata->ns_per_tick = ticks > 0 ? 1000000000ULL / (unsigned long long)ticks
						 : 10000000ULL;
	}
	if (opts->live_entries)
		(void)bpf_map__set_max_entries(c->skel->maps.live, opts->live_entries);
	if (opts->mode == ALLOC_MODE_PRELOAD) {
		(void)bpf_program__set_autoload(c->skel->progs.ember_alloc_session, false);
		(void)bpf_program__set_autoload(c->skel->progs.ember_alloc_entry, false);
		(void)bpf_program__set_autoload(c->skel->progs.ember_alloc_return, false);
	} else {
		(void)bpf_program__set_autoload(c->skel->progs.ember_usdt_alloc, false);
		(void)bpf_program__set_autoload(c->skel->progs.ember_usdt_free, false);
		if (session)
			(void)bpf_program__set_expected_attach_type(c->skel->progs.ember_alloc_session,
								    ALLOC_BPF_TRACE_UPROBE_SESSION);
		else
			(void)bpf_program__set_autoload(c->skel->progs.ember_alloc_session, false);
	}
	return alloc_bpf__load(c->skel);
}

int alloc_collector_open(const struct alloc_collector_opts *opts, struct alloc_collector **ret_c)
{
	struct alloc_collector *c;
	bool session = opts->mode == ALLOC_MODE_UPROBE && !opts->no_session;
	int err;

	bpfutil_route_libbpf_log();
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->mode = opts->mode;
	c->free_at_entry = opts->free_at_entry;
	/* Benchmark knobs (bench/bench_alloc.py): the costs the defaults avoid. */
	if (getenv("EMBER_ALLOC_FREE_AT_ENTRY"))
		c->free_at_entry = true;
	if (getenv("EMBER_ALLOC_NO_SESSION"))
		session = false;
	c->interval = opts->sample_bytes ? opts->sample_bytes : 512 * 1024;
	err = open_skel(c, opts, session);
	if (err && session) {
		/* No session uprobes (kernel < 6.13): entry + uretprobe pairs. */
		log_debug("alloc: load with session uprobes failed (%s), using return probes",
			  strerror(-err));
		alloc_bpf__destroy(c->skel);
		session = false;
		err = open_skel(c, opts, false);
	}
	if (err) {
		log_debug("alloc: cannot load BPF object: %s", strerror(-err));
		goto err_free;
	}
	c->session = session;
	c->rb = ring_buffer__new(bpf_map__fd(c->skel->maps.samples), handle_sample, c, NULL);
	if (!c->rb) {
		err = -errno;
		goto err_free;
	}
	*ret_c = c;
	return 0;

err_free:
	alloc_collector_free(c);
	return err;
}

static void detach(struct attachment *a)
{
	for (int i = 0; i < a->nlinks; i++)
		bpf_link__destroy(a->links[i]);
	a->nlinks = 0;
	if (a->link_fd >= 0)
		close(a->link_fd);
	a->link_fd = -1;
}

static void target_fini(struct target *t)
{
	for (size_t i = 0; i < t->natt; i++)
		detach(&t->att[i]);
	free(t->att);
	t->att = NULL;
	t->natt = 0;
}

void alloc_collector_free(struct alloc_collector *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->ntargets; i++)
		target_fini(&c->targets[i]);
	free(c->targets);
	if (c->everyone.nlinks)
		detach(&c->everyone);
	ring_buffer__free(c->rb);
	alloc_bpf__destroy(c->skel);
	for (size_t i = 0; i < c->nfresh; i++)
		free(c->fresh[i].ips);
	free(c->fresh);
	for (size_t i = 0; i < c->livecap; i++)
		free(c->live[i].ips);
	free(c->live);
	free(c->libs);
	free(c);
}

const char *alloc_collector_mode_name(const struct alloc_collector *c)
{
	if (c->mode == ALLOC_MODE_PRELOAD)
		return "preload";
	return c->session ? "session" : "classic";
}

__u64 alloc_collector_interval(const struct alloc_collector *c)
{
	return c->interval;
}

/* ---- attaching ---- */

static int attach_session(struct alloc_collector *c, struct attachment *a, pid_t pid,
			  const char *path, const struct libinfo *li)
{
	struct alloc_link_create_attr attr;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_fd = (__u32)bpf_program__fd(c->skel->progs.ember_alloc_session);
	attr.attach_type = ALLOC_BPF_TRACE_UPROBE_SESSION;
	attr.path = (__u64)(uintptr_t)path;
	attr.offsets = (__u64)(uintptr_t)li->offsets;
	attr.cookies = (__u64)(uintptr_t)li->cookies;
	attr.cnt = (__u32)li->nprobes;
	attr.pid = (__u32)pid;
	fd = (int)syscall(__NR_bpf, 28 /* BPF_LINK_CREATE */, &attr, sizeof(attr));
	if (fd < 0)
		return -errno;
	a->link_fd = fd;
	return 0;
}

static int attach_classic(struct alloc_collector *c, struct attachment *a, pid_t pid,
			  const char *path, const struct libinfo *li)
{
	for (size_t i = 0; i < li->nprobes; i++) {
		LIBBPF_OPTS(bpf_uprobe_opts, o, .bpf_cookie = li->cookies[i]);
		struct bpf_link *l;

		l = bpf_program__attach_uprobe_opts(c->skel->progs.ember_alloc_entry, pid, path,
						    li->offsets[i], &o);
		if (!l)
			return -errno;
		a->links[a->nlinks++] = l;
		if ((li->cookies[i] & EMBER_ALLOC_KIND_MASK) == EMBER_ALLOC_FREE)
			continue;
		o.retprobe = true;
		l = bpf_program__attach_uprobe_opts(c->skel->progs.ember_alloc_return, pid, path,
						    li->offsets[i], &o);
		if (!l)
			return -errno;
		a->links[a->nlinks++] = l;
	}
	return 0;
}

static int attach_usdt(struct alloc_collector *c, struct attachment *a, pid_t pid, const char *path)
{
	struct bpf_link *l;

	l = bpf_program__attach_usdt(c->skel->progs.ember_usdt_alloc, pid, path, "ember_alloc",
				     "alloc", NULL);
	if (!l)
		return -errno;
	a->links[a->nlinks++] = l;
	l = bpf_program__attach_usdt(c->skel->progs.ember_usdt_free, pid, path, "ember_alloc",
				     "free", NULL);
	if (!l)
		return -errno;
	a->links[a->nlinks++] = l;
	return 0;
}

static bool is_preload_lib(const char *path)
{
	const char *b = strrchr(path, '/');

	return !strncmp(b ? b + 1 : path, "libember_alloc", 14);
}

static int attach_file(struct alloc_collector *c, struct target *t, int rootfd, const char *path,
		       const char *shown);

/* A process's mapped file, resolved inside the process's root. */
static int attach_in_root(struct alloc_collector *c, struct target *t, const char *path)
{
	char root[64];
	int rootfd, err;

	snprintf(root, sizeof(root), "/proc/%d/root", (int)t->pid);
	rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return -errno;
	err = attach_file(c, t, rootfd, path, path);
	close(rootfd);
	return err;
}

static int attach_one(struct alloc_collector *c, struct target *t, const struct procmaps_entry *m)
{
	return attach_in_root(c, t, m->path);
}

/* Attaches to the file at path (shown as `shown`) for t: resolved inside rootfd when it is a
 * directory, else from here. The path is the process's to choose (its maps, its LD_PRELOAD):
 * it is opened the safe way (no FIFO, device or symlink escape), and libbpf reads and attaches
 * to that very file through /proc/self/fd. Returns 1, 0 or -errno. */
static int attach_fd(struct alloc_collector *c, struct target *t, const char *path,
		     const char *shown, const struct stat *stp);

static int attach_file(struct alloc_collector *c, struct target *t, int rootfd, const char *path,
		       const char *shown)
{
	struct stat st;
	char fdpath[64];
	int err, fd;

	fd = fileio_open_untrusted(rootfd, path, rootfd == AT_FDCWD ? 0 : FILEIO_UNTRUSTED_IN_ROOT,
				   ALLOC_MAX_LIB_BYTES, &st);
	if (fd < 0) {
		log_debug("alloc: pid %d: %s refused: %s", (int)t->pid, shown, strerror(-fd));
		return fd;
	}
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	err = attach_fd(c, t, fdpath, shown, &st);
	close(fd);
	return err;
}

static int attach_fd(struct alloc_collector *c, struct target *t, const char *path,
		     const char *shown, const struct stat *stp)
{
	struct attachment *grown, *a;
	struct stat st = *stp;
	struct libinfo *li = NULL;
	int err;

	for (size_t i = 0; i < t->natt; i++)
		if (t->att[i].dev == st.st_dev && t->att[i].ino == st.st_ino)
			return 0;
	if (c->mode == ALLOC_MODE_UPROBE) {
		if (is_preload_lib(shown))
			return 0;
		li = lib_lookup(c, path, st.st_dev, st.st_ino);
		if (!li)
			return -ENOMEM;
		if (!li->nprobes)
			return 0;
	} else if (!is_preload_lib(shown) ||
		   (c->everyone.nlinks && c->everyone.dev == st.st_dev && c->everyone.ino == st.st_ino)) {
		return 0; /* not the library, or attached for every process already */
	}
	grown = reallocarray(t->att, t->natt + 1, sizeof(*t->att));
	if (!grown)
		return -ENOMEM;
	t->att = grown;
	a = &t->att[t->natt];
	memset(a, 0, sizeof(*a));
	a->dev = st.st_dev;
	a->ino = st.st_ino;
	a->link_fd = -1;
	if (c->mode == ALLOC_MODE_PRELOAD) {
		err = attach_usdt(c, a, t->pid, path);
	} else if (c->session) {
		err = attach_session(c, a, t->pid, path, li);
		if (err == -EINVAL || err == -EOPNOTSUPP || err == -ENOSYS) {
			log_debug("alloc: session uprobe link refused (%s), using return probes",
				  strerror(-err));
			c->session = false;
		}
		if (err && !c->session)
			err = attach_classic(c, a, t->pid, path, li);
	} else {
		err = attach_classic(c, a, t->pid, path, li);
	}
	if (err) {
		detach(a);
		log_debug("alloc: pid %d: cannot attach to %s: %s", (int)t->pid, shown, strerror(-err));
		return err;
	}
	log_debug("alloc: pid %d: attached to %s (%s)", (int)t->pid, shown,
		  alloc_collector_mode_name(c));
	t->natt++;
	return 1;
}

/* The target record for (tgid, cookie), created or reset as needed; NULL on ENOMEM. */
static struct target *get_target(struct alloc_collector *c, pid_t tgid, __u64 cookie)
{
	struct target *t = find_target(c, tgid);

	if (t && t->cookie != cookie) {
		/* Same pid, another process (or exec'd image with new start time: impossible). */
		target_fini(t);
		t->cookie = cookie;
	}
	if (!t) {
		struct target *g = reallocarray(c->targets, c->ntargets + 1, sizeof(*c->targets));

		if (!g)
			return NULL;
		c->targets = g;
		t = &c->targets[c->ntargets++];
		memset(t, 0, sizeof(*t));
		t->pid = tgid;
		t->cookie = cookie;
	}
	t->dead = false;
	return t;
}

int alloc_collector_attach_everyone(struct alloc_collector *c, const char *path)
{
	struct stat st;
	int err;

	if (c->mode != ALLOC_MODE_PRELOAD)
		return -EINVAL;
	if (c->everyone.nlinks)
		return -EALREADY;
	if (stat(path, &st))
		return -errno;
	c->everyone.dev = st.st_dev;
	c->everyone.ino = st.st_ino;
	c->everyone.link_fd = -1;
	err = attach_usdt(c, &c->everyone, -1, path);
	if (err) {
		detach(&c->everyone);
		memset(&c->everyone, 0, sizeof(c->everyone));
		return err;
	}
	log_debug("alloc: attached to %s for every process that maps it", path);
	return 0;
}

int alloc_collector_attach_in_root(struct alloc_collector *c, pid_t tgid, __u64 cookie,
				   const char *path)
{
	struct target *t = get_target(c, tgid, cookie);

	if (!t)
		return -ENOMEM;
	return attach_in_root(c, t, path);
}

int alloc_collector_attach_path(struct alloc_collector *c, pid_t tgid, __u64 cookie,
				const char *path)
{
	struct target *t = get_target(c, tgid, cookie);

	if (!t)
		return -ENOMEM;
	return attach_file(c, t, AT_FDCWD, path, path);
}

void alloc_collector_visit_python(struct alloc_collector *c, alloc_python_fn fn, void *ctx)
{
	for (; c->nvisited < c->nfresh; c->nvisited++) {
		const struct rec *r = &c->fresh[c->nvisited];

		if (r->npy)
			fn(ctx, (pid_t)r->tgid, (const struct ember_py_frame *)(r->ips + r->nips), r->npy);
	}
}

int alloc_collector_set_python(struct alloc_collector *c, pid_t tgid, const struct ember_py_proc *pp)
{
	__u32 key = (__u32)tgid;

	if (bpf_map_update_elem(bpf_map__fd(c->skel->maps.py_procs), &key, pp, BPF_ANY))
		return -errno;
	return 0;
}

int alloc_collector_add_target(struct alloc_collector *c, pid_t tgid, __u64 cookie)
{
	struct procmaps_entry *maps = NULL;
	struct target *t = get_target(c, tgid, cookie);
	size_t nmaps = 0;
	int err, added = 0, first_err = 0;

	if (!t)
		return -ENOMEM;
	err = procmaps_read(tgid, &maps, &nmaps);
	if (err)
		return err;
	for (size_t i = 0; i < nmaps; i++) {
		if (!maps[i].exec || !maps[i].inode || maps[i].path[0] != '/' || maps[i].deleted)
			continue;
		/* One mapping per file is enough: skip the rest of the same file. */
		if (i && maps[i - 1].inode == maps[i].inode && maps[i - 1].exec)
			continue;
		err = attach_one(c, t, &maps[i]);
		if (err > 0)
			added++;
		else if (err < 0 && !first_err)
			first_err = err;
	}
	procmaps_free(maps, nmaps);
	if (added) {
		t->sampled = false;
		return added;
	}
	if (t->natt)
		return 0;
	return first_err ? first_err : -ENOENT;
}

int alloc_collector_remove_target(struct alloc_collector *c, pid_t tgid)
{
	struct target *t = find_target(c, tgid);
	__u32 key = (__u32)tgid;

	(void)bpf_map_delete_elem(bpf_map__fd(c->skel->maps.py_procs), &key);
	if (!t)
		return -ENOENT;
	target_fini(t);
	t->dead = true;
	return 0;
}

void alloc_collector_on_first_sample(struct alloc_collector *c, alloc_first_fn fn, void *ctx)
{
	c->first_fn = fn;
	c->first_ctx = ctx;
}

int alloc_collector_poll(struct alloc_collector *c, int timeout_ms)
{
	return ring_buffer__poll(c->rb, timeout_ms);
}

/* ---- draining ---- */

static void emit(alloc_stack_fn fn, void *ctx, const struct rec *r, bool inuse)
{
	double w = alloc_collector_weight(r->size, r->interval);
	struct alloc_stack s = {
		.tgid = r->tgid,
		.cookie = r->cookie,
		.ips = r->ips,
		.nips = r->nips,
		.preload = r->preload,
		.py = r->npy ? (const struct ember_py_frame *)(r->ips + r->nips) : NULL,
		.npy = r->npy,
		.py_status = r->py_status,
	};
	int64_t objs = llround(w), bytes = llround(w * (double)r->size);

	s.values[inuse ? 2 : 0] = objs;
	s.values[inuse ? 3 : 1] = bytes;
	fn(ctx, &s);
}

int alloc_collector_drain(struct alloc_collector *c, alloc_stack_fn fn, void *ctx)
{
	int fd = bpf_map__fd(c->skel->maps.live);
	struct ember_alloc_key k, next;
	struct ember_alloc_live v;
	struct ember_alloc_key *stale = NULL;
	size_t nstale = 0, capstale = 0;
	bool first = true;
	int calls = 0;

	(void)ring_buffer__consume(c->rb);
	for (size_t i = 0; i < c->nfresh; i++) {
		emit(fn, ctx, &c->fresh[i], false);
		free(c->fresh[i].ips);
		calls++;
	}
	c->nfresh = 0;
	c->nvisited = 0;

	while (bpf_map_get_next_key(fd, first ? NULL : &k, &next) == 0) {
		struct target *t;
		struct rec *r;

		first = false;
		k = next;
		if (bpf_map_lookup_elem(fd, &k, &v))
			continue;
		t = find_target(c, (pid_t)k.tgid);
		if (!t || t->dead) {
			if (nstale == capstale) {
				size_t ncap = capstale ? capstale * 2 : 64;
				struct ember_alloc_key *g = reallocarray(stale, ncap, sizeof(*stale));

				if (!g)
					continue;
				stale = g;
				capstale = ncap;
			}
			stale[nstale++] = k;
			continue;
		}
		r = live_find(c, v.id);
		if (!r)
			continue; /* inserted after the ring buffer was drained: next time */
		r->seen = true;
		emit(fn, ctx, r, true);
		calls++;
	}
	for (size_t i = 0; i < nstale; i++)
		(void)bpf_map_delete_elem(fd, &stale[i]);
	free(stale);
	live_sweep(c);
	return calls;
}

int alloc_collector_epoll_fd(struct alloc_collector *c)
{
	return ring_buffer__epoll_fd(c->rb);
}

void alloc_collector_write_metrics(struct alloc_collector *c, struct metrics_writer *w)
{
	/* The loss counters of enum ember_alloc_stat; the others are totals. */
	static const struct {
		enum ember_alloc_stat stat;
		const char *reason;
	} lost[] = {
		{ EMBER_ASTAT_LIVE_FULL, "live_map_full" },
		{ EMBER_ASTAT_UNTRACKED, "untracked" },
		{ EMBER_ASTAT_PENDING_FULL, "pending_map_full" },
		{ EMBER_ASTAT_EVENTS_LOST, "ringbuf_full" },
		{ EMBER_ASTAT_STACK_LOST, "stack_lost" },
	};
	_Static_assert(EMBER_ASTAT_MAX == 10, "a new enum ember_alloc_stat value needs its metric here");
	__u64 st[EMBER_ASTAT_MAX] = { 0 };

	(void)alloc_collector_read_stats(c, st);
	metrics_counter(w, "ember_alloc_samples_total", "Allocations sampled", NULL,
			(double)st[EMBER_ASTAT_SAMPLED]);
	for (size_t i = 0; i < sizeof(lost) / sizeof(lost[0]); i++)
		metrics_counter(w, "ember_alloc_lost_total",
				"Allocation samples lost or not tracked in the live set, by reason "
				"(stack_lost: kept without a user stack)",
				(const char *[]){ "reason", lost[i].reason, NULL }, (double)st[lost[i].stat]);
}

int alloc_collector_read_stats(struct alloc_collector *c, __u64 out[EMBER_ASTAT_MAX])
{
	return bpfutil_percpu_sum(bpf_map__fd(c->skel->maps.alloc_stats), EMBER_ASTAT_MAX, out);
}

bool alloc_collector_live_incomplete(struct alloc_collector *c)
{
	__u64 st[EMBER_ASTAT_MAX];

	if (alloc_collector_read_stats(c, st) == 0 &&
	    (st[EMBER_ASTAT_LIVE_FULL] || st[EMBER_ASTAT_UNTRACKED] || st[EMBER_ASTAT_EVENTS_LOST] ||
	     st[EMBER_ASTAT_PENDING_FULL]))
		return true;
	return c->incomplete;
}

int alloc_collector_prog_stats(struct alloc_collector *c, __u64 *ret_run_cnt, __u64 *ret_run_time_ns)
{
	struct bpf_program *progs[] = {
		c->skel->progs.ember_alloc_session, c->skel->progs.ember_alloc_entry,
		c->skel->progs.ember_alloc_return, c->skel->progs.ember_usdt_alloc,
		c->skel->progs.ember_usdt_free,
	};
	__u64 cnt = 0, ns = 0;

	for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int pfd = bpf_program__fd(progs[i]);

		if (pfd < 0 || bpf_obj_get_info_by_fd(pfd, &info, &len))
			continue;
		cnt += info.run_cnt;
		ns += info.run_time_ns;
	}
	*ret_run_cnt = cnt;
	*ret_run_time_ns = ns;
	return 0;
}
