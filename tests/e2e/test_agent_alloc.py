"""The agent's memory family: with --service, uprobe mode on the selected service; without
--service, preload mode for the processes that preload libember_alloc.so. The receiver gets
__name__=memory, __delta__=false and the four memory types, next to process_cpu."""
import json
import os
import subprocess
import tempfile
import time

from agenttest import BUILD, FIXTURES, Agent, Checker, Receiver, require_root_bpf, wait_for

require_root_bpf()
c = Checker("agent_alloc")
FIX = os.path.join(FIXTURES, "alloc_sites")
IDS = {"memory:alloc_objects:count:space:bytes", "memory:alloc_space:bytes:space:bytes",
       "memory:inuse_objects:count:space:bytes", "memory:inuse_space:bytes:space:bytes"}


def memory_series(rcv, service):
    return [s for s in rcv.series() if s["labels"].get("__name__") == "memory"
            and s["labels"].get("service_name") == service]


def check(label, series):
    c.check(len(series) >= 1, f"{label}: memory profiles arrived ({len(series)})")
    if not series:
        return
    s = series[0]
    p = s["profile"]
    ids = {f"memory:{t}:{u}:{p['period_type'][0]}:{p['period_type'][1]}" for t, u in p["sample_types"]}
    c.check(ids == IDS, f"{label}: profile types {sorted(ids)}")
    c.check(s["labels"].get("__delta__") == "false", f"{label}: __delta__=false ({s['labels']})")
    names = {fn for x in series for smp in x["profile"]["samples"] for fn in smp["stack"]}
    c.check({"site_alpha", "site_beta"} <= {n.split(".")[0] for n in names},
            f"{label}: the allocating sites are named")


with tempfile.TemporaryDirectory() as tmp:
    rcv = Receiver(tmp)
    agent = Agent(["--server", rcv.url, "--interval", "2", "--profiles", "cpu,alloc",
                   "--service", "sites=comm:alloc_sites"])
    time.sleep(1.5)
    subprocess.run([FIX, "leak", "512"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: memory_series(rcv, "sites"), 10)
    time.sleep(2.5)
    agent.stop()
    check("uprobe mode (--service)", memory_series(rcv, "sites"))
    c.check(any(s["labels"].get("__name__") == "process_cpu" and s["labels"].get("service_name") == "sites"
                for s in rcv.series()), "uprobe mode: the same service's CPU profile arrived too")
    rcv.stop()

    rcv = Receiver(tmp)
    agent = Agent(["--server", rcv.url, "--interval", "2", "--profiles", "cpu,alloc"])
    time.sleep(1.5)
    env = dict(os.environ, LD_PRELOAD=os.path.join(BUILD, "libember_alloc.so"))
    # ~50 ms from exec to exit: the probes must be armed before the agent hears of it.
    out = subprocess.run([FIX, "leak", "512"], stdout=subprocess.PIPE, text=True, env=env, check=True).stdout
    truth = json.loads(out)
    wait_for(lambda: memory_series(rcv, "alloc_sites"), 10)
    time.sleep(2.5)
    agent.stop()
    series = memory_series(rcv, "alloc_sites")
    check("preload mode (no --service)", series)
    total = sum(smp["values"][[t for t, _ in x["profile"]["sample_types"]].index("alloc_space")]
                for x in series for smp in x["profile"]["samples"])
    real = truth["site_alpha"] + truth["site_beta"] + truth["site_leak"]
    c.check(abs(total / real - 1) <= 0.10,
            f"preload mode: a short-lived process's allocations all counted: alloc_space {total} "
            f"vs {real} allocated (within 10%)")
    rcv.stop()
c.done()
