#!/usr/bin/env python3
"""DWARF unwinding, Ember beside `perf record --call-graph dwarf` in the same run.

Workload: cpu_split_nofp (-O2 -fomit-frame-pointer; a third of its samples under glibc's qsort)
for a fixed number of seconds, at 97 Hz. Per round, interleaved: alone, under
`ember record --unwind dwarf`, under `perf record -F 97 --call-graph dwarf` (+ `perf script`,
where perf unwinds). Both attach by pid to a workload started on its own, so their CPU is their own. Reported:
the slowdown of a fixed amount of work (bench/cpuwork built without frame pointers: its own
CPU seconds, alone vs under each profiler, interleaved);
the profiler's CPU per sample in steady state: its threads' CPU time (schedstat, exact) over a
window that opens --warm seconds after it started, so that start-up (BPF load, kallsyms, the
first symbol tables; perf's setup) stays outside, divided by the samples taken in the window
(Ember: unwinding and symbolization included; perf: `perf record`'s window plus what
`perf script`, where perf unwinds, costs per sample: the difference between this recording
and a 2 s one, so its start-up counts once); bytes copied
per sample (Ember: its own counter; perf: perf.data size / samples); the share of samples in
hot_alpha/beta/gamma whose stack reaches main (Ember: pprofdump; perf: perf script).
Usage: sudo bench/bench_dwarf.py [--rounds 3] [--warm 3] [--seconds 20]
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("EMBER_BUILD_DIR", os.path.join(ROOT, "build"))
FIX = os.path.join(BUILD, "tests", "fixtures", "cpu_split_nofp")
PPROFDUMP = os.path.join(BUILD, "tests", "tools", "pprofdump")
FNS = ("hot_alpha", "hot_beta", "hot_gamma")


def cpu_of(argv):
    """Runs argv; returns (stdout, stderr, its user+sys seconds). getrusage's children times
    count to the microsecond; os.times() counts in clock ticks."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return p.stdout, p.stderr, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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


