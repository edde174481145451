#!/usr/bin/env python3
"""kube_api: a fake Kubernetes API server (core/v1 pods) over HTTPS, for Ember's tests.

Usage: kube_api.py --state STATE.json --tls-dir DIR [--port 0] [--token-file TOKEN] [--log FILE]

Creates in DIR, when missing, a test CA (ca.crt, ca.key) and a server certificate signed by it
(server.crt, server.key; subjectAltName IP:127.0.0.1, DNS:localhost) with the openssl command
line, serves HTTPS on 127.0.0.1:PORT (threaded, keep-alive) and prints "listening on PORT" on
stdout once it accepts connections.

With --token-file every request must carry "Authorization: Bearer T" where T is the file's
current content, stripped (read on every request, so a test can rotate it); else 401 Status.
Without --token-file any request is let in.

Endpoints, shaped as the Kubernetes API reference documents them:
  GET /api/v1/pods, GET /api/v1/namespaces/NS/pods
      fieldSelector=spec.nodeName=NODE (the only selector supported; others: 400), limit=N,
      continue=TOKEN (410 Expired when unknown or too old), resourceVersion (ignored) -> PodList
      watch=true|1, resourceVersion=RV, allowWatchBookmarks=true, timeoutSeconds=N -> a chunked
      stream of {"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...} lines
  GET /api/v1/namespaces/NS/pods/NAME -> Pod, or 404 Status
  GET /version, /healthz, /readyz, /livez, /api

STATE.json (re-read on every request and polled every 100 ms; a missing or half-written file
keeps the last good state):
  {"pods": [{"name": "api-7d9f", "namespace": "shop", "node": "node-a",
             "annotations": {...}, "labels": {...},
             "containers": [{"name": "api", "id": "containerd://<64 hex>", "image": "img:tag"}],
             optional: "uid", "phase": "Running"}],
   "mode": "ok"|"slow"|"garbage"|"wrongshape"|"error"|"gone"|"unauthorized"|"close",
   "many": N (N generated pods default/gen-00000... on "many_node", default node-a),
   optional: "slow_seconds": 10, "variant": N, "history": 20000 (watch events kept),
             "bookmark_seconds": 2, "expire_continue": true|N (every, or the next N,
             continue tokens answer 410)}
Each request is logged as a JSON line {"method", "path" (with the query), "auth" (true, false,
or null without --token-file), "mode", "time"} to --log FILE, else to stderr; never the token.
See README.md for the modes.
"""
import argparse
import base64
import bisect
import datetime
import fcntl
import hashlib
import hmac
import json
import os
import re
import socketserver
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import OrderedDict, deque

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon as fc  # noqa: E402

MODES = ("ok", "slow", "garbage", "wrongshape", "error", "gone", "unauthorized", "close")
FIRST_RV = 100
SNAPSHOTS_KEPT = 16


