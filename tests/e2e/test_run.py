"""ember run -- CMD: profiles the command as one service named after it, pushes its intervals,
and returns the command's exit status; a SIGTERM to ember is passed on to the command."""
import os
import signal
import subprocess
import tempfile
import time

from agenttest import EMBER, FIXTURES, Checker, Receiver, check_split, merged_shares, require_root_bpf, truth_split

require_root_bpf()
c = Checker("run")
with tempfile.TemporaryDirectory() as tmp:
    rcv = Receiver(tmp)
    p = subprocess.run([EMBER, "run", "--server", rcv.url, "--interval", "2", "--label", "env=run",
                        "--", os.path.join(FIXTURES, "cpu_split_fp"), "7"], capture_output=True, text=True,
                       timeout=60)
    series = rcv.series()
    c.check(p.returncode == 0, f"exit status of the command: {p.returncode}")
    c.check(len(series) >= 3, f"intervals pushed while it ran: {len(series)}")
    c.check(all(s["labels"].get("service_name") == "cpu_split_fp" and s["labels"].get("env") == "run"
                for s in series), "service named after the command, with the user's label")
    check_split(c, "run", merged_shares(series, ["hot_alpha", "hot_beta", "hot_gamma"]), truth_split(p.stdout))

    p = subprocess.run([EMBER, "run", "--server", rcv.url, "--", "sh", "-c", "exit 7"],
                       capture_output=True, text=True, timeout=60)
    c.check(p.returncode == 7, f"a failing command's status comes back: {p.returncode}")
    p = subprocess.run([EMBER, "run", "--server", rcv.url, "--", "/nonexistent/cmd"],
                       capture_output=True, text=True, timeout=60)
    c.check(p.returncode == 2 and "cannot start '/nonexistent/cmd'" in p.stderr, f"a command that cannot start: {p.returncode} {p.stderr.strip()!r}")

    proc = subprocess.Popen([EMBER, "run", "--server", rcv.url, "--", "sleep", "60"],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=15)
    c.check(rc == 128 + signal.SIGTERM and time.time() - t0 < 10,
            f"SIGTERM passed on to the command: exit {rc} in {time.time() - t0:.1f} s")
    rcv.stop()
c.done()
