#!/usr/bin/env python3
"""analyze_gpu_bench: turns run_gpu_bench.sh's raw outputs into bench/results/gpu.json and
checks the bars: kernel time split within +-10% of CUDA-event timings, >= 99% of kernel launches
joined to a launch stack that reaches main, graph kernels under their capture-time stack, and the
cost per launch of a launch-bound loop with and without the library.

Usage: analyze_gpu_bench.py WORKDIR OUT.json"""
import json
import os
import statistics
import sys


def samples(path):
    out, counters = [], {}
    if not os.path.exists(path):
        return out, counters
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        o = json.loads(line)
        if "counters" in o:
            counters = o["counters"]
        else:
            out.append(o)
    return out, counters


def train_bench(work, res):
    """The watch()-started training loop: Python frames above the forward pass, cost per
    launch. Forward kernels are those launched from the Python thread (not autograd's engine
    threads, which have no Python frames) outside the optimizer."""
    prof, ctr = samples(os.path.join(work, "train_profile.jsonl"))
    kern = [s for s in prof if s["op"] == 1]
    fwd = [s for s in kern if not any("autograd" in f and "Engine" in f for f in s["stack"])
           and not any("optim" in f or f.endswith(".step") for f in s["stack"])]
    fwd_ns = sum(s["gpu_ns"] for s in fwd)
    py_ns = sum(s["gpu_ns"] for s in fwd if any(f == "Block.forward" for f in s["stack"]))
    all_ns = sum(s["gpu_ns"] for s in kern)
    joined = sum(s["launches"] for s in kern if "[no launch stack]" not in s["stack"])
    launches = sum(s["launches"] for s in kern)
    w = json.load(open(os.path.join(work, "train_with.json")))
    wo = json.load(open(os.path.join(work, "train_without.json")))
    cost = w["launch_ns"] - wo["launch_ns"]
    t = {"kernel_ms": round(all_ns / 1e6, 3), "forward_kernel_ms": round(fwd_ns / 1e6, 3),
         "forward_under_python": round(py_ns / fwd_ns, 4) if fwd_ns else 0,
         "joined": round(joined / launches, 4) if launches else 0,
         "launch_ns_with": w["launch_ns"], "launch_ns_without": wo["launch_ns"],
         "cost_ns_per_launch": round(cost, 1), "loop_ms_with": w["loop_ms"],
         "loop_ms_without": wo["loop_ms"], "counters": ctr,
         "example_stack": max(fwd, key=lambda s: s["gpu_ns"])["stack"] if fwd else []}
    t["pass"] = t["forward_under_python"] >= 0.95 and t["joined"] >= 0.99 and cost <= 5000
    res["torch_train"] = t
    return t["pass"]


