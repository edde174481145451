"""ember agent → receiver over both protocols: the 60/30/10 fixture as a selected service;
over 3 intervals the receiver gets process_cpu profiles with the right labels and split, and
SIGTERM sends the last partial interval and exits 0 within 10 s."""
import os
import socket
import subprocess
import tempfile

from agenttest import (FIXTURES, Agent, Checker, Receiver, check_split, merged_shares,
                       require_root_bpf, stop_fixture, wait_for)

require_root_bpf()
c = Checker("agent_push")
host = socket.gethostname()
with tempfile.TemporaryDirectory() as tmp:
    for protocol in ("push", "ingest"):
        rcv = Receiver(tmp)
        fixture = subprocess.Popen([os.path.join(FIXTURES, "cpu_split_fp"), "30"], stdout=subprocess.PIPE, text=True)
        env = dict(os.environ, EMBER_TAG_TEAM="core")
        agent = Agent(["--server", rcv.url, "--protocol", protocol, "--interval", "2",
                       "--service", "web=comm:cpu_split_fp", "--label", "env=e2e"], env=env)
        got3 = wait_for(lambda: len(rcv.series()) >= 3, 30)
        rc, took = agent.stop()
        truth = stop_fixture(fixture)
        series = rcv.series()
        rcv.stop()
        c.check(got3, f"{protocol}: 3 intervals arrived ({len(series)})")
        c.check(rc == 0 and took <= 10, f"{protocol}: SIGTERM → exit {rc} in {took:.1f} s (want 0, ≤ 10 s)")
        if not series:
            print(agent.output())
            continue
        labels = series[0]["labels"]
        c.check(labels.get("__name__") == "process_cpu", f"{protocol}: __name__ {labels.get('__name__')}")
        c.check(labels.get("service_name") == "web", f"{protocol}: service_name {labels.get('service_name')}")
        c.check(labels.get("hostname") == host, f"{protocol}: hostname {labels.get('hostname')} (want {host})")
        c.check(labels.get("env") == "e2e", f"{protocol}: --label env=e2e: {labels.get('env')}")
        c.check(labels.get("team") == "core", f"{protocol}: EMBER_TAG_TEAM=core: {labels.get('team')}")
        p = series[0]["profile"]
        ptype = f"{labels.get('__name__')}:{p['sample_types'][0][0]}:{p['sample_types'][0][1]}:" \
                f"{p['period_type'][0]}:{p['period_type'][1]}"
        c.check(ptype == "process_cpu:cpu:nanoseconds:cpu:nanoseconds", f"{protocol}: profile type {ptype}")
        c.check(all(s["labels"].get("service_name") == "web" for s in series), f"{protocol}: every series is web's")
        times = [s["profile"]["time_nanos"] for s in series]
        c.check(times == sorted(times) and len(set(times)) == len(times), f"{protocol}: intervals in order, distinct times")
        check_split(c, protocol, merged_shares(series, ["hot_alpha", "hot_beta", "hot_gamma"]), truth)
c.done()
