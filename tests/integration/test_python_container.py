#!/usr/bin/env python3
"""A Python service in a container: its interpreter and script live only in its own mount
namespace (a tmpfs mounted there, empty from the host), so Ember must read the interpreter's
ELF through /proc/PID/root to find _PyRuntime, and the code objects from its memory. `ember
record --pid` attached to it: the fixture's three functions under their callers down to
<module>, with the file as the container sees it and lines in their bodies, the split within
±5 points of the fixture's own. Uses Debian's python3.11 (a static interpreter: one file)."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import embertest as et  # noqa: E402
import pyfixture as pf  # noqa: E402

SECONDS = "6"


def main():
    et.require_root_bpf()
    if not shutil.which("unshare"):
        et.skip("needs unshare(1) to make a mount namespace")
    version = pf.probe(pf.DEBIAN_PYTHON)
    c = et.Checker("python_container")
    c.check(version is not None, f"Debian's {pf.DEBIAN_PYTHON} runs")
    if version is None:
        c.done()
    with tempfile.TemporaryDirectory() as tmp:
        ctr = os.path.join(tmp, "ctr")
        os.mkdir(ctr)
        script = os.path.join(ctr, "app", "pysplit.py")
        py = os.path.join(ctr, "bin", "python3.11")
        setup = (f"mount -t tmpfs ember-ctr '{ctr}' && mkdir -p '{ctr}/bin' '{ctr}/app' && "
                 f"cp {pf.DEBIAN_PYTHON} '{py}' && cp '{pf.PYSPLIT}' '{script}' && "
                 f"exec '{py}' '{script}' --ready {SECONDS}")
        fx = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", setup],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        out = os.path.join(tmp, "ctr.pb.gz")
        ready = fx.stdout.readline().split()
        c.check(ready == ["ready", str(fx.pid)], f"the fixture started in its namespace: {ready}")
        c.check(not os.path.exists(py), f"{py} is not visible from the host")
        c.check(os.readlink(f"/proc/{fx.pid}/exe") == py, "the process runs the hidden interpreter")
        stdout, rc, err = pf.record_attached(fx, out)
        c.check(rc == 0, f"ember record --pid exited {rc}: {err[-500:]}")
        # The fixture's layout, under the path the container gives it.
        layout = pf.Layout(pf.PYSPLIT)
        layout.path = script
        p = et.decode(out)
        j = pf.Judge(c, "container", p, version, layout)
        j.frames_printed()
        shares = j.shares()
        hits = sum(shares.values()) // p["period"]
        c.check(hits >= 300, f"the three functions hold {hits} samples as Python frames (want >= 300)")
        et.check_split(c, "container", shares, et.truth_split(stdout, pf.SPLIT), pf.SPLIT, pf.DESIGN)
        for q in pf.SPLIT:
            j.check_function(q)
        j.check_no_markers()
    c.done()


if __name__ == "__main__":
    main()
