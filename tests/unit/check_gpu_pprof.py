#!/usr/bin/env python3
"""check_gpu_pprof: reads the gpu profile that unit_gpu_receiver wrote, with pprofdump (google's
pprof decoder, not Ember's), and asserts what a user would see in Pyroscope.

Usage: check_gpu_pprof.py PPROFDUMP OUTDIR
"""
import json
import subprocess
import sys

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL: " + what, file=sys.stderr)


def main():
    pprofdump, outdir = sys.argv[1], sys.argv[2]
    r = subprocess.run([pprofdump, outdir + "/gpu.pb.gz"], capture_output=True, text=True)
    check(r.returncode == 0, "pprofdump accepts the profile: " + r.stderr.strip())
    if r.returncode:
        return 1
    p = json.loads(r.stdout)
    check(p["sample_types"] == [["gpu_time", "nanoseconds"], ["launches", "count"]],
          "sample types gpu_time/nanoseconds, launches/count: %r" % p["sample_types"])
    check(p["period_type"] == ["gpu_time", "nanoseconds"] and p["period"] == 1,
          "period type gpu_time/nanoseconds, period 1")
    by_leaf = {}
    for s in p["samples"]:
        by_leaf.setdefault(s["stack"][0], []).append(s)
    kern = by_leaf.get("[cuda kernel] square(float*, int)", [])
    check(len(kern) == 1, "one demangled square() kernel sample (merged across batches)")
    if kern:
        s = kern[0]
        check(s["values"] == [10000, 5], "square(): 10000 ns, 5 launches: %r" % s["values"])
        st = s["stack"]
        check(any("gpu_launch_site" in f for f in st[1:3]),
              "the launch site is right under the kernel: %r" % st[:4])
        check("main" in st, "the launch stack reaches main")
        check(st.index("main") > 1, "main is below the launch site")
    memcpy = by_leaf.get("[cuda memcpy HtoD]", [])
    check(len(memcpy) == 1 and memcpy[0]["values"] == [2000, 1], "memcpy HtoD 2000 ns")
    memset = by_leaf.get("[cuda memset]", [])
    check(len(memset) == 1 and memset[0]["values"] == [500, 1], "memset 500 ns")
    nost = by_leaf.get("[cuda kernel] plain_kernel", [])
    check(len(nost) == 1 and nost[0]["stack"] == ["[cuda kernel] plain_kernel",
                                                  "[no launch stack]"],
          "missing stack shows as [no launch stack]: %r" % (nost[0]["stack"] if nost else None))
    graph = by_leaf.get("[cuda kernel] graph()", [])
    check(len(graph) == 1, "graph node kernel present")
    if graph:
        st = graph[0]["stack"]
        check("[cuda graph launch]" in st, "graph kernels carry [cuda graph launch]")
        i = st.index("[cuda graph launch]")
        check(any("graph_capture_site" in f for f in st[1:i]), "capture stack above the marker")
        check(any("gpu_launch_site" in f for f in st[i + 1:]), "launch stack below the marker")
        check(graph[0]["values"] == [1500, 5], "graph kernel values")
    total = sum(s["values"][0] for s in p["samples"])
    check(total == 14100, "total gpu_time 14100 ns: %d" % total)
    if FAILURES:
        print("%d check(s) failed" % len(FAILURES), file=sys.stderr)
        return 1
    print("check_gpu_pprof: all checks passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
