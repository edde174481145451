#!/usr/bin/env python3
"""receiver: a Pyroscope-compatible ingestion endpoint for Ember's tests.

Serves POST /push.v1.PusherService/Push (Connect, application/proto) and POST /ingest (also
/pyroscope/ingest) and applies the rules Grafana Pyroscope documents (PYROSCOPE.md §1, §2, §4):
__name__ required, label name charset, at most 30 labels, no duplicate names, value length,
gzip sniffing, the 4 MiB uncompressed profile limit, the 2 MiB per-series ingestion burst
(429), 16000 samples, the ingestion window for time_nanos, sample types without '-'. Profiles
are decoded by pprofdump (google/pprof) and the PushRequest by python3-protobuf from a module
that protoc generates from pprof/push.proto at start-up: neither is Ember's code.

Accepted series are appended as JSON lines to --record:
  {"endpoint": "push"|"ingest", "labels": {...}, "profile": <pprofdump JSON>,
   "headers": {"X-Scope-OrgID": str|null, "Authorization": scheme|null, "user": basic user|null,
               "Content-Type": str|null},
   "query": {...} (ingest only: name, from_ns, until_ns, format, spyName), "received_at": unix s}
Secrets (passwords, tokens) are never recorded. Every request is appended to --requests as
  {"method", "path", "status", "code", "message", "time"}.

With --tls-cert/--tls-key it serves HTTPS (tests/receiver/tls/ holds a test CA and a
certificate for 127.0.0.1 and localhost, valid until 2126). Prints "listening on PORT" on stdout once it accepts connections. GET /ready answers 200.
"""
import argparse
import base64
import gzip
import importlib
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PUSH_PATH = "/push.v1.PusherService/Push"
INGEST_PATHS = ("/ingest", "/pyroscope/ingest")

MAX_LABELS = 30
MAX_LABEL_NAME = 1024
MAX_LABEL_VALUE = 2048
MAX_PROFILE_BYTES = 4 << 20        # max_profile_size_bytes, uncompressed
BURST_BYTES = 2 << 20              # ingestion_burst_size_mb, per series
MAX_SAMPLES = 16000                # max_profile_stacktrace_samples
REJECT_OLDER_NS = 3600 * 10**9     # reject_older_than 1h
REJECT_NEWER_NS = 600 * 10**9      # reject_newer_than 10m

LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.]*$")
APP_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-/]+$")
INGEST_LABEL_RE = re.compile(r"^[A-Za-z0-9_.]+$")

CONNECT_STATUS = {400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied",
                  404: "not_found", 405: "unimplemented", 408: "deadline_exceeded",
                  409: "aborted", 413: "resource_exhausted", 415: "invalid_argument",
                  422: "invalid_argument", 429: "resource_exhausted", 500: "internal",
                  501: "unimplemented", 502: "unavailable", 503: "unavailable",
                  504: "deadline_exceeded"}


