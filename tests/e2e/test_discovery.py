"""Services named the way their owners name them (issue 15), against fakes of the Docker Engine
API and the Kubernetes API (tests/fakes): workloads placed in cgroups named as Docker
(system.slice/docker-<id>.scope), containerd under kubepods (cri-containerd-<id>.scope) and a
systemd unit (<name>.service) reach the receiver with the right service_name and labels, for
containers and pods that exist before the agent and that appear after it; the docker:, k8s:
and unit: selectors pick them; and with the APIs down, slow, answering garbage or 10,000 pods,
the agent keeps sampling under executable names, recovers when the APIs do, relists on 410,
follows a rotated token and stays within its memory bound."""
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

from agenttest import FIXTURES, Agent, Checker, Receiver, require_root_bpf, skip, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fakes"))
from fakectl import DockerFake, KubeFake, container_id  # noqa: E402

require_root_bpf()
CG2 = next((line.split()[1] for line in open("/proc/mounts") if line.split()[2] == "cgroup2"), None)
if not CG2:
    skip("no cgroup v2 hierarchy is mounted")
c = Checker("discovery")
TAG = f"e{os.getpid()}"
WORK = os.path.join(FIXTURES, "cpu_split_fp")
UNIT = f"ember-{TAG}.service"


def cid(name):
    return container_id(f"{TAG}-{name}")


def docker_container(name, service=None, project=None):
    labels = {}
    if service:
        labels["com.docker.compose.service"] = service
    if project:
        labels["com.docker.compose.project"] = project
    return {"id": cid(name), "name": name, "image": "img:1", "labels": labels, "pid": 1,
            "running": True}


def pod(ns, name, container, key, annotations=None, runtime="containerd"):
    return {"name": name, "namespace": ns, "node": "node-a", "annotations": annotations or {},
            "containers": [{"name": container, "id": f"{runtime}://{cid(key)}"}]}


class Workloads:
    """cpu_split_fp processes, each in a cgroup of its own under the v2 hierarchy."""

    def __init__(self):
        self.procs, self.dirs = [], []

    def start(self, rel, seconds=60):
        path = os.path.join(CG2, rel)
        made = []
        d = path
        while not os.path.isdir(d):
            made.append(d)
            d = os.path.dirname(d)
        for m in reversed(made):
            os.mkdir(m)
        self.dirs = made + self.dirs
        p = subprocess.Popen([WORK, str(seconds)], stdout=subprocess.DEVNULL)
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(p.pid))
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs = []
        time.sleep(0.2)
        for d in self.dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass
        self.dirs = []


def docker_cg(name):
    return f"system.slice/docker-{cid(name)}.scope"


def kube_cg(key):
    return f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{TAG}.slice/" \
           f"cri-containerd-{cid(key)}.scope"


def series_by_service(rcv):
    out = {}
    for s in rcv.series():
        if s["labels"].get("__name__") == "process_cpu":
            out.setdefault(s["labels"]["service_name"], []).append(s)
    return out


def has_workload(series):
    return any("hot_alpha" in smp["stack"] for s in series for smp in s["profile"]["samples"])


def labels_of(series):
    keep = ("namespace", "pod", "container", "node", "compose_project", "unit")
    return {k: v for k, v in series[-1]["labels"].items() if k in keep}


