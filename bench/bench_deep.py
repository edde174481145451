#!/usr/bin/env python3
"""bench_deep: complete stacks of a deep real program (issue 16). clang++ -O2 (libLLVM, no frame
pointers) compiles a generated template-heavy file under `ember record --pid`, once per
--stack-size setting: 0 (the default: each sample copies what its thread's stack holds, up to
64 KiB), 16384 (the old default) and 65536 (pinned). For each: the share of samples whose
stack reaches main, ember's peak RSS (VmHWM) and its CPU time. The peer, in the same run:
`perf record --call-graph dwarf,65528` on the same compile, its share reaching main.

Usage: bench_deep.py [BUILD_DIR] [OUT.json]  (root)"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "bench", "results", "deep.json")
EMBER = os.path.join(BUILD, "ember")
PPROFDUMP = os.path.join(BUILD, "tests", "tools", "pprofdump")


def source(path, n=100):
    """Deeply nested template instantiations and many std:: containers: clang recurses far."""
    with open(path, "w") as f:
        f.write("#include <map>\n#include <string>\n#include <vector>\n#include <functional>\n"
                "#include <algorithm>\n#include <memory>\n#include <tuple>\n")
        f.write("template <int N> struct Deep { using T = std::tuple<typename Deep<N - 1>::T, "
                "std::map<int, std::vector<std::string>>>; static int f(int x) "
                "{ return Deep<N - 1>::f(x) + N; } };\n"
                "template <> struct Deep<0> { using T = int; static int f(int x) { return x; } };\n")
        for i in range(n):
            f.write(f"int fn{i}(int x) {{ std::map<int, std::string> m; "
                    f"std::vector<std::function<int(int)>> v; for (int k = 0; k < x; k++) "
                    f"{{ m[k] = std::to_string(k * {i}); v.push_back([k](int y) "
                    f"{{ return y + k; }}); }} std::sort(v.begin(), v.end(), [](auto &a, auto &b) "
                    f"{{ return a(1) < b(1); }}); return Deep<{40 + i % 60}>::f(x) + (int)m.size(); }}\n")
        f.write("int main() { return fn0(1); }\n")


def compile_cmd(src, obj):
    return ["clang++", "-O2", "-std=c++17", "-c", src, "-o", obj]


def reach_main(pb):
    out = subprocess.run([PPROFDUMP, pb], capture_output=True, text=True, check=True).stdout
    p = json.loads(out)
    tot = reached = 0
    for s in p["samples"]:
        v = s["values"][0]
        st = s["stack"]
        if not any(f.startswith(("clang", "llvm", "_ZN")) or "::" in f for f in st):
            continue  # kernel-only or start-up samples
        tot += v
        reached += v if "main" in st else 0
    return reached / tot if tot else 0.0


def hwm_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_ember(src, obj, tmp, stack_size):
    pb = os.path.join(tmp, f"ember-{stack_size}.pb.gz")
    comp = subprocess.Popen(["sh", "-c", 'kill -STOP $$; exec "$@"', "sh", *compile_cmd(src, obj)])
    time.sleep(0.2)
    em = subprocess.Popen([EMBER, "record", "--quiet", "--pid", str(comp.pid), "--stack-size",
                           str(stack_size), "-o", pb])
    time.sleep(1.5)
    os.kill(comp.pid, 18)  # SIGCONT: the compile starts once ember samples
    peak, t0 = 0, time.time()
    while em.poll() is None:
        peak = max(peak, hwm_kb(em.pid))
        time.sleep(0.1)
        if comp.poll() is not None and time.time() - t0 > 600:
            em.terminate()
    comp.wait()
    return {"stack_size": stack_size, "reach_main": round(reach_main(pb), 4), "peak_rss_mb": round(peak / 1024, 1)}


def run_perf(src, obj, tmp):
    data = os.path.join(tmp, "perf.data")
    subprocess.run(["perf", "record", "-q", "-F", "97", "--call-graph", "dwarf,65528", "-o", data,
                    "--", *compile_cmd(src, obj)], check=True, capture_output=True)
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"], capture_output=True,
                         text=True).stdout
    tot = reached = 0
    for block in out.split("\n\n"):
        # "    <ip> <symbol>" lines, one callchain per block
        syms = [l.split(None, 1)[1].strip() for l in block.splitlines() if len(l.split(None, 1)) == 2]
        if not syms or not any("clang" in s or "llvm" in s or "::" in s for s in syms):
            continue
        tot += 1
        reached += any(s == "main" for s in syms)
    return {"reach_main": round(reached / tot, 4) if tot else 0.0}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        src, obj = os.path.join(tmp, "deep.cpp"), os.path.join(tmp, "deep.o")
        source(src)
        t0 = time.time()
        subprocess.run(compile_cmd(src, obj), check=True)
        res = {"compile_s": round(time.time() - t0, 1), "ember": [], "host_cpus": os.cpu_count()}
        for ss in (0, 16384, 65536):
            res["ember"].append(run_ember(src, obj, tmp, ss))
            print(json.dumps(res["ember"][-1]), flush=True)
        res["perf_dwarf_65528"] = run_perf(src, obj, tmp)
        print(json.dumps(res["perf_dwarf_65528"]), flush=True)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
