#!/usr/bin/python3
"""deploy.dockerfile: deploy/Dockerfile builds Ember with the README's build command.

- The `make` targets the Dockerfile runs are the README's build command (`make build`) or
  targets that command itself runs first (its prerequisites in the Makefile).
- The binary it copies out is `<BUILD_DIR>/ember` for the BUILD_DIR it passed to make (or the
  Makefile's default), the path the README names.
- Stages: Debian 12 build, debian:12-slim runtime last (the default target), the runtime libraries
  the agent links, base images pinned, and a `demo` stage that compiles deploy/demo/demo.c,
  which must compile cleanly here (gcc -Wall -Wextra -Werror) and run, with and without the
  `--split` the compose file's demo services pass.

No image is built: there is no Docker engine here.

usage: test_dockerfile.py [--source-dir DIR]"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploylib as dl  # noqa: E402

RUNTIME_LIBS = {"libbpf1", "libelf1", "zlib1g", "libprotobuf-c1", "libcurl4", "libjson-c5", "libunwind8", "libstdc++6"}


def dockerfile_instructions(path):
    """(instruction, arguments) pairs, with line continuations joined and comments dropped."""
    out, cur = [], ""
    with open(path) as f:
        for line in f:
            s = line.rstrip("\n")
            if not cur and (not s.strip() or s.lstrip().startswith("#")):
                continue
            if cur and s.lstrip().startswith("#"):
                continue
            if s.endswith("\\"):
                cur += s[:-1] + " "
                continue
            cur += s
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    return out


def make_invocations(shell):
    """Each `make ...` command in a RUN line: (targets, {VAR: value})."""
    calls = []
    for part in re.split(r"&&|;|\|\|", shell):
        try:
            words = shlex.split(part)
        except ValueError:
            continue
        if words[:1] != ["make"]:
            continue
        targets, variables = [], {}
        for w in words[1:]:
            if "=" in w and not w.startswith("-"):
                k, v = w.split("=", 1)
                variables[k] = v
            elif not w.startswith("-"):
                targets.append(w)
        calls.append((targets or ["all"], variables))
    return calls


def readme_make_commands(texts):
    """`make TARGET` commands shown in the README's code (fenced blocks and inline code)."""
    cmds = set()
    for text in texts:
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            for line in block.splitlines():
                line = line.strip().lstrip("$# ").strip()
                if line.startswith("make "):
                    cmds.add(line.split()[1])
        for inline in re.findall(r"`(make [a-z][\w-]*)`", text):
            cmds.add(inline.split()[1])
    return cmds


def makefile_rules(path):
    rules, defaults = {}, {}
    with open(path) as f:
        text = f.read()
    for m in re.finditer(r"^([A-Za-z_][\w-]*)\s*:(?!=)\s*(.*)$", text, re.M):
        rules[m.group(1)] = m.group(2).split()
    for m in re.finditer(r"^([A-Z_]+)\s*\?=\s*(.*)$", text, re.M):
        defaults[m.group(1)] = m.group(2).strip()
    return rules, defaults


