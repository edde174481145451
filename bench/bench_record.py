#!/usr/bin/env python3
"""CPU sampling overhead, Ember beside its peers in the same run.

Workload: two copies of bench/cpuwork (fixed work, frame pointers, 12-deep call chain), one
pinned to each CPU, so every sample lands in a selected process. For each round, in an
interleaved order, the workload runs:
  - alone (baseline),
  - under `ember record --sample-rate 97 --service bench=comm:cpuwork`,
  - under `perf record -F 97 -g -e cpu-clock` on the workload's pids,
  - under `bpftrace` `profile:hz:97 { @[ustack, kstack] = count(); }` filtered to the workload.
Reported per tool: workload slowdown (CPU seconds vs baseline, mean and 95% CI over rounds),
the profiler's own CPU time (user+sys, from wait4) and peak RSS; for BPF tools, the sampler's
time per run from kernel.bpf_stats_enabled. Writes bench/results/record.json.
Usage: sudo bench/bench_record.py [--rounds N] [--iters N]
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("EMBER_BUILD_DIR", os.path.join(ROOT, "build"))
EMBER = os.path.join(BUILD, "ember")
CPUWORK = os.path.join(BUILD, "bench", "cpuwork")
RATE = 97


def run_workload(iters):
    procs = [subprocess.Popen(["taskset", "-c", str(cpu), CPUWORK, str(iters)], stdout=subprocess.PIPE, text=True)
             for cpu in range(2)]
    return procs


def collect(procs):
    secs = []
    for p in procs:
        out, _ = p.communicate()
        secs.append(float(re.search(r"cpu_seconds ([0-9.]+)", out).group(1)))
    return sum(secs)


def owned_progs(pid):
    """Ids of the BPF programs that process pid holds open. Matching by name alone also counts
    other Ember or bpftrace instances on a shared machine, whose programs come and go."""
    ids = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fdinfo"):
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                ids.update(int(line.split()[1]) for line in f if line.startswith("prog_id:"))
    except OSError:
        pass
    return ids


def bpf_prog_stats(name_filter, pid):
    """run_cnt/run_time_ns summed over the perf_event programs of pid matching name_filter."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
    ids = owned_progs(pid)
    cnt = ns = 0
    for p in json.loads(out or "[]"):
        if p.get("type") == "perf_event" and p.get("id") in ids and name_filter(p.get("name", "")):
            cnt += p.get("run_cnt", 0)
            ns += p.get("run_time_ns", 0)
    return cnt, ns


def start_profiler(tool, tmp):
    if tool == "ember":
        return subprocess.Popen([EMBER, "record", "--quiet", "--sample-rate", str(RATE), "--service",
                                 "bench=comm:cpuwork", "-o", os.path.join(tmp, "ember.pb.gz"),
                                 "--log-level", "debug"], stderr=subprocess.PIPE, text=True)
    if tool == "bpftrace":
        prog = 'profile:hz:%d /comm == "cpuwork"/ { @[ustack, kstack] = count(); }' % RATE
        return subprocess.Popen(["bpftrace", "-e", prog], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return None


def prog_filter(tool):
    if tool == "ember":
        return lambda n: n.startswith("ember_cpu")
    return lambda n: not n.startswith("ember")


def wait_profiler_ready(tool, p):
    """Waits until the tool's perf_event program is loaded (both load BPF before sampling)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"{tool} exited early: {p.stderr.read()}")
        out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
        ids = owned_progs(p.pid)
        if any(q.get("type") == "perf_event" and q.get("id") in ids and prog_filter(tool)(q.get("name", ""))
               for q in json.loads(out or "[]")):
            time.sleep(0.3)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{tool} did not attach")


def stop_profiler(p):
    p.send_signal(signal.SIGINT)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = status
    err = p.stderr.read() if p.stderr else ""
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, err


def one_round(tool, iters, tmp):
    res = {}
    if tool == "baseline":
        res["work"] = collect(run_workload(iters))
        return res
    if tool == "perf":
        procs = run_workload(iters)
        perf = subprocess.Popen(["perf", "record", "-q", "-F", str(RATE), "-g", "-e", "cpu-clock", "-o",
                                 os.path.join(tmp, "perf.data"), "-p", ",".join(str(p.pid) for p in procs)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        res["work"] = collect(procs)
        res["cpu"], res["rss_mb"], _ = stop_profiler(perf)
        res["output_bytes"] = os.path.getsize(os.path.join(tmp, "perf.data"))
        return res
    prof = start_profiler(tool, tmp)
    wait_profiler_ready(tool, prof)
    flt = prog_filter(tool)
    c0, n0 = bpf_prog_stats(flt, prof.pid)
    res["work"] = collect(run_workload(iters))
    c1, n1 = bpf_prog_stats(flt, prof.pid)
    res["cpu"], res["rss_mb"], err = stop_profiler(prof)
    res["bpf_runs"] = c1 - c0
    res["bpf_ns_per_run"] = (n1 - n0) / max(c1 - c0, 1)
    if tool == "ember":
        res["output_bytes"] = os.path.getsize(os.path.join(tmp, "ember.pb.gz"))
    return res


def ci95(xs):
    if len(xs) < 2:
        return 0.0
    return 1.96 * statistics.stdev(xs) / len(xs) ** 0.5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=400000)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "record.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_record: run as root")
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    tools = ["baseline", "ember", "perf", "bpftrace"]
    tmp = "/tmp/ember-bench"
    os.makedirs(tmp, exist_ok=True)
    rows = {t: [] for t in tools}
    try:
        for r in range(args.rounds):
            order = tools[r % len(tools):] + tools[:r % len(tools)]
            for t in order:
                rows[t].append(one_round(t, args.iters, tmp))
                print(f"round {r + 1} {t}: {rows[t][-1]}", file=sys.stderr)
    finally:
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"])
    base = statistics.mean(x["work"] for x in rows["baseline"])
    summary = {"rate_hz": RATE, "rounds": args.rounds, "baseline_cpu_s": base, "tools": {}}
    print(f"\n{'tool':10} {'slowdown %':>14} {'tool CPU s':>11} {'peak RSS MB':>12} {'BPF ns/run':>11} {'output KB':>10}")
    for t in tools[1:]:
        slow = [100.0 * (x["work"] / base - 1) for x in rows[t]]
        s = {
            "slowdown_pct": statistics.mean(slow), "slowdown_ci95": ci95(slow),
            "tool_cpu_s": statistics.mean(x["cpu"] for x in rows[t]),
            "peak_rss_mb": max(x["rss_mb"] for x in rows[t]),
        }
        if "bpf_ns_per_run" in rows[t][0]:
            s["bpf_ns_per_run"] = statistics.mean(x["bpf_ns_per_run"] for x in rows[t])
            s["bpf_runs"] = statistics.mean(x["bpf_runs"] for x in rows[t])
        if "output_bytes" in rows[t][0]:
            s["output_kb"] = statistics.mean(x["output_bytes"] for x in rows[t]) / 1024
        summary["tools"][t] = s
        print(f"{t:10} {s['slowdown_pct']:7.2f} ±{s['slowdown_ci95']:5.2f} {s['tool_cpu_s']:11.3f} "
              f"{s['peak_rss_mb']:12.1f} {s.get('bpf_ns_per_run', float('nan')):11.0f} {s.get('output_kb', float('nan')):10.1f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
