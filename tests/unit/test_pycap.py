#!/usr/bin/env python3
"""unit.pycap: libember_cupti.so's in-process Python capture judged by every CPython 3.10+ on
the machine (pycap_check.py under each, see there). Fails if an interpreter fails a check, or
if fewer than the five interpreters of this machine's kind (Debian's static 3.11, pyenv's
shared 3.10-3.13) run."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import pyfixture as pf  # noqa: E402

lib = sys.argv[1]
bad, ran = [], []
for label, path, version in pf.interpreters():
    if not version or version < (3, 10):
        continue
    r = subprocess.run([path, os.path.join(HERE, "pycap_check.py"), lib], capture_output=True,
                       text=True, timeout=90)
    lines = r.stdout.splitlines()
    print(f"-- {label} {pf.vstr(version)}")
    for l in lines:
        print("  " + l)
    if r.returncode != 0 or "done" not in lines:
        bad.append(f"{label}: exit {r.returncode}: {r.stderr[-2000:]}")
    bad += [f"{label}: {l}" for l in lines if l.startswith("BAD")]
    ran.append(label)
if len(ran) < 5:
    bad.append(f"only {len(ran)} interpreters ran ({ran}); expected Debian's 3.11 and pyenv's "
               "3.10-3.13")
for b in bad:
    print("FAIL", b)
sys.exit(1 if bad else 0)
