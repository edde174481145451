"""What an unprivileged user can hand the pipeline itself, beside a root service (cpu_split_fp,
hot_alpha) that must keep getting correct, fresh profiles:
- a FIFO as the libember_alloc.so of its LD_PRELOAD (the agent, every process, --profiles
  alloc, reads /proc/PID/environ at exec and attaches to that file): never opened, the loop
  never blocks, SIGTERM still stops the agent within 10 s;
- the agent's own secret: EMBER_BASIC_AUTH_PASSWORD is not left in /proc/PID/environ;
- a process selected by pid that execs a setuid program is no longer profiled (counted);
- credentials inside a --server URL are never logged;
- a GPU client's samples never land in the process that took its pid after it exited."""
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

from agenttest import (FIXTURES, Agent, Checker, Receiver, free_port, require_root_bpf,
                       wait_for)

require_root_bpf()
c = Checker("hostile_agent")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SPIN = os.path.join(FIXTURES, "cpu_split_fp")


def functions(series, service):
    return {fn for s in series if s["labels"].get("service_name") == service
            and s["labels"].get("__name__") == "process_cpu"
            for smp in s["profile"]["samples"] for fn in smp["stack"]}


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text, name, labels=""):
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


with tempfile.TemporaryDirectory() as tmp:
    os.chmod(tmp, 0o755)
    evil = os.path.join(tmp, "evil")
    os.mkdir(evil)
    os.chown(evil, 65534, 65534)
    secret = f"s3cret-{os.getpid()}-{time.time_ns()}"
    victim = subprocess.Popen([SPIN, "30"], stdout=subprocess.DEVNULL)
    rcv = Receiver(tmp)
    port = free_port()
    env = dict(os.environ, EMBER_BASIC_AUTH_PASSWORD=secret)
    agent = Agent(["--server", rcv.url, "--interval", "2", "--profiles", "cpu,alloc",
                   "--basic-auth-user", "ember", "--metrics-addr", f"127.0.0.1:{port}"], env=env)

    with open(f"/proc/{agent.proc.pid}/environ", "rb") as f:
        environ = f.read()
    c.check(secret.encode() not in environ,
            "the basic-auth password is gone from the agent's /proc/PID/environ")

    # The FIFO, named as the preload library, in a directory the attacker owns. ld.so in the
    # attacker's own process blocks on it; that process is the attacker's problem.
    fifo = os.path.join(evil, "libember_alloc.so")
    subprocess.run(NOBODY + ["mkfifo", fifo], check=True)
    attackers = [subprocess.Popen(NOBODY + ["env", f"LD_PRELOAD={fifo}", "/bin/true"])
                 for _ in range(3)]
    t_attack = time.time()
    time.sleep(1)
    ok = wait_for(lambda: any(s["labels"].get("service_name") == "cpu_split_fp"
                              and s["profile"].get("time_nanos", 0) / 1e9 > t_attack
                              for s in rcv.series()), 10)
    c.check(ok and "hot_alpha" in functions(rcv.series(), "cpu_split_fp"),
            "a FIFO as LD_PRELOAD: the root service's profiles keep arriving, with hot_alpha")
    try:
        text = scrape(port)
        c.check(metric(text, "ember_loop_age_seconds") is not None
                and metric(text, "ember_loop_age_seconds") < 3,
                f"the loop keeps turning (ember_loop_age_seconds {metric(text, 'ember_loop_age_seconds')})")
    except OSError as e:
        c.check(False, f"/metrics answers: {e}")
    rc, took = agent.stop()
    c.check(rc == 0 and took < 10, f"SIGTERM: exit {rc} in {took:.1f} s (want 0 within 10 s)")
    for a in attackers:
        a.kill()
        a.wait()
    rcv.stop()

    # Credentials inside --server never reach the log (the server is down: retries are logged).
    pw = f"urlpass-{time.time_ns()}"
    agent = Agent(["--server", f"http://ember:{pw}@127.0.0.1:{free_port()}", "--interval", "1"])
    time.sleep(2.5)
    agent.stop()
    out = agent.output()
    c.check(pw not in out and "***@127.0.0.1" in out,
            f"the password inside --server is not logged ({out.splitlines()[:1]!r})")

    # A user's process selected by pid execs a setuid program: dropped, counted.
    suid = os.path.join(tmp, "suidspin")
    shutil.copy(SPIN, suid)
    os.chmod(suid, 0o4755)
    rcv = Receiver(tmp)
    user = subprocess.Popen(NOBODY + ["sh", "-c", f"sleep 3; exec {suid} 6"],
                            stdout=subprocess.DEVNULL)
    port = free_port()
    agent = Agent(["--server", rcv.url, "--interval", "2", "--service", f"user=pid:{user.pid}",
                   "--metrics-addr", f"127.0.0.1:{port}"])
    user.wait(timeout=30)
    time.sleep(2.5)
    text = scrape(port)
    dropped = metric(text, "ember_targets_dropped_total", '{reason="setuid_exec"}')
    agent.stop()
    got = functions(rcv.series(), "user")
    c.check(dropped == 1, f"setuid exec counted: ember_targets_dropped_total{{setuid_exec}} = {dropped}")
    c.check("hot_alpha" not in got, f"the setuid program's stacks are not in the user's service ({len(got)} functions)")
    rcv.stop()

    # A GPU client that exits: its pid taken by another (root) process before the interval
    # ends. Its samples go to its own service or are dropped (counted), never to the pid's
    # new holder.
    sock = os.path.join(tmp, "gpu.sock")
    reuser = os.path.join(tmp, "gpu_reuser")
    shutil.copy(SPIN, reuser)
    rcv = Receiver(tmp)
    port = free_port()
    agent = Agent(["--server", rcv.url, "--interval", "5", "--profiles", "cpu,gpu",
                   "--gpu-socket", sock, "--metrics-addr", f"127.0.0.1:{port}"])
    wait_for(lambda: os.path.exists(sock), 10)
    reused = False
    for attempt in range(20):
        client = subprocess.Popen([os.path.join(FIXTURES, "gpu_client"), sock, "3"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client.wait()
        pid = client.pid
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        b = subprocess.Popen([reuser, "3"], stdout=subprocess.DEVNULL)
        reused = b.pid == pid
        if reused:
            break
        b.kill()
        b.wait()
    c.check(reused, f"the GPU client's pid was taken by another process (after {attempt + 1} attempts)")
    time.sleep(6)
    text = scrape(port)
    agent.stop()
    if reused:
        b.wait()
    gpu_services = {s["labels"].get("service_name") for s in rcv.series()
                    if s["labels"].get("__name__") == "gpu"}
    stale = metric(text, "ember_gpu_dropped_total", '{reason="exited_process"}') or 0
    c.check("gpu_reuser" not in gpu_services and (stale > 0 or "gpu_client" in gpu_services),
            f"an exited client's GPU samples are not the new holder's: gpu services "
            f"{sorted(gpu_services)}, dropped as exited_process {stale}")
    rcv.stop()
    victim.kill()
    victim.wait()
c.done()
