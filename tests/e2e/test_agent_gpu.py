"""The agent's gpu family, fed by a client speaking libember_cupti.so's protocol (no GPU here):
the receiver gets gpu:gpu_time:nanoseconds:gpu_time:nanoseconds and gpu:launches:count:... for
the right service, with the leaf "[cuda kernel] square(float*, int)" over the launching stack
symbolized in the client process, and the GPU time and launches it reported."""
import os
import subprocess
import tempfile
import time

from agenttest import FIXTURES, Agent, Checker, Receiver, require_root_bpf, wait_for

require_root_bpf()
c = Checker("agent_gpu")
with tempfile.TemporaryDirectory() as tmp:
    sock = os.path.join(tmp, "gpu.sock")
    rcv = Receiver(tmp)
    agent = Agent(["--server", rcv.url, "--interval", "2", "--profiles", "cpu,gpu", "--gpu-socket", sock,
                   "--service", "trainer=comm:gpu_client"])
    c.check(wait_for(lambda: os.path.exists(sock), 10), "the agent listens on --gpu-socket")
    client = subprocess.run([os.path.join(FIXTURES, "gpu_client"), sock, "3"], capture_output=True, text=True)
    c.check(client.returncode == 0, f"the client sent its batch ({client.stderr.strip()})")
    gpu = lambda: [s for s in rcv.series() if s["labels"].get("__name__") == "gpu"]
    wait_for(lambda: gpu(), 10)
    time.sleep(0.5)
    agent.stop()
    rcv.stop()
    series = gpu()
    c.check(len(series) >= 1, f"gpu profiles arrived ({len(series)})")
    if series:
        s = series[0]
        p = s["profile"]
        ids = [f"gpu:{t}:{u}:{p['period_type'][0]}:{p['period_type'][1]}" for t, u in p["sample_types"]]
        c.check(ids == ["gpu:gpu_time:nanoseconds:gpu_time:nanoseconds", "gpu:launches:count:gpu_time:nanoseconds"],
                f"profile types {ids}")
        c.check(s["labels"].get("service_name") == "trainer", f"service {s['labels'].get('service_name')}")
        stacks = {tuple(x["stack"]): x["values"] for x in p["samples"]}
        kern = next((v for st, v in stacks.items() if st[:1] == ("[cuda kernel] square(float*, int)",)), None)
        copy = next((v for st, v in stacks.items() if st[:1] == ("[cuda memcpy HtoD]",)), None)
        kst = next((st for st in stacks if st[:1] == ("[cuda kernel] square(float*, int)",)), ())
        c.check(kst[1:4] == ("launch_square", "train_step", "main"),
                f"kernel leaf over its launch stack: {kst}")
        c.check(kern == [3000000, 30], f"kernel gpu_time and launches: {kern}")
        c.check(copy == [1000000, 10], f"memcpy gpu_time and launches: {copy}")
c.done()
