"""fakecommon: what docker_api.py and kube_api.py share.

- StateFile: the test's JSON state file, re-read on every request and polled every 100 ms by a
  thread; a missing, unreadable or half-written file (or one of the wrong shape) keeps the last
  good state. A subclass turns the document into an immutable state object and diffs the old
  and the new one into events.
- RequestLog: one JSON line per request, appended to --log FILE (or written to stderr).
- Handler: HTTP/1.1 (keep-alive) with helpers for fixed-length answers, chunked streams, cutting
  the connection, waiting while noticing shutdown and a client that went away.
- garbage() and wrongshape(): the bodies of the "garbage" and "wrongshape" modes, derived from the
  answer the fake would have given, so that every endpoint gets its own broken variant.
- serve(): runs a socketserver until SIGTERM/SIGINT; open streams and slow answers end within
  about 100 ms of the signal.
"""
import json
import os
import random
import select
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

STOP = threading.Event()
MIB = 1 << 20
POLL_S = 0.1
WRITE_ERRORS = (OSError, ValueError, ssl.SSLError)


def warn(msg):
    print(msg, file=sys.stderr, flush=True)


class RequestLog:
    """JSON lines, one per request, written with one write(2) on an O_APPEND fd so that a reader
    never sees two records interleaved."""

    def __init__(self, path):
        if path:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        else:
            self.fd = sys.stderr.fileno()

    def write(self, record):
        try:
            os.write(self.fd, (json.dumps(record, sort_keys=True) + "\n").encode())
        except OSError:
            pass


class StateFile:
    """Subclasses define parse(doc, old) -> state (raise ValueError/TypeError/KeyError on a
    wrong shape) and changed(old, new), called under self.cond when the state changes.
    self.good is the last good state object; read it without the lock (it is replaced, never
    mutated)."""

    def __init__(self, path):
        self.path = path
        self.cond = threading.Condition()
        self.raw = None
        self.good = self.parse({}, None)
        self.refresh()
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self):
        while not STOP.wait(POLL_S):
            self.refresh()

    def refresh(self):
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError:
            return self.good
        with self.cond:
            if raw == self.raw:
                return self.good
            self.raw = raw
            try:
                doc = json.loads(raw)
                if not isinstance(doc, dict):
                    raise TypeError("the state is not a JSON object")
                new = self.parse(doc, self.good)
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                if raw.strip():
                    warn(f"fake: {self.path}: keeping the last good state: {e}")
                return self.good
            old, self.good = self.good, new
            self.changed(old, new)
            self.cond.notify_all()
            return new

    def parse(self, doc, old):
        raise NotImplementedError

    def changed(self, old, new):
        pass


def common_knobs(doc, modes):
    mode = doc.get("mode", "ok")
    if mode not in modes:
        raise ValueError(f"unknown mode {mode!r} (known: {', '.join(modes)})")
    variant = doc.get("variant")
    if variant is not None and not isinstance(variant, int):
        raise TypeError("variant must be an integer")
    slow = doc.get("slow_seconds", 10)
    if not isinstance(slow, (int, float)) or slow < 0:
        raise TypeError("slow_seconds must be a number >= 0")
    return mode, variant, float(slow)


class Variants:
    """The variant of a garbage/wrongshape answer: the state's "variant" when set, else the next
    one in turn (a counter per fake), so that repeated requests see every variant."""

    def __init__(self):
        self.lock = threading.Lock()
        self.n = 0

    def next(self, fixed):
        if fixed is not None:
            return fixed
        with self.lock:
            self.n += 1
            return self.n - 1


GARBAGE_VARIANTS = 4
WRONGSHAPE_VARIANTS = 5


