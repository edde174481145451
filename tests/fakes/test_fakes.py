#!/usr/bin/env python3
"""test_fakes: proves that docker_api.py and kube_api.py answer in the shapes the Docker Engine
API and the Kubernetes API document, and that their modes break things as README.md says, by
asking them with clients we did not write: the curl command line and Python's http.client/ssl
(hostname verified against the test CA). Needs no root. Exits 0 when every check passes.

Usage: test_fakes.py"""
import http.client
import json
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakectl import DockerFake, KubeFake, container_id  # noqa: E402

failures = 0
HEX64 = re.compile(r"^[0-9a-f]{64}$")
NETWORK_ERRORS = (OSError, http.client.HTTPException, ssl.SSLError)


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL: " + what, file=sys.stderr, flush=True)
    return cond


def curl(*args, timeout=15):
    p = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def get(conn, path, headers=None):
    """(status, headers, body) of one request on conn (a keep-alive connection)."""
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    return r.status, r, r.read()


def is_json(body):
    try:
        json.loads(body)
        return True
    except (ValueError, RecursionError):
        return False


def read_lines(resp, conn, want, timeout):
    """JSON lines from a streamed response until want(lines) holds, the stream ends or timeout;
    returns (lines, ended)."""
    lines = []
    end = time.monotonic() + timeout
    while not want(lines):
        left = end - time.monotonic()
        if left <= 0:
            return lines, False
        conn.sock.settimeout(left)
        try:
            raw = resp.readline()
        except (socket.timeout, TimeoutError):
            return lines, False
        if not raw:
            return lines, True
        lines.append(json.loads(raw))
    return lines, False


def fd_lines(proc, want, timeout):
    """Lines from a subprocess's stdout (curl -N) until want(lines) holds or timeout."""
    buf = b""
    lines = []
    end = time.monotonic() + timeout
    while not want(lines):
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([proc.stdout], [], [], left)
        if not r:
            break
        data = os.read(proc.stdout.fileno(), 65536)
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            lines.append(line)
    return lines


def logged(fake, path_start):
    return sum(1 for r in fake.requests() if r["path"].startswith(path_start))


def wait_requests(fake, path_start, n, timeout=5):
    """Waits until the fake has logged n requests whose path starts with path_start (streams
    opened by curl subprocesses), then a moment more for the streams to take their start."""
    end = time.monotonic() + timeout
    while logged(fake, path_start) < n and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.2)


# ---------------------------------------------------------------- Docker

WEB = "a1" + container_id("web")[2:]
DB = "a2" + container_id("db")[2:]
SHOP_LABELS = {"com.docker.compose.service": "web", "com.docker.compose.project": "shop"}


def docker_state(mode="ok", extra=(), **kw):
    s = {"containers": [
        {"id": WEB, "name": "web-1", "image": "shop/web:1.2", "labels": SHOP_LABELS,
         "pid": 4242, "running": True},
        {"id": DB, "name": "db-1", "image": "postgres:16", "labels": {}, "pid": 0,
         "running": False},
        *extra], "mode": mode}
    s.update(kw)
    return s


def check_summary(c, what):
    check(HEX64.match(str(c.get("Id"))), f"{what}: Id is 64 hex digits")
    check(isinstance(c.get("Names"), list) and all(n.startswith("/") for n in c["Names"]),
          f"{what}: Names is a list of /names")
    check(isinstance(c.get("Created"), int), f"{what}: Created is a unix time")
    check(str(c.get("ImageID")).startswith("sha256:"), f"{what}: ImageID is sha256:...")
    for k in ("Image", "Command", "State", "Status"):
        check(isinstance(c.get(k), str), f"{what}: {k} is a string")
    check(isinstance(c.get("Labels"), dict), f"{what}: Labels is an object")


