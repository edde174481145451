#!/usr/bin/env python3
"""Agent overhead over a long run, beside perf in the same run.

Workload: 2 busy CPUs (cpu_split_fp pinned to CPU 0, cpuwork pinned to CPU 1), a third
lightly loaded service (demo_workload at a low duty), and 100 idle processes (sleep). Ember's
agent selects the 3 services at 97 Hz (local sink, 15 s interval) while `perf record -a -g -F 97
-e cpu-clock` records the whole host at the same time. Every 10 s the agent's RSS is sampled.
Reported: the agent's CPU (userspace utime+stime from /proc, plus the in-kernel time of its BPF
programs from kernel.bpf_stats_enabled) as a share of the host (duration x CPUs), its RSS
(start, max, end, growth per hour after the first minute), and perf's userspace CPU and RSS.
perf's figure is its userspace only: its sampling and stack walks run in the kernel, in the
interrupted tasks, and are not charged to it, whereas Ember's BPF time is measured and counted.
Usage: sudo bench/bench_agent.py [--duration 600] [--unwind auto|fp|dwarf]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("EMBER_BUILD_DIR", os.path.join(ROOT, "build"))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bpf_ns(prefix):
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
    return sum(p.get("run_time_ns", 0) for p in json.loads(out or "[]") if p.get("name", "").startswith(prefix))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--unwind", default="auto", help="the agent's --unwind mode")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "agent.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_agent: run as root")
    fx = os.path.join(BUILD, "tests", "fixtures")
    dur = int(args.duration) + 60
    procs = [
        subprocess.Popen(["taskset", "-c", "0", os.path.join(fx, "cpu_split_fp"), str(dur)]),
        subprocess.Popen(["taskset", "-c", "1", os.path.join(BUILD, "bench", "cpuwork"), "1000000000"],
                         stdout=subprocess.DEVNULL),
        subprocess.Popen(["sh", "-c", f"end=$(($(date +%s)+{dur})); while [ $(date +%s) -lt $end ]; do "
                                      f"{os.path.join(fx, 'demo_workload')} 0.2; sleep 1; done"]),
    ] + [subprocess.Popen(["sleep", str(dur)]) for _ in range(100)]
    tmp = tempfile.mkdtemp(prefix="ember-bench-agent-")
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    agent = perf = None
    try:
        agent = subprocess.Popen([os.path.join(BUILD, "ember"), "agent", "--unwind", args.unwind,
                                  "--output", os.path.join(tmp, "out"),
                                  "--service", "split=comm:cpu_split_fp", "--service", "work=comm:cpuwork",
                                  "--service", "demo=comm:demo_workload"], stderr=subprocess.DEVNULL)
        perf = subprocess.Popen(["perf", "record", "-q", "-a", "-g", "-F", "97", "-e", "cpu-clock", "-o",
                                 os.path.join(tmp, "perf.data")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(5)  # past start-up: BPF load, kallsyms, first symbol tables
        t0, a0, b0, p0 = time.time(), cpu_seconds(agent.pid), bpf_ns("ember_"), cpu_seconds(perf.pid)
        rss = []
        while time.time() - t0 < args.duration:
            rss.append((time.time() - t0, rss_mb(agent.pid)))
            time.sleep(10)
        t1, a1, b1, p1 = time.time(), cpu_seconds(agent.pid), bpf_ns("ember_"), cpu_seconds(perf.pid)
        perf_rss = rss_mb(perf.pid)
    finally:
        for p in [agent, perf]:
            if p and p.poll() is None:
                p.send_signal(2)
                p.wait(timeout=60)
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"])
    host = (t1 - t0) * os.cpu_count()
    after1 = [r for t, r in rss if t >= 60] or [r for _, r in rss]
    growth = (after1[-1] - after1[0]) / max((t1 - t0 - 60) / 3600, 1e-9) if len(after1) > 1 else 0.0
    res = {
        "duration_s": t1 - t0, "cpus": os.cpu_count(), "rate_hz": 97, "unwind": args.unwind,
        "agent_user_cpu_s": a1 - a0, "agent_bpf_cpu_s": (b1 - b0) / 1e9,
        "agent_cpu_share_pct": 100 * ((a1 - a0) + (b1 - b0) / 1e9) / host,
        "agent_rss_mb": {"start": rss[0][1], "max": max(r for _, r in rss), "end": rss[-1][1],
                         "growth_mb_per_hour_after_1min": growth},
        "perf_user_cpu_s": p1 - p0, "perf_cpu_share_pct": 100 * (p1 - p0) / host, "perf_rss_mb": perf_rss,
    }
    print(json.dumps(res, indent=2))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
