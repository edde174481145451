"""Delivery under server trouble: the receiver is down for the first 3 intervals, then starts:
every interval arrives, in order, with its original time. A 400 is not retried; 429 and 503
are retried until accepted."""
import os
import subprocess
import tempfile
import time

from agenttest import (FIXTURES, Agent, Checker, Receiver, free_port, require_root_bpf, wait_for)

require_root_bpf()
c = Checker("agent_outage")
with tempfile.TemporaryDirectory() as tmp:
    fixture = subprocess.Popen([os.path.join(FIXTURES, "cpu_split_fp"), "120"])
    try:
        # 1. Outage: nothing listens for the first ~3 intervals.
        port = free_port()
        t0 = time.time_ns()
        agent = Agent(["--server", f"http://127.0.0.1:{port}", "--interval", "2",
                       "--service", "web=comm:cpu_split_fp"])
        time.sleep(7)
        rcv = Receiver(tmp, port=port)
        started = time.time_ns()
        ok = wait_for(lambda: len(rcv.series()) >= 5, 40)
        agent.stop()
        series = rcv.series()
        rcv.stop()
        times = [s["profile"]["time_nanos"] for s in series]
        c.check(ok, f"all intervals arrived after the outage ({len(series)})")
        c.check(len(times) >= 4 and sum(1 for t in times if t < started) >= 3,
                f"intervals from the outage kept their original time ({sum(1 for t in times if t < started)} before the receiver started)")
        c.check(times == sorted(times), "delivered oldest first")
        c.check(all(t >= t0 - 10**9 for t in times), "no time invented")

        # 2. 400: logged once, not retried.
        rcv = Receiver(tmp, args=["--fail-status", "400", "--fail-count", "1"])
        agent = Agent(["--server", rcv.url, "--interval", "2", "--service", "web=comm:cpu_split_fp"])
        wait_for(lambda: len(rcv.series()) >= 2, 20)
        agent.stop()
        reqs = rcv.request_log()
        rcv.stop()
        statuses = [r["status"] for r in reqs]
        c.check(statuses.count(400) == 1 and statuses[0] == 400, f"400: exactly one rejected request: {statuses}")
        c.check(len(reqs) == len(rcv.series()) + 1, f"400: no retry of the rejected profile: {len(reqs)} requests, {len(rcv.series())} accepted")

        # 3. 429 and 503: retried until accepted.
        for code in (429, 503):
            rcv = Receiver(tmp, args=["--fail-status", str(code), "--fail-count", "2"])
            agent = Agent(["--server", rcv.url, "--interval", "2", "--service", "web=comm:cpu_split_fp"])
            wait_for(lambda: len(rcv.series()) >= 2, 30)
            agent.stop()
            statuses = [r["status"] for r in rcv.request_log()]
            series = rcv.series()
            rcv.stop()
            first = series[0]["profile"]["time_nanos"] if series else None
            c.check(statuses[:3] == [code, code, 200], f"{code}: retried, then accepted: {statuses[:4]}")
            c.check(len(series) >= 2 and first <= series[1]["profile"]["time_nanos"],
                    f"{code}: the retried interval is delivered first")
    finally:
        fixture.kill()
        fixture.wait()
c.done()
