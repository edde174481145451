#!/usr/bin/env python3
"""docker_api: a fake Docker Engine API (v1.43 shapes) on a Unix socket, for Ember's tests.

Usage: docker_api.py --socket PATH --state STATE.json [--log FILE]

Serves HTTP/1.1 (threaded, keep-alive) on PATH (mode 0660) and prints "listening on PATH" on
stdout once it accepts connections. Paths may carry an API version prefix (/v1.41/...); one above
1.43 or below 1.12 answers 400 as the daemon does. Endpoints, shaped as the Engine API reference
documents them:
  GET|HEAD /_ping               200 "OK" (text/plain), Api-Version: 1.43
  GET /version, GET /info       the daemon's version; a minimal system info
  GET /containers/json          running containers (all=1|true: every one); filters: id, name,
                                label (key or key=value), status
  GET /containers/{id}/json     inspect; {id}: the full id, the name (with or without "/"), or a
                                unique id prefix; 404 {"message": "No such container: X"}
  GET /events                   newline-delimited JSON, chunked, held open; start/die events as
                                containers appear/start and disappear/stop in the state file;
                                filters: type, event, container, image, label; since, until

STATE.json (re-read on every request and polled every 100 ms; a missing or half-written file
keeps the last good state):
  {"containers": [{"id": "<64 hex>", "name": "web-1", "image": "img:tag",
                   "labels": {"com.docker.compose.service": "web"}, "pid": 123, "running": true,
                   optional: "created": unix s, "command": "...", "hostname": "...",
                   "exit_code": 0}],
   "mode": "ok"|"slow"|"garbage"|"wrongshape"|"error"|"close",
   optional: "slow_seconds": 10, "variant": N (garbage/wrongshape variant; default: in turn)}
Each request is logged as a JSON line {"method", "path" (with the query), "mode", "time"} to
--log FILE, else to stderr. See README.md for the modes.
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import socket
import socketserver
import stat
import sys
import time
import urllib.parse
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon as fc  # noqa: E402

API_VERSION = "1.43"
MIN_API_VERSION = "1.12"
ENGINE_VERSION = "24.0.7"
MODES = ("ok", "slow", "garbage", "wrongshape", "error", "close")
EVENTS_KEPT = 10000


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def sha256_hex(s):
    return hashlib.sha256(s.encode()).hexdigest()


def human_duration(s):
    """docker's units.HumanDuration, as `docker ps` shows it."""
    s = int(s)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    return f"{h // 24} days"