def garbage(body, variant):
    """A 200 body that is not JSON: 0 the real answer cut in half, 1 4 KiB of random bytes after
    a gzip magic, 2 an HTML error page, 3 invalid UTF-8 and NUL bytes around the answer's start."""
    v = variant % GARBAGE_VARIANTS
    if v == 0:
        return body[:max(1, len(body) // 2)]
    if v == 1:
        return b"\x1f\x8b\x08\x00" + random.Random(len(body)).randbytes(4096)
    if v == 2:
        return b"<html><head><title>502 Bad Gateway</title></head><body>bad gateway</body></html>\n"
    return b"\xff\xfe\x00" + body[:64] + b"\x00\xc3\x28 not json"


HUGE_KEYS = {"Id", "ID", "id", "Names", "Name", "name", "Image", "image", "from", "Hostname",
             "namespace", "uid", "nodeName", "containerID"}
MAP_KEYS = {"Labels", "labels", "annotations", "Attributes"}


def _swap_scalars(o):
    if isinstance(o, dict):
        return {k: _swap_scalars(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_swap_scalars(v) for v in o]
    if isinstance(o, bool):
        return "true" if o else "false"
    if isinstance(o, (int, float)):
        return str(o)
    if isinstance(o, str):
        return len(o) * 1000003 + 7
    return {}


def _huge(o, budget):
    """Appends 1 MiB to the strings that name things (HUGE_KEYS) and adds a 1 MiB label, until
    budget (a one-element list, counting MiB) runs out; walks the first list element only."""
    if budget[0] <= 0:
        return o
    if isinstance(o, list):
        return [_huge(o[0], budget)] + o[1:] if o else o
    if not isinstance(o, dict):
        return o
    out = {}
    for k, v in o.items():
        if budget[0] > 0 and k in HUGE_KEYS and isinstance(v, str):
            budget[0] -= 1
            out[k] = v + "x" * MIB
        elif budget[0] > 0 and k in HUGE_KEYS and isinstance(v, list) and v and isinstance(v[0], str):
            budget[0] -= 1
            out[k] = [v[0] + "x" * MIB] + v[1:]
        elif budget[0] > 0 and k in MAP_KEYS and isinstance(v, dict):
            budget[0] -= 1
            out[k] = dict(v, **{"k" * 1024: "v" * MIB})
        else:
            out[k] = _huge(v, budget)
    return out


def wrongshape(obj, variant):
    """Valid JSON of the wrong shape: 0 the top level's type swapped (a list becomes an object, an
    object a list), 1 every scalar's type swapped (strings become numbers, numbers and booleans
    strings, null an object), 2 1 MiB strings in the fields that name things (at most 8 MiB),
    3 null, 4 arrays nested 100000 deep."""
    v = variant % WRONGSHAPE_VARIANTS
    if v == 0:
        if isinstance(obj, list):
            return json.dumps({"items": obj, "0": obj[:1]}).encode()
        return json.dumps([obj]).encode()
    if v == 1:
        return json.dumps(_swap_scalars(obj)).encode()
    if v == 2:
        return json.dumps(_huge(obj, [8])).encode()
    if v == 3:
        return b"null"
    return b"[" * 100000 + b"]" * 100000


class Handler(BaseHTTPRequestHandler):
    """A fake's request handler: subclasses define route(method, target)."""
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections and stuck writes end after this
    extra_headers = ()

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def dispatch(self, method):
        self.method = method
        try:
            n = int(self.headers.get("Content-Length") or 0)
            if n > 0:
                self.rfile.read(min(n, 16 * MIB))
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.close_connection = True  # a request body the fakes do not read
            self.route(method, self.path)
        except WRITE_ERRORS:
            self.close_connection = True

    def route(self, method, target):
        raise NotImplementedError

    def send_body(self, code, body, ctype="application/json", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        for k, v in list(self.extra_headers) + list(headers):
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.method != "HEAD":
            self.wfile.write(body)

    def send_json(self, code, obj, headers=()):
        self.send_body(code, json.dumps(obj).encode(), headers=headers)

    def start_stream(self, code=200, ctype="application/json"):
        self.send_response(code)
        for k, v in self.extra_headers:
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")

    def cut(self):
        """Ends the connection at once, without an answer (or without a stream's last chunk)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def client_gone(self):
        """True when the client closed its end (or the connection broke). A byte the client sent
        during a stream is dropped: a client does not pipeline behind a stream."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        if not r:
            return False
        try:
            self.connection.settimeout(0.01)
            return self.connection.recv(1) == b""
        except (socket.timeout, ssl.SSLWantReadError, BlockingIOError, InterruptedError):
            return False
        except (OSError, ValueError):
            return True
        finally:
            try:
                self.connection.settimeout(self.timeout)
            except OSError:
                pass

    def pause(self, seconds):
        """Waits seconds; False when the fake is stopping or the client went away meanwhile."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return True
            if STOP.wait(min(POLL_S, left)) or self.client_gone():
                self.close_connection = True
                return False


def serve(server, cleanup=None):
    """Serves until SIGTERM or SIGINT, then gives streams a moment to end and exits 0."""
    def stop(signum, frame):
        STOP.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    while not STOP.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    if cleanup:
        cleanup()
    time.sleep(2 * POLL_S)  # streams see STOP and end
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
