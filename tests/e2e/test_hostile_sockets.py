"""Hostile sockets: an unprivileged user (uid 65534) floods the agent's GPU socket and its
/metrics endpoint while a root service (cpu_split_fp) is profiled, and a push server answers
with a 1 GiB body, then with redirects.

GPU socket and /metrics, with the agent at systemd's default of 1,024 descriptors: 1,100 idle
connections, connections that trickle a partial message, that announce 1 MiB and send most of
it, that send a huge length prefix; 100 slowloris connections to /metrics, reopened as they
are dropped. What a user must see: /metrics answers within 2 s throughout; the root service's
CPU profiles keep arriving, fresh and with its real 60/30/10 split; the agent's peak RSS
(VmHWM) stays under 48 MiB above what it was before the attack and under 200 MiB in all; it
stops on SIGTERM within 10 s; the refusal counters say uid_limit, timeout, uid_bytes,
oversized, and evicted for /metrics.

Push: a server answering 200 with a 1 GiB body (streamed until the client disconnects) costs
the agent under 10% of a core and each answer under 64 MiB of transfer, and the uploads count
as sent; a server answering 302 is counted as redirect_3xx, not rejected_4xx."""
import faulthandler
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from agenttest import (FIXTURES, Agent, Checker, Receiver, check_split, free_port, merged_shares,
                       require_root_bpf, stop_fixture, wait_for)

SPLIT = ["hot_alpha", "hot_beta", "hot_gamma"]
# The attacker runs as uid 65534, which may not read a python under /root (pyenv).
NOBODY_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

ATTACKER = r'''
import json, os, socket, struct, sys, time
sock_path, mport, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
MAGIC = 0x50474d45
def hdr(t, n): return struct.pack("<IHHII", MAGIC, 1, t, n, 0)
HELLO = hdr(1, 48) + struct.pack("<IIQQII16s", os.getpid(), 0, 0, 0, 0, 0, b"evil")
setup_end = time.time() + 8  # an agent that stops accepting must not stall the attack
def gconn():
    for _ in range(50):
        if time.time() > setup_end:
            return None  # a full backlog answers EAGAIN: wait for the agent to accept
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(sock_path)
            return s
        except BlockingIOError:
            s.close()
            time.sleep(0.01)
        except OSError:
            s.close()
            return None
    return None
def send(c, b):
    try:
        c.sendall(b)
    except OSError:
        pass
# A partial message, then a byte a second: never completed.
trickle = [c for c in (gconn() for _ in range(10)) if c]
for c in trickle:
    send(c, HELLO + hdr(2, 1000))
# 1 MiB announced, all but 100 bytes sent, 16 times: the uid's byte bound is 8 MiB.
big = []
for _ in range(16):
    c = gconn()
    if c:
        c.settimeout(0.5)
        send(c, HELLO + hdr(2, 1 << 20) + b"\0" * ((1 << 20) - 100))
        big.append(c)
# A length prefix of 4 GiB.
for _ in range(3):
    c = gconn()
    if c:
        send(c, HELLO + hdr(2, 0xFFFFFFFF))
        big.append(c)
idle = [c for c in (gconn() for _ in range(1100)) if c]
def mconn():
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", mport))
        s.send(b"GET /met")
        s.setblocking(False)
        return s
    except OSError:
        s.close()
        return None
slow = [mconn() for _ in range(100)]
end, reopened = time.time() + secs, 0
while time.time() < end:
    for c in trickle:
        try:
            c.send(b"\0")
        except OSError:
            pass
    for i, s in enumerate(slow):
        dead = s is None
        if not dead:
            try:
                dead = s.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                dead = True
        if dead:
            if s:
                s.close()
            slow[i] = mconn()
            reopened += 1
    time.sleep(0.2)
print(json.dumps({"idle": len(idle), "slow_reopened": reopened}), flush=True)
'''


def as_nobody():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def scrape(port):
    t0 = time.time()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            body = r.read().decode()
        return body, time.time() - t0
    except OSError as e:
        print(f"scrape: {e}")
        return None, time.time() - t0