def test_docker(tmp):
    d = DockerFake(tmp, docker_state())
    sock = d.socket
    base = "http://localhost"
    conn = d.connect()

    # /_ping, /version, with and without the version prefix, on one keep-alive connection
    st, r, body = get(conn, "/_ping")
    first = conn.sock
    check(st == 200 and body == b"OK", f"_ping answers 200 OK, not {st} {body!r}")
    check(r.getheader("Api-Version") == "1.43", "_ping carries Api-Version: 1.43")
    check(r.getheader("Content-Type", "").startswith("text/plain"), "_ping is text/plain")
    for path in ("/version", "/v1.41/version", "/v1.43/version"):
        st, r, body = get(conn, path)
        v = json.loads(body)
        check(st == 200 and v.get("Version") == "24.0.7" and v.get("ApiVersion") == "1.43"
              and v.get("MinAPIVersion") == "1.12" and v.get("Os") == "linux"
              and v.get("Arch") == "amd64", f"{path}: the version object, got {v}")
    check(conn.sock is first, "http.client kept one connection open for four requests")
    st, _, body = get(conn, "/v1.44/version")
    check(st == 400 and "too new" in json.loads(body)["message"], "API version 1.44 answers 400")
    rc, out, err = curl("-v", "--unix-socket", sock, f"{base}/_ping", f"{base}/v1.41/_ping")
    check(rc == 0 and out == b"OKOK", f"curl: _ping twice, got rc {rc} {out!r}")
    check("Re-using existing connection" in err or "Reusing existing connection" in err,
          "curl reused the connection for the second _ping (keep-alive)")
    check("Api-Version: 1.43" in err, "curl sees Api-Version: 1.43")

    # /containers/json: running ones; all=1: every one; a filter
    st, _, body = get(conn, "/v1.41/containers/json")
    cs = json.loads(body)
    check(st == 200 and isinstance(cs, list) and [c["Id"] for c in cs] == [WEB],
          f"containers/json lists the running container only, got {body[:200]!r}")
    if cs:
        c = cs[0]
        check_summary(c, "containers/json")
        check(c["Names"] == ["/web-1"] and c["Image"] == "shop/web:1.2" and c["State"] == "running"
              and c["Labels"] == SHOP_LABELS and c["Status"].startswith("Up "),
              f"containers/json: the state file's container, got {c}")
    for q in ("all=1", "all=true"):
        st, _, body = get(conn, f"/containers/json?{q}")
        check(sorted(c["Id"] for c in json.loads(body)) == sorted([WEB, DB]),
              f"containers/json?{q} lists stopped containers too")
    f = urllib.parse.quote(json.dumps({"label": ["com.docker.compose.service=web"]}))
    st, _, body = get(conn, f"/containers/json?all=1&filters={f}")
    check([c["Id"] for c in json.loads(body)] == [WEB], "containers/json honours a label filter")
    rc, out, _ = curl("--unix-socket", sock, f"{base}/v1.43/containers/json")
    check(rc == 0 and [c["Id"] for c in json.loads(out)] == [WEB], "curl: containers/json")

    # inspect: by id, prefix, name, /name; 404; ambiguous prefix
    for ref in (WEB, WEB[:12], "a1", "web-1", "%2Fweb-1"):
        st, _, body = get(conn, f"/v1.41/containers/{ref}/json")
        i = json.loads(body)
        ok = check(st == 200 and i.get("Id") == WEB, f"inspect {ref}: 200 and the web container")
        if ok:
            check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", i["Created"]) is not None,
                  f"inspect: Created is RFC 3339, got {i['Created']}")
            check(i["Name"] == "/web-1" and i["Image"].startswith("sha256:"), "inspect: Name, Image")
            check(i["State"]["Status"] == "running" and i["State"]["Running"] is True
                  and i["State"]["Pid"] == 4242, f"inspect: State, got {i['State']}")
            check(i["Config"]["Image"] == "shop/web:1.2" and i["Config"]["Labels"] == SHOP_LABELS
                  and isinstance(i["Config"]["Hostname"], str), "inspect: Config")
            check(isinstance(i["HostConfig"], dict), "inspect: HostConfig is an object")
    st, _, body = get(conn, f"/containers/{DB}/json")
    i = json.loads(body)
    check(i["State"]["Running"] is False and i["State"]["Pid"] == 0 and i["State"]["Status"] == "exited",
          "inspect of a stopped container: not running, Pid 0")
    st, _, body = get(conn, "/containers/nosuch/json")
    check(st == 404 and json.loads(body) == {"message": "No such container: nosuch"},
          f"inspect of an unknown container: 404 with a message, got {st} {body!r}")
    st, _, body = get(conn, "/containers/a/json")
    check(st == 400 and "multiple IDs" in json.loads(body)["message"], "an ambiguous prefix: 400")
    rc, out, _ = curl("--unix-socket", sock, "-w", "%{http_code}", f"{base}/containers/{WEB[:10]}/json")
    check(rc == 0 and out.endswith(b"200") and json.loads(out[:-3])["Id"] == WEB, "curl: inspect by prefix")
    rc, out, _ = curl("--unix-socket", sock, "-o", "/dev/null", "-w", "%{http_code}", f"{base}/containers/zzz/json")
    check(out == b"404", "curl: inspect of an unknown container is 404")
    st, _, body = get(conn, "/v1.41/nosuch")
    check(st == 404, "an unknown path: 404")

    # a half-written state file keeps the last good state
    with open(d.state_path, "w") as fh:
        fh.write('{"containers": [{"id": "')
    st, _, body = get(conn, "/containers/json")
    check([c["Id"] for c in json.loads(body)] == [WEB], "a half-written state keeps the last good one")
    d.set_state(docker_state())

    # /events: start when a container appears, die when it goes; filters
    flt = urllib.parse.quote(json.dumps({"type": ["container"], "event": ["start", "die"]}))
    econn = d.connect()
    econn.request("GET", f"/v1.41/events?filters={flt}")
    er = econn.getresponse()
    check(er.status == 200 and er.getheader("Transfer-Encoding") == "chunked",
          "events: 200, chunked")
    dflt = urllib.parse.quote(json.dumps({"event": {"die": True}}))
    n0 = logged(d, "/events")
    cp = subprocess.Popen(["curl", "-sN", "--unix-socket", sock, f"{base}/events?filters={dflt}"],
                          stdout=subprocess.PIPE)
    cp2 = subprocess.Popen(["curl", "-sN", "--unix-socket", sock, f"{base}/events"],
                           stdout=subprocess.PIPE)
    wait_requests(d, "/events", n0 + 2)
    new = container_id("new")
    new_labels = {"com.docker.compose.service": "api", "tier": "back"}
    t0 = time.time()
    d.set_state(docker_state(extra=[{"id": new, "name": "api-1", "image": "shop/api:2",
                                     "labels": new_labels, "pid": 777, "running": True}]))
    lines, _ = read_lines(er, econn, lambda ls: len(ls) >= 1, 3)
    ok = check(len(lines) == 1, "events: a start event within 3 s of the container's appearing")
    if ok:
        e = lines[0]
        check(e.get("status") == "start" and e.get("Action") == "start" and e.get("Type") == "container"
              and e.get("id") == new and e.get("from") == "shop/api:2" and e.get("scope") == "local",
              f"events: the start event's fields, got {e}")
        a = e.get("Actor", {})
        check(a.get("ID") == new and a.get("Attributes") == dict(new_labels, image="shop/api:2", name="api-1"),
              f"events: Actor.ID and Attributes (labels, image, name), got {a}")
        check(isinstance(e.get("time"), int) and abs(e["time"] - t0) < 5
              and isinstance(e.get("timeNano"), int) and e["timeNano"] // 10**9 == e["time"],
              "events: time (s) and timeNano (ns)")
    curl_all = fd_lines(cp2, lambda ls: len(ls) >= 1, 3)
    check(len(curl_all) == 1 and json.loads(curl_all[0])["Action"] == "start",
          f"curl: the events stream delivers the start event, got {curl_all}")
    d.set_state(docker_state())
    lines, _ = read_lines(er, econn, lambda ls: len(ls) >= 1, 3)
    check(len(lines) == 1 and lines[0]["Action"] == "die" and lines[0]["id"] == new
          and lines[0]["Actor"]["Attributes"].get("exitCode") == "0",
          f"events: a die event when the container goes, got {lines}")
    curl_die = fd_lines(cp, lambda ls: len(ls) >= 1, 3)
    check(len(curl_die) == 1 and json.loads(curl_die[0])["Action"] == "die",
          f"curl: an event=die filter lets only the die event through, got {curl_die}")
    for p in (cp, cp2):
        p.terminate()
        p.wait()
    econn.close()

    # modes
    d.set_state(docker_state("slow"))
    c1 = d.connect(timeout=1)
    t0 = time.time()
    try:
        get(c1, "/containers/json")
        check(False, "slow: a 1 s client timeout expires")
    except (socket.timeout, TimeoutError):
        check(time.time() - t0 < 3, "slow: the timeout came after about 1 s")
    c1.close()
    rc, _, _ = curl("--max-time", "1", "--unix-socket", sock, f"{base}/_ping")
    check(rc == 28, f"slow: curl --max-time 1 times out (28), got {rc}")

    d.set_state(docker_state("error"))
    for path in ("/_ping", "/containers/json", f"/containers/{WEB}/json", "/version"):
        st, _, body = get(conn, path)
        check(st == 500 and json.loads(body) == {"message": "boom"}, f"error: {path} answers 500 boom")
    rc, out, _ = curl("--unix-socket", sock, "-w", " %{http_code}", f"{base}/events")
    check(out.endswith(b" 500"), "error: curl sees 500 on events")

    for v in range(4):
        d.set_state(docker_state("garbage", variant=v))
        for path in ("/containers/json", f"/containers/{WEB}/json", "/version"):
            st, _, body = get(conn, path)
            check(st == 200 and body and not is_json(body), f"garbage v{v}: {path} 200, not JSON")
    d.set_state(docker_state("garbage"))
    bodies = {get(conn, "/containers/json")[2] for _ in range(4)}
    check(len(bodies) == 4 and not any(is_json(b) for b in bodies),
          "garbage without variant: four requests, four different non-JSON bodies")
    rc, out, _ = curl("--unix-socket", sock, f"{base}/v1.41/containers/json")
    check(rc == 0 and not is_json(out), "garbage: curl gets a non-JSON body")

    shapes = {}
    for v in range(5):
        d.set_state(docker_state("wrongshape", variant=v))
        st, _, body = get(conn, "/containers/json")
        shapes[v] = body
        check(st == 200, f"wrongshape v{v}: 200")
    check(isinstance(json.loads(shapes[0]), dict), "wrongshape v0: an object where a list is expected")
    c = json.loads(shapes[1])[0]
    check(isinstance(c["Id"], int) and isinstance(c["Created"], str) and isinstance(c["Names"][0], int),
          "wrongshape v1: numbers where strings are, strings where numbers are")
    c = json.loads(shapes[2])[0]
    check(len(c["Id"]) > 2**20 and len(c["Names"][0]) > 2**20 and len(shapes[2]) < 16 * 2**20,
          "wrongshape v2: 1 MiB strings")
    check(json.loads(shapes[3]) is None, "wrongshape v3: null")
    check(shapes[4].startswith(b"[[[[") and len(shapes[4]) == 200000,
          "wrongshape v4: arrays nested 100000 deep")
    d.set_state(docker_state("wrongshape", variant=0))
    st, _, body = get(conn, f"/containers/{WEB}/json")
    check(isinstance(json.loads(body), list), "wrongshape v0: a list where an object is expected")
    econn = d.connect()
    econn.request("GET", "/events")
    er = econn.getresponse()
    lines, _ = read_lines(er, econn, lambda ls: len(ls) >= 1, 3)
    check(er.status == 200 and len(lines) == 1 and isinstance(lines[0], list),
          "wrongshape: the events stream opens with a wrong-shaped event")
    econn.close()

    d.set_state(docker_state("close"))
    c1 = d.connect(timeout=3)
    try:
        get(c1, "/_ping")
        check(False, "close: the connection is closed without an answer")
    except NETWORK_ERRORS:
        pass
    rc, _, _ = curl("--unix-socket", sock, f"{base}/_ping")
    check(rc == 52, f"close: curl sees an empty reply (52), got {rc}")

    # an open stream is cut (no last chunk) when the mode turns to close
    d.set_state(docker_state())
    n0 = logged(d, "/events")
    cp = subprocess.Popen(["curl", "-sN", "--max-time", "5", "--unix-socket", sock, f"{base}/events"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    wait_requests(d, "/events", n0 + 1)
    d.set_state(docker_state("close"))
    rc = cp.wait(timeout=6)
    cp.stdout.close()
    check(rc == 18, f"close: curl sees its open events stream cut short (18), got {rc}")

    # the request log
    log = d.requests()
    check(len(log) > 40 and all({"method", "path", "time", "mode"} <= set(r) for r in log),
          f"the request log has a line per request, got {len(log)}")
    check(sum(1 for r in log if r["path"] == "/v1.44/version") == 1, "the log keeps the version prefix")

    # shutdown while a slow answer is pending
    d.set_state(docker_state("slow"))
    sp = subprocess.Popen(["curl", "-s", "--unix-socket", sock, f"{base}/containers/json"])
    time.sleep(0.3)
    took = d.stop()
    sp.wait()
    check(took < 3, f"SIGTERM ends the fake within 3 s while a slow answer is pending ({took:.1f} s)")
    check(not os.path.exists(sock), "the socket is removed on exit")
    conn.close()


# ---------------------------------------------------------------- Kubernetes

def cid(prefix, seed):
    return f"{prefix}://{container_id(seed)}"


PODS = [
    {"name": "api-7d9f", "namespace": "shop", "node": "node-a",
     "annotations": {"pyroscope.io/service_name": "shop-api"}, "labels": {"app": "api"},
     "containers": [{"name": "api", "id": cid("containerd", "api"), "image": "shop/api:2"},
                    {"name": "sidecar", "id": cid("containerd", "side"), "image": "envoy:1"}]},
    {"name": "worker-1", "namespace": "shop", "node": "node-a",
     "containers": [{"name": "worker", "id": cid("cri-o", "worker")}]},
    {"name": "legacy-1", "namespace": "default", "node": "node-a",
     "containers": [{"name": "legacy", "id": cid("docker", "legacy")}]},
    {"name": "remote-1", "namespace": "shop", "node": "node-b",
     "containers": [{"name": "remote", "id": cid("containerd", "remote")}]},
]


def kube_state(mode="ok", pods=PODS, **kw):
    s = {"pods": list(pods), "mode": mode, "many": 0}
    s.update(kw)
    return s


def check_pod(p, what):
    check(p.get("kind") == "Pod" and p.get("apiVersion") == "v1", f"{what}: kind Pod, v1")
    m = p.get("metadata", {})
    for k in ("name", "namespace", "uid", "resourceVersion"):
        check(isinstance(m.get(k), str) and m[k], f"{what}: metadata.{k} is a string")
    check(str(m.get("resourceVersion")).isdigit(), f"{what}: resourceVersion is a number in a string")
    check(isinstance(m.get("annotations"), dict) and isinstance(m.get("labels"), dict),
          f"{what}: annotations, labels are objects")
    sp = p.get("spec", {})
    check(isinstance(sp.get("nodeName"), str) and isinstance(sp.get("containers"), list),
          f"{what}: spec.nodeName, spec.containers")
    ss = p.get("status", {})
    check(ss.get("phase") == "Running", f"{what}: status.phase")
    for s in ss.get("containerStatuses", []):
        check(re.match(r"^(containerd|cri-o|docker)://[0-9a-f]{64}$", s.get("containerID", "")) is not None
              and isinstance(s.get("name"), str) and isinstance(s.get("image"), str)
              and s.get("ready") is True and s.get("started") is True,
              f"{what}: a containerStatus, got {s}")


def unauthorized_status(body):
    return json.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": "Unauthorized",
                                "reason": "Unauthorized", "code": 401}


def watch(k, query, token, timeout=5):
    conn = k.connect(timeout=timeout)
    conn.request("GET", "/api/v1/pods?" + query, headers={"Authorization": f"Bearer {token}"})
    return conn, conn.getresponse()


def test_kube(tmp):
    k = KubeFake(tmp, kube_state(), token="t0-secret")
    tls = k.tls_dir
    for n in ("ca.crt", "ca.key", "server.crt", "server.key"):
        check(os.path.exists(os.path.join(tls, n)), f"the TLS dir holds {n}")
    auth = {"Authorization": "Bearer t0-secret"}
    node_a = "fieldSelector=" + urllib.parse.quote("spec.nodeName=node-a")
    conn = k.connect()
    cconn = k.connect(host="localhost")

    # TLS: the certificate verifies for 127.0.0.1 and localhost against ca.crt
    st, _, body = get(conn, "/version", auth)
    check(st == 200 and json.loads(body).get("major") == "1", "HTTPS /version verified for 127.0.0.1")
    sans = conn.sock.getpeercert().get("subjectAltName", ())
    check(("IP Address", "127.0.0.1") in sans and ("DNS", "localhost") in sans,
          f"the server certificate's subjectAltName: IP 127.0.0.1, DNS localhost, got {sans}")
    st, _, _ = get(cconn, "/healthz", auth)
    check(st == 200, "HTTPS verified for localhost")
    rc, out, err = curl("--cacert", k.ca, "-H", "Authorization: Bearer t0-secret", f"{k.url}/version")
    check(rc == 0 and json.loads(out).get("gitVersion", "").startswith("v1."), f"curl --cacert: /version ({err})")
    rc, _, _ = curl(f"{k.url}/version")
    check(rc == 60, f"curl without the CA refuses the certificate (60), got {rc}")

    # authentication
    for h in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dDA6dDA="},
              {"Authorization": "Bearer"}):
        st, _, body = get(conn, "/api/v1/pods", h)
        check(st == 401 and unauthorized_status(body), f"401 Status with {h}, got {st} {body[:100]!r}")
    rc, out, _ = curl("--cacert", k.ca, "-w", " %{http_code}", f"{k.url}/api/v1/pods")
    check(out.endswith(b" 401") and unauthorized_status(out[:-4]), "curl without a token: 401 Status")
    k.set_token("t1-rotated")
    st, _, _ = get(conn, "/api/v1/pods", auth)
    check(st == 401, "after rotation the old token gets 401")
    auth = {"Authorization": "Bearer t1-rotated"}
    st, _, _ = get(conn, "/api/v1/pods", auth)
    check(st == 200, "after rotation the new token gets 200")
    token = "t1-rotated"
    H = ["-H", f"Authorization: Bearer {token}", "--cacert", k.ca]

    # lists and the node selector
    st, _, body = get(conn, f"/api/v1/pods?{node_a}", auth)
    pl = json.loads(body)
    check(st == 200 and pl.get("kind") == "PodList" and pl.get("apiVersion") == "v1",
          "a PodList, v1")
    check(str(pl["metadata"].get("resourceVersion", "")).isdigit() and "continue" not in pl["metadata"],
          "PodList metadata: a resourceVersion, no continue")
    names = sorted(p["metadata"]["name"] for p in pl["items"])
    check(names == ["api-7d9f", "legacy-1", "worker-1"], f"node-a's pods only, got {names}")
    for p in pl["items"]:
        check_pod(p, f"pod {p['metadata']['name']}")
    api = [p for p in pl["items"] if p["metadata"]["name"] == "api-7d9f"][0]
    check(api["metadata"]["annotations"] == {"pyroscope.io/service_name": "shop-api"}
          and api["metadata"]["namespace"] == "shop" and api["spec"]["nodeName"] == "node-a",
          "api-7d9f: annotations, namespace, node")
    check([c["containerID"] for c in api["status"]["containerStatuses"]] ==
          [cid("containerd", "api"), cid("containerd", "side")]
          and [c["name"] for c in api["spec"]["containers"]] == ["api", "sidecar"],
          "api-7d9f: its two containers and their ids")
    prefixes = sorted(c["containerID"].split("://")[0] for p in pl["items"] for c in p["status"]["containerStatuses"])
    check(prefixes == ["containerd", "containerd", "cri-o", "docker"], f"containerd://, cri-o://, docker:// ids, got {prefixes}")
    for sel in ("spec.nodeName%3D%3Dnode-b", "spec.nodeName%3Dnode-b"):
        st, _, body = get(conn, f"/api/v1/pods?fieldSelector={sel}", auth)
        check([p["metadata"]["name"] for p in json.loads(body)["items"]] == ["remote-1"], f"fieldSelector {sel}")
    st, _, body = get(conn, "/api/v1/pods", auth)
    check(len(json.loads(body)["items"]) == 4, "without a selector: every pod")
    st, _, body = get(conn, "/api/v1/namespaces/shop/pods?" + node_a, auth)
    check(sorted(p["metadata"]["name"] for p in json.loads(body)["items"]) == ["api-7d9f", "worker-1"],
          "a namespaced list")
    st, _, body = get(conn, "/api/v1/namespaces/shop/pods/api-7d9f", auth)
    check(st == 200 and json.loads(body)["metadata"]["name"] == "api-7d9f", "GET one pod")
    st, _, body = get(conn, "/api/v1/namespaces/shop/pods/nope", auth)
    check(st == 404 and json.loads(body).get("reason") == "NotFound", "an unknown pod: 404 NotFound")
    for bad in ("metadata.name%3Dx", "spec.nodeName%21%3Dnode-a", "spec.nodeName%3Da%2Cstatus.phase%3DRunning"):
        st, _, body = get(conn, f"/api/v1/pods?fieldSelector={bad}", auth)
        s = json.loads(body)
        check(st == 400 and s.get("kind") == "Status" and s.get("code") == 400 and s.get("reason") == "BadRequest",
              f"fieldSelector {bad}: 400 Status, got {st} {body[:120]!r}")
    st, _, _ = get(conn, "/api/v1/pods?labelSelector=app%3Dx", auth)
    check(st == 400, "labelSelector: 400")
    rc, out, _ = curl(*H, f"{k.url}/api/v1/pods?{node_a}&resourceVersion=0")
    check(rc == 0 and len(json.loads(out)["items"]) == 3, "curl: the node's pod list")

    # 10,000 pods: pagination with limit/continue, and a whole list, each in a time bound
    k.set_state(kube_state(many=10000))
    t0 = time.monotonic()
    st, _, body = get(conn, f"/api/v1/pods?{node_a}", auth)
    whole = time.monotonic() - t0
    check(st == 200 and len(json.loads(body)["items"]) == 10003,
          f"many: 10003 pods on node-a in one list ({whole:.2f} s)")
    check(whole < 3, f"many: the whole list answers in under 3 s on a shared machine ({whole:.2f} s)")
    t0 = time.monotonic()
    seen, pages, token_c, rvs = [], 0, None, set()
    while True:
        q = f"{node_a}&limit=500" + (f"&continue={urllib.parse.quote(token_c)}" if token_c else "")
        st, _, body = get(conn, f"/api/v1/pods?{q}", auth)
        if not check(st == 200, f"page {pages}: 200, got {st}"):
            break
        pl = json.loads(body)
        pages += 1
        rvs.add(pl["metadata"]["resourceVersion"])
        check(len(pl["items"]) <= 500, "a page holds at most limit items")
        seen += [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pl["items"]]
        token_c = pl["metadata"].get("continue")
        if not token_c or pages > 30:
            break
    paged = time.monotonic() - t0
    check(pages == 21 and len(seen) == 10003 and len(set(seen)) == 10003,
          f"many: 21 pages of 500 hold the 10003 pods once each (got {pages} pages, {len(seen)} pods)")
    check(len(rvs) == 1, "every page carries the first page's resourceVersion")
    check(paged < 6, f"many: 21 pages in under 6 s ({paged:.2f} s)")
    st, _, body = get(conn, "/api/v1/pods?limit=2", auth)
    pl = json.loads(body)
    check(len(pl["items"]) == 2 and pl["metadata"].get("continue") and
          pl["metadata"].get("remainingItemCount") == 10002, "limit=2 over every pod: continue, remainingItemCount")
    c2 = pl["metadata"]["continue"]
    rc, out, _ = curl(*H, f"{k.url}/api/v1/pods?limit=2&continue={urllib.parse.quote(c2)}")
    check(rc == 0 and len(json.loads(out)["items"]) == 2, "curl: a continued page")
    for bad in ("nonsense", "eyJydiI6IDF9", c2[:-4]):
        st, _, body = get(conn, f"/api/v1/pods?limit=2&continue={bad}", auth)
        s = json.loads(body)
        check(st == 410 and s.get("kind") == "Status" and s.get("reason") == "Expired" and s.get("code") == 410,
              f"an unknown continue token {bad!r}: 410 Expired, got {st}")
    k.set_state(kube_state(many=10000, expire_continue=1))
    st, _, _ = get(conn, f"/api/v1/pods?limit=2&continue={urllib.parse.quote(c2)}", auth)
    check(st == 410, "expire_continue 1: the next continue token gets 410")
    st, _, _ = get(conn, f"/api/v1/pods?limit=2&continue={urllib.parse.quote(c2)}", auth)
    check(st == 200, "expire_continue 1: the one after is served")
    k.set_state(kube_state(bookmark_seconds=0.3))
    st, _, body = get(conn, f"/api/v1/pods?{node_a}", auth)
    rv0 = int(json.loads(body)["metadata"]["resourceVersion"])
    check(len(json.loads(body)["items"]) == 3, "many back to 0: three pods")

    # watch: ADDED, MODIFIED, DELETED after state edits, filtered by node
    wconn, wr = watch(k, f"watch=true&resourceVersion={rv0}&{node_a}", token)
    check(wr.status == 200 and wr.getheader("Transfer-Encoding") == "chunked", "watch: 200, chunked")
    newpod = {"name": "new-1", "namespace": "shop", "node": "node-a",
              "containers": [{"name": "new", "id": cid("containerd", "new")}]}
    elsewhere = {"name": "far-1", "namespace": "shop", "node": "node-b",
                 "containers": [{"name": "far", "id": cid("containerd", "far")}]}
    k.set_state(kube_state(pods=PODS + [elsewhere, newpod]))
    ev, _ = read_lines(wr, wconn, lambda ls: len(ls) >= 1, 3)
    check(len(ev) == 1 and ev[0]["type"] == "ADDED" and ev[0]["object"]["metadata"]["name"] == "new-1",
          f"watch: ADDED new-1 (and nothing for node-b), got {[(e['type'], e['object']['metadata'].get('name')) for e in ev]}")
    if ev:
        check_pod(ev[0]["object"], "watch ADDED object")
    mod = dict(newpod, annotations={"pyroscope.io/service_name": "renamed"})
    k.set_state(kube_state(pods=PODS + [elsewhere, mod]))
    ev2, _ = read_lines(wr, wconn, lambda ls: len(ls) >= 1, 3)
    check(len(ev2) == 1 and ev2[0]["type"] == "MODIFIED"
          and ev2[0]["object"]["metadata"]["annotations"] == {"pyroscope.io/service_name": "renamed"},
          "watch: MODIFIED with the new annotation")
    k.set_state(kube_state(pods=PODS + [elsewhere]))
    ev3, _ = read_lines(wr, wconn, lambda ls: len(ls) >= 1, 3)
    check(len(ev3) == 1 and ev3[0]["type"] == "DELETED" and ev3[0]["object"]["metadata"]["name"] == "new-1",
          "watch: DELETED new-1")
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in ev + ev2 + ev3]
    check(len(rvs) == 3 and rv0 < rvs[0] < rvs[1] < rvs[2], f"watch: resourceVersions increase, got {rv0} {rvs}")
    wconn.close()
    # a watch from the earlier RV replays the history
    wconn, wr = watch(k, f"watch=1&resourceVersion={rv0}&{node_a}&timeoutSeconds=1", token)
    ev, ended = read_lines(wr, wconn, lambda ls: False, 4)
    check([e["type"] for e in ev] == ["ADDED", "MODIFIED", "DELETED"] and ended,
          f"watch from an old RV replays ADDED, MODIFIED, DELETED and ends after timeoutSeconds, got {[e['type'] for e in ev]}")
    wconn.close()
    # bookmarks
    wconn, wr = watch(k, f"watch=true&resourceVersion={rvs[-1]}&allowWatchBookmarks=true&{node_a}", token)
    ev, _ = read_lines(wr, wconn, lambda ls: len(ls) >= 1, 3)
    check(len(ev) == 1 and ev[0]["type"] == "BOOKMARK" and ev[0]["object"]["kind"] == "Pod"
          and list(ev[0]["object"]["metadata"]) == ["resourceVersion"]
          and int(ev[0]["object"]["metadata"]["resourceVersion"]) >= rvs[-1],
          f"watch: a BOOKMARK with only metadata.resourceVersion, got {ev}")
    wconn.close()
    # too old an RV: ERROR 410, then the stream ends
    wconn, wr = watch(k, f"watch=true&resourceVersion=5&{node_a}", token)
    ev, ended = read_lines(wr, wconn, lambda ls: False, 3)
    check(len(ev) == 1 and ev[0]["type"] == "ERROR" and ev[0]["object"].get("code") == 410
          and ev[0]["object"].get("reason") == "Expired" and ev[0]["object"].get("kind") == "Status"
          and ev[0]["object"].get("message", "").startswith("too old resource version: 5 (") and ended,
          f"watch from RV 5: ERROR 410 Expired and the end, got {ev} ended={ended}")
    wconn.close()
    # curl: an initial list as ADDED events (RV ""), ended cleanly by timeoutSeconds
    t0 = time.monotonic()
    rc, out, err = curl("-N", "--max-time", "6", *H, f"{k.url}/api/v1/pods?watch=true&{node_a}&timeoutSeconds=1")
    lines = [json.loads(l) for l in out.splitlines()]
    check(rc == 0 and [e["type"] for e in lines] == ["ADDED"] * 3 and time.monotonic() - t0 < 4,
          f"curl: a watch without RV lists node-a's pods as ADDED and ends after 1 s (rc {rc}, {err})")
    # mode gone: lists answer, watches get ERROR 410 at once; an open watch gets it too
    wconn, wr = watch(k, f"watch=true&resourceVersion={rvs[-1]}&{node_a}", token)
    k.set_state(kube_state(mode="gone", pods=PODS + [elsewhere]))
    ev, ended = read_lines(wr, wconn, lambda ls: False, 3)
    check(len(ev) == 1 and ev[0]["type"] == "ERROR" and ev[0]["object"]["code"] == 410 and ended,
          "gone: an open watch gets ERROR 410 and ends")
    wconn.close()
    st, _, body = get(conn, f"/api/v1/pods?{node_a}", auth)
    check(st == 200 and len(json.loads(body)["items"]) == 3, "gone: lists answer normally")
    rc, out, _ = curl("-N", "--max-time", "3", *H, f"{k.url}/api/v1/pods?watch=true&resourceVersion={rvs[-1]}")
    ev = [json.loads(l) for l in out.splitlines()]
    check(rc == 0 and len(ev) == 1 and ev[0]["type"] == "ERROR" and ev[0]["object"]["reason"] == "Expired",
          f"gone: curl's watch gets one ERROR 410 and the end, got rc {rc} {out[:200]!r}")

    # modes
    k.set_state(kube_state("unauthorized"))
    st, _, body = get(conn, "/api/v1/pods", auth)
    check(st == 401 and unauthorized_status(body), "unauthorized: 401 with the right token")
    k.set_state(kube_state("error"))
    st, _, body = get(conn, "/api/v1/pods", auth)
    s = json.loads(body)
    check(st == 500 and s.get("kind") == "Status" and s.get("code") == 500, "error: 500 Status")
    rc, out, _ = curl(*H, "-w", " %{http_code}", f"{k.url}/api/v1/pods?watch=1")
    check(out.endswith(b" 500"), "error: curl's watch gets 500")
    for v in range(4):
        k.set_state(kube_state("garbage", variant=v))
        st, _, body = get(conn, f"/api/v1/pods?{node_a}", auth)
        check(st == 200 and body and not is_json(body), f"garbage v{v}: the list is 200, not JSON")
    k.set_state(kube_state("garbage"))
    rc, out, _ = curl(*H, f"{k.url}/api/v1/namespaces/shop/pods/api-7d9f")
    check(rc == 0 and out and not is_json(out), "garbage: curl gets a non-JSON pod")
    k.set_state(kube_state("wrongshape", variant=0))
    st, _, body = get(conn, f"/api/v1/pods?{node_a}", auth)
    check(st == 200 and isinstance(json.loads(body), list), "wrongshape v0: a list where a PodList object is expected")
    k.set_state(kube_state("wrongshape", variant=1))
    st, _, body = get(conn, f"/api/v1/pods?{node_a}", auth)
    pl = json.loads(body)
    check(isinstance(pl["kind"], int) and isinstance(pl["items"][0]["metadata"]["name"], int),
          "wrongshape v1: numbers where strings are")
    k.set_state(kube_state("wrongshape", variant=2))
    st, _, body = get(conn, f"/api/v1/pods?{node_a}", auth)
    pl = json.loads(body)
    check(len(pl["items"][0]["metadata"]["name"]) > 2**20, "wrongshape v2: a 1 MiB pod name")
    wconn, wr = watch(k, f"watch=true&{node_a}", token)
    ev, _ = read_lines(wr, wconn, lambda ls: len(ls) >= 1, 3)
    check(wr.status == 200 and len(ev) == 1 and len(json.dumps(ev[0])) > 2**20,
          "wrongshape: a watch opens with a wrong-shaped event")
    wconn.close()
    k.set_state(kube_state("slow"))
    c1 = k.connect(timeout=1)
    try:
        get(c1, "/api/v1/pods", auth)
        check(False, "slow: a 1 s client timeout expires")
    except (socket.timeout, TimeoutError):
        pass
    c1.close()
    rc, _, _ = curl("--max-time", "1", *H, f"{k.url}/api/v1/pods")
    check(rc == 28, f"slow: curl --max-time 1 times out (28), got {rc}")
    k.set_state(kube_state("close"))
    c1 = k.connect(timeout=3)
    try:
        get(c1, "/api/v1/pods", auth)
        check(False, "close: no answer")
    except NETWORK_ERRORS:
        pass
    rc, _, _ = curl(*H, f"{k.url}/api/v1/pods")
    check(rc in (52, 56), f"close: curl gets no reply (52 or 56), got {rc}")

    # the log: a line per request with auth, never the token
    log = k.requests()
    check(len(log) > 50 and all({"method", "path", "time", "auth", "mode"} <= set(r) for r in log),
          "the request log has a line per request")
    check(any(r["auth"] is False for r in log) and any(r["auth"] is True for r in log),
          "the log says whether auth passed")
    check(any("fieldSelector=spec.nodeName" in r["path"] for r in log), "the log keeps the query")
    with open(k.log_path) as f:
        text = f.read()
    check("t0-secret" not in text and "t1-rotated" not in text, "the log never holds the token")

    # shutdown while a slow answer and a watch are pending
    k.set_state(kube_state())
    wconn, wr = watch(k, "watch=true", token)
    k.set_state(kube_state("slow"))
    sp = subprocess.Popen(["curl", "-s", *H, f"{k.url}/api/v1/pods"])
    time.sleep(0.3)
    took = k.stop()
    sp.wait()
    check(took < 3, f"SIGTERM ends the fake within 3 s with a watch and a slow answer pending ({took:.1f} s)")
    wconn.close()
    conn.close()
    cconn.close()


def main():
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ember-fakes-") as tmp:
        results = {}

        def run(name, fn):
            try:
                fn(tmp)
            except Exception as e:  # a crash is a failure, reported with the others
                import traceback
                traceback.print_exc()
                check(False, f"{name} raised {e!r}")
            results[name] = True

        threads = [threading.Thread(target=run, args=(n, f)) for n, f in
                   (("docker", test_docker), ("kube", test_kube))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    took = time.monotonic() - t0
    print(f"test_fakes: {'FAIL' if failures else 'ok'} ({failures} failures, {took:.1f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