def main():
    work, out_path = sys.argv[1], sys.argv[2]
    res = {"checks": {}, "notes": []}
    ok = True

    ev = json.load(open(os.path.join(work, "split_events.json")))
    prof, ctr = samples(os.path.join(work, "split_profile.jsonl"))
    res["counters"] = ctr
    by = {}
    for s in prof:
        leaf = s["stack"][0]
        for k in ("alpha", "beta", "gamma", "delta", "graph_k1", "graph_k2"):
            if leaf.startswith("[cuda kernel] " + k):
                d = by.setdefault(k, {"ns": 0, "launches": 0, "joined": 0, "graph_capture": 0})
                d["ns"] += s["gpu_ns"]
                d["launches"] += s["launches"]
                st = s["stack"]
                if "main" in st and "[no launch stack]" not in st and "[unsampled launch]" not in st:
                    d["joined"] += s["launches"]
                if "[cuda graph launch]" in st:
                    i = st.index("[cuda graph launch]")
                    if any("capture_graph" in f for f in st[1:i]):
                        d["graph_capture"] += s["launches"]
    res["profile"] = by
    n = ev["n"]
    # Every kernel ran n timed + 1 warm-up times; compare per-launch means.
    ev_ms = {"alpha": ev["alpha_ms"], "beta": ev["beta_ms"], "gamma": ev["gamma_ms"],
             "delta": ev["delta_ms"]}
    ev_total = sum(ev_ms.values())
    prof_total = sum(by.get(k, {}).get("ns", 0) for k in ev_ms) / 1e6
    split = {}
    for k, ms in ev_ms.items():
        want = ms / ev_total
        got = by.get(k, {}).get("ns", 0) / 1e6 / prof_total if prof_total else 0
        within = want > 0 and abs(got - want) / want <= 0.10
        split[k] = {"event_share": round(want, 4), "profile_share": round(got, 4),
                    "within_10pct": within}
        ok &= within
    g = by.get("graph_k1", {}).get("ns", 0) + by.get("graph_k2", {}).get("ns", 0)
    gl = by.get("graph_k1", {}).get("launches", 0)
    graph_ms_per_replay = g / 1e6 / gl if gl else 0
    split["graph"] = {"event_ms_per_replay": round(ev["graph_ms"] / n, 4),
                      "profile_ms_per_replay": round(graph_ms_per_replay, 4),
                      "within_10pct": gl > 0 and abs(graph_ms_per_replay - ev["graph_ms"] / n)
                      <= 0.10 * ev["graph_ms"] / n}
    ok &= split["graph"]["within_10pct"]
    res["checks"]["split"] = split
    launches = sum(d["launches"] for d in by.values())
    joined = sum(d["joined"] for d in by.values())
    frac = joined / launches if launches else 0
    res["checks"]["joined_to_main"] = {"launches": launches, "joined": joined,
                                       "fraction": round(frac, 4), "pass": frac >= 0.99}
    ok &= frac >= 0.99
    gc = by.get("graph_k1", {}).get("graph_capture", 0)
    res["checks"]["graph_capture_stack"] = {"graph_k1_launches": gl, "with_capture_stack": gc,
                                            "pass": gl > 0 and gc == gl}

    lb = {}
    for mode in ("without", "with"):
        runs = []
        p = os.path.join(work, "launchbound_%s.jsonl" % mode)
        if os.path.exists(p):
            runs = [json.loads(l)["ns_per_launch"] for l in open(p) if l.strip()]
        lb[mode] = {"runs_ns_per_launch": runs,
                    "median_ns_per_launch": statistics.median(runs) if runs else None}
    if lb["with"]["median_ns_per_launch"] and lb["without"]["median_ns_per_launch"]:
        cost = lb["with"]["median_ns_per_launch"] - lb["without"]["median_ns_per_launch"]
        lb["cost_ns_per_launch"] = round(cost, 1)
        lb["target_ns"] = 5000
        lb["pass"] = cost <= 5000
        ok &= cost <= 5000
    res["launchbound"] = lb

    tp = os.path.join(work, "torch_profile.jsonl")
    if os.path.exists(tp):
        tprof, tctr = samples(tp)
        kl = sum(s["launches"] for s in tprof if s["op"] == 1)
        kj = sum(s["launches"] for s in tprof if s["op"] == 1 and "main" in " ".join(s["stack"])
                 and "[no launch stack]" not in s["stack"] and "[unsampled launch]" not in s["stack"])
        py = sum(s["launches"] for s in tprof if any(f.startswith("py::") for f in s["stack"]))
        tev = json.load(open(os.path.join(work, "torch_events.json")))
        gpu_ms = sum(s["gpu_ns"] for s in tprof if s["op"] == 1) / 1e6
        res["torch"] = {"event_loop_ms": tev["loop_ms"], "profile_kernel_ms": round(gpu_ms, 3),
                        "kernel_launches": kl, "joined_to_main": kj,
                        "with_python_frames": py, "counters": tctr}
        ok &= train_bench(work, res)
    else:
        res["notes"].append("torch run skipped (no PyTorch with CUDA)")
    res["pass"] = bool(ok)
    json.dump(res, open(out_path, "w"), indent=1)
    print(json.dumps(res, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
