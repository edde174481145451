#!/usr/bin/env python3
"""Allocation profiling overhead: ns per malloc/free pair of a tight loop (bench/mloop.c,
malloc(64..127)/free; the loop's own CPU time), interleaved over several rounds in one run, the
order rotated each round:

  baseline          no profiler
  ember uprobe      ember record --profiles alloc (session uprobes; free probed past its
                    single-stepped first instruction)
  ember classic     same with entry + uretprobe pairs (EMBER_ALLOC_NO_SESSION=1)
  ember free@entry  session mode but free probed at its entry (EMBER_ALLOC_FREE_AT_ENTRY=1)
  ember preload     ember run --profiles alloc (libember_alloc.so + USDT)
  preload only      LD_PRELOAD=libember_alloc.so, no agent (the in-process cost alone)
  do-nothing        LD_PRELOAD=bench/libinterpose_floor.so: malloc/free passed straight to
   interposer       glibc (what interposition itself costs, the floor under preload mode)
  bpftrace malloc   bpftrace -e 'uprobe:libc:malloc { @ = count(); }' (the peer)

Run as root after building: python3 bench/bench_alloc.py [--rounds R] [--json FILE]."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

BUILD = os.environ.get("EMBER_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../build"))
EMBER = os.path.join(BUILD, "ember")
MLOOP = os.path.join(BUILD, "bench/mloop")
LIB = os.path.join(BUILD, "libember_alloc.so")
FLOOR = os.path.join(BUILD, "bench/libinterpose_floor.so")
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def last_float(out):
    for line in reversed(out.strip().splitlines()):
        try:
            return float(line)
        except ValueError:
            continue
    raise ValueError(f"no timing in output: {out[-200:]}")


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {p.returncode}: {p.stderr[-500:]}")
    return last_float(p.stdout)


INPROC = ("baseline", "ember preload", "preload only", "do-nothing interposer")


def configs(tmp):
    out = os.path.join(tmp, "a.pb.gz")
    env = dict(os.environ)
    return [
        ("baseline", 10000000, lambda n: run(["taskset", "-c", "1", MLOOP, str(n)])),
        ("ember uprobe (session)", 1000000, lambda n: run(
            [EMBER, "record", "--profiles", "alloc", "-q", "-o", out, "--", "taskset", "-c", "1", MLOOP, str(n)])),
        ("ember uprobe (classic)", 500000, lambda n: run(
            [EMBER, "record", "--profiles", "alloc", "-q", "-o", out, "--", "taskset", "-c", "1", MLOOP, str(n)],
            env=dict(env, EMBER_ALLOC_NO_SESSION="1"))),
        ("ember uprobe, free@entry", 50000, lambda n: run(
            [EMBER, "record", "--profiles", "alloc", "-q", "-o", out, "--", "taskset", "-c", "1", MLOOP, str(n)],
            env=dict(env, EMBER_ALLOC_FREE_AT_ENTRY="1"))),
        ("ember preload", 10000000, lambda n: run(
            [EMBER, "run", "--profiles", "alloc", "--log-level", "error", "--output", os.path.join(tmp, "run"), "--", "taskset", "-c", "1", MLOOP, str(n)])),
        ("preload only", 10000000, lambda n: run(["taskset", "-c", "1", MLOOP, str(n)],
                                                env=dict(env, LD_PRELOAD=LIB))),
        ("do-nothing interposer", 10000000, lambda n: run(["taskset", "-c", "1", MLOOP, str(n)],
                                                          env=dict(env, LD_PRELOAD=FLOOR))),
        ("bpftrace uprobe malloc", 1000000, lambda n: run(
            ["bpftrace", "-q", "-e", f"uprobe:{LIBC}:malloc {{ @ = count(); }} END {{ clear(@); }}",
             "-c", f"/usr/bin/taskset -c 1 {MLOOP} {n}"])),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results/alloc.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIP: needs root (BPF, uprobes)")
        sys.exit(77)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = configs(tmp)
        for r in range(args.rounds):
            # Rotate the order each round so that no configuration always follows another. The
            # in-process configurations differ by a few ns per pair, of the order of the drift
            # between runs here: each runs three times a round (short runs), and they are
            # compared by their least time as well as by per-run ratios to the baseline.
            k = r % len(cfgs)
            for name, n, fn in cfgs[k:] + cfgs[:k]:
                for _ in range(3 if name in INPROC else 1):
                    try:
                        res.setdefault(name, []).append(fn(n))
                    except Exception as e:  # a missing peer is reported, not fatal
                        print(f"{name}: {e}", file=sys.stderr)
    base = statistics.median(res["baseline"])
    print(f"{'configuration':28} {'ns/pair (median)':>17} {'min':>9} {'max':>9} {'vs baseline':>12}")
    table = {}
    for name, _, _ in cfgs:
        v = res.get(name)
        if not v:
            continue
        med = statistics.median(v)
        table[name] = {"ns_per_pair": v, "median": med, "overhead_ns": med - base,
                       "ratio": med / base}
        rel = f"+{100 * (med / base - 1):.1f}%" if med / base < 3 else f"{med / base:.0f}x"
        print(f"{name:28} {med:17.1f} {min(v):9.1f} {max(v):9.1f} {rel:>12}")
    # The in-process modes cost a few ns on a ~30 ns loop, of the order of the drift between
    # rounds: compare each with the baseline of its own round.
    for name in INPROC[1:]:
        if name in table and len(res[name]) == len(res["baseline"]):
            paired = [p / b for p, b in zip(res[name], res["baseline"])]
            table[name]["paired_ratio_median"] = statistics.median(paired)
            table[name]["min_ratio"] = min(res[name]) / min(res["baseline"])
            print(f"{name}: {100 * (table[name]['min_ratio'] - 1):+.1f}% on the loop by least times, "
                  f"{100 * (statistics.median(paired) - 1):+.1f}% by the median of per-run ratios "
                  f"({min(paired):.3f}-{max(paired):.3f})")
    if "bpftrace uprobe malloc" in table and "ember uprobe (session)" in table:
        one = table["bpftrace uprobe malloc"]["overhead_ns"]
        table["ember uprobe (session)"]["vs_two_bpftrace_probes"] = \
            table["ember uprobe (session)"]["overhead_ns"] / (2 * one)
        print(f"ember uprobe per pair / (2 x bpftrace's one empty-ish malloc probe): "
              f"{table['ember uprobe (session)']['vs_two_bpftrace_probes']:.2f}")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"rounds": args.rounds, "results": table}, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