def task_cpu_ns(pid):
    """CPU time of every thread of pid so far, in ns (schedstat: exact, not tick-sampled)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def steady_window(proc, warm, window):
    """The profiler's own CPU seconds over `window` seconds that start `warm` seconds after it
    did: start-up (BPF load, kallsyms, first symbol tables; perf's setup) stays outside."""
    time.sleep(warm)
    a = task_cpu_ns(proc.pid)
    time.sleep(window)
    b = task_cpu_ns(proc.pid)
    return (b - a) / 1e9


def round_ember(warm, window, tmp):
    out = os.path.join(tmp, "ember.pb.gz")
    total = warm + window + 1
    w = workload(total + 1)
    p = subprocess.Popen([os.path.join(BUILD, "ember"), "record", "--quiet", "--log-level", "debug",
                          "--unwind", "dwarf", "--duration", str(total), "-o", out, "--pid", str(w.pid)],
                         stderr=subprocess.PIPE, text=True)
    win_cpu = steady_window(p, warm, window)
    _, se = p.communicate()
    w.wait()
    m = re.search(r"dwarf: (\d+) snapshots, \d+ unwound, \d+ truncated, \d+ over budget, (\d+) stack bytes"
                       r" per snapshot, ([0-9.]+) us per unwind", se)
    cpu = float(re.search(r"ember used ([0-9.]+) s of CPU", se).group(1))
    snaps, bytes_per, unwind_us = (int(m.group(1)), int(m.group(2)), float(m.group(3))) if m else (0, 0, 0.0)
    win_samples = snaps * window / total
    pd = json.loads(subprocess.run([PPROFDUMP, out], capture_output=True, text=True, check=True).stdout)
    stacks = [(s["stack"], s["values"][0]) for s in pd["samples"]]
    return {"samples": snaps, "bytes_per_sample": bytes_per, "reach_main": reach_share(stacks),
            "total_cpu_s": cpu, "window_cpu_s": win_cpu, "window_samples": win_samples,
            "us_per_sample": 1e6 * win_cpu / max(win_samples, 1), "unwind_us": unwind_us}


def perf_script_cpu(data):
    """perf script's stacks and its CPU seconds, the least of three runs (its run-to-run noise
    is of the order of its whole unwinding cost at these sample counts)."""
    runs = [cpu_of(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym"]) for _ in range(3)]
    script, cpu = runs[0][0], min(r[2] for r in runs)
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
    return stacks, cpu


def round_perf(warm, window, tmp):
    data, short = os.path.join(tmp, "perf.data"), os.path.join(tmp, "perf-short.data")
    total = warm + window + 1
    w = workload(total)
    p = subprocess.Popen(["perf", "record", "-q", "-F", "97", "-e", "cpu-clock", "--call-graph", "dwarf",
                          "-o", data, "-p", str(w.pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    win_cpu = steady_window(p, warm, window)
    p.wait()
    w.wait()
    # perf unwinds in `perf script`, after the fact: its cost per sample is the difference
    # between this recording and a short one, so that its start-up counts once.
    w = workload(2)
    subprocess.run(["perf", "record", "-q", "-F", "97", "-e", "cpu-clock", "--call-graph", "dwarf",
                    "-o", short, "-p", str(w.pid)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    w.wait()
    stacks, scr_cpu = perf_script_cpu(data)
    short_stacks, short_cpu = perf_script_cpu(short)
    n = max(len(stacks), 1)
    win_samples = n * window / total
    script_us = 1e6 * (scr_cpu - short_cpu) / max(n - len(short_stacks), 1)
    return {"samples": n, "bytes_per_sample": os.path.getsize(data) / n, "reach_main": reach_share(stacks),
            "window_cpu_s": win_cpu, "window_samples": win_samples, "record_us_per_sample": 1e6 * win_cpu / max(win_samples, 1),
            "script_us_per_sample": script_us,
            "us_per_sample": 1e6 * win_cpu / max(win_samples, 1) + script_us}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm", type=float, default=3, help="seconds before the measured window")
    ap.add_argument("--seconds", type=float, default=20, help="the measured window")
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
            one = fn(args.warm, args.seconds, tmp)
            res[name].append(one)
            print(f"round {r + 1} {name}: {one}", file=sys.stderr)
    slow = {"baseline": [], "ember": [], "perf": []}
    for r in range(args.rounds):
        for t in (["baseline", "ember", "perf"] if r % 2 == 0 else ["perf", "ember", "baseline"]):
            slow[t].append(slowdown_round(t, args.iters, tmp))
    base = statistics.mean(slow["baseline"])
    summary = {}
    for t in ("ember", "perf"):
        summary[t] = {k: statistics.median(x[k] for x in res[t]) for k in
                      ("us_per_sample", "bytes_per_sample", "reach_main")}
        summary[t]["slowdown_pct"] = 100 * (statistics.mean(slow[t]) / base - 1)
    summary["ember"]["unwind_us"] = statistics.median(x["unwind_us"] for x in res["ember"])
    summary["perf"]["script_us_per_sample"] = statistics.median(x["script_us_per_sample"] for x in res["perf"])
    summary["cpu_ratio_ember_to_perf"] = summary["ember"]["us_per_sample"] / summary["perf"]["us_per_sample"]
    print(f"\n{'tool':6} {'slowdown %':>10} {'CPU µs/sample':>14} {'bytes/sample':>13} {'reach main':>11}")
    for t in ("ember", "perf"):
        s = summary[t]
        print(f"{t:6} {s['slowdown_pct']:10.2f} {s['us_per_sample']:14.1f} "
              f"{s['bytes_per_sample']:13.0f} {100 * s['reach_main']:10.2f}%")
    print(f"ember/perf CPU per sample: {summary['cpu_ratio_ember_to_perf']:.3f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"summary": summary, "rounds": res, "slowdown_cpu_s": slow}, f, indent=2)


if __name__ == "__main__":
    main()