def rfc3339(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details is not None:
        s["details"] = details
    return s


def too_old(rv, oldest):
    return status(410, "Expired", f"too old resource version: {rv} ({oldest})")


class Pod:
    """One pod at one resourceVersion: immutable, its JSON encoded once."""
    __slots__ = ("key", "ns", "name", "node", "fp", "rv", "body")

    def __init__(self, key, ns, name, node, fp, rv, body):
        self.key, self.ns, self.name, self.node, self.fp, self.rv, self.body = \
            key, ns, name, node, fp, rv, body

    def at(self, rv):
        """The same pod with another resourceVersion (a DELETED event's object)."""
        old = b'"resourceVersion": "%d"' % self.rv
        new = b'"resourceVersion": "%d"' % rv
        return Pod(self.key, self.ns, self.name, self.node, self.fp, rv,
                   self.body.replace(old, new, 1))


def norm_pod(e):
    """A state-file pod, checked and with its defaults, as a plain dict (its fingerprint is its
    sorted JSON)."""
    if not isinstance(e, dict):
        raise TypeError("a pod is not an object")
    name = e["name"]
    if not isinstance(name, str) or not name:
        raise TypeError("a pod's name is not a string")
    cs = []
    for i, c in enumerate(e.get("containers") or []):
        if not isinstance(c, dict):
            raise TypeError(f"{name}: a container is not an object")
        cid = str(c.get("id") or "")
        cs.append({"name": str(c.get("name") or f"c{i}"), "id": cid,
                   "image": str(c.get("image") or "img:latest"),
                   "ready": bool(c.get("ready", bool(cid)))})
    for k in ("annotations", "labels"):
        if not isinstance(e.get(k) or {}, dict):
            raise TypeError(f"{name}: {k} is not an object")
    return {"name": name, "namespace": str(e.get("namespace") or "default"),
            "node": str(e.get("node") if e.get("node") is not None else "node-a"),
            "uid": str(e.get("uid") or ""),
            "annotations": {str(k): str(v) for k, v in (e.get("annotations") or {}).items()},
            "labels": {str(k): str(v) for k, v in (e.get("labels") or {}).items()},
            "phase": str(e.get("phase") or "Running"), "containers": cs}


def gen_pod(i, node):
    return {"name": f"gen-{i:05d}", "namespace": "default", "node": node, "uid": "",
            "annotations": {}, "labels": {"app": "gen", "pod-template-hash": "5d8f7c9b4"},
            "phase": "Running",
            "containers": [{"name": "app", "image": "img:latest", "ready": True,
                            "id": "containerd://" + hashlib.sha256(b"gen-%d" % i).hexdigest()}]}


def pod_object(p, rv, created):
    """A v1 Pod, the fields a node agent reads, as the API documents them."""
    ts = rfc3339(created)
    uid = p["uid"] or str(uuid.uuid5(uuid.NAMESPACE_URL, f"ember-fake/{p['namespace']}/{p['name']}"))
    statuses = []
    for c in p["containers"]:
        s = {"name": c["name"], "ready": c["ready"], "restartCount": 0, "image": c["image"],
             "imageID": "docker.io/library/" + c["image"].split(":")[0] + "@sha256:" +
             hashlib.sha256(c["image"].encode()).hexdigest(), "started": bool(c["id"]),
             "lastState": {}}
        if c["id"]:
            s["containerID"] = c["id"]
            s["state"] = {"running": {"startedAt": ts}}
        else:
            s["state"] = {"waiting": {"reason": "ContainerCreating"}}
        statuses.append(s)
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": p["name"], "namespace": p["namespace"], "uid": uid,
                     "resourceVersion": str(rv), "creationTimestamp": ts,
                     "labels": p["labels"], "annotations": p["annotations"]},
        "spec": {"nodeName": p["node"], "restartPolicy": "Always", "serviceAccountName": "default",
                 "containers": [{"name": c["name"], "image": c["image"],
                                 "imagePullPolicy": "IfNotPresent"} for c in p["containers"]]},
        "status": {"phase": p["phase"], "hostIP": "10.0.0.1", "podIP": "10.244.0.2",
                   "startTime": ts, "qosClass": "BestEffort",
                   "conditions": [{"type": "Ready", "status": "True" if all(
                       c["ready"] for c in p["containers"]) else "False"}],
                   "containerStatuses": statuses},
    }


class KubeState:
    def __init__(self, pods, rv, mode, variant, slow, history, bookmark_s, expire_continue):
        self.pods = pods                      # sorted by key (namespace/name)
        self.keys = [p.key for p in pods]
        self.by_key = {p.key: p for p in pods}
        self.rv = rv
        self.mode, self.variant, self.slow = mode, variant, slow
        self.history, self.bookmark_s, self.expire_continue = history, bookmark_s, expire_continue


