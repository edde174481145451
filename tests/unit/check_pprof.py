#!/usr/bin/env python3
"""check_pprof: reads the profiles that unit_pprof wrote back with decoders Ember did not
write, and asserts their exact content.

- pprofdump (github.com/google/pprof/profile): tables, merged values, leaf-first stacks, and
  for Python frames each frame's file, line and start_line.
- protoc --decode: the raw wire form, where string_table[0], zero ids, Function.filename,
  Function.start_line and Line.line are visible.

Usage: check_pprof.py --pprofdump BIN --protoc BIN --proto-dir DIR OUTDIR
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

FAILURES = []
PERIOD = 1000000000 // 97


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL: " + what, file=sys.stderr)


def check_eq(got, want, what):
    check(got == want, "%s: got %r, want %r" % (what, got, want))


def dump(pprofdump, path):
    """Runs pprofdump; returns (exit status, parsed JSON or None, stderr)."""
    r = subprocess.run([pprofdump, path], capture_output=True, text=True, check=False)
    out = json.loads(r.stdout) if r.returncode == 0 else None
    return r.returncode, out, r.stderr


def must_dump(pprofdump, path):
    rc, out, err = dump(pprofdump, path)
    check_eq(rc, 0, "pprofdump %s exit status (stderr: %s)" % (path, err.strip()))
    return out


APP = {"id": 1, "start": 0x400000, "limit": 0x500000, "offset": 0, "file": "/usr/bin/app",
       "build_id": "0123456789abcdef0123456789abcdef01234567", "has_functions": True}
LIBC = {"id": 2, "start": 0x7F0000000000, "limit": 0x7F0000200000, "offset": 0x28000,
        "file": "/usr/lib/x86_64-linux-gnu/libc.so.6", "build_id": "fedcba9876543210",
        "has_functions": True}
CPP = 'ns::Vec<int, std::less<int> >::at(int&) const && "q"'

# Samples in first-seen order, values merged: (stack leaf first, values, addresses, mapping ids)
CPU_SAMPLES = [
    (["hot_alpha", "main"], [3 * PERIOD], [0x401100, 0x401000], [1, 1]),
    (["memcpy", "hot_beta", "main"], [PERIOD], [0x7F0000001000, 0x401200, 0x401000], [2, 1, 1]),
    ([CPP, "main"], [2 * PERIOD], [0x401300, 0x401000], [1, 1]),
    (["[other]"], [5 * PERIOD], [0], [0]),
    (["hot_alpha", "main"], [PERIOD], [0x401104, 0x401000], [1, 1]),
    # invalid UTF-8 bytes (0xff, a truncated 0xc3) are replaced by '?' before encoding
    (["bad?name?", "main"], [PERIOD], [0x401400, 0x401000], [1, 1]),
    (["main"], [4 * PERIOD], [0x401000], [1]),
]


def check_cpu(d, name):
    check_eq(d["sample_types"], [["cpu", "nanoseconds"]], name + " sample_types")
    check_eq(d["period_type"], ["cpu", "nanoseconds"], name + " period_type")
    check_eq(d["period"], 10309278, name + " period")
    check_eq(d["time_nanos"], 1700000000123456789, name + " time_nanos")
    check_eq(d["duration_nanos"], 10000000000, name + " duration_nanos")
    check_eq(d["comments"], ["ember unit test", "second <comment> & more"], name + " comments")
    check_eq(d["mappings"], [APP, LIBC], name + " mappings")
    # hot_alpha at two addresses is two locations but one function
    check_eq(d["locations"], 8, name + " locations")
    check_eq(d["functions"], 7, name + " functions")
    got = [(s["stack"], s["values"], s["addresses"], s["mappings"]) for s in d["samples"]]
    check_eq(len(got), len(CPU_SAMPLES), name + " sample count")
    for i, (g, w) in enumerate(zip(got, CPU_SAMPLES)):
        check_eq(list(g), list(w), "%s sample %d (stack, values, addresses, mappings)" % (name, i))
    for i, s in enumerate(d["samples"]):
        check_eq(s["frames"], [native(n) for n in s["stack"]],
                 "%s sample %d: native frames have no file and no line" % (name, i))


def native(name):
    return {"name": name, "file": "", "line": 0, "start_line": 0}


def py(name, file, line, start_line):
    return {"name": name, "file": file, "line": line, "start_line": start_line}


MAIN3 = py("<module>", "/app/main.py", 3, 1)
# Samples in first-seen order, values merged: (frames leaf first, values, addresses, mappings)
PY_SAMPLES = [
    ([py("run", "/app/a.py", 10, 5), MAIN3], [2 * PERIOD], [0, 0], [0, 0]),
    ([py("run", "/app/b.py", 20, 18), MAIN3], [PERIOD], [0, 0], [0, 0]),
    ([py("run", "/app/a.py", 12, 5), MAIN3], [PERIOD], [0, 0], [0, 0]),
    # the invalid byte 0xe9 is stored as '?', so the sanitized spelling merged into it
    ([py("read", "/app/caf?.py", 7, 6), py("<module>", "/app/main.py", 4, 1)], [3 * PERIOD],
     [0, 0], [0, 0]),
    ([native("memcpy"), py("run", "/app/a.py", 10, 5), MAIN3], [PERIOD],
     [0x7F0000001000, 0, 0], [1, 0, 0]),
    ([py("run", "/app/a.py", 40, 38), py("<module>", "/app/main.py", 5, 1)], [PERIOD],
     [0, 0], [0, 0]),
]


def check_python(d, name):
    check_eq(d["mappings"], [dict(LIBC, id=1)], name + " mappings")
    # run(a.py:5), run(b.py:18), run(a.py:38), read, <module>, memcpy: "run" in two files
    # and "run" defined twice in one file are each their own function
    check_eq(d["functions"], 6, name + " functions")
    # run(a.py:5) at lines 10 and 12 and <module> at lines 3, 4, 5: one location per line
    check_eq(d["locations"], 9, name + " locations")
    got = [(s["frames"], s["values"], s["addresses"], s["mappings"]) for s in d["samples"]]
    check_eq(len(got), len(PY_SAMPLES), name + " sample count")
    for i, (g, w) in enumerate(zip(got, PY_SAMPLES)):
        check_eq(list(g), list(w), "%s sample %d (frames, values, addresses, mappings)" % (name, i))
    for i, s in enumerate(d["samples"]):
        check_eq(s["stack"], [f["name"] for f in s["frames"]],
                 "%s sample %d: stack names the frames' functions" % (name, i))


def check_python_big(d):
    samples = d["samples"]
    check_eq(len(samples), 16000, "pybig sample count")
    check(all(len(s["frames"]) == 32 for s in samples), "pybig: every stack has 32 frames")
    check_eq(sum(s["values"][0] for s in samples), 16000 * PERIOD, "pybig total value")
    check_eq(d["functions"], 32, "pybig functions (one per name and file, whatever the line)")
    check_eq(d["locations"], 16000 + 31 * 251, "pybig locations (one per function and line)")
    check(all(f["file"] == "/app/mod_%d.py" % i and f["name"] == "fn_%d" % i
              and f["start_line"] == 100
              for s in samples for i, f in enumerate(s["frames"])),
          "pybig: every frame keeps its function's file and start_line")
    check_eq(sorted(s["frames"][0]["line"] for s in samples), list(range(1000, 17000)),
             "pybig: each leaf keeps its own line")


def check_memory(d):
    check_eq(d["sample_types"], [["alloc_objects", "count"], ["alloc_space", "bytes"],
                                 ["inuse_objects", "count"], ["inuse_space", "bytes"]],
             "mem sample_types")
    check_eq(d["period_type"], ["space", "bytes"], "mem period_type")
    check_eq(d["period"], 524288, "mem period")
    check_eq(d["mappings"], [{"id": 1, "start": 0x400000, "limit": 0x500000, "offset": 0,
                              "file": "/usr/bin/app", "build_id": "", "has_functions": True}],
             "mem mappings")
    check_eq([(s["stack"], s["values"]) for s in d["samples"]],
             [(["site_a", "main"], [2, 128, 2, 128]), (["site_b", "main"], [3, 3000, 0, 0])],
             "mem samples (each of the four values summed on merge)")


def check_big(d):
    samples = d["samples"]
    check_eq(len(samples), 16000, "big sample count")
    check(all(len(s["stack"]) == 64 for s in samples), "big: every stack has 64 frames")
    check_eq(sum(s["values"][0] for s in samples), 16000 * PERIOD, "big total value")
    check_eq(d["functions"], 64 * 251, "big functions")
    check_eq(d["locations"], 16000 + 63 * 251, "big locations")


def protoc_decode(protoc, proto_dir, path):
    with open(path, "rb") as f:
        r = subprocess.run([protoc, "--decode=perftools.profiles.Profile", "-I", proto_dir,
                            os.path.join(proto_dir, "profile.proto")],
                           stdin=f, capture_output=True, check=False)
    check_eq(r.returncode, 0, "protoc --decode exit status (%s)" % r.stderr.decode().strip())
    return r.stdout.decode()


def check_wire(text):
    """Checks the raw message as protoc prints it. proto3 leaves zero fields out, so a zero
    id shows up as a block without an `id:` line."""
    strings = re.findall(r'^string_table: (".*")$', text, re.M)
    check(strings[:1] == ['""'], 'string_table[0] is "" (got %r)' % strings[:1])
    check_eq(len(strings), len(set(strings)), "string_table has no duplicates")
    # "", cpu, nanoseconds, 2 files, 2 build ids, 7 function names, 2 comments
    check_eq(len(strings), 16, "string_table size")

    blocks = {"mapping": [], "location": [], "function": []}
    sample_loc_ids, line_fn_ids, line_numbers = [], [], []
    stack, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if s.endswith("{"):
            stack.append(s[:-1].strip())
            if len(stack) == 1 and stack[0] in blocks:
                cur = {}
                blocks[stack[0]].append(cur)
            continue
        if s == "}":
            stack.pop()
            continue
        key, _, val = s.partition(": ")
        if len(stack) == 1 and stack[0] in blocks:
            cur.setdefault(key, []).append(val)
        elif stack == ["sample"] and key == "location_id":
            sample_loc_ids.append(int(val))
        elif stack == ["location", "line"] and key == "function_id":
            line_fn_ids.append(int(val))
        elif stack == ["location", "line"] and key == "line":
            line_numbers.append(int(val))

    for kind, want_n in (("mapping", 2), ("location", 8), ("function", 7)):
        ids = [int(b.get("id", ["0"])[0]) for b in blocks[kind]]
        check_eq(ids, list(range(1, want_n + 1)), kind + " ids (none 0, numbered from 1)")
    check(all(b.get("has_functions") == ["true"] for b in blocks["mapping"]),
          "every mapping has has_functions: true")
    check(all(b.get("name") == b.get("system_name") and b.get("name") for b in blocks["function"]),
          "every function has a name and system_name == name")
    check(not any("filename" in b or "start_line" in b for b in blocks["function"]),
          "native functions have no filename and no start_line on the wire")
    check_eq(line_numbers, [], "native lines have no line number on the wire")
    check_eq(len(line_fn_ids), 8, "one line per location")
    check(all(1 <= i <= 7 for i in line_fn_ids), "every line names an existing function")
    check(sample_loc_ids and all(1 <= i <= 8 for i in sample_loc_ids),
          "every sample location_id names an existing location")


def parse_text(text):
    """Parses protoc's text format into nested dicts: field name -> list of values (strings,
    or dicts for messages)."""
    root = {}
    stack = [root]
    for line in text.splitlines():
        s = line.strip()
        if s.endswith("{"):
            child = {}
            stack[-1].setdefault(s[:-1].strip(), []).append(child)
            stack.append(child)
        elif s == "}":
            stack.pop()
        elif s:
            key, _, val = s.partition(": ")
            stack[-1].setdefault(key, []).append(val)
    return root


def field(msg, key):
    """A scalar field as an int; proto3 leaves zero fields out."""
    return int(msg.get(key, ["0"])[0])


def check_wire_python(text):
    """Function.filename, Function.start_line and Line.line as protoc sees them, by string."""
    msg = parse_text(text)
    strings = [s[1:-1] for s in msg.get("string_table", [])]
    functions = {}
    for f in msg.get("function", []):
        check_eq(f.get("system_name"), f.get("name"), "python: system_name == name")
        functions[field(f, "id")] = (strings[field(f, "name")], strings[field(f, "filename")],
                                     field(f, "start_line"))
    check_eq(sorted(functions.values()),
             sorted([("run", "/app/a.py", 5), ("run", "/app/b.py", 18), ("run", "/app/a.py", 38),
                     ("read", "/app/caf?.py", 6), ("<module>", "/app/main.py", 1),
                     ("memcpy", "", 0)]),
             "python: functions (name, filename, start_line) on the wire")
    locations = []
    for loc in msg.get("location", []):
        lines = [(functions.get(field(ln, "function_id")), field(ln, "line"))
                 for ln in loc.get("line", [])]
        locations.append((field(loc, "mapping_id"), field(loc, "address"), lines))
    run_a, main = ("run", "/app/a.py", 5), ("<module>", "/app/main.py", 1)
    check_eq(sorted(locations, key=repr),
             sorted([(0, 0, [(run_a, 10)]), (0, 0, [(run_a, 12)]), (0, 0, [(main, 3)]),
                     (0, 0, [(main, 4)]), (0, 0, [(main, 5)]),
                     (0, 0, [(("run", "/app/b.py", 18), 20)]),
                     (0, 0, [(("run", "/app/a.py", 38), 40)]),
                     (0, 0, [(("read", "/app/caf?.py", 6), 7)]),
                     (1, 0x7F0000001000, [(("memcpy", "", 0), 0)])], key=repr),
             "python: locations (mapping, address, [(function, line)]) on the wire")


def check_decoder_rejects(pprofdump, tmp):
    """pprofdump must fail on profiles Pyroscope would reject, or it proves nothing."""
    strings = b"\x32\x00" + b"\x32\x03cpu" + b"\x32\x0bnanoseconds"
    sample_type = b"\x0a\x04\x08\x01\x10\x02"  # ValueType{type: 1, unit: 2}
    cases = {
        "valid.pb": (sample_type + strings, 0),
        "string0.pb": (sample_type + b"\x32\x01x" + strings[2:], 1),  # string_table[0] = "x"
        "location0.pb": (sample_type + strings + b"\x22\x00", 1),  # Location with id 0
        "dash.pb": (b"\x0a\x04\x08\x03\x10\x02" + strings + b"\x32\x05cpu-x", 1),  # type "cpu-x"
    }
    for name, (data, want) in cases.items():
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        rc, _, err = dump(pprofdump, path)
        check_eq(rc, want, "pprofdump exit status on %s (%s)" % (name, err.strip()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pprofdump", required=True)
    ap.add_argument("--protoc", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("outdir")
    a = ap.parse_args()
    p = lambda n: os.path.join(a.outdir, n)

    gz = must_dump(a.pprofdump, p("cpu.pb.gz"))
    plain = must_dump(a.pprofdump, p("cpu.pb"))
    with open(p("cpu.pb.gz"), "rb") as f:
        check_eq(f.read(2), b"\x1f\x8b", "cpu.pb.gz starts with the gzip magic")
    if gz:
        check_cpu(gz, "cpu.pb.gz")
    if plain:
        check_eq(plain, gz, "cpu.pb decodes like cpu.pb.gz")
    check_wire(protoc_decode(a.protoc, a.proto_dir, p("cpu.pb")))
    mem = must_dump(a.pprofdump, p("mem.pb.gz"))
    if mem:
        check_memory(mem)
    big = must_dump(a.pprofdump, p("big.pb.gz"))
    if big:
        check_big(big)
    pyd = must_dump(a.pprofdump, p("py.pb.gz"))
    if pyd:
        check_python(pyd, "py.pb.gz")
        check_eq(must_dump(a.pprofdump, p("py.pb")), pyd, "py.pb decodes like py.pb.gz")
    check_wire_python(protoc_decode(a.protoc, a.proto_dir, p("py.pb")))
    pybig = must_dump(a.pprofdump, p("pybig.pb.gz"))
    if pybig:
        check_python_big(pybig)
    with tempfile.TemporaryDirectory() as tmp:
        check_decoder_rejects(a.pprofdump, tmp)

    if FAILURES:
        print("check_pprof: %d check(s) failed" % len(FAILURES), file=sys.stderr)
        return 1
    print("check_pprof: all checks passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
