#!/usr/bin/env python3
"""ember record on the Python fixture pysplit.py, under Debian's python3.11 and every pyenv
CPython 3.1x, both started by ember (`-- PY pysplit.py 6`) and attached to (`--pid`):
- plain_loop, Tokenizer.step (called from map()) and gen_keys (consumed by sorted()) hold the
  fixture's own measured split, ±5 points;
- >= 95% of each one's samples have its Python callers in order down to <module> (qualified
  names on 3.11+), each at its def line and call site, with native frames between a callback
  and the Python code that called into C; below <module> native frames reach Py_RunMain;
- every frame of theirs names the fixture's file, its def line as start_line and a line in
  its body; no interpreter marker frame (trampoline, <shim>, 3.13's __init__ cleanup) shows;
- >= 80% of the worker thread's samples in zlib (GIL released) carry compress_worker.
Fails if Debian's python3.11 did not run or fewer than four CPython versions did."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import embertest as et  # noqa: E402
import pyfixture as pf  # noqa: E402

SECONDS = "6"


def judge(c, label, path, version, stdout, layout):
    p = et.decode(path)
    j = pf.Judge(c, label, p, version, layout)
    j.frames_printed()
    c.check(p["sample_types"] == [["cpu", "nanoseconds"]], f"{label}: sample type cpu/nanoseconds")
    shares = j.shares()
    hits = sum(shares.values()) // p["period"]
    c.check(hits >= 300, f"{label}: plain_loop, Tokenizer.step and gen_keys hold {hits} samples "
            f"as Python frames (want >= 300; {len(p['samples'])} stacks in the profile)")
    et.check_split(c, label, shares, et.truth_split(stdout, pf.SPLIT), pf.SPLIT, pf.DESIGN)
    for q in pf.SPLIT:
        j.check_function(q)
    j.check_function("Tokenizer.__init__", min_samples=3)
    j.check_below_module()
    j.check_no_markers()
    j.check_worker()


def spawned(c, label, py, version, layout, tmp):
    out = os.path.join(tmp, f"{label}-spawn.pb.gz")
    proc = et.run_ember(["record", "-q", "-F", pf.SAMPLE_RATE, "-o", out, "--", py, pf.PYSPLIT,
                         SECONDS], timeout=120)
    judge(c, f"{label} spawned", out, version, proc.stdout, layout)


def attached(c, label, py, version, layout, tmp):
    out = os.path.join(tmp, f"{label}-attach.pb.gz")
    fx = subprocess.Popen([py, pf.PYSPLIT, "--ready", SECONDS], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    ready = fx.stdout.readline().split()
    if ready != ["ready", str(fx.pid)]:
        fx.kill()
        fx.wait()
        raise AssertionError(f"the fixture did not say it was ready: {ready}")
    stdout, rc, err = pf.record_attached(fx, out)
    if rc != 0:
        raise AssertionError(f"ember record --pid exited {rc}: {err}")
    judge(c, f"{label} attached", out, version, stdout, layout)


def main():
    et.require_root_bpf()
    c = et.Checker("record_python")
    layout = pf.Layout(pf.PYSPLIT)
    ran = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, py, version in pf.interpreters():
            if version is None:
                print(f"     {label}: {py} does not run")
                continue
            name = f"{label}" if label.startswith("pyenv") else f"{label}-{pf.vstr(version)}"
            for run in (spawned, attached):
                try:
                    run(c, name, py, version, layout, tmp)
                except (AssertionError, subprocess.TimeoutExpired) as e:
                    c.check(False, f"{name} {run.__name__}: {e}")
                    continue
                if run is spawned:
                    ran.append((name, version))
    minors = sorted({v[:2] for _, v in ran})
    print("     interpreters that ran: " + (", ".join(n for n, _ in ran) or "none"))
    c.check(any(n.startswith("debian") for n, _ in ran), f"Debian's {pf.DEBIAN_PYTHON} ran")
    c.check(len(minors) >= 4, f"at least four CPython versions ran: {[pf.vstr(m) for m in minors]}")
    c.done()


if __name__ == "__main__":
    main()