class Reject(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def invalid(msg):
    return Reject(400, "invalid_argument", msg)


def load_push_pb2(protoc, proto_dir):
    """Generates push_pb2 with protoc and imports it with python3-protobuf."""
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        # A non-Debian python3 first on PATH: use Debian's python3-protobuf.
        sys.path.append("/usr/lib/python3/dist-packages")
        import google.protobuf  # noqa: F401
    out = tempfile.mkdtemp(prefix="receiver-pb2-")
    subprocess.run([protoc, f"--python_out={out}", f"-I{proto_dir}",
                    os.path.join(proto_dir, "push.proto")], check=True)
    sys.path.insert(0, out)
    return importlib.import_module("push_pb2")


def gunzip_limited(data, limit):
    """Plain bytes as is; gzip (1f 8b) decompressed, refusing more than limit bytes."""
    if data[:2] != b"\x1f\x8b":
        if len(data) > limit:
            raise invalid("uncompressed profile payload size exceeds limit of %d bytes" % limit)
        return data
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise invalid("failed to decompress profile: %s" % e)
    if len(out) > limit:
        raise invalid("uncompressed profile payload size exceeds limit of %d bytes" % limit)
    return out


def parse_time(s, now_ns):
    """attime: digits (8 = YYYYMMDD, 13 = ms, 16 = µs, 19 = ns, else s), now, now-N[smhd]."""
    if not s:
        return now_ns
    if s.isdigit():
        if len(s) == 8:
            return int(time.mktime(time.strptime(s, "%Y%m%d"))) * 10**9
        return int(s) * {13: 10**6, 16: 10**3, 19: 1}.get(len(s), 10**9)
    m = re.fullmatch(r"now(?:-(\d+)([smhd]))?", s)
    if not m:
        raise invalid("invalid time %r" % s)
    if not m.group(1):
        return now_ns
    mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return now_ns - int(m.group(1)) * mult * 10**9


def parse_ingest_name(name):
    """labelset.Parse: `app.name{k1=v1,k2=v2}`; returns (app, {labels})."""
    if "{" in name:
        app, rest = name.split("{", 1)
        if not rest.endswith("}"):
            raise invalid("invalid name %r: missing '}'" % name)
        rest = rest[:-1]
    else:
        app, rest = name, ""
    app = app.strip()
    if not app:
        raise invalid("service name is required")
    if not APP_NAME_RE.match(app):
        raise invalid("invalid app name %r" % app)
    labels = {}
    for part in rest.split(",") if rest.strip() else []:
        if "=" not in part:
            raise invalid("invalid tag %r in name" % part)
        k, v = part.split("=", 1)
        k, v = k.strip(), v.strip()
        if not k or not INGEST_LABEL_RE.match(k) or k == "__name__":
            raise invalid("invalid tag key %r in name" % k)
        if "{" in v or "}" in v:
            raise invalid("invalid tag value %r in name" % v)
        labels[k] = v
    return app, labels


def metric_name(sample_types):
    """createLabels' metricName: __name__ of an /ingest pprof from its sample types."""
    types = [t for t, _ in sample_types]
    if "wall" in types:
        return "wall"
    for t in types:
        if "cpu" in t:
            return "process_cpu"
        if "alloc_" in t or "inuse_" in t or t in ("space", "objects"):
            return "memory"
        if "mutex_" in t:
            return "mutex"
        if "block_" in t:
            return "block"
        if "goroutines" in t:
            return "goroutines"
    return types[-1]


def validate_labels(pairs):
    """pairs: [(name, value)] as sent. Pyroscope's ValidateLabels plus the pre-2.0 charset."""
    desc = "{" + ", ".join('%s="%s"' % p for p in pairs) + "}"
    names = [n for n, _ in pairs]
    if not any(n == "__name__" and v for n, v in pairs):
        raise invalid("invalid labels '%s' with error: invalid metric name" % desc)
    if len(pairs) > MAX_LABELS:
        raise invalid("profile series '%s' has %d label names; limit %d"
                      % (desc, len(pairs), MAX_LABELS))
    seen = set()
    for n, v in pairs:
        if len(n) > MAX_LABEL_NAME:
            raise invalid("label_name_too_long: profile with labels '%s' has label name too "
                          "long: '%s'" % (desc, n))
        if len(v) > MAX_LABEL_VALUE:
            raise invalid("label_value_too_long: profile with labels '%s' has label value too "
                          "long: '%s'" % (desc, v[:64]))
        if not LABEL_NAME_RE.match(n):
            raise invalid("invalid_labels: profile with labels '%s' has invalid label name: "
                          "'%s'" % (desc, n))
        if n in seen:
            raise invalid("duplicate_label_names: profile with labels '%s' has duplicate "
                          "label name: '%s'" % (desc, n))
        seen.add(n)
    return dict(pairs)


class Receiver:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.nrequests = 0
        self.push_pb2 = load_push_pb2(args.protoc, args.proto_dir)

    def append(self, path, obj):
        if not path:
            return
        with self.lock, open(path, "a") as f:
            f.write(json.dumps(obj, sort_keys=True) + "\n")

    def decode_profile(self, raw, label_bytes):
        """Checks one raw profile as the distributor does; returns pprofdump's JSON."""
        data = gunzip_limited(raw, MAX_PROFILE_BYTES)
        if len(data) + label_bytes > BURST_BYTES:
            raise Reject(429, "resource_exhausted",
                         "push rate limit (%d B) exceeded while adding %d B"
                         % (BURST_BYTES, len(data) + label_bytes))
        with tempfile.NamedTemporaryFile(suffix=".pb") as f:
            f.write(data)
            f.flush()
            r = subprocess.run([self.args.pprofdump, f.name], capture_output=True, text=True)
        if r.returncode != 0:
            raise invalid("failed to parse profile: %s" % r.stderr.strip())
        prof = json.loads(r.stdout)
        if len(prof.get("samples") or []) > MAX_SAMPLES:
            raise invalid("samples_limit: profile has %d samples; limit %d"
                          % (len(prof["samples"]), MAX_SAMPLES))
        for t, _ in prof.get("sample_types") or []:
            if "-" in t:
                raise invalid("sample type contains -: %s" % t)
        return prof

    @staticmethod
    def check_window(prof, now_ns):
        t = prof.get("time_nanos") or 0
        if t == 0:
            return
        if t < now_ns - REJECT_OLDER_NS or t > now_ns + REJECT_NEWER_NS:
            raise invalid("not_in_ingestion_window: profile with time_nanos %d is outside the "
                          "ingestion window [now-1h, now+10m]" % t)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Pyroscope's server; lets curl reuse
    server_version = "ember-test-receiver"

    def log_message(self, fmt, *a):  # quiet unless --verbose
        if self.server.rx.args.verbose:
            sys.stderr.write("receiver: " + (fmt % a) + "\n")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip(), 16)
                chunk = self.rfile.read(n + 2)[:n]
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += chunk
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status, body=b"", ctype="application/json", code="", message=""):
        rx = self.server.rx
        rx.append(rx.args.requests, {"method": self.command, "path": self.path.split("?")[0],
                                     "status": status, "code": code, "message": message,
                                     "time": time.time()})
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_error(self, status, code, message):
        body = json.dumps({"code": code, "message": message}).encode()
        self.reply(status, body, code=code, message=message)

    def not_post(self):
        path = self.path.split("?")[0]
        if self.command == "GET" and path == "/ready":
            self.reply(200, b"ready\n", "text/plain")
        elif path == PUSH_PATH or path in INGEST_PATHS:
            self.reply_error(405, "unimplemented", "method not allowed")
        else:
            self.reply_error(404, "not_found", "404 page not found")

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = not_post

    def do_POST(self):
        rx = self.server.rx
        args = rx.args
        path, _, query = self.path.partition("?")
        body = self.read_body()
        if path != PUSH_PATH and path not in INGEST_PATHS:
            return self.reply_error(404, "not_found", "404 page not found")
        with rx.lock:
            rx.nrequests += 1
            n = rx.nrequests
        if args.delay:
            time.sleep(args.delay)  # a server that hangs: the client's deadline must cut in
        try:
            user = self.authenticate()
            if n <= args.fail_count:
                raise Reject(args.fail_status, CONNECT_STATUS.get(args.fail_status, "unknown"),
                             "injected failure %d of %d" % (n, args.fail_count))
            if self.headers.get("Content-Encoding", "identity").lower() == "gzip":
                body = gzip.decompress(body)
            if path == PUSH_PATH:
                records = self.handle_push(body)
            else:
                records = self.handle_ingest(query, body)
        except Reject as e:
            return self.reply_error(e.status, e.code, e.message)
        headers = {"X-Scope-OrgID": self.headers.get("X-Scope-OrgID"),
                   "Authorization": (self.headers.get("Authorization") or "").split(" ")[0]
                   or None,
                   "user": user,
                   "Content-Type": self.headers.get("Content-Type")}
        for r in records:
            r["headers"] = headers
            r["received_at"] = time.time()
            rx.append(args.record, r)
        if path == PUSH_PATH:
            self.reply(200, b"", "application/proto")
        else:
            self.reply(200, b"", "text/plain")

    def authenticate(self):
        """401 unauthenticated unless the configured tenant/credentials are present."""
        args = self.server.rx.args
        auth = self.headers.get("Authorization") or ""
        user = None
        if auth.startswith("Basic "):
            try:
                user = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            except Exception:
                user = None
        if args.require_tenant and not self.headers.get("X-Scope-OrgID"):
            raise Reject(401, "unauthenticated", "no org id")
        if args.basic_auth:
            want = "Basic " + base64.b64encode(args.basic_auth.encode()).decode()
            if auth != want:
                raise Reject(401, "unauthenticated", "invalid basic auth credentials")
        if args.bearer_token and auth != "Bearer " + args.bearer_token:
            raise Reject(401, "unauthenticated", "invalid bearer token")
        return user

    def handle_push(self, body):
        rx = self.server.rx
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/proto":
            raise Reject(415, "invalid_argument", "unsupported content type %r" % ctype)
        req = rx.push_pb2.PushRequest()
        try:
            req.ParseFromString(body)
        except Exception as e:
            raise invalid("failed to decode PushRequest: %s" % e)
        if not any(len(s.samples) for s in req.series):
            raise invalid("no profiles received")
        now = time.time_ns()
        records = []
        for s in req.series:
            pairs = [(lp.name, lp.value) for lp in s.labels]
            labels = validate_labels(pairs)
            labels.setdefault("service_name", "unknown_service")
            label_bytes = sum(len(n) + len(v) for n, v in pairs)
            for smp in s.samples:
                prof = rx.decode_profile(smp.raw_profile, label_bytes)
                rx.check_window(prof, now)
                records.append({"endpoint": "push", "labels": labels, "profile": prof,
                                "id": smp.ID})
        return records

    def handle_ingest(self, query, body):
        rx = self.server.rx
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        get = lambda k: q[k][0] if k in q else ""  # noqa: E731
        name = get("name")
        app, user_labels = parse_ingest_name(name)
        now = time.time_ns()
        from_ns, until_ns = parse_time(get("from"), now), parse_time(get("until"), now)
        fmt = get("format")
        ctype = self.headers.get("Content-Type") or ""
        if fmt == "pprof":
            raw = body
        elif fmt in ("", "groups") and "multipart/form-data" in ctype:
            raw = self.multipart_profile(ctype, body)
            if raw is None:
                return []  # no profile part: the server stores nothing and answers 200
        else:
            raise invalid("format %r is not supported by this test receiver" % fmt)
        if not raw:
            return []
        try:
            prof = rx.decode_profile(raw, 0)
        except Reject as e:
            if e.status == 400:  # /ingest maps ingestion errors other than limits to 422
                e.status = 422
            raise
        if not prof.get("time_nanos") or prof["time_nanos"] < 365 * 86400 * 10**9:
            prof["time_nanos"] = from_ns
        labels = {"__name__": metric_name(prof["sample_types"]), "__delta__": "false",
                  "pyroscope_spy": get("spyName") or "unknown"}
        for k, v in user_labels.items():
            if not k.startswith("__") or k == "__session_id__":
                labels[k] = v
        labels.setdefault("service_name", app)
        try:
            validate_labels(sorted(labels.items()))
            rx.check_window(prof, now)
        except Reject as e:
            e.status = 422
            raise
        return [{"endpoint": "ingest", "labels": labels, "profile": prof,
                 "query": {"name": name, "from_ns": from_ns, "until_ns": until_ns,
                           "format": fmt, "spyName": get("spyName")}}]

    @staticmethod
    def multipart_profile(ctype, body):
        """form.File parts only: a part without filename= is ignored. Returns the profile."""
        msg = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
        if not msg.is_multipart():
            raise invalid("malformed multipart body")
        files = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename() is None or not name:
                continue
            files[name] = part.get_payload(decode=True) or b""
        if "prev_profile" in files:
            raise Reject(422, "invalid_argument", "unsupported client version")
        return files.get("profile")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: an ephemeral port")
    ap.add_argument("--record", help="JSON lines, one per accepted series")
    ap.add_argument("--requests", help="JSON lines, one per request")
    ap.add_argument("--pprofdump", required=True)
    ap.add_argument("--protoc", default="protoc")
    ap.add_argument("--proto-dir", required=True, help="directory holding push.proto")
    ap.add_argument("--require-tenant", action="store_true", help="401 without X-Scope-OrgID")
    ap.add_argument("--basic-auth", metavar="USER:PASS", help="401 without these credentials")
    ap.add_argument("--bearer-token", help="401 without Authorization: Bearer TOKEN")
    ap.add_argument("--fail-status", type=int, default=503)
    ap.add_argument("--fail-count", type=int, default=0,
                    help="answer --fail-status to the first N push/ingest requests")
    ap.add_argument("--delay", type=float, default=0,
                    help="wait this many seconds before answering a push/ingest request")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain)")
    ap.add_argument("--tls-key", help="the certificate's PEM private key")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    rx = Receiver(args)
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    srv.rx = rx
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("listening on %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
