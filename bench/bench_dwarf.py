#!/usr/bin/env python3
"""DWARF unwinding, Ember beside `perf record --call-graph dwarf` in the same run.

Workload: cpu_split_nofp (-O2 -fomit-frame-pointer; a third of its samples under glibc's qsort)
for a fixed number of seconds, at 97 Hz. Per round, interleaved: alone, under
`ember record --unwind dwarf`, under `perf record -F 97 --call-graph dwarf` (+ `perf script`,
where perf unwinds). Both attach by pid to a workload started on its own, so their CPU is their own. Reported:
the slowdown of a fixed amount of work (bench/cpuwork built without frame pointers: its own
CPU seconds, alone vs under each profiler, interleaved);
the profiler's CPU per sample (Ember: user+sys of `ember record`, unwinding included; perf:
user+sys of `perf record` plus `perf script`, where perf unwinds), as the difference between
a short and a long recording so that start-up counts once; bytes copied
per sample (Ember: its own counter; perf: perf.data size / samples); the share of samples in
hot_alpha/beta/gamma whose stack reaches main (Ember: pprofdump; perf: perf script).
Usage: sudo bench/bench_dwarf.py [--rounds 3] [--seconds 6]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("EMBER_BUILD_DIR", os.path.join(ROOT, "build"))
FIX = os.path.join(BUILD, "tests", "fixtures", "cpu_split_nofp")
PPROFDUMP = os.path.join(BUILD, "tests", "tools", "pprofdump")
FNS = ("hot_alpha", "hot_beta", "hot_gamma")


def cpu_of(argv):
    """Runs argv; returns (stdout, stderr, user+sys seconds of it and its waited children)."""
    before = os.times()
    p = subprocess.run(argv, capture_output=True, text=True)
    after = os.times()
    return p.stdout, p.stderr, (after.children_user - before.children_user) + (after.children_system - before.children_system)


CPUWORK = os.path.join(BUILD, "bench", "cpuwork_nofp")


def slowdown_round(tool, iters, tmp):
    """CPU seconds of a fixed amount of work (cpuwork_nofp) alone or under a profiler."""
    w = subprocess.Popen([CPUWORK, str(iters)], stdout=subprocess.PIPE, text=True)
    if tool == "ember":
        prof = subprocess.Popen([os.path.join(BUILD, "ember"), "record", "--quiet", "--unwind", "dwarf",
                                 "-o", os.path.join(tmp, "s.pb.gz"), "--pid", str(w.pid)])
    elif tool == "perf":
        prof = subprocess.Popen(["perf", "record", "-q", "-F", "97", "-e", "cpu-clock", "--call-graph", "dwarf",
                                 "-o", os.path.join(tmp, "s.data"), "-p", str(w.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        prof = None
    out, _ = w.communicate()
    if prof:
        prof.wait()
    return float(re.search(r"cpu_seconds ([0-9.]+)", out).group(1))


def reach_share(stacks):
    tot = reach = 0
    for st, v in stacks:
        if any(f in FNS for f in st):
            tot += v
            reach += v if "main" in st else 0
    return reach / tot if tot else 0.0


def workload(seconds):
    """The workload runs on its own, so each profiler's CPU is its own (both attach by pid)."""
    return subprocess.Popen([FIX, str(seconds)], stdout=subprocess.DEVNULL)


def round_ember(seconds, tmp):
    out = os.path.join(tmp, "ember.pb.gz")
    w = workload(seconds)
    _, se, _ = cpu_of([os.path.join(BUILD, "ember"), "record", "--quiet", "--log-level", "debug",
                       "--unwind", "dwarf", "-o", out, "--pid", str(w.pid)])
    w.wait()
    m = re.search(r"dwarf: (\d+) snapshots, \d+ unwound, \d+ truncated, \d+ over budget, (\d+) stack bytes", se)
    cpu = float(re.search(r"ember used ([0-9.]+) s of CPU", se).group(1))
    bpf = re.search(r"sampler ran (\d+) times, (\d+) ns in total", se)
    snaps, bytes_per = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    p = json.loads(subprocess.run([PPROFDUMP, out], capture_output=True, text=True, check=True).stdout)
    stacks = [(s["stack"], s["values"][0]) for s in p["samples"]]
    return {"samples": snaps, "bytes_per_sample": bytes_per, "reach_main": reach_share(stacks),
            "agent_cpu_s": cpu, "agent_us_per_sample": 1e6 * cpu / max(snaps, 1),
            "bpf_us_per_run": int(bpf.group(2)) / int(bpf.group(1)) / 1e3 if bpf else None}


