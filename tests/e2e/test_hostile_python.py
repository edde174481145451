"""Hostile Python processes: an unprivileged user (uid 65534) runs, beside two root services
(cpu_split_fp and a real Python program), processes that Ember takes for CPython and whose
memory attacks the BPF walk of Python frames and the agent's reader of code objects. The agent
runs with its default options (--profiles cpu, --unwind auto) but for --service selecting the
root services and the attacker's programs (by comm), so that nothing else on the host plays:

1. a fake CPython 3.12 (a C program with .PyRuntime, _PyRuntime and Py_Version), its
   interpreter's thread list leading to a thread state for its spinning main thread, whose
   frame chain is (a) a cycle: the walk stops at EMBER_PY_MAX_FRAMES (outcome truncated);
   (b) frames, a cframe and code objects at unmapped and kernel addresses (outcome
   unreadable, code objects unreadable); (c) code objects that look valid but whose names
   claim huge or negative lengths, the wrong type, a bad kind or state, or whose file name,
   first line or line table is bad: each is shown as "[python: unreadable frame]" between the
   two valid frames, never by a name; (d) rewritten by a second thread with random pointers,
   popped and unmapped under the walk; (e) the thread list a cycle (and the interpreter list
   too), or 5000 other threads' states before this one's: the search is bounded, the thread
   has no Python frames (no_thread_state). A copy exporting _Py_RefTotal (a debug build) is
   refused: native stacks only;
2. a real Python (Debian's python3.11, else pyenv's) with 1,000 threads, most blocked on an
   Event, a few busy: their function's name appears;
3. Python processes that start and exit in a loop (a few ms of work; some leave by sys.exit
   from a busy loop, some with a daemon thread spinning through finalization).

What a user would see: the agent stays up, under an RSS bound, and stops on SIGTERM within
10 s; the root services keep correct profiles (cpu_split_fp's split; the Python service's
functions in their order); the attacker's profiles show no Python frame name it did not
write as a valid string; ember_python_stacks_total, ember_python_code_objects_total and
ember_python_interpreters_refused_total move as each attack should make them."""
import glob
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

from agenttest import (FIXTURES, Agent, Checker, Receiver, check_split, free_port,
                       merged_shares, require_root_bpf, skip, stop_fixture, wait_for)
from embertest import SPLIT_FNS

require_root_bpf()
if not shutil.which("gcc"):
    skip("needs gcc to build the fake interpreter")
c = Checker("hostile_python")
NOBODY = 65534
RSS_BOUND_KB = 400 * 1024
EMBER_PY_MAX_FRAMES = 160


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def find_python():
    """A CPython 3.10-3.12 uid 65534 can run: Debian's, else a pyenv one readable by all."""
    cands = ["/usr/bin/python3.11"] + sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[012].*/bin/python3.1?")))
    for p in cands:
        if os.path.exists(p) and os.access(p, os.X_OK) and subprocess.run(
                [p, "-c", "pass"], preexec_fn=as_nobody).returncode == 0:
            return p
    return None