def prerequisites(rules, target, seen=None):
    seen = set() if seen is None else seen
    for dep in rules.get(target, []):
        if dep not in seen:
            seen.add(dep)
            prerequisites(rules, dep, seen)
    return seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir")
    args = ap.parse_args()
    src = dl.source_dir(args.source_dir)
    c = dl.Checks("deploy.dockerfile")

    instrs = dockerfile_instructions(os.path.join(src, "deploy", "Dockerfile"))
    stages, stage = [], None
    for ins, rest in instrs:
        if ins == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            stage = {"image": m.group(1), "name": m.group(2), "runs": [], "copies": [], "other": []}
            stages.append(stage)
        elif stage is not None:
            {"RUN": stage["runs"], "COPY": stage["copies"]}.get(ins, stage["other"]).append((ins, rest))
    by_name = {s["name"]: s for s in stages}
    c.check({"build", "runtime", "demo"} <= set(by_name), f"stages: {[s['name'] for s in stages]}")
    for s in stages:
        img = s["image"]
        if img in by_name:
            continue
        tag = img.split(":", 1)[1] if ":" in img else ""
        c.check(tag and tag != "latest", f"stage {s['name']}: base image {img!r} is not pinned")
    c.check(stages and stages[-1]["name"] == "runtime", "the runtime stage must be last (the default target)")

    # The README's build command, and what the Dockerfile runs.
    texts = []
    for rel in ("README.md",):
        p = os.path.join(src, rel)
        if os.path.exists(p):
            with open(p) as f:
                texts.append(f.read())
    readme_cmds = readme_make_commands(texts)
    c.check("build" in readme_cmds, f"the README shows no `make build` (found {sorted(readme_cmds)})")
    rules, defaults = makefile_rules(os.path.join(src, "Makefile"))
    build = by_name.get("build", {"runs": [], "image": ""})
    c.check(build["image"].startswith("debian:12"), f"build stage is {build['image']!r}, not Debian 12")
    calls = [call for _, run in build["runs"] for call in make_invocations(run)]
    targets = [t for ts, _ in calls for t in ts]
    c.check("build" in targets, f"the build stage does not run `make build` (runs make {targets})")
    allowed = set(readme_cmds)
    for t in readme_cmds:
        allowed |= prerequisites(rules, t)
    for t in targets:
        c.check(t in rules, f"the Dockerfile runs `make {t}`, which the Makefile does not define")
        c.check(t in allowed, f"the Dockerfile runs `make {t}`, neither a README command nor one it runs")
    build_dir = defaults.get("BUILD_DIR", "build")
    for ts, variables in calls:
        if "build" in ts:
            for k in variables:
                c.check(k in defaults, f"make build {k}=...: {k} is not a Makefile variable")
            build_dir = variables.get("BUILD_DIR", build_dir)
    binary = os.path.normpath(os.path.join("/src" if not build_dir.startswith("/") else "/", build_dir, "ember"))
    runs = " ".join(r for _, r in build["runs"])
    c.check(re.search(re.escape(binary) + r"\b|" + re.escape(build_dir.rstrip("/") + "/ember") + r"\b", runs),
            f"the build stage does not copy {build_dir}/ember")

    runtime = by_name.get("runtime", {"runs": [], "copies": [], "other": [], "image": ""})
    c.check(runtime["image"] == "debian:12-slim", f"runtime stage is {runtime['image']!r}, want debian:12-slim")
    installed = set()
    for _, r in runtime["runs"]:
        if "apt-get install" in r:
            installed |= set(re.findall(r"\b(lib[\w+.-]+|zlib1g)\b", r))
    c.check(RUNTIME_LIBS <= installed, f"runtime libraries missing: {sorted(RUNTIME_LIBS - installed)}")
    c.check(any("--from=build" in cp for _, cp in runtime["copies"]), "runtime does not copy from the build stage")
    entry = [r for i, r in runtime["other"] if i == "ENTRYPOINT"]
    c.check(entry and "ember" in entry[-1], f"runtime entrypoint is {entry}")

    # The demo stage compiles deploy/demo/demo.c; it must compile here too.
    demo_src = os.path.join(src, "deploy", "demo", "demo.c")
    demo_copies = " ".join(cp for s in stages for _, cp in s["copies"])
    c.check("deploy/demo/demo.c" in demo_copies, "no stage copies deploy/demo/demo.c")
    if shutil.which("gcc"):
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run(["gcc", "-O1", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror",
                                "-o", os.path.join(tmp, "ember-demo"), demo_src], capture_output=True, text=True)
            c.check(r.returncode == 0, f"deploy/demo/demo.c does not compile:\n{r.stderr}")
            if r.returncode == 0:
                r = subprocess.run([os.path.join(tmp, "ember-demo"), "0.2"], capture_output=True, text=True, timeout=30)
                c.check(r.returncode == 0 and "ember-demo" in r.stdout, f"ember-demo 0.2 failed: {r.stderr}")
                # The compose file's second demo service runs with another split of the work.
                r = subprocess.run([os.path.join(tmp, "ember-demo"), "--split", "1,3,6", "0.2"],
                                   capture_output=True, text=True, timeout=30)
                c.check(r.returncode == 0 and "CPU 10/30/60%" in r.stdout,
                        f"ember-demo --split 1,3,6 0.2 failed: {r.stdout}{r.stderr}")
                r = subprocess.run([os.path.join(tmp, "ember-demo"), "--split", "1,3", "0.2"],
                                   capture_output=True, text=True, timeout=30)
                c.check(r.returncode == 2, f"ember-demo --split 1,3 (malformed) exited {r.returncode}, want 2")
    else:
        print("note: no gcc; deploy/demo/demo.c not compiled")

    # Self-test: a Dockerfile running another make target would be caught.
    bogus = make_invocations("apt-get update && make install BUILD_DIR=/x")
    c.check(bogus and any(t not in allowed for t in bogus[0][0]),
            "self-test: `make install` would have been accepted")

    c.finish()


if __name__ == "__main__":
    main()