def value(body, series):
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", body or "", re.M)
    return float(m.group(1)) if m else 0.0


def vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def web_series(rcv, since_ns):
    return [s for s in rcv.series() if s["labels"].get("service_name") == "web"
            and s["labels"].get("__name__") == "process_cpu" and s["profile"]["time_nanos"] >= since_ns]


def test_gpu_and_metrics(c, tmp):
    # systemd's default soft limit, which the agent runs under unless the unit raises it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    os.chmod(tmp, 0o755)
    sock = os.path.join(tmp, "gpu.sock")
    mport = free_port()
    rcv = Receiver(tmp)
    fixture = subprocess.Popen([os.path.join(FIXTURES, "cpu_split_fp"), "40"], stdout=subprocess.PIPE, text=True)
    agent = Agent(["--server", rcv.url, "--interval", "2", "--profiles", "cpu,gpu", "--gpu-socket", sock,
                   "--metrics-addr", f"127.0.0.1:{mport}", "--service", "web=comm:cpu_split_fp"])
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        c.check(wait_for(lambda: os.path.exists(sock), 10), "the agent listens on the GPU socket")
        c.check(wait_for(lambda: web_series(rcv, 0), 15), "the root service is profiled before the attack")
        hwm0 = vm_hwm_kb(agent.proc.pid)
        attack_ns = time.time_ns()
        attacker = subprocess.Popen([NOBODY_PYTHON, "-c", ATTACKER, sock, str(mport), "14"],
                                    preexec_fn=as_nobody, stdout=subprocess.PIPE, text=True)
        worst, failed = 0.0, 0
        give_up = time.time() + 40
        while attacker.poll() is None:
            if time.time() > give_up:
                attacker.kill()
            body, took = scrape(mport)
            worst = max(worst, took)
            failed += body is None or "ember_gpu_clients" not in body
            time.sleep(0.2)
        out, _ = attacker.communicate(timeout=10)
        stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        c.check(stats.get("idle", 0) >= 1000, f"the attacker opened its idle GPU connections ({stats})")
        c.check(stats.get("slow_reopened", 0) >= 1, "the slowloris connections were dropped and reopened")
        c.check(failed == 0 and worst < 2.0,
                f"/metrics answered every scrape during the attack ({failed} failed, slowest {worst:.2f} s)")
        during = web_series(rcv, attack_ns)
        c.check(len(during) >= 4, f"the root service's profiles kept arriving during the attack ({len(during)})")
        hwm = vm_hwm_kb(agent.proc.pid)
        c.check(hwm - hwm0 < 48 * 1024 and hwm < 200 * 1024,
                f"agent peak RSS {hwm // 1024} MiB, {(hwm - hwm0) // 1024} MiB over its {hwm0 // 1024} MiB before (bounds 48, 200)")
        body, took = scrape(mport)
        c.check(body is not None and took < 2.0, f"/metrics answers after the attack ({took:.2f} s)")
        refused = lambda r: value(body, f'ember_gpu_clients_refused_total{{reason="{r}"}}')
        c.check(refused("uid_limit") >= 900, f"GPU clients over the per-uid limit refused ({refused('uid_limit'):.0f})")
        c.check(refused("timeout") >= 1, f"GPU clients that never said HELLO timed out ({refused('timeout'):.0f})")
        c.check(refused("uid_bytes") >= 1, f"GPU clients over the per-uid byte bound dropped ({refused('uid_bytes'):.0f})")
        c.check(refused("oversized") >= 3, f"huge length prefixes refused ({refused('oversized'):.0f})")
        c.check(value(body, "ember_gpu_clients") <= 64, f"GPU clients held at most 64 ({value(body, 'ember_gpu_clients'):.0f})")
        evicted = value(body, 'ember_metrics_connections_dropped_total{reason="evicted"}')
        c.check(evicted >= 1, f"slow /metrics connections made way for scrapes ({evicted:.0f})")
    finally:
        rc, took = agent.stop()
        truth = stop_fixture(fixture)
        rcv.stop()
    c.check(rc == 0 and took < 10, f"SIGTERM: exit {rc} in {took:.1f} s")
    during = web_series(rcv, attack_ns)
    if during:
        check_split(c, "root service during the attack", merged_shares(during, SPLIT), truth)


