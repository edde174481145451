"""Churn: 200 short-lived processes per second for 30 s next to a selected service: the agent
stays up, its RSS stays under 64 MiB, and the service's profiles keep arriving."""
import os
import subprocess
import tempfile
import threading
import time

from agenttest import (FIXTURES, Agent, Checker, Receiver, require_root_bpf)

require_root_bpf()
c = Checker("agent_churn")
with tempfile.TemporaryDirectory() as tmp:
    rcv = Receiver(tmp)
    svc = subprocess.Popen([os.path.join(FIXTURES, "cpu_split_fp"), "45"])
    agent = Agent(["--server", rcv.url, "--interval", "2", "--service", "web=comm:cpu_split_fp",
                   "--service", "churn=comm:true"])
    time.sleep(2)
    stop = time.time() + 30
    spawned = [0]

    def spawner():
        # 100 per second per thread, paced.
        nxt = time.time()
        while time.time() < stop:
            subprocess.run(["/bin/true"])
            spawned[0] += 1
            nxt += 0.01
            d = nxt - time.time()
            if d > 0:
                time.sleep(d)

    threads = [threading.Thread(target=spawner) for _ in range(2)]
    for t in threads:
        t.start()
    peak = 0
    while any(t.is_alive() for t in threads):
        if agent.proc.poll() is None:
            peak = max(peak, agent.rss_kb())
        time.sleep(0.5)
    for t in threads:
        t.join()
    alive = agent.proc.poll() is None
    peak = max(peak, agent.rss_kb() if alive else 0)
    n_before = len([s for s in rcv.series() if s["labels"]["service_name"] == "web"])
    rc, _ = agent.stop()
    svc.kill()
    svc.wait()
    web = [s for s in rcv.series() if s["labels"]["service_name"] == "web"]
    rcv.stop()
    c.check(spawned[0] >= 4000, f"{spawned[0]} short-lived processes in 30 s (≥ 133/s)")
    c.check(alive and rc == 0, f"the agent stayed up and exited 0 (rc {rc})")
    c.check(0 < peak < 64 * 1024, f"agent peak RSS {peak / 1024:.1f} MiB (< 64)")
    c.check(n_before >= 13, f"web's profiles kept arriving: {n_before} intervals of 2 s over ~32 s")
c.done()