def metrics(port):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(ember_discovery_\w+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def kube_args(k):
    return ["--kube-api", k.url, "--kube-ca-file", k.ca, "--kube-token-file", k.token_file,
            "--node-name", "node-a"]


with tempfile.TemporaryDirectory() as tmp:
    wl = Workloads()
    docker = DockerFake(tmp, {"containers": [docker_container("shop-web-1", "web", "shop"),
                                             docker_container("redis-cache")], "mode": "ok"})
    kube = KubeFake(tmp, {"pods": [pod("shop", "api-7d9f", "api", "api"),
                                   pod("ml", "llm-0", "server", "llm",
                                       {"pyroscope.io/service_name": "llm-server"}, "cri-o")],
                          "mode": "ok", "many": 0}, token="t0")
    try:
        # ---- bad configuration: one line naming the option, exit 2 ----
        from agenttest import EMBER
        env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
        for args, want in (
                (["--kube-api", kube.url, "--kube-ca-file", kube.ca, "--kube-token-file",
                  kube.token_file], "invalid value for --kube-api: needs --node-name"),
                (["--kube-api", kube.url, "--kube-ca-file", kube.ca, "--kube-token-file",
                  os.path.join(tmp, "nope"), "--node-name", "n"],
                 "invalid value for --kube-token-file: '"),
                (["--kube-api", kube.url, "--kube-ca-file", os.path.join(tmp, "nope"),
                  "--kube-token-file", kube.token_file, "--node-name", "n"],
                 "invalid value for --kube-ca-file: '")):
            r = subprocess.run([EMBER, "agent", "--output", tmp, *args], capture_output=True,
                               text=True, timeout=30, env=env)
            c.check(r.returncode == 2 and want in r.stderr and len(r.stderr.strip().splitlines()) == 1,
                    f"{' '.join(args[-2:])}: exit {r.returncode}, {r.stderr.strip()[-160:]!r}")

        # ---- every process: names and labels, before and after the agent ----
        wl.start(docker_cg("shop-web-1"))
        wl.start(docker_cg("redis-cache"))
        wl.start(kube_cg("api"))
        wl.start(kube_cg("llm"))
        wl.start(f"system.slice/{UNIT}")
        rcv = Receiver(tmp)
        agent = Agent(["--server", rcv.url, "--interval", "2", "--docker-socket", docker.socket,
                       "--metrics-addr", "127.0.0.1:19464", *kube_args(kube)])
        time.sleep(2)
        # started after the agent: a Compose container and a pod
        docker.set_state({"containers": [docker_container("shop-web-1", "web", "shop"),
                                         docker_container("redis-cache"),
                                         docker_container("shop-detector-1", "detector", "shop")],
                          "mode": "ok"})
        wl.start(docker_cg("shop-detector-1"))
        kube.set_state({"pods": [pod("shop", "api-7d9f", "api", "api"),
                                 pod("ml", "llm-0", "server", "llm",
                                     {"pyroscope.io/service_name": "llm-server"}, "cri-o"),
                                 pod("shop", "worker-5c", "worker", "worker", runtime="docker")],
                        "mode": "ok", "many": 0})
        wl.start(kube_cg("worker"))
        want = {
            "web": {"container": "shop-web-1", "compose_project": "shop"},
            "redis-cache": {"container": "redis-cache"},
            "detector": {"container": "shop-detector-1", "compose_project": "shop"},
            "shop/api": {"namespace": "shop", "pod": "api-7d9f", "container": "api", "node": "node-a"},
            "llm-server": {"namespace": "ml", "pod": "llm-0", "container": "server", "node": "node-a"},
            "shop/worker": {"namespace": "shop", "pod": "worker-5c", "container": "worker",
                            "node": "node-a"},
            UNIT[:-8]: {"unit": UNIT},
        }
        ok = wait_for(lambda: all(has_workload(series_by_service(rcv).get(n, [])) for n in want), 30)
        time.sleep(2.5)
        m = metrics(19464)
        agent.stop()
        got = series_by_service(rcv)
        rcv.stop()
        c.check(ok, f"every container, pod and unit has its own service: {sorted(got)}")
        for name, labels in want.items():
            s = got.get(name, [])
            c.check(has_workload(s) and labels_of(s) == labels if s else False,
                    f"{name}: the workload's samples, labels {labels_of(s) if s else None}")
        c.check(not any(has_workload(s) for n, s in got.items() if n == "cpu_split_fp"),
                "no workload in a known container is left under its executable's name "
                "after its metadata came")
        c.check(m.get('ember_discovery_lookups_total{source="docker",outcome="found"}', 0) >= 3 and
                m.get('ember_discovery_lookups_total{source="kubernetes",outcome="found"}', 0) >= 3 and
                m.get('ember_discovery_lookups_total{source="systemd",outcome="found"}', 0) >= 1,
                f"lookups counted by source and outcome: "
                f"{ {k: v for k, v in m.items() if 'lookups' in k and v} }")
        c.check(m.get('ember_discovery_up{source="docker"}') == 1 and
                m.get('ember_discovery_up{source="kubernetes"}') == 1, "both APIs up")
        wl.stop()

        # ---- selectors ----
        wl.start(docker_cg("shop-web-1"))
        wl.start(docker_cg("redis-cache"))
        wl.start(kube_cg("api"))
        wl.start(f"system.slice/{UNIT}")
        other = wl.start(kube_cg("llm"))  # ml/server: selected by none
        rcv = Receiver(tmp)
        agent = Agent(["--server", rcv.url, "--interval", "2", "--docker-socket", docker.socket,
                       *kube_args(kube), "--service", "front=docker:web",
                       "--service", "cache=docker:redis*", "--service", "shop=k8s:shop/*",
                       "--service", f"job=unit:ember-{TAG}"])
        time.sleep(1.5)
        wl.start(docker_cg("shop-detector-1"))  # matches none: detector
        late_c = docker_container("late-web-2", "web", "blog")
        docker.set_state({"containers": [docker_container("shop-web-1", "web", "shop"),
                                         docker_container("redis-cache"),
                                         docker_container("shop-detector-1", "detector", "shop"),
                                         late_c], "mode": "ok"})
        wl.start(docker_cg("late-web-2"))  # started later, matches docker:web
        ok = wait_for(lambda: all(has_workload(series_by_service(rcv).get(n, []))
                                  for n in ("front", "cache", "shop", "job")), 30)
        t_late = time.time()
        time.sleep(3)
        agent.stop()
        got = series_by_service(rcv)
        rcv.stop()
        c.check(ok and set(got) <= {"front", "cache", "shop", "job"},
                f"docker:, k8s: and unit: selectors pick their processes, and only them: {sorted(got)}")
        front = sum(1 for s in got.get("front", []) for smp in s["profile"]["samples"]
                    if "hot_alpha" in smp["stack"])
        c.check(front >= 1, "a container started later joins docker:web")
        wl.stop()

        # ---- faults: down, slow, garbage, 10,000 pods, 410, token rotation ----
        docker.stop()
        kube.set_state({"pods": [pod("shop", "api-7d9f", "api", "api")], "mode": "slow", "many": 0})
        wl.start(docker_cg("shop-web-1"))
        wl.start(kube_cg("api"))
        rcv = Receiver(tmp)
        agent = Agent(["--server", rcv.url, "--interval", "2", "--docker-socket", docker.socket,
                       "--metrics-addr", "127.0.0.1:19465", *kube_args(kube)])
        ok = wait_for(lambda: has_workload(series_by_service(rcv).get("cpu_split_fp", [])), 20)
        c.check(ok, "Docker down and Kubernetes slow: sampling goes on, under executable names")
        wait_for(lambda: "warning: kubernetes: the Kubernetes API" in agent.output(), 15)
        time.sleep(3)
        out = agent.output()
        c.check(out.count("warning: docker: the Docker API") == 1 and
                out.count("warning: kubernetes: the Kubernetes API") == 1,
                "one warning per API outage, however often it is retried")
        # The APIs come back: the names follow.
        docker = DockerFake(tmp, {"containers": [docker_container("shop-web-1", "web", "shop")],
                                  "mode": "ok"})  # the same socket path
        kube.set_state({"pods": [pod("shop", "api-7d9f", "api", "api")], "mode": "ok", "many": 0})
        ok = wait_for(lambda: has_workload(series_by_service(rcv).get("web", [])) and
                      has_workload(series_by_service(rcv).get("shop/api", [])), 90)
        c.check(ok, f"the names come back with the APIs: {sorted(series_by_service(rcv))}")
        # Garbage: the names already known stay, nothing crashes.
        docker.set_state({"containers": [docker_container("shop-web-1", "web", "shop")], "mode": "garbage"})
        kube.set_state({"pods": [pod("shop", "api-7d9f", "api", "api")], "mode": "garbage", "many": 0})
        time.sleep(4)
        c.check(agent.proc.poll() is None, "garbage from both APIs: the agent runs on")
        # 10,000 pods on the node: the memory stays bounded.
        rss0 = agent.rss_kb()
        kube.set_state({"pods": [pod("shop", "api-7d9f", "api", "api")], "mode": "ok", "many": 10000})
        wait_for(lambda: metrics(19465).get("ember_discovery_containers", 0) >= 10000, 40)
        m = metrics(19465)
        rss1 = agent.rss_kb()
        c.check(m.get("ember_discovery_containers", 0) >= 10000,
                f"10,000 pods listed in pages ({m.get('ember_discovery_containers')} containers known)")
        c.check(rss1 - rss0 < 64 * 1024,
                f"agent RSS with 10,000 pods: {rss0 // 1024} -> {rss1 // 1024} MiB (bound +64 MiB)")
        # 410 Gone: relists, without a busy loop; a token rotated meanwhile is used from the
        # next request on (the fake refuses the old one).
        n0 = len(kube.requests())
        kube.set_state({"pods": [pod("shop", "api-7d9f", "api", "api")], "mode": "gone", "many": 0})
        time.sleep(2)
        t0 = time.time()
        kube.set_token("t1")
        time.sleep(3)
        m = metrics(19465)
        n = len(kube.requests()) - n0
        c.check(m.get("ember_discovery_relists_total", 0) >= 1 and n < 40,
                f"410 Gone relists ({m.get('ember_discovery_relists_total')}), "
                f"{n} requests in 5 s (no busy loop)")
        reqs = [r for r in kube.requests() if r["time"] > t0 + 0.2]
        c.check(reqs and all(r.get("auth") is True for r in reqs),
                f"a rotated token is used from the next request on "
                f"({[r.get('auth') for r in reqs][:10]})")
        kube.set_state({"pods": [pod("shop", "api-7d9f", "api", "api")], "mode": "ok", "many": 0})
        with open(agent.log.name) as f:
            log = f.read()
        c.check("t0" not in re.findall(r"Bearer \S+", log) and "Bearer" not in log,
                "the token is never logged")
        rc, _ = agent.stop()
        c.check(rc == 0, f"the agent stops cleanly ({rc})")
        rcv.stop()
    finally:
        wl.stop()
        docker.stop()
        kube.stop()
c.done()
