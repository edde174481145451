"""Helpers for the tests that profile Python: the CPython interpreters on this machine, the
pysplit.py fixture's layout (read from its source with ast), and checks of the Python frames
Ember puts in a profile, as pprofdump prints them.

A Python frame in pprof (DESIGN.md): Function.name is co_qualname (co_name on 3.10),
Function.filename co_filename, Line.line the current line, Function.start_line co_firstlineno.
pprofdump prints them per sample as "frames", leaf first: [{"name", "file", "line",
"start_line"}]. Where a pprofdump prints only "stack" (names), frames carry the name alone
(file None), and every check that needs a file or a line fails, saying so.
"""
import ast
import glob
import os
import re
import subprocess
import time

import embertest as et

PYSPLIT = os.path.join(et.FIXTURES, "pysplit.py")
DEBIAN_PYTHON = "/usr/bin/python3.11"
SPLIT = ("plain_loop", "Tokenizer.step", "gen_keys")
DESIGN = (50, 30, 20)
SAMPLE_RATE = "499"  # five times the default: ±5 points must hold for ten runs, not one

# Python callers of each function of interest, leaf first, down to the thread's first frame
# (qualified names; 3.10 shows the last component only).
CHAINS = {
    "plain_loop": ["plain_loop", "phase", "serve", "main", "<module>"],
    "Tokenizer.step": ["Tokenizer.step", "run_mapped", "phase", "serve", "main", "<module>"],
    "gen_keys": ["gen_keys", "run_sorted", "phase", "serve", "main", "<module>"],
    "Tokenizer.__init__": ["Tokenizer.__init__", "phase", "serve", "main", "<module>"],
    "compress_worker": ["compress_worker", "Thread.run", "Thread._bootstrap_inner",
                        "Thread._bootstrap"],
    "alloc_heavy": ["alloc_heavy", "main", "<module>"],
}
# Where Python calls C that calls back into Python: native frames stand between the two.
THROUGH_C = {"Tokenizer.step": "run_mapped", "gen_keys": "run_sorted"}
THREADING = ("Thread.run", "Thread._bootstrap_inner", "Thread._bootstrap")


# ---- interpreters -----------------------------------------------------------------------

