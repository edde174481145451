#!/usr/bin/python3
"""deploy.compose: Debian's docker-compose (v1) accepts deploy/docker-compose.yml, and the
file keeps the rules the README promises: pinned images, the agent's privileges and mounts,
the Docker socket (read-only) for Compose-derived service names, the demo as two Compose
services from one image (so the dashboards show names taken from Compose) under a compose
profile that .env enables and `COMPOSE_PROFILES=` disables, and the anonymous-admin Grafana
marked as local-only.

There is no Docker engine here: `docker-compose config` only parses, validates and interpolates
the file. Whether the images start is not tested.

usage: test_compose.py [--source-dir DIR]"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib as dl  # noqa: E402

# The demo workload: two Compose services of one image; the agent names each after its Compose
# service (com.docker.compose.service), so the dashboards' Service picker shows these names.
DEMO_SERVICES = {"backend", "detector"}
REQUIRED_SERVICES = {"pyroscope", "alloy", "grafana", "prometheus", "ember"} | DEMO_SERVICES
# What the agent container needs (DESIGN.md: BPF, tracefs, cgroups, other containers' files,
# the Docker API for container names and Compose labels).
AGENT_MOUNTS = {"/sys/kernel/tracing", "/sys/fs/bpf", "/sys/fs/cgroup", "/run/ember", "/var/run/docker.sock"}
DOCKER_SOCKET = "/var/run/docker.sock"


def compose_config(compose, env):
    return subprocess.run(["docker-compose", "-f", compose, "config"], capture_output=True,
                          text=True, env=env)


_PROFILES_SNIPPET = """
import json, sys
from compose.cli.command import get_profiles_from_options
from compose.config.environment import Environment
print(json.dumps(get_profiles_from_options({}, Environment.from_env_file(sys.argv[1]))))
"""


def compose_python():
    """The interpreter docker-compose runs under (its shebang), which has its modules."""
    with open(shutil.which("docker-compose"), "rb") as f:
        first = f.readline().decode(errors="replace").strip()
    return first[2:].split()[0] if first.startswith("#!") else sys.executable


def enabled_services(deploy_dir, doc, profiles_env):
    """Services `docker-compose up` would start, with the profiles resolved by docker-compose's
    own code: its Environment (.env, overridden by the process environment) and its
    COMPOSE_PROFILES handling."""
    env = dict(os.environ)
    env.pop("COMPOSE_PROFILES", None)
    if profiles_env is not None:
        env["COMPOSE_PROFILES"] = profiles_env
    r = subprocess.run([compose_python(), "-c", _PROFILES_SNIPPET, deploy_dir], capture_output=True,
                       text=True, env=env, check=True)
    profiles = json.loads(r.stdout)
    out = set()
    for name, svc in doc["services"].items():
        svc_profiles = svc.get("profiles") or []
        if not svc_profiles or set(svc_profiles) & set(profiles):
            out.add(name)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir")
    args = ap.parse_args()
    src = dl.source_dir(args.source_dir)
    deploy_dir = os.path.join(src, "deploy")
    compose = os.path.join(deploy_dir, "docker-compose.yml")

    if not shutil.which("docker-compose"):
        dl.skip("docker-compose is not installed (Debian: docker-compose; `make deps` installs it)")
    yaml = dl.need_yaml()
    c = dl.Checks("deploy.compose")

    env = dict(os.environ)
    env.pop("COMPOSE_PROFILES", None)
    r = compose_config(compose, env)
    if not c.check(r.returncode == 0, f"docker-compose config rejected the file:\n{r.stderr}"):
        c.finish()
    c.check("WARNING" not in r.stderr, f"docker-compose config warned: {r.stderr.strip()}")
    doc = yaml.safe_load(r.stdout)
    services = doc.get("services", {})

    c.check(REQUIRED_SERVICES <= set(services),
            f"services missing: {sorted(REQUIRED_SERVICES - set(services))}")

    # Pinned images: a tag that is neither empty nor `latest`.
    for name, svc in services.items():
        img = svc.get("image")
        if not img:
            c.fail(f"{name}: no image name")
            continue
        tag = img.rsplit(":", 1)[1] if ":" in img.split("/")[-1] else ""
        c.check(tag and tag != "latest", f"{name}: image {img!r} is not pinned to a version")

    # The agent: privileged, host PID namespace, built from deploy/Dockerfile, the mounts.
    ember = services.get("ember", {})
    c.check(ember.get("privileged") is True, "ember: not privileged")
    c.check(ember.get("pid") == "host", "ember: pid is not host")
    build = ember.get("build") or {}
    c.check(os.path.normpath(os.path.join(build.get("context", ""), build.get("dockerfile", "")))
            == os.path.join(src, "deploy", "Dockerfile"), f"ember: not built from deploy/Dockerfile: {build}")
    mounts = {}
    for v in ember.get("volumes", []):
        if isinstance(v, dict):
            mounts[v["target"]] = (v.get("source"), bool(v.get("read_only")))
        else:
            parts = str(v).split(":")
            mounts[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
    c.check(AGENT_MOUNTS <= set(mounts), f"ember: mounts missing: {sorted(AGENT_MOUNTS - set(mounts))}")
    sock = mounts.get(DOCKER_SOCKET)
    c.check(sock and sock[0] == DOCKER_SOCKET and sock[1],
            f"ember: the host's {DOCKER_SOCKET} is not mounted read-only at the same path: {sock}")
    memlock = (ember.get("ulimits") or {}).get("memlock")
    c.check(memlock is not None, "ember: no memlock ulimit (BPF maps on kernels before 5.11)")
    cmd = dl.command_list(ember)
    c.check(cmd[:1] == ["agent"], f"ember: command does not start with `agent`: {cmd}")
    for flag, want in (("--server", "http://alloy:9999"), ("--metrics-addr", "0.0.0.0:9464"),
                       ("--profiles", "cpu,alloc")):
        c.check(dl.flag_value(cmd, flag) == want, f"ember: {flag} is {dl.flag_value(cmd, flag)!r}, want {want!r}")
    c.check("env=demo" in dl.flag_values(cmd, "--label"), "ember: --label env=demo missing")

    # The demo: two services of the one demo image, with different work splits so that their
    # profiles differ; on at first start (profile enabled in .env), off with COMPOSE_PROFILES=.
    demo_cmds = {}
    for name in sorted(DEMO_SERVICES):
        demo = services.get(name, {})
        c.check(demo.get("profiles") == ["demo"], f"{name}: profiles are {demo.get('profiles')}, want ['demo']")
        c.check(demo.get("image") == "ember-demo:local", f"{name}: image {demo.get('image')!r}, want ember-demo:local")
        b = demo.get("build") or {}
        c.check(b.get("target") == "demo" and os.path.normpath(os.path.join(b.get("context", ""), b.get("dockerfile", "")))
                == os.path.join(src, "deploy", "Dockerfile"), f"{name}: not built from deploy/Dockerfile's demo target: {b}")
        demo_cmds[name] = tuple(dl.command_list(demo))
        split = dl.flag_value(list(demo_cmds[name]), "--split")
        c.check(split is None or re.fullmatch(r"\d+,\d+,\d+", split), f"{name}: --split {split!r} is not A,B,C")
    c.check(len(set(demo_cmds.values())) == len(DEMO_SERVICES),
            f"the demo services run the same command, so their profiles would not differ: {demo_cmds}")
    behind = {n for n, s in services.items() if s.get("profiles")}
    c.check(behind == DEMO_SERVICES, f"only the demo services may sit behind a profile, found {sorted(behind)}")
    on = enabled_services(deploy_dir, doc, None)
    c.check(DEMO_SERVICES <= on, "the demo is not started by default (COMPOSE_PROFILES=demo missing from deploy/.env?)")
    c.check(REQUIRED_SERVICES - DEMO_SERVICES <= on, f"core services not started by default: {REQUIRED_SERVICES - on}")
    off = enabled_services(deploy_dir, doc, "")
    c.check(not DEMO_SERVICES & off, "`COMPOSE_PROFILES= docker-compose up` would still start the demo")
    c.check(REQUIRED_SERVICES - DEMO_SERVICES <= off, "disabling the demo profile disables core services")

    # Interpolation: with an empty environment the file must still resolve (defaults in .env or ${X:-d}).
    r2 = compose_config(compose, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    c.check(r2.returncode == 0 and "is not set" not in r2.stderr,
            f"compose needs variables that neither .env nor defaults provide: {r2.stderr.strip()}")

    # Pyroscope's retention is set, and documented in .env.
    pyro_cmd = dl.command_list(services.get("pyroscope", {}))
    ret = [a for a in pyro_cmd if a.startswith("-retention-period=")]
    c.check(ret and re.fullmatch(r"-retention-period=\d+[smhd]", ret[0]),
            f"pyroscope: no -retention-period in its command: {pyro_cmd}")
    c.check(any(a.startswith("-config.file=") for a in pyro_cmd),
            "pyroscope: the command override dropped the image's -config.file")
    with open(os.path.join(deploy_dir, ".env")) as f:
        dotenv = f.read()
    c.check(re.search(r"^PYROSCOPE_RETENTION=\S+", dotenv, re.M) and "retention" in dotenv.lower(),
            "deploy/.env does not document PYROSCOPE_RETENTION")

    # Grafana: anonymous admin, clearly marked as local-only in the file.
    genv = services.get("grafana", {}).get("environment", {})
    if isinstance(genv, list):
        genv = dict(e.split("=", 1) for e in genv)
    c.check(genv.get("GF_AUTH_ANONYMOUS_ENABLED") == "true" and genv.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Admin",
            "grafana: anonymous admin not configured")
    with open(compose) as f:
        raw = f.read()
    c.check(re.search(r"LOCAL STACK ONLY", raw), "grafana: anonymous admin is not marked as local-only")
    c.check("grafana-pyroscope-app" in genv.get("GF_PLUGINS_PREINSTALL_SYNC", ""),
            "grafana: Profiles Drilldown app (grafana-pyroscope-app) is not installed")

    c.finish()


if __name__ == "__main__":
    main()
