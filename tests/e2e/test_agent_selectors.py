"""Selectors and process lifecycle: a cgroup v2 group joined after the agent started, an exe
glob, a comm selector for a process started later (picked up from its exec), each service in
its own series with only its own functions; without --service every process is named after
its executable; a reused pid never carries samples or names across processes."""
import os
import shutil
import subprocess
import tempfile
import time

from agenttest import (FIXTURES, Agent, Checker, Receiver, require_root_bpf, skip, wait_for)

require_root_bpf()
# The cgroup v2 hierarchy: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems.
CG2 = next((line.split()[1] for line in open("/proc/mounts") if line.split()[2] == "cgroup2"), None)
if not CG2:
    skip("no cgroup v2 hierarchy is mounted")
c = Checker("agent_selectors")


def functions(series):
    names = set()
    for s in series:
        for smp in s["profile"]["samples"]:
            names.update(smp["stack"])
    return names


def by_service(series):
    out = {}
    for s in series:
        out.setdefault(s["labels"]["service_name"], []).append(s)
    return out


with tempfile.TemporaryDirectory() as tmp:
    cg = os.path.join(CG2, f"ember-e2e-{os.getpid()}")
    os.mkdir(cg)
    procs = []
    try:
        rcv = Receiver(tmp)
        glob_proc = subprocess.Popen([os.path.join(FIXTURES, "cpu_split_fp"), "30"])
        procs.append(glob_proc)
        agent = Agent(["--server", rcv.url, "--interval", "2",
                       "--service", f"cg=cgroup:/{os.path.basename(cg)}",
                       "--service", "glob=exe:*/fixtures/cpu_split_f?",
                       "--service", "late=comm:syscall_heavy"])
        time.sleep(2)
        moved = subprocess.Popen([os.path.join(FIXTURES, "exit_early"), "20"])
        procs.append(moved)
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(moved.pid))
        late = subprocess.Popen([os.path.join(FIXTURES, "syscall_heavy"), "20"])
        procs.append(late)
        ok = wait_for(lambda: {"cg", "glob", "late"} <= set(by_service(rcv.series())), 30)
        time.sleep(4)
        agent.stop()
        svc = by_service(rcv.series())
        rcv.stop()
        c.check(ok, f"three services in separate series: {sorted(svc)}")
        fc, fg, fl = (functions(svc.get(n, [])) for n in ("cg", "glob", "late"))
        c.check("early_spin" in fc and not fc & {"hot_alpha", "do_syscalls"},
                "cgroup: a process moved into the group is profiled as cg, and only it")
        c.check("hot_alpha" in fg and not fg & {"early_spin", "do_syscalls"},
                "exe glob: cpu_split_fp profiled as glob, and only it")
        c.check("do_syscalls" in fl and not fl & {"early_spin", "hot_alpha"},
                "comm: a process started after the agent is picked up from its exec")
        for p in procs:
            p.kill()
            p.wait()
        procs = []

        # Every process, named after its executable.
        rcv = Receiver(tmp)
        proc = subprocess.Popen([os.path.join(FIXTURES, "cpu_split_fp"), "20"])
        procs.append(proc)
        agent = Agent(["--server", rcv.url, "--interval", "2"])
        ok = wait_for(lambda: "cpu_split_fp" in by_service(rcv.series()), 20)
        agent.stop()
        svc = by_service(rcv.series())
        rcv.stop()
        c.check(ok and "hot_alpha" in functions(svc.get("cpu_split_fp", [])),
                f"no --service: cpu_split_fp is its own service ({len(svc)} services)")
        c.check(all("hot_alpha" not in functions(v) for k, v in svc.items() if k != "cpu_split_fp"),
                "no other service holds cpu_split_fp's functions")
        proc.kill()
        proc.wait()
        procs = []

        # PID reuse: A (selected) exits, B takes its pid right away.
        rcv = Receiver(tmp)
        exe_b = os.path.join(tmp, "reuser")
        shutil.copy(os.path.join(FIXTURES, "cpu_split_fp"), exe_b)
        agent = Agent(["--server", rcv.url, "--interval", "2",
                       "--service", "early=comm:exit_early", "--service", "reuser=comm:reuser"])
        time.sleep(1.5)
        reused = False
        for attempt in range(20):
            a = subprocess.Popen([os.path.join(FIXTURES, "exit_early"), "1.5"])
            a.wait()
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(a.pid - 1))
            b = subprocess.Popen([exe_b, "2"])
            reused = b.pid == a.pid
            b.wait()
            if reused:
                break
        time.sleep(3)
        agent.stop()
        svc = by_service(rcv.series())
        rcv.stop()
        c.check(reused, f"the pid was reused (after {attempt + 1} attempts)")
        fe, fr = functions(svc.get("early", [])), functions(svc.get("reuser", []))
        c.check("early_spin" in fe and not fe & {"hot_alpha", "hot_beta", "hot_gamma", "run_round"},
                "pid reuse: the exited process's service holds none of the newcomer's frames")
        c.check("hot_alpha" in fr and "early_spin" not in fr,
                f"pid reuse: the newcomer's samples are its own ({len(svc.get('reuser', []))} profiles; "
                f"hot_alpha {'in' if 'hot_alpha' in fr else 'missing'}, early_spin "
                f"{'present' if 'early_spin' in fr else 'absent'}; {sorted(fr)[:12]})")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        os.rmdir(cg)
c.done()
