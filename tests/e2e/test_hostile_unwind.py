"""Hostile unwind inputs: an unprivileged user (uid 65534) runs, beside a root service
(cpu_split_fp), programs whose files attack the DWARF unwinder of an agent run with its default
options (--unwind auto: their executables have no frame pointers, so they are unwound from stack
snapshots with libunwind), but for --service selecting the root service and the attacker's
programs (by comm, as an agent profiling every process would see them), so that nothing else
running on the host decides the outcome:

- a function whose CFA rule is a DWARF expression that jumps to itself (DW_OP_skip -3), and
  one that branches back forever (DW_OP_lit1; DW_OP_bra -4): libunwind would evaluate them
  forever; the unwind's budget stops it, and the counters say so;
- a library the user owns, on the stack of a running process, truncated to 0 bytes (the
  process keeps running; a second thread maps a file executable, again and again, so that the
  agent re-reads its maps and libunwind's caches are flushed): the
  agent must not fault on its copy of the file (SIGBUS);
- a copy of the root service's executable, with the same build-id, whose hot function is
  renamed ATTACKERA: the root service's stacks must still name hot_alpha.

What a user would see: the root service keeps getting fresh, correct profiles; the agent
stays up, under an RSS bound, and stops on SIGTERM within 10 s; ember_unwind_refused_total
counts the refused unwinds."""
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

from agenttest import (FIXTURES, Agent, Checker, Receiver, free_port, require_root_bpf, skip,
                       wait_for)

require_root_bpf()
if not shutil.which("gcc"):
    skip("needs gcc to build the hostile programs")
c = Checker("hostile_unwind")
NOBODY = 65534
RSS_BOUND_KB = 400 * 1024

LOOP_C = r"""
#include <unistd.h>
/* spins in a function whose CFA rule is an endless DWARF expression */
__asm__(".text\n.globl looper\n.type looper,@function\nlooper:\n.cfi_startproc\n"
        "  sub $8, %rsp\n"
        ".cfi_escape 0x0f, " EXPR "\n"
        "1: jmp 1b\n"
        ".cfi_endproc\n.size looper, .-looper\n");
void looper(void);
int main(void) { looper(); return 0; }
"""

VICTIM_C = r"""
static volatile int sink;
__attribute__((noinline)) void victim_run(void (*cb)(void)) { cb(); sink++; }
"""

TRUNC_C = r"""
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
void victim_run(void (*cb)(void));
static volatile unsigned long spins;
static const char *victim;
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
__attribute__((noinline)) static void warm(void) {
    double end = now() + 1.5;   /* sampled: the agent captures our maps, opens the library */
    while (now() < end) spins++;
}
__attribute__((noinline)) static void spin(void) {
    struct stat st;
    /* off-CPU until the owner has truncated the library: the agent has not needed its
     * unwind tables yet; from now on every sample's stack holds victim_run's frame */
    while (stat(victim, &st) == 0 && st.st_size > 0) usleep(20000);
    for (;;) spins++;
}
int main(int argc, char **argv) {
    victim = argv[1];
    warm();
    victim_run(spin);   /* never returns, never runs the library's code again */
    return 0;
}
"""


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def gcc(out, src, *args):
    subprocess.run(["gcc", "-O2", "-fomit-frame-pointer", "-o", out, src, *args], check=True)


def by_service(series):
    out = {}
    for s in series:
        out.setdefault(s["labels"]["service_name"], []).append(s)
    return out


def functions(series):
    names = set()
    for s in series:
        for smp in s["profile"]["samples"]:
            names.update(smp["stack"])
    return names


def metric(port, name, label):
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.split()[-1])
    return None


def hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


