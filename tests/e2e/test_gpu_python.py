"""GPU launch stacks with Python frames (issue 14), end to end without a GPU: gpu_train.py runs
under every CPython 3.10+ on the machine and launches "kernels" through libember_cupti.so's
launch path (native walk + in-process Python walk with the GIL released, join, hand-off with
protocol version 2); the agent resolves the code objects in each process as it does for CPU
samples, and the receiver gets gpu profiles whose kernel leaves sit over
Linear.forward;Model.forward;Trainer.step;train;<module> (or the threading frames of a worker
thread), with the fixture's file and the lines of each call, native frames (ctypes, libffi)
between the launch and Linear.forward, and every kernel's GPU time and launches."""
import os
import subprocess
import sys
import tempfile
import time

from agenttest import FIXTURES, Agent, Checker, Receiver, require_root_bpf, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import pyfixture as pf  # noqa: E402

STEPS = 20
SCRIPT = os.path.join(FIXTURES, "gpu_train.py")
HARNESS = os.path.join(FIXTURES, "libpycap_harness.so")
require_root_bpf()
c = Checker("gpu_python")


def marker_lines():
    out = {}
    with open(SCRIPT) as f:
        for no, line in enumerate(f, 1):
            if "# " in line and line.rsplit("# ", 1)[1].strip().isupper():
                out[line.rsplit("# ", 1)[1].strip()] = no
    return out


LINES = marker_lines()
MAIN = [("Linear.forward", "LAUNCH_GEMM"), ("Model.forward", None), ("Trainer.step", "CALL_FORWARD")]
with tempfile.TemporaryDirectory() as tmp:
    sock = os.path.join(tmp, "gpu.sock")
    rcv = Receiver(tmp)
    agent = Agent(["--server", rcv.url, "--interval", "2", "--profiles", "gpu",
                   "--gpu-socket", sock])
    c.check(wait_for(lambda: os.path.exists(sock), 10), "the agent listens on --gpu-socket")
    runs = []
    for label, path, version in pf.interpreters():
        if not version:
            continue
        # the kernel names carry the interpreter, so each one's samples are told apart
        tag = label.replace("-", "_").replace(".", "_")
        src = open(SCRIPT).read().replace('b"gemm"', f'b"gemm_{tag}"').replace('b"adam"',
                                                                              f'b"adam_{tag}"')
        script = os.path.join(tmp, f"gpu_train_{tag}.py")
        with open(script, "w") as f:
            f.write(src)
        p = subprocess.Popen([path, script, HARNESS, sock, str(STEPS)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runs.append((label, version, tag, script, p))
    for label, version, tag, script, p in runs:
        line = p.stdout.readline().strip()
        c.check(line == "flushed", f"{label}: the training loop launched and flushed "
                f"({line or p.stderr.read()[-400:]})")
    gpu = lambda: [s for s in rcv.series() if s["labels"].get("__name__") == "gpu"]
    kernels = lambda: {st["stack"][0] for s in gpu() for st in s["profile"]["samples"]}
    wait_for(lambda: all(f"[cuda kernel] adam_{r[2]}" in kernels() for r in runs), 15)
    for *_, p in runs:
        p.stdin.close()
        p.wait(timeout=10)
    agent.stop()
    rcv.stop()
    samples = [st for s in gpu() for st in s["profile"]["samples"]]
    c.check(len(runs) >= 5, f"five interpreters ran ({[r[0] for r in runs]})")
    for label, version, tag, script, p in runs:
        name = lambda q: pf.name_in(q, version)
        for kern, per_step, ns in (("gemm", 2, 3000000), ("adam", 1, 1000000)):
            mine = [st for st in samples if st["stack"][0] == f"[cuda kernel] {kern}_{tag}"]
            total = [sum(st["values"][i] for st in mine) for i in (0, 1)]
            c.check(total == [STEPS * per_step * ns, STEPS * per_step],
                    f"{label} {kern}: GPU time and launches {total}")
            good = 0
            for st in mine:
                fr = pf.frames(st)
                py = [(i, f) for i, f in enumerate(fr) if (f.get("file") or "").endswith(".py")]
                names = [f["name"] for _, f in py]
                if kern == "gemm":
                    want = [name("Linear.forward"), name("Model.forward"), name("Trainer.step")]
                    lines = [LINES["LAUNCH_GEMM"], None, LINES["CALL_FORWARD"]]
                else:
                    want = [name("Optimizer.step"), name("Trainer.step")]
                    lines = [LINES["LAUNCH_ADAM"], LINES["CALL_OPT"]]
                in_main = names == want + [name("train"), "<module>"]
                if in_main:
                    lines += [LINES["CALL_STEP"], LINES["CALL_TRAIN"]]
                in_worker = names == want + [name(q) for q in pf.THREADING]
                ok = ((in_main or in_worker) and
                      all(f["file"] == script for _, f in py[:len(lines)]) and
                      all(l is None or f["line"] == l for (_, f), l in zip(py, lines)) and
                      py[0][0] > 1 and not any(f.get("file") for f in fr[1:py[0][0]]))
                if ok:
                    good += st["values"][0]
                else:
                    print(f"     {label} {kern}: unexpected stack "
                          f"{[(f['name'], f.get('line')) for f in fr]}")
            c.check(total[0] and good / total[0] >= 0.99,
                    f"{label} {kern}: {good / max(total[0], 1):.1%} of the GPU time under its "
                    f"Python callers, at their lines, native frames between the launch and Python")
c.done()
