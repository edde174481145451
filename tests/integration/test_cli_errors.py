"""Bad input gets one line naming the problem and exit status 2; never a crash or a hang."""
import os
import subprocess
import tempfile

from embertest import EMBER, FIXTURES, Checker, require_root_bpf

require_root_bpf()
c = Checker("cli_errors")


def expect2(args, needle, env=None, preexec=None):
    p = subprocess.run([EMBER] + args, capture_output=True, text=True, timeout=60, env=env,
                       preexec_fn=preexec)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    ok = p.returncode == 2 and any(needle in l for l in lines)
    c.check(ok, f"ember {' '.join(args)} -> exit {p.returncode}, stderr {lines[:2]!r} (want 2 and '{needle}')")


with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "x.pb.gz")
    expect2(["record", "--bogus"], "unknown option '--bogus'")
    expect2(["record", "--sample-rate", "0", "-o", out, "--", "true"], "--sample-rate")
    expect2(["record", "--sample-rate", "fast", "-o", out, "--", "true"], "--sample-rate")
    expect2(["record", "--service", "web=port:80", "-o", out], "--service")
    expect2(["record", "--pid", "999999", "-o", out], "no process 999999")
    expect2(["record", "-o", out, "--", "/nonexistent/cmd"], "cannot start '/nonexistent/cmd'")
    # A directory that cannot be created (a plain file stands where it would go) is refused,
    # naming the path; one that is merely missing is created, as agent --output does.
    plain = os.path.join(d, "plain")
    open(plain, "w").close()
    expect2(["record", "-o", plain + "/sub/x.pb.gz", "--", "true"], plain + "/sub/x.pb.gz")
    deep = os.path.join(d, "new", "sub", "x.pb.gz")
    p = subprocess.run([EMBER, "record", "--quiet", "-o", deep, "--", "true"], capture_output=True,
                       text=True, timeout=60)
    c.check(p.returncode == 0 and os.path.getsize(deep) > 0,
            f"record -o into missing directories creates them: exit {p.returncode}, "
            f"stderr {p.stderr.strip()[:200]!r}")
    # A profile holds every profiled process's stacks: 0600 (directories 0700) unless asked.
    modes = (oct(os.stat(deep).st_mode & 0o777), oct(os.stat(os.path.dirname(deep)).st_mode & 0o777))
    c.check(modes == ("0o600", "0o700"), f"record -o writes 0600 in 0700 directories: {modes}")
    shared = os.path.join(d, "shared", "x.pb.gz")
    p = subprocess.run([EMBER, "record", "--quiet", "--output-mode", "0644", "-o", shared, "--", "true"],
                       capture_output=True, text=True, timeout=60)
    modes = (oct(os.stat(shared).st_mode & 0o777), oct(os.stat(os.path.dirname(shared)).st_mode & 0o777)) \
        if p.returncode == 0 else None
    c.check(modes == ("0o644", "0o755"), f"--output-mode 0644: {modes}, exit {p.returncode}")
    expect2(["record", "--output-mode", "0777", "-o", out, "--", "true"], "--output-mode")
    expect2(["record", "--output-mode", "rw", "-o", out, "--", "true"], "--output-mode")
    expect2(["record", "-o", d, "--", "true"], "is a directory")
    expect2(["record", "--pid", "1", "-o", out, "--", "true"], "only one of")
    expect2(["nosuchcommand"], "unknown command")
    expect2(["help", "bogus"], "unknown command 'bogus'")
    expect2(["record", "--interval", "5", "-o", out, "--", "true"],
            "--interval is an option of `ember agent` and `ember run`, not of `ember record`")
    expect2(["record", "--server", "http://127.0.0.1:4040", "-o", out, "--", "true"],
            "--server is an option of")
    expect2(["record", "--sampel-rate", "5", "-o", out, "--", "true"], "did you mean --sample-rate?")
    expect2(["record", "-g", "-o", out, "--", "true"], "-g/--call-graph: Ember always records call graphs")
    expect2(["record", "--profiles", "cpu,cpu", "-o", out, "--", "true"], "cpu is given twice")
    expect2(["record", "--profiles", "gpu", "-o", out, "--", "true"], "record takes cpu, alloc and offcpu")
    expect2(["run", "--service", "web=comm:x", "--", "true"], "run profiles the command it starts")
    expect2(["run"], "run needs a command")
    expect2(["agent", "--", "true"], "agent takes no command")
    env = dict(os.environ, EMBER_SAMPLE_RATE="-5")
    expect2(["record", "-o", out, "--", "true"], "EMBER_SAMPLE_RATE", env=env)
    cfg = os.path.join(d, "bad.conf")
    with open(cfg, "w") as f:
        f.write("sample-rate = 97\nfrobnicate = yes\n")
    expect2(["record", "--config", cfg, "-o", out, "--", "true"], "unknown option 'frobnicate'")

    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    expect2(["record", "-o", "/tmp/ember-nobody.pb.gz", "--", "true"], "needs root", preexec=drop)

    # Precedence, seen in the profile's period (1e9 / sample rate): flag > environment > file.
    from embertest import decode
    with open(cfg, "w") as f:
        f.write("# comment\nsample-rate = 5\n")
    for env_rate, flag_rate, want in ((None, None, 5), ("7", None, 7), ("7", "11", 11)):
        env = dict(os.environ)
        if env_rate:
            env["EMBER_SAMPLE_RATE"] = env_rate
        args = [EMBER, "record", "--quiet", "--config", cfg, "-o", out]
        if flag_rate:
            args += ["--sample-rate", flag_rate]
        p = subprocess.run(args + ["--", "true"], capture_output=True, text=True, env=env, timeout=60)
        period = decode(out)["period"] if p.returncode == 0 else None
        c.check(period == 1000000000 // want,
                f"file=5 env={env_rate} flag={flag_rate}: period {period} (want 1e9/{want})")

    # An EMBER_ variable of another command (the agent's EMBER_SERVER) is ignored; -F is perf's
    # --sample-rate.
    env = dict(os.environ, EMBER_SERVER="http://127.0.0.1:1", EMBER_INTERVAL="bogus")
    p = subprocess.run([EMBER, "record", "--quiet", "-F", "50", "-o", out, "--", "true"],
                       capture_output=True, text=True, env=env, timeout=60)
    period = decode(out)["period"] if p.returncode == 0 else None
    c.check(period == 1000000000 // 50,
            f"EMBER_SERVER and EMBER_INTERVAL ignored by record, -F 50: exit {p.returncode}, "
            f"period {period}, stderr {p.stderr.strip()[:200]!r}")

    # A command that runs and exits non-zero is still a normal end of recording.
    p = subprocess.run([EMBER, "record", "--quiet", "-o", out, "--", "sh", "-c", "exit 3"],
                       capture_output=True, text=True, timeout=60)
    c.check(p.returncode == 0 and os.path.getsize(out) > 0, f"target exiting non-zero: exit {p.returncode}, profile written")
c.done()
