#!/usr/bin/env python3
"""Allocations of a Python service: `pysplit.py --alloc 1024` (alloc_heavy allocates 1 GiB in
64 KiB bytearrays) under Debian's python3.11 with PYTHONMALLOC=malloc, in uprobe mode (`ember
record --profiles alloc`) and in preload mode (`ember run --profiles alloc`, libember_alloc.so):
alloc_heavy is a Python frame naming the fixture's file, its def line and a line in its body,
under main and <module> at their call sites; it holds >= 90% of the sampled alloc_space, and
its estimate is within 10% of the bytes it allocated."""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import embertest as et  # noqa: E402
import pyfixture as pf  # noqa: E402

MIB = "1024"
TYPES = [["alloc_objects", "count"], ["alloc_space", "bytes"], ["inuse_objects", "count"],
         ["inuse_space", "bytes"]]


def judge(c, label, p, version, stdout, layout, modes):
    c.check(p["sample_types"] == TYPES,
            f"{label}: the four memory sample types: {p['sample_types']}")
    c.check(any(f"alloc mode {m}" in x for x in p.get("comments", []) for m in modes),
            f"{label}: {' or '.join(modes)} mode was used: {p.get('comments')}")
    j = pf.Judge(c, label, p, version, layout, idx=1)
    j.frames_printed()
    truth = json.loads([l for l in stdout.splitlines() if l.startswith("{")][-1])["alloc_heavy"]
    heavy = j.shares(("alloc_heavy",))["alloc_heavy"]
    tot = et.total(p, 1)
    c.check(tot and heavy >= 0.90 * tot, f"{label}: alloc_heavy holds {heavy / max(tot, 1):.1%} "
            f"of alloc_space as a Python frame (want >= 90%)")
    c.check(abs(heavy / truth - 1) <= 0.10, f"{label}: alloc_heavy's alloc_space "
            f"{heavy / 2**20:.0f} MiB within 10% of the {truth / 2**20:.0f} MiB it allocated")
    j.check_function("alloc_heavy", min_samples=100)
    j.check_no_markers()


def main():
    et.require_root_bpf()
    if not os.path.exists("/sys/bus/event_source/devices/uprobe"):
        et.skip("kernel has no uprobe PMU (CONFIG_UPROBE_EVENTS)")
    c = et.Checker("alloc_python")
    py, version = pf.DEBIAN_PYTHON, pf.probe(pf.DEBIAN_PYTHON)
    c.check(version is not None, f"Debian's {py} runs")
    if version is None:
        c.done()
    label = f"debian-{pf.vstr(version)}"
    layout = pf.Layout(pf.PYSPLIT)
    env = dict(os.environ, PYTHONMALLOC="malloc")
    cmd = ["--", py, pf.PYSPLIT, "--alloc", MIB]
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "alloc.pb.gz")
        try:
            proc = et.run_ember(["record", "--profiles", "alloc", "-q", "-o", out, *cmd],
                                timeout=240, env=env)
            judge(c, f"{label} uprobe", et.decode(out), version, proc.stdout, layout,
                  ("session", "classic"))
        except AssertionError as e:
            c.check(False, f"{label} uprobe: {e}")

        c.check(os.path.exists(os.path.join(et.BUILD, "libember_alloc.so")),
                "libember_alloc.so is built")
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
        from agenttest import Receiver
        rcv = Receiver(d)
        try:
            proc = et.run_ember(["run", "--profiles", "alloc", "--server", rcv.url, "--interval",
                                 "600", *cmd], timeout=240, env=env)
            series = [s for s in rcv.series() if s["labels"].get("__name__") == "memory"]
            c.check(len(series) == 1,
                    f"{label} preload: one memory series from `ember run` ({len(series)})")
            if series:
                labels = series[0]["labels"]
                c.check(labels.get("__delta__") == "false"
                        and labels.get("service_name") == "python3.11",
                        f"{label} preload: __delta__=false, service python3.11: {labels}")
                judge(c, f"{label} preload", series[0]["profile"], version, proc.stdout, layout,
                      ("preload",))
        except AssertionError as e:
            c.check(False, f"{label} preload: {e}")
        finally:
            rcv.stop()
    c.done()


if __name__ == "__main__":
    main()