FAKE_C = r"""
/* A fake CPython 3.12 (x86-64 layout): a _PyRuntime whose interpreter and thread lists
 * lead, or fail to lead, to a thread state for this spinning main thread, with a hostile frame
 * chain. argv[1] picks the attack. */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define KADDR 0xffffffff81000000UL

__attribute__((used)) const unsigned long Py_Version = 0x030c01f0;
__attribute__((used, section(".PyRuntime"), aligned(64))) char _PyRuntime[4096] = { 1 };
/* initialized: in the file, so that the agent can place them (type checks) */
__attribute__((used)) char PyCode_Type[64] = "code";
__attribute__((used)) char PyUnicode_Type[64] = "str";
__attribute__((used)) char PyBytes_Type[64] = "bytes";
#ifdef DEBUG_BUILD
__attribute__((used)) long _Py_RefTotal = 1;
#endif

struct str {               /* PyASCIIObject, then its data */
	uint64_t refcnt;
	void *type;        /* 8 */
	int64_t length;    /* 16 */
	uint64_t hash;
	uint32_t state;    /* 32: kind 2-4, compact 5, ascii 6 */
	uint32_t pad;
	char data[88];     /* 40 */
};
struct bytes {
	uint64_t refcnt;
	void *type;
	int64_t size;      /* 16 */
	uint64_t hash;
	char sval[32];     /* 32 */
};
struct code {
	uint64_t refcnt;
	void *type;                    /* 8 */
	char pad0[52];
	int32_t firstlineno;           /* 68 */
	char pad1[40];
	void *filename, *name, *qualname, *linetable; /* 112 120 128 136 */
	char pad2[48];
	uint16_t bytecode[32];         /* 192 */
};
struct frame {
	void *code;                    /* 0 */
	void *previous;                /* 8 */
	char pad0[40];
	void *prev_instr;              /* 56 */
	char pad1[6];
	char owner;                    /* 70 */
	char pad2[57];
};
struct cframe {
	void *current_frame;           /* 0 */
	void *previous;
};
struct tstate {
	void *prev, *next, *interp;    /* 0 8 16 */
	char pad0[32];
	void *cframe;                  /* 56 */
	char pad1[72];
	uint64_t thread_id;            /* 136 */
	char pad2[112];
};
struct interp {
	void *next;                    /* 0 */
	char pad0[64];
	void *threads_head;            /* 72 */
	char pad1[48];
};
_Static_assert(offsetof(struct str, data) == 40, "str");
_Static_assert(offsetof(struct bytes, sval) == 32, "bytes");
_Static_assert(offsetof(struct code, firstlineno) == 68, "code");
_Static_assert(offsetof(struct code, filename) == 112, "code");
_Static_assert(offsetof(struct code, linetable) == 136, "code");
_Static_assert(offsetof(struct code, bytecode) == 192, "code");
_Static_assert(offsetof(struct frame, prev_instr) == 56, "frame");
_Static_assert(offsetof(struct frame, owner) == 70, "frame");
_Static_assert(offsetof(struct tstate, cframe) == 56, "tstate");
_Static_assert(offsetof(struct tstate, thread_id) == 136, "tstate");
_Static_assert(offsetof(struct interp, threads_head) == 72, "interp");

#define COMPACT_ASCII ((1u << 2) | (1u << 5) | (1u << 6))

static struct interp interp;
static struct tstate ts;
static struct cframe cf;
static struct bytes empty_table = { 1, PyBytes_Type, 0, 0, "" };
static volatile unsigned long sink;
static void *unmapped;

static void init_str(struct str *o, const char *s)
{
	memset(o, 0, sizeof(*o));
	o->refcnt = 1;
	o->type = PyUnicode_Type;
	o->length = (int64_t)strlen(s);
	o->state = COMPACT_ASCII;
	memcpy(o->data, s, strlen(s));
}

static struct str *new_str(const char *s)
{
	struct str *o = malloc(sizeof(*o));

	init_str(o, s);
	return o;
}

static struct code *new_code(const char *name, const char *file, int line)
{
	struct code *c = calloc(1, sizeof(*c));
	struct str *n = new_str(name);

	c->refcnt = 1;
	c->type = PyCode_Type;
	c->firstlineno = line;
	c->filename = new_str(file);
	c->name = n;
	c->qualname = n;
	c->linetable = &empty_table;
	return c;
}

static struct frame *new_frame(struct code *c, void *previous)
{
	struct frame *f = calloc(1, sizeof(*f));

	f->code = c;
	f->previous = previous;
	f->prev_instr = c && (uintptr_t)c < KADDR ? (void *)c->bytecode : NULL;
	return f;
}

/* The entry frame of a run of the eval loop: no code of its own. */
static struct frame *new_entry(void *previous)
{
	struct frame *f = new_frame(NULL, previous);

	f->owner = 3;
	return f;
}

static void spin(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		sink++;
}

/* The interpreter becomes reachable only once its lists are built: a sample while they are
 * being built would find this thread's state, and the agent keeps what it found while that
 * state still names the thread. */
static void publish(void)
{
	void *p = &interp;

	memcpy(_PyRuntime + 40, &p, sizeof(p));
}

static void spin_forever(void)
{
	publish();
	for (;;)
		spin(1UL << 30);
}

/* (a) a frame whose previous is itself */
static void mode_cycle(void)
{
	struct frame *f = new_frame(new_code("fake_cycle", "cycle.py", 1), NULL);

	f->previous = f;
	cf.current_frame = f;
	spin_forever();
}

/* (b) frames at unmapped and kernel addresses, in turn */
static void mode_unmapped(void)
{
	struct code *leaf = new_code("fake_leaf", "fake.py", 1);
	struct frame *to_kernel = new_frame(leaf, (void *)KADDR);
	struct frame *to_unmapped = new_frame(leaf, unmapped);
	struct frame *code_unmapped = new_frame(unmapped, new_entry(NULL));
	struct frame *code_kernel = new_frame((void *)KADDR, NULL);
	struct frame *code_kernel_user = new_frame(leaf, code_kernel);
	void *heads[] = { unmapped, (void *)KADDR, to_kernel, to_unmapped, code_unmapped,
			  code_kernel_user, (void *)1 };
	struct cframe *bad_cframe = unmapped;

	publish();
	for (unsigned k = 0;; k++) {
		unsigned v = k % 8;

		if (v == 7) {
			ts.cframe = bad_cframe; /* the cframe itself unmapped */
		} else {
			ts.cframe = &cf;
			cf.current_frame = heads[v];
		}
		spin(1UL << 22);
	}
}

/* (c) code objects that look valid but are not: every one must be refused */
static void mode_badcode(void)
{
	struct code *c[16];
	struct str *s;
	struct frame *f;
	int n = 0;

	c[n++] = new_code("fake_leaf", "fake.py", 1);
	c[n] = new_code("EVILHUGE", "fake.py", 1); /* a name claiming 2^40 code points */
	((struct str *)c[n++]->name)->length = 1L << 40;
	c[n] = new_code("EVILLONG", "fake.py", 1); /* longer than any name Ember keeps */
	((struct str *)c[n++]->name)->length = 100000;
	c[n] = new_code("EVILNEG", "fake.py", 1);
	((struct str *)c[n++]->name)->length = -8;
	c[n] = new_code("EVILTYPE", "fake.py", 1); /* a name whose type is bytes */
	((struct str *)c[n++]->name)->type = PyBytes_Type;
	c[n] = new_code("EVILNOTCOMPACT", "fake.py", 1);
	((struct str *)c[n++]->name)->state = (1u << 2) | (1u << 6);
	c[n] = new_code("EVIL\xff\xfe", "fake.py", 1); /* "ascii" with high bytes */
	n++;
	c[n] = new_code("EVILKIND", "fake.py", 1); /* kind 4: lone surrogates, then NUL */
	s = c[n++]->name;
	s->state = (4u << 2) | (1u << 5);
	s->length = 4;
	memset(s->data + 16, 0, 16);
	((uint32_t *)(s->data + 16))[0] = 0xd800;
	((uint32_t *)(s->data + 16))[1] = 'E';
	c[n] = new_code("EVILCODETYPE", "fake.py", 1); /* not a code object: its type is str */
	c[n++]->type = PyUnicode_Type;
	c[n] = new_code("EVILFILE", "fake.py", 1); /* file name unmapped */
	c[n++]->filename = unmapped;
	c[n] = new_code("EVILKNAME", "fake.py", 1); /* name at a kernel address */
	c[n]->name = c[n]->qualname = (void *)KADDR;
	n++;
	c[n] = new_code("EVILLINE", "fake.py", -5); /* negative first line */
	n++;
	c[n] = new_code("EVILTABLE", "fake.py", 1); /* a line table claiming 2^62 bytes */
	{
		struct bytes *b = calloc(1, sizeof(*b));

		*b = empty_table;
		b->size = 1L << 62;
		c[n++]->linetable = b;
	}
	c[n++] = new_code("fake_root", "fake.py", 1);
	f = new_entry(NULL);
	for (int i = n - 1; i >= 0; i--)
		f = new_frame(c[i], f);
	cf.current_frame = f;
	spin_forever();
}

/* (d) a second thread rewrites the chain with random pointers, pops and frees its frames */
#define RACE_FRAMES 8
struct region {
	struct frame frames[RACE_FRAMES];
	struct code codes[RACE_FRAMES];
	struct str names[RACE_FRAMES];
	struct str file;
};

static uint64_t rnd(void)
{
	static uint64_t x = 88172645463325252ULL;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

static struct region *build_region(unsigned gen)
{
	struct region *r = mmap(NULL, sizeof(*r), PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (r == MAP_FAILED)
		abort();
	init_str(&r->file, "race.py");
	for (int i = 0; i < RACE_FRAMES; i++) {
		char name[32];

		snprintf(name, sizeof(name), "fake_race_%u", (gen * RACE_FRAMES + i) % 1000);
		init_str(&r->names[i], name);
		r->codes[i] = (struct code){ .refcnt = 1, .type = PyCode_Type,
					     .firstlineno = (int)gen + 1, .filename = &r->file,
					     .name = &r->names[i], .qualname = &r->names[i],
					     .linetable = &empty_table };
		r->frames[i] = (struct frame){ .code = &r->codes[i],
					       .previous = i + 1 < RACE_FRAMES ? &r->frames[i + 1] : NULL,
					       .prev_instr = r->codes[i].bytecode };
	}
	return r;
}

static void *pick(struct region *r)
{
	switch (rnd() % 8) {
	case 0: return NULL;
	case 1: return &r->frames[rnd() % RACE_FRAMES];
	case 2: return (void *)rnd();
	case 3: return (void *)KADDR;
	case 4: return (char *)&r->codes[rnd() % RACE_FRAMES] + (rnd() % 25) * 8;
	case 5: return (char *)&r->frames[rnd() % RACE_FRAMES] + 8;
	case 6: return unmapped;
	default: return &r->names[rnd() % RACE_FRAMES];
	}
}

static void *racer(void *arg)
{
	struct region *r = build_region(0), *old;

	(void)arg;
	cf.current_frame = r->frames;
	for (unsigned gen = 1;; gen++) {
		for (int k = 0; k < 256; k++) {
			struct frame *f = &r->frames[rnd() % RACE_FRAMES];

			if (rnd() & 1)
				f->previous = pick(r);
			else
				f->code = pick(r);
			if (!(rnd() % 16))
				r->codes[rnd() % RACE_FRAMES].name = pick(r);
			if (!(rnd() % 64))
				cf.current_frame = pick(r);
			spin(2000);
			usleep(1000); /* a generation lives ~0.3 s: some are still there when read */
		}
		/* pop everything: a new chain, the old one unmapped under the walk */
		old = r;
		r = build_region(gen);
		cf.current_frame = r->frames;
		munmap(old, sizeof(*old));
	}
	return NULL;
}

static void mode_racing(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, racer, NULL))
		abort();
	spin_forever();
}

/* (e) the thread list a cycle (and the interpreter list too): this thread's state is never
 * reached */
static void mode_tcycle(void)
{
	struct tstate *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));

	cf.current_frame = new_frame(new_code("fake_unreachable", "fake.py", 1), NULL);
	a->thread_id = 1;
	b->thread_id = 2;
	a->next = b;
	b->next = a;
	a->interp = b->interp = &interp;
	interp.threads_head = a;
	interp.next = &interp;
	spin_forever();
}

/* (e) 5000 thread states of other threads before this one's */
static void mode_tmany(void)
{
	enum { N = 5000 };
	struct tstate *many = calloc(N, sizeof(*many));

	cf.current_frame = new_frame(new_code("fake_unreachable", "fake.py", 1), NULL);
	for (int i = 0; i < N; i++) {
		many[i].thread_id = 0x1000 + i;
		many[i].interp = &interp;
		many[i].next = i + 1 < N ? (void *)&many[i + 1] : (void *)&ts;
	}
	interp.threads_head = many;
	spin_forever();
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	void *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	munmap(p, 4096);
	unmapped = p;
	ts.interp = &interp;
	ts.cframe = &cf;
	ts.thread_id = (uint64_t)pthread_self();
	interp.threads_head = &ts;
	if (!strcmp(mode, "cycle"))
		mode_cycle();
	else if (!strcmp(mode, "unmapped"))
		mode_unmapped();
	else if (!strcmp(mode, "badcode"))
		mode_badcode();
	else if (!strcmp(mode, "racing"))
		mode_racing();
	else if (!strcmp(mode, "tcycle"))
		mode_tcycle();
	else if (!strcmp(mode, "tmany"))
		mode_tmany();
	fprintf(stderr, "usage: fakepy cycle|unmapped|badcode|racing|tcycle|tmany\n");
	return 2;
}
"""

