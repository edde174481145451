"""Shared helpers for Ember's integration tests (root + BPF).

Every test decodes Ember's pprof with `pprofdump`, a Go program built on
github.com/google/pprof/profile (a decoder Ember did not write), and asserts what a user
would see. A test that cannot run here exits 77 (ctest: skipped) with the reason.
"""
import json
import os
import subprocess
import sys

BUILD = os.environ.get("EMBER_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
EMBER = os.path.join(BUILD, "ember")
PPROFDUMP = os.path.join(BUILD, "tests/tools/pprofdump")
FIXTURES = os.path.join(BUILD, "tests/fixtures")
SKIP = 77


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(SKIP)


def require_root_bpf():
    if os.geteuid() != 0:
        skip("needs root to load BPF programs and open perf events")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        skip("kernel has no BTF (/sys/kernel/btf/vmlinux)")


def run_ember(args, timeout=120, check=True, env=None):
    proc = subprocess.run([EMBER] + args, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"ember {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def decode(path):
    out = subprocess.run([PPROFDUMP, path], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise AssertionError(f"pprofdump rejected {path}: {out.stderr}")
    return json.loads(out.stdout)


def total(profile, idx=0):
    return sum(s["values"][idx] for s in profile["samples"])


def share_by_function(profile, names, idx=0):
    """Fraction of the value whose stack holds each name (the frame nearest the leaf wins)."""
    res = {n: 0 for n in names}
    for s in profile["samples"]:
        for fn in s["stack"]:
            if fn in res:
                res[fn] += s["values"][idx]
                break
    return res


class Checker:
    def __init__(self, name):
        self.name = name
        self.failures = 0

    def check(self, cond, msg):
        status = "ok  " if cond else "FAIL"
        print(f"{status} {msg}")
        if not cond:
            self.failures += 1

    def done(self):
        if self.failures:
            print(f"{self.name}: {self.failures} check(s) failed")
            sys.exit(1)
        print(f"{self.name}: all checks passed")
        sys.exit(0)


SPLIT_FNS = ("hot_alpha", "hot_beta", "hot_gamma")


def truth_split(text, fns=SPLIT_FNS):
    """A fixture's own measurement (its last JSON line on stdout): percent of its CPU time in
    each of fns. cpu_split: hot_alpha, hot_beta, hot_gamma, about 60/30/10 on a quiet CPU."""
    line = [l for l in text.strip().splitlines() if l.startswith("{")][-1]
    t = json.loads(line)
    tot = sum(t[f] for f in fns)
    return {f: 100.0 * t[f] / tot for f in fns}


def check_split(c, label, shares, truth, fns=SPLIT_FNS, design=(60, 30, 10)):
    """shares: value per function from a profile; truth: truth_split(). Within +-5 points of
    what the fixture measured, which itself must be close to its design (+-10)."""
    tot = sum(shares[f] for f in fns)
    for f, want in zip(fns, design):
        got = 100.0 * shares[f] / tot if tot else 0.0
        c.check(abs(got - truth[f]) <= 5,
                f"{label}: {f} holds {got:.1f}% (the fixture measured {truth[f]:.1f}% ± 5)")
        c.check(abs(truth[f] - want) <= 10, f"{label}: the fixture ran near its design ({f} {truth[f]:.1f}% vs {want}%)")