def round_perf(seconds, tmp):
    data = os.path.join(tmp, "perf.data")
    w = workload(seconds)
    _, _, rec_cpu = cpu_of(["perf", "record", "-q", "-F", "97", "-e", "cpu-clock", "--call-graph", "dwarf",
                            "-o", data, "-p", str(w.pid)])
    w.wait()
    script, _, scr_cpu = cpu_of(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym"])
    stacks, cur = [], None
    for line in script.splitlines():
        if not line.strip():
            if cur is not None:
                stacks.append((cur, 1))
            cur = None
        elif not line.startswith((" ", "\t")):
            cur = []
        elif cur is not None:
            parts = line.split()
            cur.append(parts[1] if len(parts) > 1 else "?")
    if cur:
        stacks.append((cur, 1))
    n = max(len(stacks), 1)
    return {"samples": n, "bytes_per_sample": os.path.getsize(data) / n, "reach_main": reach_share(stacks),
            "agent_cpu_s": rec_cpu + scr_cpu, "agent_us_per_sample": 1e6 * (rec_cpu + scr_cpu) / n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--iters", type=int, default=1500000, help="cpuwork_nofp work for the slowdown")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "dwarf.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_dwarf: run as root")
    tmp = "/tmp/ember-bench-dwarf"
    os.makedirs(tmp, exist_ok=True)
    res = {"ember": [], "perf": []}
    for r in range(args.rounds):
        order = [("ember", round_ember), ("perf", round_perf)]
        if r % 2:
            order.reverse()
        for name, fn in order:
            # Start-up (BPF load, kallsyms, first symbol tables; perf's setup) is paid once: the
            # cost per sample is the difference between a short and a long recording.
            short, long_ = fn(1.5, tmp), fn(1.5 + args.seconds, tmp)
            long_["marginal_us_per_sample"] = 1e6 * (long_["agent_cpu_s"] - short["agent_cpu_s"]) / \
                max(long_["samples"] - short["samples"], 1)
            long_["startup_cpu_s"] = short["agent_cpu_s"]
            res[name].append(long_)
            print(f"round {r + 1} {name}: {long_}", file=sys.stderr)
    slow = {"baseline": [], "ember": [], "perf": []}
    for r in range(args.rounds):
        for t in (["baseline", "ember", "perf"] if r % 2 == 0 else ["perf", "ember", "baseline"]):
            slow[t].append(slowdown_round(t, args.iters, tmp))
    base = statistics.mean(slow["baseline"])
    summary = {}
    for t in ("ember", "perf"):
        summary[t] = {k: statistics.mean(x[k] for x in res[t]) for k in
                      ("marginal_us_per_sample", "startup_cpu_s", "bytes_per_sample", "reach_main")}
        summary[t]["slowdown_pct"] = 100 * (statistics.mean(slow[t]) / base - 1)
    print(f"\n{'tool':6} {'slowdown %':>10} {'CPU µs/sample':>14} {'start-up CPU s':>15} {'bytes/sample':>13} {'reach main':>11}")
    for t, s in summary.items():
        print(f"{t:6} {s['slowdown_pct']:10.2f} {s['marginal_us_per_sample']:14.1f} {s['startup_cpu_s']:15.3f} "
              f"{s['bytes_per_sample']:13.0f} {100 * s['reach_main']:10.2f}%")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"summary": summary, "rounds": res, "slowdown_cpu_s": slow}, f, indent=2)


if __name__ == "__main__":
    main()
