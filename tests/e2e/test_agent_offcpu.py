"""Off-CPU through the agent (issue 16): `ember agent --profiles cpu,offcpu` on offcpu_mix sends
off_cpu profiles to the receiver through both protocols under the selected service, whose
stacks hold the fixture's waits under their callers, beside the process_cpu profiles of the
same service; its self-metrics count the blocks. Through push the type IDs are
off_cpu:off_cpu:nanoseconds:off_cpu:nanoseconds and off_cpu:switches:count:off_cpu:nanoseconds.
Through /ingest the server names a profile from its sample types (metricName: a type
containing "cpu" is process_cpu, PYROSCOPE.md), so the same profile lands as
process_cpu:off_cpu:nanoseconds:off_cpu:nanoseconds: checked as such (the README says so)."""
import os
import subprocess
import time
import tempfile
import urllib.request

from agenttest import FIXTURES, Agent, Checker, Receiver, require_root_bpf, wait_for

require_root_bpf()
c = Checker("agent_offcpu")
with tempfile.TemporaryDirectory() as tmp:
    for proto in ("push", "ingest"):
        rcv = Receiver(tmp)
        agent = Agent(["--server", rcv.url, "--protocol", proto, "--interval", "2",
                       "--profiles", "cpu,offcpu", "--service", "mix=exe:*/offcpu_mix",
                       "--metrics-addr", "127.0.0.1:19466"])
        fx = subprocess.run([os.path.join(FIXTURES, "offcpu_mix"), "10"], capture_output=True,
                            text=True, timeout=60)
        name = "off_cpu" if proto == "push" else "process_cpu"
        off = lambda: [s for s in rcv.series() if s["labels"].get("__name__") == name and
                       s["profile"]["sample_types"][0] == ["off_cpu", "nanoseconds"]]
        wait_for(lambda: sum(len(s["profile"]["samples"]) for s in off()) > 0, 10)
        time.sleep(2.5)
        try:
            m = urllib.request.urlopen("http://127.0.0.1:19466/metrics", timeout=5).read().decode()
        except OSError:
            m = ""
        agent.stop()
        rcv.stop()
        series = off()
        c.check(fx.returncode == 0 and series, f"{proto}: off_cpu profiles arrived ({len(series)})")
        if not series:
            continue
        s0 = series[0]
        p0 = s0["profile"]
        ids = [f"{name}:{t}:{u}:{p0['period_type'][0]}:{p0['period_type'][1]}"
               for t, u in p0["sample_types"]]
        c.check(ids == [f"{name}:off_cpu:nanoseconds:off_cpu:nanoseconds",
                        f"{name}:switches:count:off_cpu:nanoseconds"], f"{proto}: profile types {ids}")
        c.check(all(s["labels"].get("service_name") == "mix" for s in series),
                f"{proto}: service_name mix")
        ns = {}
        for s in series:
            for smp in s["profile"]["samples"]:
                fn = next((f for f in smp["stack"] if f in ("sleep_phase", "pipe_phase", "mutex_phase")), None)
                if fn and "run_round" in smp["stack"]:
                    ns[fn] = ns.get(fn, 0) + smp["values"][0]
        c.check(len(ns) == 3 and ns["sleep_phase"] > ns["pipe_phase"] > ns["mutex_phase"] > 0,
                f"{proto}: the three waits under run_round, longest first: "
                f"{ {k: round(v / 1e6) for k, v in ns.items()} } ms")
        cpu = [s for s in rcv.series() if s["labels"].get("__name__") == "process_cpu"
               and s["labels"].get("service_name") == "mix"
               and s["profile"]["sample_types"][0] == ["cpu", "nanoseconds"]]
        c.check(cpu, f"{proto}: process_cpu of the same service beside it ({len(cpu)} series)")
        c.check('ember_offcpu_blocks_total{outcome="recorded"}' in m,
                f"{proto}: blocks counted in the self-metrics")
c.done()