ROOT_PY = r"""
def service_work(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
def service_handler():
    while True:
        service_work(20000)
service_handler()
"""

HIVE_PY = r"""
import threading
threading.stack_size(256 * 1024)
go, ev = threading.Event(), threading.Event()
def hive_busy_loop():
    go.wait()
    x = 0
    while True:
        x += 1
def hive_waiter():
    ev.wait()
# the busy threads first: the thread list grows at its head, so theirs are the last states
# (they start spinning once every thread runs: four spinners make each start wait for the GIL)
for _ in range(4):
    threading.Thread(target=hive_busy_loop, daemon=True).start()
for _ in range(996):
    threading.Thread(target=hive_waiter, daemon=True).start()
print(threading.active_count(), flush=True)
go.set()
ev.wait()
"""

# Each run a few ms of work, then one of three ways out.
CHURN_PY = r"""
import sys, threading, time
def churn_work():
    return sum(i * i for i in range(20000))
def churn_spin():
    while True:
        pass
def churn_exit_from_loop():
    t = time.time()
    while True:
        if time.time() - t > 0.005:
            sys.exit(3)
way = int(sys.argv[1]) % 3
churn_work()
if way == 1:
    churn_exit_from_loop()
if way == 2:
    threading.Thread(target=churn_spin, daemon=True).start()
    time.sleep(0.002)
"""