class FakeServer:
    """Answers every request with mode 'huge' (200, Content-Length 1 GiB, streamed until the
    client disconnects) or 'redirect' (302); records the body bytes sent per answer."""

    def __init__(self, mode):
        self.mode = mode
        self.sent = []
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn):
        conn.settimeout(10)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = conn.recv(65536)
                if not d:
                    return
                buf += d
            head, rest = buf.split(b"\r\n\r\n", 1)
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            need = (int(m.group(1)) if m else 0) - len(rest)
            while need > 0:
                d = conn.recv(65536)
                if not d:
                    return
                need -= len(d)
            if self.mode == "redirect":
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n")
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n")
            chunk, sent = b"\0" * 65536, 0
            try:
                while sent < 1 << 30 and not self.stopping:
                    conn.sendall(chunk)
                    sent += len(chunk)
            finally:
                self.sent.append(sent)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.stopping = True
        self.lsock.close()


def test_push(c):
    fixture = subprocess.Popen([os.path.join(FIXTURES, "cpu_split_fp"), "30"], stdout=subprocess.PIPE, text=True)
    try:
        srv = FakeServer("huge")
        mport = free_port()
        agent = Agent(["--server", f"http://127.0.0.1:{srv.port}", "--interval", "1", "--metrics-addr",
                       f"127.0.0.1:{mport}", "--service", "web=comm:cpu_split_fp"])
        wait_for(lambda: len(srv.sent) >= 1, 10)
        c0, t0 = cpu_s(agent.proc.pid), time.time()
        time.sleep(6)
        used = (cpu_s(agent.proc.pid) - c0) / (time.time() - t0)
        body, _ = scrape(mport)
        rc, took = agent.stop()
        srv.stop()
        c.check(len(srv.sent) >= 3, f"uploads were answered with 1 GiB bodies ({len(srv.sent)})")
        c.check(srv.sent and max(srv.sent) < 64 << 20,
                f"the agent stopped reading each body early (at most {max(srv.sent or [0]) >> 20} MiB of 1024)")
        c.check(used < 0.10, f"agent CPU while answered with 1 GiB bodies: {100 * used:.0f}% of a core (bound 10%)")
        c.check(value(body, "ember_profiles_sent_total") >= 1, f"cut answers count as sent ({value(body, 'ember_profiles_sent_total'):.0f})")
        c.check(value(body, "ember_upload_responses_truncated_total") >= 1, "cut answers are counted")
        c.check(rc == 0 and took < 10, f"SIGTERM: exit {rc} in {took:.1f} s")

        srv = FakeServer("redirect")
        agent = Agent(["--server", f"http://user:hunter2@127.0.0.1:{srv.port}", "--interval", "1", "--metrics-addr",
                       f"127.0.0.1:{mport}", "--service", "web=comm:cpu_split_fp", "--log-level", "debug"])
        redirected = lambda: value(scrape(mport)[0], 'ember_profiles_dropped_total{reason="redirect_3xx"}')
        c.check(wait_for(lambda: redirected() >= 1, 15), f"302 answers counted as redirect_3xx ({redirected():.0f})")
        body, _ = scrape(mport)
        c.check(value(body, 'ember_profiles_dropped_total{reason="rejected_4xx"}') == 0, "and not as rejected_4xx")
        agent.stop()
        srv.stop()
        push_lines = [l for l in agent.output().splitlines() if "push:" in l]
        c.check(any("sending to http://***@127.0.0.1" in l for l in push_lines)
                and not any("hunter2" in l for l in push_lines),
                "the push client logs the server URL with its password redacted")
    finally:
        fixture.kill()
        fixture.wait()


if __name__ == "__main__":
    faulthandler.dump_traceback_later(150, exit=True)  # a hang fails, and says where
    require_root_bpf()
    c = Checker("hostile_sockets")
    with tempfile.TemporaryDirectory() as tmp:
        test_gpu_and_metrics(c, tmp)
    test_push(c)
    c.done()