with tempfile.TemporaryDirectory() as tmp:
    os.chmod(tmp, 0o755)
    evil = os.path.join(tmp, "evil")
    os.mkdir(evil)
    for name, src in (("loop.c", LOOP_C), ("victim.c", VICTIM_C),
                      ("trunc.c", TRUNC_C)):
        with open(os.path.join(evil, name), "w") as f:
            f.write(src)
    gcc(os.path.join(evil, "loop_skip"), os.path.join(evil, "loop.c"),
        '-DEXPR="0x03, 0x2f, 0xfd, 0xff"')
    gcc(os.path.join(evil, "loop_bra"), os.path.join(evil, "loop.c"),
        '-DEXPR="0x04, 0x31, 0x28, 0xfc, 0xff"')
    gcc(os.path.join(evil, "libvictim.so"), os.path.join(evil, "victim.c"), "-shared", "-fPIC")
    gcc(os.path.join(evil, "trunc_prog"), os.path.join(evil, "trunc.c"), "-L" + evil,
        "-lvictim", "-Wl,-rpath," + evil)
    # the root service's executable, its hot function renamed, its build-id kept
    with open(os.path.join(FIXTURES, "cpu_split_fp"), "rb") as f:
        image = f.read()
    with open(os.path.join(evil, "evil_split"), "wb") as f:
        f.write(image.replace(b"hot_alpha", b"ATTACKERA"))
    for name in os.listdir(evil):
        os.chown(os.path.join(evil, name), NOBODY, NOBODY)
        os.chmod(os.path.join(evil, name), 0o755)
    os.chown(evil, NOBODY, NOBODY)

    procs = []
    rcv = Receiver(tmp)
    mport = free_port()
    agent = None
    try:
        root_svc = subprocess.Popen([os.path.join(FIXTURES, "cpu_split_fp"), "60"],
                                    stdout=subprocess.DEVNULL)
        procs.append(root_svc)
        # default options (--unwind auto) but for the selection: the root service and the
        # attacker's programs, so that nothing else on the host (other tests' attackers) plays
        agent = Agent(["--server", rcv.url, "--interval", "2", "--metrics-addr", f"127.0.0.1:{mport}",
                       "--service", f"cpu_split_fp=pid:{root_svc.pid}",
                       *[a for p in ("loop_skip", "loop_bra", "evil_split", "trunc_prog")
                         for a in ("--service", f"{p}=comm:{p}")]])
        c.check(wait_for(lambda: "cpu_split_fp" in by_service(rcv.series()), 20),
                "the root service is profiled before the attack")
        for prog in ("loop_skip", "loop_bra", "evil_split"):
            procs.append(subprocess.Popen([os.path.join(evil, prog)] +
                                          (["60"] if prog == "evil_split" else []),
                                          preexec_fn=as_nobody, stdout=subprocess.DEVNULL))
        trunc = subprocess.Popen([os.path.join(evil, "trunc_prog"),
                                  os.path.join(evil, "libvictim.so")], preexec_fn=as_nobody)
        procs.append(trunc)

        # 1. endless CFA expressions: each unwind stops at its budget
        budget = lambda: metric(mport, "ember_unwind_refused_total", 'reason="budget"') or 0
        c.check(wait_for(lambda: budget() >= 2, 20),
                f"unwinds through the looping CFI are stopped and counted (budget {budget()})")
        hostile = metric(mport, "ember_unwind_refused_total", 'reason="hostile_cfi"') or 0
        c.check(hostile >= 2, f"both looping files are refused from then on (hostile_cfi {hostile})")

        # 2. the victim library is mapped and seen; its owner truncates it; then it is on the stack
        c.check(wait_for(lambda: "trunc_prog" in by_service(rcv.series()), 20),
                "the process with the victim library is profiled")
        subprocess.run(["truncate", "-s", "0", os.path.join(evil, "libvictim.so")],
                       preexec_fn=as_nobody, check=True)
        t_trunc = len(rcv.series())
        c.check(wait_for(lambda: any("victim_run" in functions([s]) for s in
                                     by_service(rcv.series()[t_trunc:]).get("trunc_prog", [])), 12),
                "after the truncation, stacks through the truncated library are unwound")
        c.check(trunc.poll() is None, "the truncating process is still running (its stack holds the library)")
        c.check(agent.proc.poll() is None,
                f"the agent survives the truncation (exit status {agent.proc.returncode})")

        # 3. the root service keeps getting fresh, correct profiles
        n_root = len(by_service(rcv.series()).get("cpu_split_fp", []))
        c.check(wait_for(lambda: len(by_service(rcv.series()).get("cpu_split_fp", [])) >= n_root + 2, 10),
                "the root service's profiles keep arriving after the attacks")
        svc = by_service(rcv.series())
        root_fns = functions(svc.get("cpu_split_fp", []))
        c.check("hot_alpha" in root_fns and "ATTACKERA" not in root_fns,
                "a file claiming the root service's build-id does not rename its functions")
        c.check(len(rcv.series()) > t_trunc, "profiles arrive after the truncation")
        hwm = hwm_kb(agent.proc.pid) if agent.proc.poll() is None else 0
        c.check(0 < hwm < RSS_BOUND_KB, f"agent peak RSS {hwm} KiB < {RSS_BOUND_KB} KiB")
        rc, took = agent.stop()
        c.check(rc == 0 and took < 10, f"SIGTERM stops the agent in {took:.1f} s (exit status {rc})")
        agent = None
    finally:
        if agent:
            print(agent.output()[-3000:])
            agent.proc.kill()
            agent.proc.wait()
        for p in procs:
            p.kill()
            p.wait()
        rcv.stop()
c.done()
