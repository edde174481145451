"""ember agent → receiver with a Python service: pysplit.py under pyenv's CPython 3.12 (Debian's
python3.11 without it), selected by its interpreter's executable and started after the agent.
The receiver gets process_cpu profiles labelled service_name=pyweb, and across the intervals
plain_loop, Tokenizer.step and gen_keys are Python frames under <module>, with the fixture's
file, def lines and body lines, its callers in order, and the fixture's split ±5 points."""
import os
import socket
import subprocess
import sys
import tempfile
import time

from agenttest import Agent, Checker, Receiver, require_root_bpf, truth_split

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import embertest as et  # noqa: E402
import pyfixture as pf  # noqa: E402

require_root_bpf()
c = Checker("agent_python")
host = socket.gethostname()
pick = pf.pyenv_python(12)
if pick:
    label, py, version = pick
    exe = os.path.realpath(py)
    selector = f"exe:{exe}"
else:  # Debian's python3.11 also runs the receiver: select by pid
    label, py, version = "debian", pf.DEBIAN_PYTHON, pf.probe(pf.DEBIAN_PYTHON)
    selector = None
c.check(version is not None, f"an interpreter to run the fixture: {label} {py}")
if version is None:
    c.done()
if not label.startswith("pyenv"):
    label += f"-{pf.vstr(version)}"
layout = pf.Layout(pf.PYSPLIT)

with tempfile.TemporaryDirectory() as tmp:
    rcv = Receiver(tmp)
    fixture = agent = None
    try:
        if selector:
            agent = Agent(["--server", rcv.url, "--interval", "2", "--sample-rate",
                           pf.SAMPLE_RATE, "--service", f"pyweb={selector}", "--label", "env=e2e"])
            fixture = subprocess.Popen([py, pf.PYSPLIT, "6"], stdout=subprocess.PIPE, text=True)
        else:
            fixture = subprocess.Popen([py, pf.PYSPLIT, "--ready", "6"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
            fixture.stdout.readline()
            agent = Agent(["--server", rcv.url, "--interval", "2", "--sample-rate",
                           pf.SAMPLE_RATE, "--service", f"pyweb=pid:{fixture.pid}",
                           "--label", "env=e2e"])
            fixture.stdin.write("go\n")
            fixture.stdin.flush()
        out, _ = fixture.communicate(timeout=60)
        time.sleep(2.5)  # the interval that holds the fixture's last samples
        rc, took = agent.stop()
    finally:
        for p in (fixture, agent and agent.proc):
            if p and p.poll() is None:
                p.kill()
                p.wait()
    series = [s for s in rcv.series() if s["labels"].get("__name__") == "process_cpu"]
    rcv.stop()
    print(f"     {label} {py}, selected by {selector or 'pid'}")
    c.check(rc == 0, f"SIGTERM → agent exit {rc} in {took:.1f} s")
    c.check(len(series) >= 3,
            f"process_cpu profiles arrived over the fixture's 6 s ({len(series)})")
    if not series:
        print(agent.output())
        c.done()
    labels = series[0]["labels"]
    c.check(labels.get("service_name") == "pyweb", f"service_name {labels.get('service_name')}")
    c.check(labels.get("hostname") == host, f"hostname {labels.get('hostname')} (want {host})")
    c.check(labels.get("env") == "e2e", f"--label env=e2e: {labels.get('env')}")
    c.check(all(s["labels"].get("service_name") == "pyweb" for s in series),
            "every series is pyweb's")
    p0 = series[0]["profile"]
    ptype = f"{labels.get('__name__')}:{p0['sample_types'][0][0]}:{p0['sample_types'][0][1]}:" \
            f"{p0['period_type'][0]}:{p0['period_type'][1]}"
    c.check(ptype == "process_cpu:cpu:nanoseconds:cpu:nanoseconds", f"profile type {ptype}")

    j = pf.Judge(c, label, pf.merge([s["profile"] for s in series]), version, layout)
    j.frames_printed()
    shares = j.shares()
    et.check_split(c, label, shares, truth_split(out, pf.SPLIT), pf.SPLIT, pf.DESIGN)
    for q in pf.SPLIT:
        j.check_function(q)
    j.check_no_markers()
c.done()