class Container:
    __slots__ = ("id", "name", "image", "labels", "pid", "running", "created", "command",
                 "hostname", "exit_code")

    def __init__(self, e, first_seen):
        if not isinstance(e, dict):
            raise TypeError("a container is not an object")
        self.name = str(e.get("name") or "").lstrip("/")
        self.id = str(e.get("id") or sha256_hex(self.name))
        if not self.name:
            self.name = "c-" + self.id[:12]
        self.image = str(e.get("image") or "img:latest")
        labels = e.get("labels") or {}
        if not isinstance(labels, dict):
            raise TypeError(f"{self.name}: labels is not an object")
        self.labels = {str(k): str(v) for k, v in labels.items()}
        self.running = bool(e.get("running", True))
        self.pid = int(e.get("pid") or 0) if self.running else 0
        self.created = float(e.get("created") or first_seen.setdefault(self.id, time.time()))
        self.command = str(e.get("command") or "/bin/sh -c 'sleep infinity'")
        self.hostname = str(e.get("hostname") or self.id[:12])
        self.exit_code = int(e.get("exit_code") or 0)

    def image_id(self):
        return "sha256:" + sha256_hex("image:" + self.image)

    def summary(self):
        """An element of GET /containers/json (ContainerSummary)."""
        return {
            "Id": self.id, "Names": ["/" + self.name], "Image": self.image,
            "ImageID": self.image_id(), "Command": self.command, "Created": int(self.created),
            "Ports": [], "Labels": self.labels,
            "State": "running" if self.running else "exited",
            "Status": ("Up " + human_duration(time.time() - self.created)) if self.running
            else f"Exited ({self.exit_code}) {human_duration(time.time() - self.created)} ago",
            "HostConfig": {"NetworkMode": "default"},
            "NetworkSettings": {"Networks": {}}, "Mounts": [],
        }

    def inspect(self):
        """GET /containers/{id}/json (ContainerInspectResponse), the fields a client reads."""
        started = rfc3339(self.created)
        return {
            "Id": self.id, "Created": rfc3339(self.created),
            "Path": "/bin/sh", "Args": ["-c", "sleep infinity"],
            "State": {"Status": "running" if self.running else "exited",
                      "Running": self.running, "Paused": False, "Restarting": False,
                      "OOMKilled": False, "Dead": False, "Pid": self.pid,
                      "ExitCode": 0 if self.running else self.exit_code, "Error": "",
                      "StartedAt": started,
                      "FinishedAt": "0001-01-01T00:00:00Z" if self.running else started},
            "Image": self.image_id(),
            "ResolvConfPath": f"/var/lib/docker/containers/{self.id}/resolv.conf",
            "HostnamePath": f"/var/lib/docker/containers/{self.id}/hostname",
            "HostsPath": f"/var/lib/docker/containers/{self.id}/hosts",
            "LogPath": f"/var/lib/docker/containers/{self.id}/{self.id}-json.log",
            "Name": "/" + self.name, "RestartCount": 0, "Driver": "overlay2",
            "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": {"NetworkMode": "default", "PidMode": "", "CgroupnsMode": "private",
                           "Cgroup": "", "CgroupParent": "", "Privileged": False,
                           "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}},
            "GraphDriver": {"Name": "overlay2", "Data": {}},
            "Mounts": [],
            "Config": {"Hostname": self.hostname, "Domainname": "", "User": "",
                       "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": ["/bin/sh", "-c", "sleep infinity"], "Image": self.image,
                       "WorkingDir": "", "Entrypoint": None, "Labels": self.labels},
            "NetworkSettings": {"Networks": {}},
        }


class DockerState:
    def __init__(self, containers, mode, variant, slow):
        self.containers = containers  # in the state file's order
        self.by_id = {c.id: c for c in containers}
        self.mode, self.variant, self.slow = mode, variant, slow


class Docker(fc.StateFile):
    """The state and the event history (start/die, each with a sequence number)."""

    def __init__(self, path):
        self.first_seen = {}
        self.events = deque(maxlen=EVENTS_KEPT)  # (seq, time_ns, event dict)
        self.seq = 0
        super().__init__(path)

    def parse(self, doc, old):
        mode, variant, slow = fc.common_knobs(doc, MODES)
        entries = doc.get("containers", [])
        if not isinstance(entries, list):
            raise TypeError("containers is not a list")
        cs = [Container(e, self.first_seen) for e in entries]
        return DockerState(cs, mode, variant, slow)

    def changed(self, old, new):
        now = time.time_ns()
        was = {c.id: c for c in old.containers if c.running}
        now_running = {c.id: c for c in new.containers if c.running}
        for cid, c in was.items():
            if cid not in now_running:
                gone = new.by_id.get(cid)
                self._event("die", c if gone is None else gone, now)
        for cid, c in now_running.items():
            if cid not in was:
                self._event("start", c, now)

    def _event(self, action, c, t_ns):
        attrs = dict(c.labels)
        attrs.update({"image": c.image, "name": c.name})
        if action == "die":
            attrs["exitCode"] = str(c.exit_code)
            attrs["execDuration"] = str(max(0, int(t_ns / 1e9 - c.created)))
        self.seq += 1
        self.events.append((self.seq, t_ns, {
            "status": action, "id": c.id, "from": c.image, "Type": "container",
            "Action": action, "Actor": {"ID": c.id, "Attributes": attrs},
            "scope": "local", "time": t_ns // 1_000_000_000, "timeNano": t_ns}))

    def events_after(self, seq):
        return [e for e in self.events if e[0] > seq]


def parse_filters(q):
    """The filters query parameter: {"key": ["v", ...]} or the older {"key": {"v": true}}."""
    raw = q.get("filters", [""])[-1]
    if not raw:
        return {}
    f = json.loads(raw)
    if not isinstance(f, dict):
        raise ValueError("filters is not an object")
    out = {}
    for k, v in f.items():
        if isinstance(v, dict):
            v = [x for x, on in v.items() if on]
        if not isinstance(v, list):
            raise ValueError(f"filter {k} is not a list")
        out[k] = [str(x) for x in v]
    return out


def label_match(labels, wanted):
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def event_match(f, ev):
    if "type" in f and ev["Type"] not in f["type"]:
        return False
    if "event" in f and ev["Action"] not in f["event"]:
        return False
    attrs = ev["Actor"]["Attributes"]
    if "container" in f and not any(ev["id"] == x or ev["id"].startswith(x) or attrs.get("name") == x
                                    for x in f["container"]):
        return False
    if "image" in f and ev["from"] not in f["image"]:
        return False
    if "label" in f and not label_match(attrs, f["label"]):
        return False
    return True


def ts_param(q, name):
    v = q.get(name, [""])[-1]
    return float(v) if v else None


class DockerHandler(fc.Handler):
    extra_headers = (("Api-Version", API_VERSION), ("Docker-Experimental", "false"),
                     ("Ostype", "linux"))

    def version_string(self):
        return f"Docker/{ENGINE_VERSION} (linux)"

    def route(self, method, target):
        d = self.server.docker
        url = urllib.parse.urlsplit(target)
        st = d.refresh()
        self.server.log.write({"method": method, "path": target, "mode": st.mode,
                               "time": time.time()})
        if st.mode == "close":
            return self.cut()
        if st.mode == "slow":
            if not self.pause(st.slow):
                return
            st = d.refresh()
            if st.mode == "close":
                return self.cut()
        mode = "ok" if st.mode == "slow" else st.mode
        path = url.path
        m = re.match(r"^/v(\d+)\.(\d+)(/.*)$", path)
        if m:
            ver = (int(m.group(1)), int(m.group(2)))
            path = m.group(3)
            if ver > (1, 43):
                return self.send_json(400, {"message": f"client version {m.group(1)}.{m.group(2)} "
                                            f"is too new. Maximum supported API version is {API_VERSION}"})
            if ver < (1, 12):
                return self.send_json(400, {"message": f"client version {m.group(1)}.{m.group(2)} "
                                            f"is too old. Minimum supported API version is "
                                            f"{MIN_API_VERSION}, please upgrade your client to a newer version"})
        q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if mode == "error":
            return self.send_json(500, {"message": "boom"})
        if method in ("GET", "HEAD") and path == "/_ping":
            if mode == "ok":
                return self.send_body(200, b"OK", "text/plain; charset=utf-8",
                                      (("Cache-Control", "no-cache, no-store, must-revalidate"),
                                       ("Pragma", "no-cache"), ("Builder-Version", "2")))
            return self.answer(mode, 200, "OK")
        if method != "GET":
            return self.answer(mode, 404, {"message": "page not found"})
        if path == "/events":
            return self.events(d, st, q, mode)
        if path == "/version":
            return self.answer(mode, 200, {
                "Platform": {"Name": "Docker Engine - Community"},
                "Components": [{"Name": "Engine", "Version": ENGINE_VERSION,
                                "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                            "Os": "linux", "Arch": "amd64"}}],
                "Version": ENGINE_VERSION, "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION, "GitCommit": "311b9ff", "GoVersion": "go1.20.10",
                "Os": "linux", "Arch": "amd64", "KernelVersion": os.uname().release,
                "BuildTime": "2023-10-26T09:08:01.000000000+00:00"})
        if path == "/info":
            running = sum(1 for c in st.containers if c.running)
            return self.answer(mode, 200, {
                "ID": "EMBR:FAKE:0000", "Containers": len(st.containers),
                "ContainersRunning": running, "ContainersPaused": 0,
                "ContainersStopped": len(st.containers) - running, "Images": 1,
                "Driver": "overlay2", "CgroupDriver": "systemd", "CgroupVersion": "2",
                "KernelVersion": os.uname().release, "OperatingSystem": "Ember test fake",
                "OSType": "linux", "Architecture": "x86_64", "NCPU": os.cpu_count() or 1,
                "Name": socket.gethostname(), "ServerVersion": ENGINE_VERSION,
                "DockerRootDir": "/var/lib/docker"})
        if path == "/containers/json":
            return self.list(st, q, mode)
        m = re.match(r"^/containers/([^/]+)/json$", path)
        if m:
            return self.inspect(st, urllib.parse.unquote(m.group(1)), mode)
        return self.answer(mode, 404, {"message": "page not found"})

    def answer(self, mode, code, obj):
        """The real answer in mode ok, else its garbage or wrongshape form (always 200)."""
        if mode == "garbage":
            v = self.server.variants.next(self.server.docker.good.variant)
            return self.send_body(200, fc.garbage(json.dumps(obj).encode(), v))
        if mode == "wrongshape":
            v = self.server.variants.next(self.server.docker.good.variant)
            return self.send_body(200, fc.wrongshape(obj, v))
        return self.send_json(code, obj)

    def list(self, st, q, mode):
        every = q.get("all", ["0"])[-1].lower() in ("1", "true")
        try:
            f = parse_filters(q)
        except ValueError as e:
            return self.send_json(400, {"message": f"invalid filter: {e}"})
        out = []
        for c in st.containers:
            if not (every or c.running or "status" in f):
                continue
            if "status" in f and ("running" if c.running else "exited") not in f["status"]:
                continue
            if "id" in f and not any(c.id.startswith(x) for x in f["id"]):
                continue
            if "name" in f and not any(x.lstrip("/") in c.name for x in f["name"]):
                continue
            if "label" in f and not label_match(c.labels, f["label"]):
                continue
            out.append(c.summary())
        return self.answer(mode, 200, out)

    def inspect(self, st, ref, mode):
        c = st.by_id.get(ref)
        if c is None:
            named = [x for x in st.containers if x.name == ref.lstrip("/")]
            if named:
                c = named[0]
        if c is None and ref and re.match(r"^[0-9a-f]+$", ref):
            hits = [x for x in st.containers if x.id.startswith(ref)]
            if len(hits) > 1:
                return self.answer(mode, 400, {"message": f"multiple IDs found with provided prefix: {ref}"})
            if hits:
                c = hits[0]
        if c is None:
            return self.answer(mode, 404, {"message": f"No such container: {ref}"})
        return self.answer(mode, 200, c.inspect())

    def events(self, d, st, q, mode):
        """A stream held open until `until`, the client leaves, the fake stops or the mode turns
        to close (the connection is then cut without a last chunk)."""
        try:
            f = parse_filters(q)
            since, until = ts_param(q, "since"), ts_param(q, "until")
        except ValueError as e:
            return self.send_json(400, {"message": f"invalid filter: {e}"})
        with d.cond:
            if since is None:
                cursor = d.seq
            else:
                cursor = min([e[0] - 1 for e in d.events if e[1] >= since * 1e9] or [d.seq])
        self.start_stream()
        if mode in ("garbage", "wrongshape"):
            sample = st.containers[0] if st.containers else Container({"name": "sample"}, {})
            attrs = dict(sample.labels, image=sample.image, name=sample.name)
            t = time.time_ns()
            self.chunk(self.render({"status": "start", "id": sample.id, "from": sample.image,
                                    "Type": "container", "Action": "start",
                                    "Actor": {"ID": sample.id, "Attributes": attrs},
                                    "scope": "local", "time": t // 10**9, "timeNano": t}, mode))
        while not fc.STOP.is_set():
            with d.cond:
                if d.seq <= cursor:
                    d.cond.wait(fc.POLL_S)
                new = d.events_after(cursor)
            st = d.good
            if st.mode == "close":
                return self.cut()
            out = []
            for seq, t_ns, ev in new:
                cursor = seq
                if until is not None and t_ns > until * 1e9:
                    break
                if event_match(f, ev):
                    out.append(self.render(ev, st.mode))
            self.chunk(b"".join(out))
            if until is not None and time.time() >= until:
                return self.end_stream()
            if self.client_gone():
                self.close_connection = True
                return
        self.end_stream()

    def render(self, ev, mode):
        if mode == "garbage":
            return fc.garbage(json.dumps(ev).encode(), self.server.variants.next(self.server.docker.good.variant)) + b"\n"
        if mode == "wrongshape":
            return fc.wrongshape(ev, self.server.variants.next(self.server.docker.good.variant)) + b"\n"
        return json.dumps(ev).encode() + b"\n"


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--log")
    args = ap.parse_args()
    try:
        if stat.S_ISSOCK(os.lstat(args.socket).st_mode):
            os.unlink(args.socket)
    except FileNotFoundError:
        pass
    srv = Server(args.socket, DockerHandler)
    os.chmod(args.socket, 0o660)
    srv.docker = Docker(args.state)
    srv.log = fc.RequestLog(args.log)
    srv.variants = fc.Variants()
    print(f"listening on {args.socket}", flush=True)

    def cleanup():
        try:
            os.unlink(args.socket)
        except OSError:
            pass
    fc.serve(srv, cleanup)


if __name__ == "__main__":
    main()