class Kube(fc.StateFile):
    """The pods, their resourceVersions and the watch history: (rv, type, Pod) in rv order;
    every event at or below self.horizon has been dropped."""

    def __init__(self, path):
        self.rv = FIRST_RV
        self.horizon = FIRST_RV
        self.history = deque()
        self.pending = []
        self.created = {}
        self.snapshots = OrderedDict()
        self.expired_given = 0
        super().__init__(path)

    def parse(self, doc, old):
        mode, variant, slow = fc.common_knobs(doc, MODES)
        entries = doc.get("pods", [])
        if not isinstance(entries, list):
            raise TypeError("pods is not a list")
        many = doc.get("many", 0)
        many_node = doc.get("many_node", "node-a")
        history = doc.get("history", 20000)
        bookmark_s = doc.get("bookmark_seconds", 2)
        expire = doc.get("expire_continue", False)
        if not isinstance(many, int) or many < 0 or many > 1_000_000:
            raise TypeError("many must be an integer in [0, 1000000]")
        if not isinstance(history, int) or history < 1:
            raise TypeError("history must be an integer >= 1")
        if not isinstance(bookmark_s, (int, float)) or bookmark_s <= 0:
            raise TypeError("bookmark_seconds must be a number > 0")
        if not isinstance(expire, (bool, int)):
            raise TypeError("expire_continue must be a boolean or a count")
        wanted = {}  # key -> (fp, source: a normalised dict, or an int for a generated pod)
        for e in entries:
            p = norm_pod(e)
            key = f"{p['namespace']}/{p['name']}"
            wanted[key] = (json.dumps(p, sort_keys=True), p)
        for i in range(many):
            key = f"default/gen-{i:05d}"
            if key not in wanted:
                wanted[key] = (f"gen:{i}:{many_node}", i)
        olds = old.by_key if old else {}
        pods, events = [], []
        for key in sorted(wanted):
            fp, src = wanted[key]
            prev = olds.get(key)
            if prev is not None and prev.fp == fp:
                pods.append(prev)
                continue
            self.rv += 1
            p = gen_pod(src, many_node) if isinstance(src, int) else src
            created = self.created.setdefault(key, time.time())
            body = json.dumps(pod_object(p, self.rv, created)).encode()
            pod = Pod(key, p["namespace"], p["name"], p["node"], fp, self.rv, body)
            pods.append(pod)
            events.append((self.rv, "ADDED" if prev is None else "MODIFIED", pod))
        for key, prev in sorted(olds.items()):
            if key not in wanted:
                self.rv += 1
                events.append((self.rv, "DELETED", prev.at(self.rv)))
                self.created.pop(key, None)
        if old is None or type(expire) is not type(old.expire_continue) or expire != old.expire_continue:
            self.expired_given = 0
        self.pending = events
        return KubeState(pods, self.rv, mode, variant, slow, history, bookmark_s, expire)

    def changed(self, old, new):
        self.history.extend(self.pending)
        self.pending = []
        while len(self.history) > new.history:
            self.horizon = self.history.popleft()[0]

    def events_after(self, rv):
        """The events after rv, or None when some of them were dropped. Call under self.cond."""
        if rv < self.horizon:
            return None
        out = []
        for e in reversed(self.history):
            if e[0] <= rv:
                break
            out.append(e)
        out.reverse()
        return out

    def snapshot(self, st):
        with self.cond:
            self.snapshots[st.rv] = st
            self.snapshots.move_to_end(st.rv)
            while len(self.snapshots) > SNAPSHOTS_KEPT:
                self.snapshots.popitem(last=False)

    def continue_from(self, token, st):
        """(snapshot state, start key) for a continue token, or None when it is unknown or too
        old (or the state expires it)."""
        with self.cond:
            e = st.expire_continue
            if e is True or (not isinstance(e, bool) and self.expired_given < e):
                self.expired_given += 1
                return None
            try:
                pad = "=" * (-len(token) % 4)
                c = json.loads(base64.urlsafe_b64decode(token + pad))
                snap = self.snapshots.get(int(c["rv"]))
                start = c["start"]
            except (ValueError, TypeError, KeyError):
                return None
            if snap is None or not isinstance(start, str):
                return None
            return snap, start


