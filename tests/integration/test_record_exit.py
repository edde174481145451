"""Processes that exit during the recording are still symbolized: one started by ember that
exits before the recording ends, and one picked up by a comm: selector after ember started."""
import os
import subprocess
import tempfile
import time

from embertest import EMBER, FIXTURES, Checker, decode, require_root_bpf, run_ember

require_root_bpf()
c = Checker("record_exit")
with tempfile.TemporaryDirectory() as d:
    # 1. --pid of a process that exits after 1.5 s: ember stops on its exit and still names it.
    proc = subprocess.Popen([os.path.join(FIXTURES, "exit_early"), "1.5"])
    out = os.path.join(d, "pid.pb.gz")
    run_ember(["record", "--quiet", "--duration", "20", "-o", out, "--pid", str(proc.pid)])
    proc.wait()
    p = decode(out)
    tot = sum(s["values"][0] for s in p["samples"])
    named = sum(s["values"][0] for s in p["samples"] if "early_spin" in s["stack"] and "main" in s["stack"])
    c.check(tot > 0 and named >= 0.9 * tot,
            f"--pid target that exited: {named / max(tot, 1):.1%} of samples in early_spin under main")

    # 2. comm: selector, process starts after ember and exits before the end.
    out2 = os.path.join(d, "comm.pb.gz")
    rec = subprocess.Popen([EMBER, "record", "--quiet", "--duration", "4", "-o", out2,
                            "--service", "early=comm:exit_early"], stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    subprocess.run([os.path.join(FIXTURES, "exit_early"), "1.0"], check=True)
    _, err = rec.communicate(timeout=30)
    c.check(rec.returncode == 0, f"record with a comm: selector exits 0 ({err.strip()})")
    p = decode(out2)
    tot = sum(s["values"][0] for s in p["samples"])
    named = sum(s["values"][0] for s in p["samples"] if "early_spin" in s["stack"] and "main" in s["stack"])
    c.check(tot > 0 and named >= 0.9 * tot,
            f"process started after ember, exited before the end: {named / max(tot, 1):.1%} in early_spin under main")
c.done()
