#!/usr/bin/env python3
"""Cost of Python frames: a Python service with a 30-frame Python stack, profiled with Python
frames on and off in the same run, beside perf.

Workload: two copies of bench/pywork.py (fixed work under 30 distinct Python functions), one
pinned to each CPU, on the chosen interpreter (--python; Debian's python3.11 by default: no
frame pointers, so `--unwind auto` unwinds it from stack snapshots either way). For each
round, in an interleaved order, the workload runs:
  - alone (baseline),
  - under `ember record --sample-rate 97 --service bench=comm:PYCOMM` (Python frames on),
  - the same with EMBER_PYTHON=off (native frames only: the benchmark knob),
  - under both at once ("pair"): the two samplers see the same workload at the same moments,
    so their difference (BPF time per run, CPU per sample) is free of this shared machine's
    drift, which moves single runs by more than the effect measured,
  - under `perf record -F 97 -g -e cpu-clock` on the workload's pids.
Reported per configuration: the workload's slowdown (CPU seconds vs baseline, mean and 95% CI),
the profiler's CPU time (user+sys, wait4) per sample, peak RSS, and for Ember the sampler's BPF
time per run (kernel.bpf_stats_enabled); then the two ratios the targets are stated in (BPF ns
added by Python frames, agent CPU per sample with / without). Writes bench/results/python.json.
Usage: sudo bench/bench_python.py [--rounds N] [--iters N] [--python PATH]
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

from bench_record import bpf_prog_stats, ci95, stop_profiler, wait_profiler_ready

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("EMBER_BUILD_DIR", os.path.join(ROOT, "build"))
EMBER = os.path.join(BUILD, "ember")
PYWORK = os.path.join(ROOT, "bench", "pywork.py")
RATE = 97


def run_workload(py, iters):
    return [subprocess.Popen(["taskset", "-c", str(cpu), py, PYWORK, str(iters)],
                             stdout=subprocess.PIPE, text=True) for cpu in range(2)]


def collect(procs):
    secs = 0.0
    for p in procs:
        out, _ = p.communicate()
        secs += float(re.search(r"cpu_seconds ([0-9.]+)", out).group(1))
    return secs


def frames_in(path, want):
    """Share of the samples whose stack holds the function `want` (pprofdump)."""
    out = subprocess.run([os.path.join(BUILD, "tests", "tools", "pprofdump"), path],
                         capture_output=True, text=True)
    if out.returncode:
        return None
    d = json.loads(out.stdout)
    tot = sum(s["values"][0] for s in d["samples"]) or 1
    return sum(s["values"][0] for s in d["samples"] if want in s["stack"]) / tot


def start_ember(py, tmp, name, python_on):
    env = dict(os.environ)
    if not python_on:
        env["EMBER_PYTHON"] = "off"
    out = os.path.join(tmp, name + ".pb.gz")
    comm = os.path.basename(py)[:15]  # the name exec saw, not the link target
    prof = subprocess.Popen([EMBER, "record", "--quiet", "--sample-rate", str(RATE), "--service",
                             "bench=comm:" + comm, "-o", out], stderr=subprocess.PIPE, text=True, env=env)
    wait_profiler_ready("ember", prof)
    return prof, out


def pair_round(py, iters, tmp):
    """Python frames on and off at once, on the same samples."""
    flt = lambda n: n.startswith("ember_cpu")
    on, out_on = start_ember(py, tmp, "pair-on", True)
    off, out_off = start_ember(py, tmp, "pair-off", False)
    c0 = [bpf_prog_stats(flt, p.pid) for p in (on, off)]
    work = collect(run_workload(py, iters))
    c1 = [bpf_prog_stats(flt, p.pid) for p in (on, off)]
    res = {"work": work}
    for tag, p, a, b in (("on", on, c0[0], c1[0]), ("off", off, c0[1], c1[1])):
        cpu, rss, _ = stop_profiler(p)
        runs = max(b[0] - a[0], 1)
        res[tag] = {"cpu": cpu, "rss_mb": rss, "bpf_runs": b[0] - a[0],
                    "bpf_ns_per_run": (b[1] - a[1]) / runs, "cpu_us_per_sample": 1e6 * cpu / runs}
    res["share_with_level_00"] = frames_in(out_on, "level_00")
    return res


def one_round(conf, py, iters, tmp):
    res = {}
    if conf == "pair":
        return pair_round(py, iters, tmp)
    if conf == "baseline":
        res["work"] = collect(run_workload(py, iters))
        return res
    if conf == "perf":
        procs = run_workload(py, iters)
        perf = subprocess.Popen(["perf", "record", "-q", "-F", str(RATE), "-g", "-e", "cpu-clock", "-o",
                                 os.path.join(tmp, "perf.data"), "-p", ",".join(str(p.pid) for p in procs)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        res["work"] = collect(procs)
        res["cpu"], res["rss_mb"], _ = stop_profiler(perf)
        return res
    env = dict(os.environ)
    if conf == "ember-native":
        env["EMBER_PYTHON"] = "off"
    out = os.path.join(tmp, conf + ".pb.gz")
    comm = os.path.basename(py)[:15]  # the name exec saw, not the link target
    prof = subprocess.Popen([EMBER, "record", "--quiet", "--sample-rate", str(RATE), "--service",
                             "bench=comm:" + comm, "-o", out], stderr=subprocess.PIPE, text=True, env=env)
    wait_profiler_ready("ember", prof)
    c0, n0 = bpf_prog_stats(lambda n: n.startswith("ember_cpu"), prof.pid)
    res["work"] = collect(run_workload(py, iters))
    c1, n1 = bpf_prog_stats(lambda n: n.startswith("ember_cpu"), prof.pid)
    res["cpu"], res["rss_mb"], _ = stop_profiler(prof)
    res["bpf_runs"] = c1 - c0
    res["bpf_ns_per_run"] = (n1 - n0) / max(c1 - c0, 1)
    res["cpu_us_per_sample"] = 1e6 * res["cpu"] / max(c1 - c0, 1)
    res["share_with_level_00"] = frames_in(out, "level_00")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=40000)
    ap.add_argument("--python", default="/usr/bin/python3.11")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "python.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_python: run as root")
    confs = ["baseline", "ember", "ember-native", "pair", "perf"]
    rows = {c: [] for c in confs}
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                order = confs[r % len(confs):] + confs[:r % len(confs)]
                for c in order:
                    rows[c].append(one_round(c, args.python, args.iters, tmp))
                    print(f"round {r + 1} {c}: {rows[c][-1]}", file=sys.stderr)
    finally:
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"])
    base = statistics.mean(x["work"] for x in rows["baseline"])
    summary = {"rate_hz": RATE, "rounds": args.rounds, "python": args.python,
               "baseline_cpu_s": base, "configs": {}}
    print(f"\n{'config':13} {'slowdown %':>14} {'CPU s':>7} {'CPU us/sample':>14} {'RSS MB':>7} "
          f"{'BPF ns/run':>11} {'stacks with level_00':>21}")
    for c in confs[1:]:
        if c == "pair":
            continue
        slow = [100.0 * (x["work"] / base - 1) for x in rows[c]]
        s = {"slowdown_pct": statistics.mean(slow), "slowdown_ci95": ci95(slow),
             "tool_cpu_s": statistics.mean(x["cpu"] for x in rows[c]),
             "peak_rss_mb": max(x["rss_mb"] for x in rows[c])}
        for k in ("bpf_ns_per_run", "cpu_us_per_sample", "bpf_runs"):
            if k in rows[c][0]:
                s[k] = statistics.mean(x[k] for x in rows[c])
        if "share_with_level_00" in rows[c][0]:
            vals = [x["share_with_level_00"] for x in rows[c] if x["share_with_level_00"] is not None]
            s["share_with_level_00"] = statistics.mean(vals) if vals else None
        summary["configs"][c] = s
        share = s.get("share_with_level_00")
        print(f"{c:13} {s['slowdown_pct']:7.2f} ±{s['slowdown_ci95']:5.2f} {s['tool_cpu_s']:7.3f} "
              f"{s.get('cpu_us_per_sample', float('nan')):14.1f} {s['peak_rss_mb']:7.1f} "
              f"{s.get('bpf_ns_per_run', float('nan')):11.0f} "
              f"{'' if share is None else f'{share:.1%}':>21}")
    added = [x["on"]["bpf_ns_per_run"] - x["off"]["bpf_ns_per_run"] for x in rows["pair"]]
    ratio = [x["on"]["cpu_us_per_sample"] / max(x["off"]["cpu_us_per_sample"], 1e-9) for x in rows["pair"]]
    summary["pair"] = {
        "bpf_ns_per_run_on": statistics.mean(x["on"]["bpf_ns_per_run"] for x in rows["pair"]),
        "bpf_ns_per_run_off": statistics.mean(x["off"]["bpf_ns_per_run"] for x in rows["pair"]),
        "cpu_us_per_sample_on": statistics.mean(x["on"]["cpu_us_per_sample"] for x in rows["pair"]),
        "cpu_us_per_sample_off": statistics.mean(x["off"]["cpu_us_per_sample"] for x in rows["pair"]),
        "share_with_level_00": statistics.mean(x["share_with_level_00"] or 0 for x in rows["pair"]),
    }
    summary["python_bpf_ns_added"] = statistics.mean(added)
    summary["python_bpf_ns_added_ci95"] = ci95(added)
    summary["python_cpu_per_sample_ratio"] = statistics.mean(ratio)
    summary["python_cpu_per_sample_ratio_ci95"] = ci95(ratio)
    print(f"\npaired (both samplers on the same samples): Python frames add "
          f"{summary['python_bpf_ns_added']:.0f} ± {summary['python_bpf_ns_added_ci95']:.0f} ns of BPF "
          f"time per sample (target <= 2000; {summary['pair']['bpf_ns_per_run_off']:.0f} -> "
          f"{summary['pair']['bpf_ns_per_run_on']:.0f}); agent CPU per sample "
          f"x{summary['python_cpu_per_sample_ratio']:.2f} ± {summary['python_cpu_per_sample_ratio_ci95']:.2f} "
          f"of native-only (target <= 1.5)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
