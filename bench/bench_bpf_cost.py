#!/usr/bin/env python3
"""BPF time per sample of ember_cpu_sample, beside the floors of this machine, in the same run.

Workload (chosen with --workload): `user` runs two copies of bench/cpuwork (frame pointers,
14-frame user stack, samples in user mode), one pinned to each CPU; `kernel` runs two
`dd if=/dev/zero of=/dev/null` (samples mostly in kernel mode, so both stacks are taken);
`idle` runs nothing (every sample is pid 0, filtered). The workload runs for the whole bench.

For each sample rate (default 97 and 997 Hz) and each configuration, in an interleaved order
over --rounds rounds, the configuration's profiler is started, warmed up for 1 s, and the
run_cnt/run_time_ns of its perf_event program (BPF_ENABLE_STATS) are read over
--seconds seconds. Configurations:
  ember           `ember record` selecting the workload (the shipped program)
  bt-empty        bpftrace `profile:hz:R { @ = count(); }`: an empty program with a counter
  bt-ustack       bpftrace `@[ustack] = count()` on the workload: one bpf_get_stackid(user)
  bt-ustack-kstack bpftrace `@[ustack, kstack] = count()` on the workload
Prints ns/run (mean over rounds, with the spread) per configuration and rate, and writes
bench/results/bpf_cost.json. Usage: sudo bench/bench_bpf_cost.py [--workload user|kernel|idle]
"""
import argparse
import ctypes
import json
import os
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("EMBER_BUILD_DIR", os.path.join(ROOT, "build"))
EMBER = os.path.join(BUILD, "ember")
CPUWORK = os.path.join(BUILD, "bench", "cpuwork")
COMM = {"user": "cpuwork", "kernel": "dd", "idle": "cpuwork"}


def enable_bpf_stats():
    """BPF_ENABLE_STATS: run-time stats stay on while the returned fd is open. Unlike the
    kernel.bpf_stats_enabled sysctl it is reference-counted, so it never switches stats off
    under another tool measuring at the same time."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(ctypes.sizeof(ctypes.c_uint32) * 32)  # enable_stats.type = 0
    fd = libc.syscall(321, 32, attr, ctypes.sizeof(attr))  # __NR_bpf (x86-64), BPF_ENABLE_STATS
    if fd < 0:
        sys.exit(f"bench_bpf_cost: BPF_ENABLE_STATS: {os.strerror(ctypes.get_errno())}")
    return fd


def start_workload(kind):
    if kind == "idle":
        return []
    if kind == "user":
        cmd = [CPUWORK, "1000000000"]
    else:
        cmd = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64k"]
    return [subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for cpu in range(2)]


def perf_progs():
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
    return [p for p in json.loads(out or "[]") if p.get("type") == "perf_event"]


def owned_progs(pid):
    """Ids of the BPF programs that process pid holds open (bpftool's pids needs a newer build)."""
    ids = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fdinfo"):
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
    except OSError:
        pass
    return ids


def start(config, rate, comm, tmp):
    """Starts one configuration; returns (process, program-name filter)."""
    name, env = config["name"], dict(os.environ, **config.get("env", {}))
    if config["tool"] == "ember":
        p = subprocess.Popen([config.get("bin", EMBER), "record", "--quiet", "--sample-rate", str(rate), "--service",
                              f"bench=comm:{comm}", "-o", os.path.join(tmp, "ember.pb.gz")],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return p, lambda n: n.startswith("ember_cpu")
    prog = f"profile:hz:{rate} {config['bt'].replace('COMM', comm)}"
    p = subprocess.Popen(["bpftrace", "-e", prog], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    return p, lambda n: not n.startswith("ember")


def measure(config, rate, comm, seconds, tmp):
    # Programs of the previous configuration may outlive its process for a moment, and other
    # users of this machine may load theirs: only programs this process loaded count.
    p, flt = start(config, rate, comm, tmp)
    try:
        deadline = time.time() + 30
        while not (ids := {q["id"] for q in perf_progs() if q["id"] in owned_progs(p.pid) and flt(q.get("name", ""))}):
            if p.poll() is not None or time.time() > deadline:
                p.kill()
                raise RuntimeError(f"{config['name']} did not attach: {p.communicate()[1]}")
            time.sleep(0.1)
        time.sleep(1.0)

        def snap():
            progs = [q for q in perf_progs() if q["id"] in ids]
            return sum(q.get("run_cnt", 0) for q in progs), sum(q.get("run_time_ns", 0) for q in progs)
        c0, n0 = snap()
        time.sleep(seconds)
        c1, n1 = snap()
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:  # bpftrace sometimes hangs printing its maps
            p.kill()
            p.wait()
        while ids & {q["id"] for q in perf_progs()} and time.time() < deadline:
            time.sleep(0.1)
    return {"runs": c1 - c0, "ns_per_run": (n1 - n0) / max(c1 - c0, 1)}


CONFIGS = [
    {"name": "ember", "tool": "ember"},
    {"name": "bt-empty", "tool": "bpftrace", "bt": "{ @ = count(); }"},
    {"name": "bt-ustack", "tool": "bpftrace", "bt": '/comm == "COMM"/ { @[ustack] = count(); }'},
    {"name": "bt-ustack-kstack", "tool": "bpftrace",
     "bt": '/comm == "COMM"/ { @[ustack, kstack] = count(); }'},
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=["user", "kernel", "idle"], default="user")
    ap.add_argument("--rates", default="97,997")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--only", default="", help="comma-separated configuration names")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "bpf_cost.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_bpf_cost: run as root")
    configs = [c for c in CONFIGS if not args.only or c["name"] in args.only.split(",")]
    rates = [int(r) for r in args.rates.split(",")]
    tmp = "/tmp/ember-bench"
    os.makedirs(tmp, exist_ok=True)
    rows = {(c["name"], r): [] for c in configs for r in rates}
    stats_fd = enable_bpf_stats()
    work = start_workload(args.workload)
    try:
        time.sleep(0.5)
        for rnd in range(args.rounds):
            order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
            for rate in rates:
                for c in order:
                    res = measure(c, rate, COMM[args.workload], args.seconds, tmp)
                    rows[(c["name"], rate)].append(res)
                    print(f"round {rnd + 1} {rate} Hz {c['name']}: {res}", file=sys.stderr)
    finally:
        for p in work:
            p.kill()
            p.wait()
        os.close(stats_fd)
    summary = {"workload": args.workload, "rounds": args.rounds, "seconds": args.seconds, "results": {}}
    print(f"\nworkload {args.workload}: BPF ns per run (median of {args.rounds} rounds, min..max)")
    print(f"{'config':24}" + "".join(f"{str(r) + ' Hz':>24}" for r in rates))
    for c in configs:
        line = f"{c['name']:24}"
        for r in rates:
            xs = [x["ns_per_run"] for x in rows[(c["name"], r)]]
            runs = statistics.mean(x["runs"] for x in rows[(c["name"], r)])
            summary["results"][f"{c['name']}@{r}"] = {"ns_per_run": statistics.median(xs), "min": min(xs),
                                                      "max": max(xs), "runs": runs}
            line += f"{statistics.median(xs):10.0f} ({min(xs):5.0f}..{max(xs):5.0f})"
        print(line)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