def continue_token(rv, key):
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def ensure_tls(d):
    """A CA and a server certificate for 127.0.0.1 and localhost, made once per DIR (under a
    lock, written atomically, so concurrent fakes share them)."""
    os.makedirs(d, exist_ok=True)
    names = ("ca.crt", "ca.key", "server.crt", "server.key")
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        have = {n: os.path.exists(os.path.join(d, n)) for n in names}
        if all(have.values()):
            return
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            cnf = os.path.join(tmp, "openssl.cnf")
            with open(cnf, "w") as f:
                f.write("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = ember test CA\n"
                        "[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
                        "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"
                        "[v3_srv]\nbasicConstraints = critical,CA:FALSE\n"
                        "keyUsage = critical,digitalSignature,keyEncipherment\n"
                        "extendedKeyUsage = serverAuth\n"
                        "subjectAltName = IP:127.0.0.1,DNS:localhost\n"
                        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid,issuer\n")
            t = lambda n: os.path.join(tmp, n)  # noqa: E731

            def run(*a):
                subprocess.run(["openssl", *a], check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            ca_crt, ca_key = os.path.join(d, "ca.crt"), os.path.join(d, "ca.key")
            if not (have["ca.crt"] and have["ca.key"]):
                run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", t("ca.key"))
                run("req", "-x509", "-new", "-config", cnf, "-extensions", "v3_ca",
                    "-key", t("ca.key"), "-sha256", "-days", "3650", "-out", t("ca.crt"))
                ca_crt, ca_key = t("ca.crt"), t("ca.key")
            run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", t("server.key"))
            run("req", "-new", "-config", cnf, "-key", t("server.key"), "-subj", "/CN=localhost",
                "-out", t("server.csr"))
            run("x509", "-req", "-in", t("server.csr"), "-CA", ca_crt, "-CAkey", ca_key,
                "-set_serial", "0x" + os.urandom(12).hex(), "-days", "3650", "-sha256",
                "-extfile", cnf, "-extensions", "v3_srv", "-out", t("server.crt"))
            for n in names:
                if os.path.exists(t(n)):
                    os.chmod(t(n), 0o600 if n.endswith(".key") else 0o644)
                    os.replace(t(n), os.path.join(d, n))


def one(q, name, default=""):
    return q.get(name, [default])[-1]


class KubeHandler(fc.Handler):
    extra_headers = (("Cache-Control", "no-cache, private"),)

    def version_string(self):
        return "ember-fake-kube-apiserver"

    def handle(self):
        try:
            self.connection.do_handshake()
        except (OSError, ValueError):
            self.close_connection = True
            return
        super().handle()

    def authorized(self):
        """True, False, or None when no token is asked for."""
        tf = self.server.token_file
        if tf is None:
            return None
        try:
            with open(tf) as f:
                want = f.read().strip()
        except OSError:
            return False
        got = self.headers.get("Authorization", "")
        scheme, _, token = got.partition(" ")
        return bool(want) and scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), want.encode())

    def route(self, method, target):
        k = self.server.kube
        auth = self.authorized()
        st = k.refresh()
        self.server.log.write({"method": method, "path": target, "auth": auth,
                               "mode": st.mode, "time": time.time()})
        if st.mode == "close":
            return self.cut()
        if st.mode == "slow":
            if not self.pause(st.slow):
                return
            st = k.refresh()
            if st.mode == "close":
                return self.cut()
        mode = "ok" if st.mode == "slow" else st.mode
        if mode == "unauthorized" or auth is False:
            return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        if mode == "error":
            return self.send_json(500, status(500, "InternalError", "boom"))
        url = urllib.parse.urlsplit(target)
        path = url.path.rstrip("/") or "/"
        q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if method not in ("GET", "HEAD"):
            return self.send_json(405, status(405, "MethodNotAllowed",
                                              "the server does not allow this method on the requested resource"))
        if path in ("/healthz", "/readyz", "/livez"):
            return self.send_body(200, b"ok", "text/plain; charset=utf-8")
        if path == "/version":
            return self.answer(mode, 200, {"major": "1", "minor": "29", "gitVersion": "v1.29.0",
                                           "gitCommit": "3f7a50f38688eb332e2a1b013678c6435d539ae6",
                                           "gitTreeState": "clean", "buildDate": "2023-12-13T08:45:03Z",
                                           "goVersion": "go1.21.5", "compiler": "gc",
                                           "platform": "linux/amd64"})
        if path == "/api":
            return self.answer(mode, 200, {"kind": "APIVersions", "versions": ["v1"],
                                           "serverAddressByClientCIDRs": [
                                               {"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": "127.0.0.1:%d" % self.server.server_address[1]}]})
        m = re.match(r"^/api/v1(?:/namespaces/([^/]+))?/pods(?:/([^/]+))?$", path)
        if not m or (m.group(2) and not m.group(1)):
            return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource",
                                              {}))
        ns = urllib.parse.unquote(m.group(1)) if m.group(1) else None
        if m.group(2):
            name = urllib.parse.unquote(m.group(2))
            pod = st.by_key.get(f"{ns}/{name}")
            if pod is None:
                return self.answer(mode, 404, status(404, "NotFound", f'pods "{name}" not found',
                                                     {"name": name, "kind": "pods"}))
            return self.answer(mode, 200, pod.body)
        node = self.node_selector(q)
        if isinstance(node, dict):
            return self.send_json(400, node)
        if one(q, "watch").lower() in ("true", "1"):
            return self.watch(k, st, q, ns, node, mode)
        return self.list(k, st, q, ns, node, mode)

    def node_selector(self, q):
        """The node of fieldSelector=spec.nodeName=NODE, None without a selector, or a 400 Status."""
        if one(q, "labelSelector"):
            return status(400, "BadRequest", "labelSelector is not supported by this fake")
        fs = one(q, "fieldSelector")
        if not fs:
            return None
        m = re.match(r"^spec\.nodeName==?([^,=!]*)$", fs)
        if m:
            return m.group(1)
        field = re.split(r"[=!,]", fs, 1)[0]
        if field != "spec.nodeName":
            return status(400, "BadRequest", f"field label not supported: {field}")
        return status(400, "BadRequest", f"unsupported field selector (only spec.nodeName=NODE): {fs}")

    def answer(self, mode, code, obj):
        """obj (or its JSON as bytes) in mode ok, else its garbage or wrongshape form (200)."""
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        if mode in ("garbage", "wrongshape"):
            v = self.server.variants.next(self.server.kube.good.variant)
            if mode == "garbage":
                return self.send_body(200, fc.garbage(body, v))
            return self.send_body(200, fc.wrongshape(json.loads(body), v))
        return self.send_body(code, body)

    def list(self, k, st, q, ns, node, mode):
        limit = one(q, "limit", "0") or "0"
        if not re.match(r"^\d+$", limit):
            return self.send_json(400, status(400, "BadRequest", f"invalid limit: {limit}"))
        limit = int(limit)
        snap, start, i = st, None, 0
        token = one(q, "continue")
        if token:
            got = k.continue_from(token, st)
            if got is None:
                return self.send_json(410, status(
                    410, "Expired", "The provided continue parameter is too old to display a "
                    "consistent list result. You can start a new list without the continue parameter."))
            snap, start = got
            i = bisect.bisect_right(snap.keys, start)
        items = []
        pods = snap.pods
        n = len(pods)
        while i < n:
            p = pods[i]
            i += 1
            if (ns is None or p.ns == ns) and (node is None or p.node == node):
                items.append(p)
                if limit and len(items) == limit:
                    break
        meta = {"resourceVersion": str(snap.rv)}
        if limit and len(items) == limit:
            more = any((ns is None or p.ns == ns) and (node is None or p.node == node)
                       for p in pods[i:])
            if more:
                k.snapshot(snap)
                meta["continue"] = continue_token(snap.rv, items[-1].key)
                if ns is None and node is None:
                    meta["remainingItemCount"] = n - i
        head = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": meta}).encode()
        body = head[:-1] + b', "items": [' + b", ".join(p.body for p in items) + b"]}"
        return self.answer(mode, 200, body)

    def watch(self, k, st, q, ns, node, mode):
        """A watch: the events after resourceVersion (every pod as ADDED for "" or "0"), then
        the changes as they come, bookmarks, until timeoutSeconds, the client leaves, the fake
        stops, the mode turns to close (cut) or gone (ERROR 410), or the watcher falls behind
        the history kept (ERROR 410)."""
        rv_s = one(q, "resourceVersion")
        if rv_s not in ("", "0") and not re.match(r"^\d+$", rv_s):
            return self.send_json(400, status(400, "BadRequest", f"invalid resource version: {rv_s}"))
        t_s = one(q, "timeoutSeconds")
        if t_s and not re.match(r"^\d+$", t_s):
            return self.send_json(400, status(400, "BadRequest", f"invalid timeoutSeconds: {t_s}"))
        deadline = time.monotonic() + int(t_s) if t_s else None
        bookmarks = one(q, "allowWatchBookmarks").lower() in ("true", "1")
        match = lambda p: (ns is None or p.ns == ns) and (node is None or p.node == node)  # noqa: E731
        self.start_stream()
        if mode == "gone":
            self.chunk(self.event("ERROR", json.dumps(too_old(rv_s or 0, st.rv)).encode(), "ok"))
            return self.end_stream()
        if mode in ("garbage", "wrongshape"):
            sample = st.pods[0].body if st.pods else json.dumps(
                pod_object(norm_pod({"name": "sample"}), st.rv, time.time())).encode()
            self.chunk(self.event("ADDED", sample, mode))
        with k.cond:
            if rv_s in ("", "0"):
                cursor, initial = k.good.rv, [p for p in k.good.pods if match(p)]
            else:
                cursor, initial = int(rv_s), []
                if cursor < k.horizon:
                    initial = None
        if initial is None:
            self.chunk(self.event("ERROR", json.dumps(too_old(cursor, k.horizon)).encode(), "ok"))
            return self.end_stream()
        self.send_events([("ADDED", p.body) for p in initial], mode)
        next_bookmark = time.monotonic() + st.bookmark_s
        while not fc.STOP.is_set():
            with k.cond:
                if k.good.rv <= cursor:
                    k.cond.wait(fc.POLL_S)
                new = k.events_after(cursor)
                horizon = k.horizon
            st = k.good
            if st.mode == "close":
                return self.cut()
            if st.mode == "gone" or new is None:
                self.chunk(self.event("ERROR", json.dumps(too_old(cursor, horizon if new is None else st.rv)).encode(), "ok"))
                return self.end_stream()
            if new:
                cursor = new[-1][0]
                self.send_events([(t, p.body) for _, t, p in new if match(p)], st.mode)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return self.end_stream()
            if bookmarks and now >= next_bookmark:
                next_bookmark = now + st.bookmark_s
                self.chunk(self.event("BOOKMARK", json.dumps(
                    {"kind": "Pod", "apiVersion": "v1",
                     "metadata": {"resourceVersion": str(cursor)}}).encode(), st.mode))
            if self.client_gone():
                self.close_connection = True
                return
        self.end_stream()

    def send_events(self, events, mode):
        buf = []
        size = 0
        for t, body in events:
            line = self.event(t, body, mode)
            buf.append(line)
            size += len(line)
            if size >= 65536:
                self.chunk(b"".join(buf))
                buf, size = [], 0
        self.chunk(b"".join(buf))

    def event(self, typ, body, mode):
        line = b'{"type": "%s", "object": %s}' % (typ.encode(), body)
        if mode == "garbage":
            return fc.garbage(line, self.server.variants.next(self.server.kube.good.variant)) + b"\n"
        if mode == "wrongshape":
            return fc.wrongshape(json.loads(line), self.server.variants.next(self.server.kube.good.variant)) + b"\n"
        return line + b"\n"


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--state", required=True)
    ap.add_argument("--tls-dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token-file")
    ap.add_argument("--log")
    args = ap.parse_args()
    ensure_tls(args.tls_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(args.tls_dir, "server.crt"),
                        os.path.join(args.tls_dir, "server.key"))
    ctx.set_alpn_protocols(["http/1.1"])
    srv = Server(("127.0.0.1", args.port), KubeHandler)
    # The handshake runs in the connection's thread (KubeHandler.handle), so a client that
    # connects and says nothing holds up no one else.
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.kube = Kube(args.state)
    srv.token_file = args.token_file
    srv.log = fc.RequestLog(args.log)
    srv.variants = fc.Variants()
    print(f"listening on {srv.server_address[1]}", flush=True)
    fc.serve(srv)


if __name__ == "__main__":
    main()
