"""Helpers for Ember's end-to-end tests: the agent (root + BPF) pushing to the
Pyroscope-compatible receiver in tests/receiver, whose records hold each accepted series'
labels and its profile decoded by pprofdump (google/pprof)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from embertest import (BUILD, EMBER, FIXTURES, PPROFDUMP, Checker, check_split, decode,  # noqa: E402,F401
                       require_root_bpf, share_by_function, skip, truth_split)

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RECEIVER = os.path.join(SRC, "tests", "receiver", "receiver.py")
PROTO_DIR = os.path.join(SRC, "pprof")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    def __init__(self, tmp, port=0, args=()):
        self.record = os.path.join(tmp, f"record-{time.time_ns()}.jsonl")
        self.requests = os.path.join(tmp, f"requests-{time.time_ns()}.jsonl")
        self.proc = subprocess.Popen(
            [sys.executable, RECEIVER, "--pprofdump", PPROFDUMP, "--proto-dir", PROTO_DIR,
             "--port", str(port), "--record", self.record, "--requests", self.requests, *args],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on"):
            raise RuntimeError(f"receiver did not start: {line!r}")
        self.port = int(line.split()[-1])
        self.url = f"http://127.0.0.1:{self.port}"

    def series(self):
        if not os.path.exists(self.record):
            return []
        return complete_lines(self.record)

    def request_log(self):
        if not os.path.exists(self.requests):
            return []
        return complete_lines(self.requests)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def complete_lines(path):
    """The JSON lines of a log the receiver is appending to; a last line it is still writing
    (no newline yet) is left for the next read, not parsed half-written."""
    with open(path) as f:
        return [json.loads(l) for l in f if l.endswith("\n") and l.strip()]


class Agent:
    def __init__(self, args, env=None, ready=True):
        """Starts `ember agent ARGS`; with ready, returns once it says it is profiling (BPF
        loaded, perf events open), so a test's workload never starts before the agent."""
        self.log = open(f"/tmp/ember-agent-{time.time_ns()}.log", "w+")
        self.proc = subprocess.Popen([EMBER, "agent", *args], stdout=self.log, stderr=self.log,
                                     env=env)
        self.started = time.time()
        if ready and not wait_for(lambda: ": profiling " in self.output() or self.proc.poll() is not None, 30, 0.05):
            raise RuntimeError(f"ember agent did not start: {self.output()}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"ember agent exited {self.proc.returncode}: {self.output()}")

    def stop(self, timeout=12):
        """SIGTERM; returns (exit status, seconds it took)."""
        t0 = time.time()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return rc, time.time() - t0

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def wait_for(pred, timeout, step=0.2):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def merged_shares(series, names):
    tot = {n: 0 for n in names}
    for s in series:
        for k, v in share_by_function(s["profile"], names).items():
            tot[k] += v
    return tot


def stop_fixture(proc):
    """SIGTERM to a cpu_split fixture started with stdout=PIPE; returns its measured split."""
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    return truth_split(out)