# Runs CHURN_PY again and again, two at a time, until SIGTERM; prints how many ran and how
# many failed.
CHURN_DRIVER = r"""
import signal, subprocess, sys
prog, src = sys.argv[1], sys.argv[2]
n, bad, stop = 0, 0, False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
while not stop:
    ps = [subprocess.Popen([prog, src, str(n + i)]) for i in range(2)]
    for p in ps:
        rc = p.wait()
        bad += rc not in (0, 3)
    n += 2
print(n, bad, flush=True)
"""

FAKES = {  # program (its comm) -> mode
    "fake_cycle": "cycle", "fake_unmapped": "unmapped", "fake_badcode": "badcode",
    "fake_racing": "racing", "fake_tcycle": "tcycle", "fake_tmany": "tmany",
    "fake_debug": "badcode",
}
SYNTH_UNREADABLE = "[python: unreadable frame]"
MISSING = "[python: native frames missing]"


def gcc(out, src, *args):
    subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-rdynamic", "-pthread", "-o", out,
                    src, *args], check=True)


def by_service(series):
    out = {}
    for s in series:
        out.setdefault(s["labels"]["service_name"], []).append(s)
    return out


def samples(series):
    return [smp for s in series for smp in s["profile"]["samples"]]


def python_part(smp):
    """The Python frames the agent put into a stack of a process without eval-loop frames:
    those after its "native frames missing" marker, leaf first; None when it has none."""
    st = smp["stack"]
    return st[st.index(MISSING) + 1:] if MISSING in st else None


