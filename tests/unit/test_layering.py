#!/usr/bin/env python3
"""Dependencies point down the data flow (../shared/DESIGN.md, Layout).

Every #include "..." in agent/, pprof/ and cupti/ is resolved to the folder that holds the header,
and the edge from the including folder to that folder must be allowed:

    cmd -> sinks -> aggregate -> symbols -> lib
    collectors -> unwind -> symbols;  targets -> lib;  metrics -> lib

(cmd sees everything; each folder also sees what its dependencies see). pprof/, cpython/ and
cupti/ include nothing from agent/. Headers of bpf/ (ember.h: the kernel/userspace contract),
pprof/, cpython/ (CPython's layout, read by the agent and by libember_cupti.so) and cupti/'s
wire protocol header are shared by anyone. Also fails on an include that resolves
nowhere in the tree but the build output (generated skeletons and protobuf-c code), so a typo
or a header in the wrong folder is caught.
"""
import os
import re
import sys

ROOT = os.environ.get("EMBER_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DIRECT = {
    "cmd": {"sinks", "aggregate", "collectors", "unwind", "symbols", "targets", "metrics", "lib"},
    "sinks": {"aggregate", "metrics"},
    "aggregate": {"symbols"},
    "collectors": {"unwind", "metrics"},
    "unwind": {"symbols"},
    "symbols": {"lib"},
    "targets": {"lib"},
    "metrics": {"lib"},
    "lib": set(),
}
SHARED = {"bpf", "pprof", "cpython", "cupti-proto"}  # reachable from every agent folder
GENERATED = re.compile(r"^(\w+\.skel\.h|\w+\.pb-c\.h|vmlinux\.h)$")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def closure(folder):
    seen, todo = set(), [folder]
    while todo:
        for d in DIRECT[todo.pop()]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen | {folder}


def owner_of(path):
    rel = os.path.relpath(path, ROOT).split(os.sep)
    if rel[0] == "agent" and len(rel) > 2:
        return rel[1]
    if rel[0] == "cupti" and rel[-1] == "ember_gpu_proto.h":
        return "cupti-proto"
    return rel[0]


def sources():
    for top in ("agent", "pprof", "cpython", "cupti", "bpf"):
        for d, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith((".c", ".h")):
                    yield os.path.join(d, f)


def main():
    headers = {}
    for p in sources():
        if p.endswith(".h"):
            headers.setdefault(os.path.basename(p), []).append(p)
    errors = []
    for name, paths in headers.items():
        owners = {owner_of(p) for p in paths}
        if len(owners) > 1:
            errors.append(f"header {name} exists in several folders: {sorted(owners)}")
    checked = 0
    for p in sources():
        src = owner_of(p)
        rel = os.path.relpath(p, ROOT)
        if rel.split(os.sep)[0] == "agent" and src not in DIRECT:
            errors.append(f"{rel}: agent/{src}/ is not a stage of the layout")
            continue
        text = open(p, encoding="utf-8", errors="replace").read()
        for inc in INCLUDE.findall(text):
            base = os.path.basename(inc)
            checked += 1
            if base not in headers:
                if not GENERATED.match(base):
                    errors.append(f"{rel}: includes \"{inc}\", which is nowhere in the tree")
                continue
            dst = owner_of(headers[base][0])
            if dst == src:
                continue
            if src in ("pprof", "cpython", "cupti", "cupti-proto", "bpf"):
                if dst in DIRECT:
                    errors.append(f"{rel}: {src}/ includes \"{inc}\" from agent/{dst}/")
                continue
            if dst in SHARED or dst == "cupti-proto":
                continue
            if dst not in DIRECT:
                errors.append(f"{rel}: includes \"{inc}\" from {dst}/")
            elif dst not in closure(src):
                errors.append(f"{rel}: agent/{src}/ includes \"{inc}\" from agent/{dst}/, "
                              f"which points up the layering")
    for e in errors:
        print("layering:", e)
    print(f"layering: {checked} includes checked, {len(errors)} violations")
    return 1 if errors or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
