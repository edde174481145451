#!/usr/bin/env python3
"""test_receiver: proves that receiver.py enforces the Pyroscope rules the push tests rely on,
by sending it hand-made requests: profiles built with a protoc-generated module of
pprof/profile.proto, PushRequests with one of pprof/push.proto (python3-protobuf).

Usage: test_receiver.py --pprofdump PATH --proto-dir DIR [--protoc PATH]
Exits 0 when every check passes, 1 otherwise."""
import argparse
import gzip
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL: " + what, file=sys.stderr)


def gen_modules(protoc, proto_dir, out):
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
    for f in ("profile.proto", "push.proto"):
        subprocess.run([protoc, f"--python_out={out}", f"-I{proto_dir}",
                        os.path.join(proto_dir, f)], check=True)
    sys.path.insert(0, out)
    return importlib.import_module("profile_pb2"), importlib.import_module("push_pb2")


class Client:
    def __init__(self, port):
        self.base = "http://127.0.0.1:%d" % port

    def request(self, method, path, body=None, headers=None):
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pprofdump", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--protoc", default="protoc")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="ember-test-receiver-")
    pb, push = gen_modules(args.protoc, args.proto_dir, tmp)
    record = os.path.join(tmp, "record.jsonl")
    rx = subprocess.Popen([sys.executable, os.path.join(HERE, "receiver.py"), "--port", "0",
                           "--record", record, "--pprofdump", args.pprofdump,
                           "--proto-dir", args.proto_dir, "--protoc", args.protoc],
                          stdout=subprocess.PIPE, text=True)
    line = rx.stdout.readline()
    port = int(line.split()[-1])
    c = Client(port)
    now = time.time_ns()

    def profile(nsamples=2, stype="cpu", time_nanos=now, name_len=4, nstrings=0):
        p = pb.Profile()
        p.string_table.extend(["", stype, "nanoseconds", "main", "f" * name_len])
        p.sample_type.add(type=1, unit=2)
        p.period_type.type, p.period_type.unit, p.period = 1, 2, 10309278
        p.time_nanos = time_nanos
        p.function.add(id=1, name=3)
        p.function.add(id=2, name=4)
        p.location.add(id=1, line=[pb.Line(function_id=1)])
        p.location.add(id=2, line=[pb.Line(function_id=2)])
        for _ in range(nsamples):
            p.sample.add(location_id=[2, 1], value=[10309278])
        # Filler strings (valid, unreferenced) to reach a given uncompressed size.
        p.string_table.extend(["x" * 1000] * nstrings)
        return p.SerializeToString()

    def push_req(labels, raw, series=1):
        r = push.PushRequest()
        for _ in range(series):
            s = r.series.add()
            for k, v in labels:
                s.labels.add(name=k, value=v)
            s.samples.add(raw_profile=raw)
        return r.SerializeToString()

    good = [("__name__", "process_cpu"), ("service_name", "web")]
    proto = {"Content-Type": "application/proto"}
    P = "/push.v1.PusherService/Push"

    def post_push(labels, raw, headers=proto, series=1):
        st, body = c.request("POST", P, push_req(labels, raw, series), headers)
        return st, (json.loads(body) if body and st != 200 else {})

    def records():
        if not os.path.exists(record):
            return []
        with open(record) as f:
            return [json.loads(x) for x in f]

    try:
        # Routing and methods.
        check(c.request("GET", "/ready")[0] == 200, "GET /ready is 200")
        check(c.request("GET", P)[0] == 405, "GET on Push is 405")
        check(c.request("PUT", "/ingest", b"")[0] == 405, "PUT on /ingest is 405")
        check(c.request("POST", "/nope", b"")[0] == 404, "unknown path is 404")

        # Push: accepted forms.
        st, _ = post_push(good, gzip.compress(profile()))
        check(st == 200, "gzipped pprof accepted (%d)" % st)
        st, _ = post_push(good, profile())
        check(st == 200, "plain pprof accepted (%d)" % st)
        n = len(records())
        check(n == 2, "two series recorded (%d)" % n)

        # Push: rejections.
        st, e = c.request("POST", P, b"", proto)[0], None
        check(st == 400, "empty PushRequest is 400 (%d)" % st)
        st, body = c.request("POST", P, b"", proto)
        check(json.loads(body) == {"code": "invalid_argument", "message": "no profiles received"},
              "empty request message: %r" % body)
        st, e = post_push([("service_name", "web")], profile())
        check(st == 400 and e["code"] == "invalid_argument" and
              "invalid metric name" in e["message"], "missing __name__: %d %r" % (st, e))
        st, e = post_push(good + [("bad-name", "x")], profile())
        check(st == 400 and "invalid label name" in e["message"], "label charset: %r" % e)
        st, e = post_push(good + [("env", "a"), ("env", "b")], profile())
        check(st == 400 and "duplicate" in e["message"], "duplicate names: %r" % e)
        st, e = post_push(good + [("l%02d" % i, "v") for i in range(29)], profile())
        check(st == 400 and "limit 30" in e["message"], "31 labels: %r" % e)
        st, _ = post_push(good + [("l%02d" % i, "v") for i in range(28)], profile())
        check(st == 200, "30 labels accepted (%d)" % st)
        st, e = post_push(good + [("env", "v" * 2049)], profile())
        check(st == 400 and "too long" in e["message"], "value length: %r" % e)
        st, e = post_push(good, b"\x1f\x8bnot gzip at all")
        check(st == 400, "bad gzip is 400 (%d)" % st)
        st, e = post_push(good, b"garbage that is no profile")
        check(st == 400 and "parse" in e["message"], "garbage profile: %d %r" % (st, e))
        st, e = post_push(good, profile(stype="cpu-time"))
        check(st == 400, "sample type with '-' is 400 (%d)" % st)
        st, e = post_push(good, profile(time_nanos=now - 2 * 3600 * 10**9))
        check(st == 400 and "not_in_ingestion_window" in e["message"], "too old: %r" % e)
        st, e = post_push(good, profile(time_nanos=now + 20 * 60 * 10**9))
        check(st == 400 and "not_in_ingestion_window" in e["message"], "future: %r" % e)
        st, e = post_push(good, gzip.compress(profile(nsamples=16001)))
        check(st == 400 and "samples_limit" in e["message"], "16001 samples: %d %r" % (st, e))
        st, e = post_push(good, gzip.compress(profile(nstrings=2200)))
        check(st == 429 and e["code"] == "resource_exhausted", "2.2 MB series: %d %r" % (st, e))
        st, e = post_push(good, gzip.compress(profile(nstrings=4300)))
        check(st == 400 and "exceeds limit" in e["message"], "4.3 MB profile: %d %r" % (st, e))
        st, _ = post_push(good, profile(), headers={"Content-Type": "text/plain"})
        check(st == 415, "wrong content type is 415 (%d)" % st)
        check(len(records()) == 3, "nothing rejected was recorded")

        # /ingest.
        gz = gzip.compress(profile())
        st, body = c.request("POST", "/ingest?name=web%7Benv%3Dprod%2Chostname%3Dh1%7D"
                             "&from=1700000000&until=1700000010000&format=pprof", gz)
        check(st == 200, "ingest accepted (%d %r)" % (st, body))
        r = records()[-1]
        check(r["endpoint"] == "ingest" and r["labels"] == {
            "__name__": "process_cpu", "__delta__": "false", "pyroscope_spy": "unknown",
            "service_name": "web", "env": "prod", "hostname": "h1"}, "ingest labels %r" % r)
        check(r["query"]["from_ns"] == 1700000000 * 10**9 and
              r["query"]["until_ns"] == 1700000010000 * 10**6, "from (s) / until (ms) parsed")
        st, _ = c.request("POST", "/ingest?name=web&from=1700000000000000&until="
                          "1700000000000000000&format=pprof", gz)
        r = records()[-1]
        check(st == 200 and r["query"]["from_ns"] == 1700000000000000 * 1000 and
              r["query"]["until_ns"] == 1700000000000000000, "µs / ns parsed")
        st, _ = c.request("POST", "/ingest?name=&format=pprof", gz)
        check(st == 400, "empty name is 400 (%d)" % st)
        st, _ = c.request("POST", "/ingest?name=web%7Benv%3Dprod&format=pprof", gz)
        check(st == 400, "unterminated name is 400 (%d)" % st)
        st, _ = c.request("POST", "/ingest?name=w%20b%21&format=pprof", gz)
        check(st == 400, "bad app name is 400 (%d)" % st)
        st, _ = c.request("POST", "/ingest?name=web&format=pprof", b"garbage")
        check(st == 422, "bad pprof on /ingest is 422 (%d)" % st)

        def multipart(parts):
            b = "ember-test-boundary"
            out = b""
            for name, filename, data in parts:
                fn = '; filename="%s"' % filename if filename else ""
                out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"%s\r\n"
                        "Content-Type: application/octet-stream\r\n\r\n"
                        % (b, name, fn)).encode() + data + b"\r\n"
            out += ("--%s--\r\n" % b).encode()
            return out, {"Content-Type": "multipart/form-data; boundary=" + b}

        n = len(records())
        body, h = multipart([("profile", "profile.pprof", gz)])
        st, _ = c.request("POST", "/ingest?name=mp&from=now-1m&until=now", body, h)
        check(st == 200 and len(records()) == n + 1 and
              records()[-1]["labels"]["service_name"] == "mp", "multipart file part accepted")
        body, h = multipart([("profile", None, gz)])
        st, _ = c.request("POST", "/ingest?name=mp", body, h)
        check(st == 200 and len(records()) == n + 1, "part without filename ignored: 200, empty")
        body, h = multipart([("profile", "p", gz), ("prev_profile", "pp", gz)])
        st, _ = c.request("POST", "/ingest?name=mp", body, h)
        check(st == 422, "prev_profile refused (%d)" % st)
    finally:
        rx.terminate()
        rx.wait()

    # Authentication and tenancy flags.
    rx = subprocess.Popen([sys.executable, os.path.join(HERE, "receiver.py"), "--port", "0",
                           "--pprofdump", args.pprofdump, "--proto-dir", args.proto_dir,
                           "--protoc", args.protoc, "--require-tenant", "--basic-auth", "u:p"],
                          stdout=subprocess.PIPE, text=True)
    c = Client(int(rx.stdout.readline().split()[-1]))
    try:
        st, _ = post_push(good, profile())
        check(st == 401, "no tenant, no credentials: 401 (%d)" % st)
        st, _ = post_push(good, profile(), headers=dict(proto, **{"X-Scope-OrgID": "t"}))
        check(st == 401, "tenant without credentials: 401 (%d)" % st)
        st, _ = post_push(good, profile(), headers=dict(proto, **{
            "X-Scope-OrgID": "t", "Authorization": "Basic dTpw"}))
        check(st == 200, "tenant and credentials: 200 (%d)" % st)
    finally:
        rx.terminate()
        rx.wait()

    if failures:
        print("test_receiver: %d check(s) failed; files in %s" % (failures, tmp), file=sys.stderr)
        return 1
    subprocess.run(["rm", "-rf", tmp])
    print("test_receiver: all checks passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