def py_frames(series):
    """(name, file) of every frame with a source file: Python frames."""
    return {(f["name"], f["file"]) for smp in samples(series) for f in smp["frames"] if f["file"]}


def metrics(port):
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    out = {}
    for line in body.splitlines():
        if line.startswith("ember_python_"):
            k, v = line.rsplit(None, 1)
            out[k] = float(v)
    return out


STACKS = 'ember_python_stacks_total{outcome="%s"}'
CODES = 'ember_python_code_objects_total{outcome="%s"}'
REFUSED = "ember_python_interpreters_refused_total"
PROCS = "ember_python_processes"


def hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


PYTHON = find_python()
if not PYTHON:
    skip("needs a CPython 3.10-3.12 that uid 65534 can run (/usr/bin/python3.11 or pyenv's)")
# where its library's frames come from
LIB = os.path.dirname(subprocess.run([PYTHON, "-c", "import threading; print(threading.__file__)"],
                                     capture_output=True, text=True).stdout.strip())
# and its site directories (startup runs .pth hooks there: _distutils_hack, certifi...)
SITE = tuple(d + "/" for d in subprocess.run(
    [PYTHON, "-c", "import site; print('\\n'.join(site.getsitepackages()))"],
    capture_output=True, text=True).stdout.split())

with tempfile.TemporaryDirectory() as tmp:
    os.chmod(tmp, 0o755)
    evil = os.path.join(tmp, "evil")
    os.mkdir(evil)
    for name, src in (("fake.c", FAKE_C), ("hive.py", HIVE_PY), ("churn.py", CHURN_PY),
                      ("churn_driver.py", CHURN_DRIVER)):
        with open(os.path.join(evil, name), "w") as f:
            f.write(src)
    fake = os.path.join(evil, "fake")
    gcc(fake, os.path.join(evil, "fake.c"))
    for prog in FAKES:
        if prog != "fake_debug":
            shutil.copy(fake, os.path.join(evil, prog))
    gcc(os.path.join(evil, "fake_debug"), os.path.join(evil, "fake.c"), "-DDEBUG_BUILD")
    # the real interpreter under other names: the comm each is selected by
    for prog in ("pyhive", "pychurn"):
        os.symlink(PYTHON, os.path.join(evil, prog))
    for name in os.listdir(evil):
        os.lchown(os.path.join(evil, name), NOBODY, NOBODY)
    os.chown(evil, NOBODY, NOBODY)
    root_py = os.path.join(tmp, "root_service.py")
    with open(root_py, "w") as f:
        f.write(ROOT_PY)

    procs = {}
    rcv = Receiver(tmp)
    mport = free_port()
    agent = None

    def start(prog, *args, stdout=subprocess.DEVNULL):
        p = subprocess.Popen([os.path.join(evil, prog), *args], preexec_fn=as_nobody,
                             stdout=stdout, text=True)
        procs[prog] = p
        return p

    def stop(prog):
        p = procs.pop(prog)
        p.kill()
        p.wait()

    def delta(before, key):
        return metrics(mport).get(key, 0) - before.get(key, 0)

    def settled():
        """Metrics once the samples of the processes just killed are all counted: two more
        of the root Python service's profiles have arrived (an interval has closed since;
        the agent counts a sample when it takes it from the ring, before the interval's
        push)."""
        n = len(by_service(rcv.series()).get("root_py", []))
        wait_for(lambda: len(by_service(rcv.series()).get("root_py", [])) >= n + 2, 8)
        return metrics(mport)

    def profiled(prog):
        return lambda: prog in by_service(rcv.series())

    try:
        root_svc = subprocess.Popen([os.path.join(FIXTURES, "cpu_split_fp"), "60"],
                                    stdout=subprocess.PIPE, text=True)
        procs["cpu_split_fp"] = root_svc
        root_pysvc = subprocess.Popen([PYTHON, root_py])
        procs["root_py"] = root_pysvc
        agent = Agent(["--server", rcv.url, "--interval", "2", "--metrics-addr", f"127.0.0.1:{mport}",
                       "--service", f"cpu_split_fp=pid:{root_svc.pid}",
                       "--service", f"root_py=pid:{root_pysvc.pid}",
                       *[a for p in (*FAKES, "pyhive", "pychurn")
                         for a in ("--service", f"{p}=comm:{p}")]])
        c.check(wait_for(lambda: {"cpu_split_fp", "root_py"} <= set(by_service(rcv.series())), 20),
                "the root services are profiled before the attacks")

        # 1. fake interpreters; those whose counters differ run side by side
        m0 = metrics(mport)
        for prog in ("fake_cycle", "fake_badcode", "fake_tcycle", "fake_debug"):
            start(prog, FAKES[prog])
        c.check(wait_for(lambda: delta(m0, STACKS % "truncated") >= 3 and
                         delta(m0, CODES % "unreadable") >= 3 and
                         delta(m0, STACKS % "no_thread_state") >= 3 and
                         delta(m0, REFUSED) >= 1, 15),
                "a frame cycle, bad code objects, a thread-list cycle and a debug build are seen")
        c.check(wait_for(lambda: all(profiled(p)() for p in ("fake_cycle", "fake_badcode",
                                                             "fake_tcycle", "fake_debug")), 10),
                "each fake's profile arrives")
        m1 = metrics(mport)
        print("  group 1:", {k: m1.get(k, 0) - m0.get(k, 0) for k in m1})
        c.check(m1.get(STACKS % "truncated", 0) - m0.get(STACKS % "truncated", 0) >= 3,
                "the walk of a cyclic chain stops at the frame limit: outcome truncated counted")
        c.check(m1.get(STACKS % "unreadable", 0) == m0.get(STACKS % "unreadable", 0),
                "none of these walks is counted unreadable (their frames are all readable)")
        c.check(m1.get(REFUSED, 0) - m0.get(REFUSED, 0) >= 1,
                f"the debug build is refused ({m1.get(REFUSED, 0) - m0.get(REFUSED, 0):.0f} counted "
                f"for one process)")
        for prog in ("fake_cycle", "fake_badcode", "fake_tcycle", "fake_debug"):
            stop(prog)

        m0 = settled()
        for prog in ("fake_unmapped", "fake_tmany"):
            start(prog, FAKES[prog])
        c.check(wait_for(lambda: delta(m0, STACKS % "unreadable") >= 5 and
                         delta(m0, CODES % "unreadable") >= 1 and
                         delta(m0, STACKS % "no_thread_state") >= 3, 15),
                "unmapped and kernel frames, and 5000 foreign thread states, are seen")
        c.check(wait_for(lambda: all(profiled(p)() for p in ("fake_unmapped", "fake_tmany")), 10),
                "each fake's profile arrives")
        m1 = metrics(mport)
        print("  group 2:", {k: m1.get(k, 0) - m0.get(k, 0) for k in m1})
        c.check(m1.get(STACKS % "truncated", 0) == m0.get(STACKS % "truncated", 0),
                "no walk is counted truncated")
        for prog in ("fake_unmapped", "fake_tmany"):
            stop(prog)

        m0 = settled()
        start("fake_racing", "racing")
        c.check(wait_for(profiled("fake_racing"), 10) and
                wait_for(lambda: len(by_service(rcv.series()).get("fake_racing", [])) >= 2, 6),
                "the process whose chain is rewritten under the walk is profiled")
        m1 = metrics(mport)
        print("  group 3:", {k: m1.get(k, 0) - m0.get(k, 0) for k in m1})
        rejected = sum(m1.get(CODES % o, 0) - m0.get(CODES % o, 0) for o in ("stale", "unreadable"))
        c.check(rejected >= 1, f"code objects freed or reused under the walk are rejected ({rejected:.0f})")
        stop("fake_racing")
        c.check(agent.proc.poll() is None,
                f"the agent survives the fake interpreters (exit status {agent.proc.returncode})")

        # 2 and 3. a real Python with 1,000 threads; Pythons that start and exit in a loop
        m0 = settled()
        hive = start("pyhive", os.path.join(evil, "hive.py"), stdout=subprocess.PIPE)
        nthreads = hive.stdout.readline().strip()
        c.check(nthreads == "1001", f"the 1,000-thread Python runs ({nthreads} threads)")
        churn = subprocess.Popen([PYTHON, os.path.join(evil, "churn_driver.py"),
                                  os.path.join(evil, "pychurn"), os.path.join(evil, "churn.py")],
                                 preexec_fn=as_nobody, stdout=subprocess.PIPE, text=True)
        procs["churn_driver"] = churn
        t_churn = time.time()
        n_root = {s: len(v) for s, v in by_service(rcv.series()).items()}
        c.check(wait_for(lambda: any("hive_busy_loop" in {n for n, _ in py_frames([s])}
                                     for s in by_service(rcv.series()).get("pyhive", [])), 15),
                "the busy threads of the 1,000-thread Python are named")
        c.check(wait_for(lambda: all(len(by_service(rcv.series()).get(s, [])) >= n_root.get(s, 0) + 2
                                     for s in ("cpu_split_fp", "root_py", "pychurn")), 12),
                "profiles keep arriving for the root services and the short-lived Pythons")
        time.sleep(max(0.0, 8 - (time.time() - t_churn)))  # Pythons come and go for 8 s
        m1 = metrics(mport)
        print("  phase 2:", {k: m1.get(k, 0) - m0.get(k, 0) for k in m1})
        c.check(2 <= m1.get(PROCS, 0) <= 8,
                f"Python processes are described, the exited ones not kept ({m1.get(PROCS, 0):.0f} now)")
        c.check(agent.proc.poll() is None,
                f"the agent survives the Python processes (exit status {agent.proc.returncode})")
        hwm = hwm_kb(agent.proc.pid) if agent.proc.poll() is None else 0
        c.check(0 < hwm < RSS_BOUND_KB, f"agent peak RSS {hwm} KiB < {RSS_BOUND_KB} KiB")
        rc, took = agent.stop()
        c.check(rc == 0 and took < 10,
                f"SIGTERM stops the agent in {took:.1f} s while Pythons come and go (exit status {rc})")
        agent = None
        churn.terminate()
        out, _ = churn.communicate(timeout=20)
        procs.pop("churn_driver")
        ran, bad = (int(x) for x in out.split())
        c.check(ran >= 20 and bad == 0, f"{ran} short-lived Pythons ran, {bad} failed")

        # what the profiles show
        svc = by_service(rcv.series())
        truth = stop_fixture(procs.pop("cpu_split_fp"))
        check_split(c, "cpu_split_fp under attack",
                    merged_shares(svc.get("cpu_split_fp", []), SPLIT_FNS), truth)
        rp = samples(svc.get("root_py", []))
        chain = ["service_work", "service_handler", "<module>"]
        good = sum(1 for smp in rp if [f["name"] for f in smp["frames"] if f["file"] == root_py] == chain)
        c.check(rp and good >= 0.9 * len(rp),
                f"the root Python service's stacks read service_work < service_handler < <module> "
                f"({good} of {len(rp)} samples)")
        names = {n for s in svc.values() for smp in samples(s) for n in smp["stack"]}
        c.check(not [n for n in names if "EVIL" in n], "no name of an invalid string is shown anywhere")
        for prog in ("cpu_split_fp", "root_py"):
            root_names = {n for smp in samples(svc.get(prog, [])) for n in smp["stack"]}
            c.check(not [n for n in root_names if n.startswith(("fake_", "hive_", "churn_"))],
                    f"{prog}'s stacks hold none of the attackers' names")

        cyc = samples(svc.get("fake_cycle", []))
        depth = [d for d in (python_part(smp) for smp in cyc) if d is not None]  # described yet
        c.check(len(depth) >= 3 and all(set(d) <= {"fake_cycle", "[truncated]"} and
                              d.count("fake_cycle") <= EMBER_PY_MAX_FRAMES for d in depth),
                f"the cyclic chain is shown as at most {EMBER_PY_MAX_FRAMES} frames of fake_cycle "
                f"(deepest {max((d.count('fake_cycle') for d in depth if d), default=0)}), marked truncated")
        bad = samples(svc.get("fake_badcode", []))
        want = ["fake_leaf"] + [SYNTH_UNREADABLE] * 12 + ["fake_root"]
        # Samples taken before the agent described the process (its first milliseconds; later
        # under load) have native frames only: they carry no Python part to judge. Of the
        # others, none may show a name the fake did not write, and most read exactly so.
        parts = [p for p in (python_part(smp) for smp in bad) if p is not None]
        allowed = {"fake_leaf", "fake_root", SYNTH_UNREADABLE, "[python: stale frame]"}
        c.check(len(parts) >= 3 and all(set(p) <= allowed for p in parts),
                f"the bad code objects show no name the fake did not write ({len(parts)} samples "
                f"with Python frames; others: {[p for p in parts if not set(p) <= allowed][:2]})")
        c.check(sum(p == want for p in parts) >= 0.5 * len(parts),
                f"the bad code objects read as {SYNTH_UNREADABLE} between fake_leaf and fake_root "
                f"({sum(p == want for p in parts)} of {len(parts)} samples with Python frames, of "
                f"{len(bad)}; others: {[p for p in parts if p != want][:2]})")
        unm = {n for smp in samples(svc.get("fake_unmapped", [])) for n in (python_part(smp) or [])}
        c.check(unm <= {"fake_leaf", SYNTH_UNREADABLE},
                f"frames at unmapped and kernel addresses show only what could be read ({sorted(unm)})")
        race = {n for smp in samples(svc.get("fake_racing", [])) for n in (python_part(smp) or [])}
        c.check(all(n.startswith("fake_race_") or n in (SYNTH_UNREADABLE, "[python: stale frame]",
                                                        "[truncated]") for n in race),
                f"a chain rewritten under the walk shows only names it wrote "
                f"({sorted(n for n in race if not n.startswith('fake_race_'))} and "
                f"{sum(n.startswith('fake_race_') for n in race)} fake_race_ names)")
        ch = py_frames(svc.get("pychurn", []))
        foreign = {(n, f) for n, f in ch if f != os.path.join(evil, "churn.py") and
                   not f.startswith((LIB + "/", "<frozen ", "<string>") + SITE)}
        unnamed = sum(n == SYNTH_UNREADABLE for smp in samples(svc.get("pychurn", []))
                      for n in smp["stack"])
        c.check(not foreign, f"the short-lived Pythons' frames are their own and their library's "
                f"({len(ch)} functions, {unnamed} frames unreadable: read after exit; "
                f"others: {sorted(foreign)[:5]})")
        for prog in ("fake_tcycle", "fake_tmany", "fake_debug"):
            st = samples(svc.get(prog, []))
            py = [smp["stack"] for smp in st if python_part(smp) is not None or
                  any(f["file"] for f in smp["frames"])]
            c.check(st and not py, f"{prog}: native stacks only ({len(py)} of {len(st)} samples "
                    f"with Python frames{', e.g. ' + repr(py[0]) if py else ''})")
        hv = py_frames(svc.get("pyhive", []))
        foreign = {(n, f) for n, f in hv if f != os.path.join(evil, "hive.py") and
                   not f.startswith((LIB + "/", "<frozen ", "<string>") + SITE)}
        c.check(hv and not foreign,
                f"the 1,000-thread Python's frames are its own and its library's "
                f"({len(hv)} functions; others: {sorted(foreign)[:5]})")
    finally:
        if agent:
            print(agent.output()[-3000:])
            agent.proc.kill()
            agent.proc.wait()
        for p in procs.values():
            p.kill()
            p.wait()
        rcv.stop()
c.done()