def probe(path):
    """(major, minor, micro) of the interpreter at path, or None if it does not run."""
    try:
        out = subprocess.run([path, "-c", "import sys; print(*sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return tuple(int(x) for x in out.stdout.split())


def interpreters():
    """[(label, path, version or None)]: Debian's python3.11 first (installed with apt-get when
    missing), then every pyenv CPython 3.1x, oldest first."""
    if not os.path.exists(DEBIAN_PYTHON) and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "python3.11"], capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    found = [("debian", DEBIAN_PYTHON, probe(DEBIAN_PYTHON))]
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    pyenv = []
    for path in glob.glob(os.path.join(root, "versions", "3.1[0-9]*", "bin", "python3")):
        pyenv.append((f"pyenv-{path.split(os.sep)[-3]}", path, probe(path)))
    pyenv.sort(key=lambda x: x[2] or ())
    return found + pyenv


def pyenv_python(minor):
    """pyenv's newest 3.<minor>.x interpreter, or None."""
    got = [x for x in interpreters()[1:] if x[2] and x[2][:2] == (3, minor)]
    return got[-1] if got else None


def vstr(version):
    return ".".join(map(str, version))


def name_in(qualname, version):
    """The name a profile shows for qualname under this interpreter version."""
    return qualname if version >= (3, 11) else qualname.rsplit(".", 1)[-1]


# ---- the fixture's source -----------------------------------------------------------------

class Layout:
    """Where each function of a Python file starts and ends, and on which lines each function
    names another (a call site, or a callable handed to map()). Keys are qualified names;
    "<module>" is the file's top level."""

    def __init__(self, path):
        with open(path) as f:
            src = f.read()
        tree = ast.parse(src)
        self.path = path
        self.span = {"<module>": (1, len(src.splitlines()))}
        self.refs = {}
        self._walk(tree.body, "", "<module>")

    def _walk(self, body, prefix, owner):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                q = prefix + node.name
                self.span[q] = (node.lineno, node.end_lineno)
                self._walk(node.body, q + ".<locals>.", q)
            elif isinstance(node, ast.ClassDef):
                self._walk(node.body, prefix + node.name + ".", owner)
            else:
                for sub in ast.walk(node):
                    name = sub.id if isinstance(sub, ast.Name) else \
                        sub.attr if isinstance(sub, ast.Attribute) else None
                    if name:
                        self.refs.setdefault(owner, {}).setdefault(name, set()).add(sub.lineno)

    def call_lines(self, caller, callee):
        """Lines of caller on which callee (its last name component; a class for __init__) is
        named."""
        parts = callee.split(".")
        name = parts[-2] if parts[-1] == "__init__" and len(parts) > 1 else parts[-1]
        return self.refs.get(caller, {}).get(name, set())


# ---- frames ------------------------------------------------------------------------------

def has_frames(profile):
    return all("frames" in s for s in profile["samples"])


def frames(sample):
    if "frames" in sample:
        return sample["frames"]
    return [{"name": n, "file": None, "line": None, "start_line": None, "names_only": True}
            for n in sample["stack"]]


class Judge:
    """Python-frame checks of one profile of pysplit.py run by one interpreter."""

    def __init__(self, c, label, profile, version, layout, idx=0):
        self.c, self.label, self.p, self.v = c, label, profile, version
        self.lay, self.idx = layout, idx
        self.names = {name_in(q, version): q for q in layout.span}
        self.names.update({name_in(q, version): q for q in THREADING})
        self.samples = [(frames(s), s) for s in profile["samples"]]
        self.with_frames = has_frames(profile)
        self.launched = False  # True: Python frames below <module> (a launcher's) are allowed

    def is_python(self, f):
        if f.get("names_only"):  # judged by name alone
            return f["name"] in self.names
        return bool(f["file"]) and (f["file"].endswith(".py") or f["file"].startswith("<frozen"))

    def qual(self, f):
        if not self.is_python(f):
            return None
        q = self.names.get(f["name"])
        if q and q != f["name"] and q in self.lay.span and f["file"] != self.lay.path:
            # 3.10 names are bare: an `__init__` of another file (importlib's
            # FileFinder.__init__ at start-up) is another function, not the fixture's
            return None
        return q

    def python_frames(self, fr):
        """[(index in fr, qualified name or None for foreign Python code)]."""
        return [(i, self.qual(f)) for i, f in enumerate(fr) if self.is_python(f)]

    def owner(self, fr, wanted):
        """The Python function of wanted nearest the leaf, as (position in python_frames, q)."""
        for k, (_, q) in enumerate(self.python_frames(fr)):
            if q in wanted:
                return k, q
        return None, None

    def value(self, s):
        return s["values"][self.idx]

    def count(self, s):
        """Samples a pprof sample stands for: hits in a CPU profile; in a memory profile about
        alloc_space / the sampling interval (each sample's bytes are scaled to stand for the
        interval or its own size, whichever is larger), since pprof merges every sample of
        one stack into one entry."""
        if self.idx == 0:
            return s["values"][0] // self.p["period"]
        return max(1, round(s["values"][1] / self.p["period"]))

    def frames_printed(self):
        self.c.check(self.with_frames, f"{self.label}: pprofdump prints each sample's frames with "
                     f"file, line and start_line" + ("" if self.with_frames else
                     " (it printed names only: every file and line check below fails)"))

    def shares(self, fns=SPLIT):
        res = {q: 0 for q in fns}
        for fr, s in self.samples:
            _, q = self.owner(fr, fns)
            if q:
                res[q] += self.value(s)
        return res

    def _frame_ok(self, f, q):
        first, last = self.lay.span[q]
        want_file = self.lay.path
        return f["file"] == want_file and f["start_line"] == first and \
            f["line"] is not None and first <= f["line"] <= last

    def describe(self, f):
        return f"{f['name']} {f['file']}:{f['line']} (start_line {f['start_line']})"

    def check_function(self, q, min_samples=1, want=0.95):
        """q's samples: its own frame carries the file, start_line == the def line and a line in
        its body (all of them); its Python callers are CHAINS[q], in order, each at the line
        that calls the next, for >= want of its samples; through C where THROUGH_C says."""
        chain = [name_in(x, self.v) for x in CHAINS[q]]
        tot = good_chain = good_callers = own_ok = no_line = through = hits = 0
        bad_own, bad_chain, bad_caller = [], {}, []
        for fr, s in self.samples:
            k, owner = self.owner(fr, (q,))
            if owner is None:
                continue
            w = self.value(s)
            tot += w
            hits += self.count(s)
            py = self.python_frames(fr)
            i = py[k][0]
            if self._frame_ok(fr[i], q):
                own_ok += w
            elif fr[i]["line"] == 0 and self._frame_ok(dict(fr[i], line=self.lay.span[q][0]), q):
                # an instruction CPython gives no line (PyCode_Addr2Line -1: a generator's
                # entry and return instructions carry "no location"): file and start_line right
                no_line += w
            elif len(bad_own) < 3:
                bad_own.append(self.describe(fr[i]))
            got = [fr[j]["name"] for j, _ in py[k:]]
            if self.launched and "<module>" in got:
                # run by a launcher (python -m ember run: runpy): its frames below the
                # script's <module> are its own
                got = got[:got.index("<module>") + 1]
            end = k + len(got)
            if got != chain:
                bad_chain[tuple(got)] = bad_chain.get(tuple(got), 0) + w
                continue
            good_chain += w
            callers_ok = True
            for (j0, q0), (j1, q1) in zip(py[k:end], py[k + 1:end]):
                f = fr[j1]
                if q1 in THREADING:
                    ok = f["file"] is not None and f["file"].endswith("/threading.py")
                else:
                    ok = f["file"] == self.lay.path and f["start_line"] == self.lay.span[q1][0] \
                        and f["line"] in self.lay.call_lines(q1, q0)
                if not ok:
                    callers_ok = False
                    if len(bad_caller) < 3:
                        bad_caller.append(self.describe(f))
                    break
            good_callers += w if callers_ok else 0
            if q in THROUGH_C:
                j_caller = py[k + 1][0]
                if any(not self.is_python(f) for f in fr[i + 1:j_caller]):
                    through += w
        if hits < min_samples:
            self.c.check(False, f"{self.label}: {name_in(q, self.v)} appears as a Python frame "
                         f"(in {hits} samples; want >= {min_samples})")
            return False
        first, last = self.lay.span[q]
        self.c.check(own_ok + no_line == tot and no_line <= 0.02 * tot,
                     f"{self.label}: every {name_in(q, self.v)} frame names "
                     f"{os.path.basename(self.lay.path)}, start_line {first} and a line in "
                     f"{first}-{last} (or, for <= 2%, an instruction without a line): "
                     f"{own_ok / tot:.1%} + {no_line / tot:.1%} without a line"
                     + (f" (e.g. {bad_own})" if bad_own else ""))
        worst = max(bad_chain.items(), key=lambda x: x[1])[0] if bad_chain else None
        self.c.check(good_chain >= want * tot,
                     f"{self.label}: {good_chain / tot:.1%} of {name_in(q, self.v)}'s samples have "
                     f"the Python callers {' <- '.join(chain[1:])} (want >= {want:.0%})"
                     + (f"; most common otherwise: {list(worst)[:8]}" if worst is not None else ""))
        self.c.check(good_callers >= want * tot,
                     f"{self.label}: {good_callers / tot:.1%} of {name_in(q, self.v)}'s samples "
                     f"have each caller at its def line and call site (want >= {want:.0%})"
                     + (f"; e.g. {bad_caller}" if bad_caller else ""))
        if q in THROUGH_C:
            self.c.check(through >= want * tot,
                         f"{self.label}: {through / tot:.1%} of {name_in(q, self.v)}'s samples "
                         f"have native frames between it and {name_in(THROUGH_C[q], self.v)} "
                         f"(want >= {want:.0%})")
        return True

    def check_below_module(self, fns=SPLIT, want=0.95):
        """Below <module>, the interpreter's native frames go on down to Py_RunMain."""
        tot = ok = 0
        for fr, s in self.samples:
            k, q = self.owner(fr, fns)
            if q is None:
                continue
            tot += self.value(s)
            py = self.python_frames(fr)
            mods = [j for j, qq in py[k:] if qq == "<module>"]
            if mods and any(f["name"] == "Py_RunMain" for f in fr[mods[-1] + 1:]):
                ok += self.value(s)
        self.c.check(tot and ok >= want * tot,
                     f"{self.label}: {ok / max(tot, 1):.1%} of the main thread's samples go on "
                     f"below <module> to Py_RunMain (want >= {want:.0%})")

    def check_no_markers(self):
        """The interpreter's marker frames never show: 3.12's trampoline (<shim>), 3.13's
        _Py_InitCleanup (an __init__ with start_line 0)."""
        bad = {}
        for fr, s in self.samples:
            for f in fr:
                if f["name"] == "<interpreter trampoline>" or f["file"] in ("<shim>", "__init__") \
                        or (f["name"] == "__init__" and f["start_line"] == 0):
                    bad[self.describe(f)] = bad.get(self.describe(f), 0) + 1
        self.c.check(not bad, f"{self.label}: no interpreter marker frames (<interpreter "
                     f"trampoline>, <shim>, __init__ at start_line 0): {sorted(bad)[:4]}")

    def check_worker(self, want=0.80, min_samples=100):
        """The compress_worker thread's samples in zlib (an address in libz, or a native frame
        named *deflate* or *compress*, whatever native frames stand above it) still have
        compress_worker as a Python caller."""
        libz = {m["id"] for m in self.p["mappings"] if "libz.so" in os.path.basename(m["file"])}
        hits = tot = ok = 0
        for fr, s in self.samples:
            if not (any(m in libz for m in s["mappings"]) or any(
                    not self.is_python(f) and re.search("deflate|compress", f["name"], re.I)
                    for f in fr)):
                continue
            hits += self.count(s)
            tot += self.value(s)
            if self.owner(fr, ("compress_worker",))[1]:
                ok += self.value(s)
        self.c.check(hits >= min_samples, f"{self.label}: the worker thread was sampled in zlib "
                     f"({hits} samples, want >= {min_samples})")
        self.c.check(tot and ok >= want * tot,
                     f"{self.label}: {ok / max(tot, 1):.1%} of the worker's samples in zlib carry "
                     f"compress_worker as a Python caller (want >= {want:.0%})")
        self.check_function("compress_worker")


def merge(profiles):
    """One profile of the samples of several (the intervals an agent sent), with each
    profile's mapping ids kept apart."""
    out = dict(profiles[0], samples=[], mappings=[])
    for n, p in enumerate(profiles):
        out["mappings"] += [dict(m, id=(n, m["id"])) for m in p["mappings"]]
        out["samples"] += [dict(s, mappings=[(n, m) for m in s["mappings"]]) for s in p["samples"]]
    return out


# ---- running the fixture -------------------------------------------------------------------

def online_cpus():
    try:
        with open("/sys/devices/system/cpu/online") as f:
            n = 0
            for part in f.read().strip().split(","):
                a, _, b = part.partition("-")
                n += int(b or a) - int(a) + 1
            return n
    except OSError:
        return os.cpu_count() or 1


def perf_fds(pid):
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[perf_event]":
                    n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


def wait_sampling(proc, timeout=30):
    """Until `ember` (a Popen) has its per-CPU perf events open, i.e. samples; False if it
    exited or took longer than timeout."""
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if perf_fds(proc.pid) >= online_cpus():
            time.sleep(0.2)
            return True
        time.sleep(0.05)
    return False


def record_attached(fx, out):
    """`ember record --pid` on the pysplit.py fixture fx (started with --ready, its "ready PID"
    line already read): waits until ember samples, tells the fixture to go, and returns
    (the fixture's stdout, ember's exit status, ember's stderr). Both are killed on error."""
    em = None
    try:
        em = subprocess.Popen([et.EMBER, "record", "-q", "-F", SAMPLE_RATE, "--pid",
                               str(fx.pid), "-d", "0", "-o", out],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if not wait_sampling(em):
            raise AssertionError(f"ember record --pid {fx.pid} did not start sampling")
        fx.stdin.write("go\n")
        fx.stdin.flush()
        stdout, _ = fx.communicate(timeout=60)
        _, err = em.communicate(timeout=60)
        return stdout, em.returncode, err
    finally:
        for p in (fx, em):
            if p and p.poll() is None:
                p.kill()
                p.wait()
