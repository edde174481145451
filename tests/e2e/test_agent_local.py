"""With no --server the agent writes DIR/<service>/cpu-<UTC time>.pb.gz each interval and
DIR/<service>/cpu.svg for the latest; the profiles decode and hold the service's functions."""
import glob
import os
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

from agenttest import FIXTURES, Agent, Checker, decode, require_root_bpf

require_root_bpf()
c = Checker("agent_local")
with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "profiles")
    proc = subprocess.Popen([os.path.join(FIXTURES, "cpu_split_fp"), "12"])
    agent = Agent(["--output", out, "--interval", "2", "--service", "web=comm:cpu_split_fp"])
    time.sleep(7)
    rc, took = agent.stop()
    proc.kill()
    proc.wait()
    files = sorted(glob.glob(os.path.join(out, "web", "cpu-*.pb.gz")))
    c.check(rc == 0, f"exit {rc}")
    c.check(len(files) >= 3, f"one profile per interval: {[os.path.basename(f) for f in files]}")
    c.check(all(os.path.basename(f)[4:19].endswith("Z") or "T" in os.path.basename(f) for f in files),
            "file names carry the UTC time")
    if files:
        p = decode(files[-2] if len(files) > 1 else files[-1])
        names = {fn for s in p["samples"] for fn in s["stack"]}
        c.check("hot_alpha" in names and "main" in names, "a profile decodes and holds hot_alpha under main")
    svg = os.path.join(out, "web", "cpu.svg")
    c.check(os.path.exists(svg) and "hot_alpha" in ET.tostring(ET.parse(svg).getroot(), encoding="unicode"),
            "the latest flame graph is web/cpu.svg")
c.done()
