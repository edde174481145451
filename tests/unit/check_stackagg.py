"""Decodes stackagg's folded profiles with pprofdump: totals are conserved, the limits hold,
and the coldest stacks are the ones under [other]; Python frames keep their file and line."""
import json
import subprocess
import sys

pprofdump, d = sys.argv[1], sys.argv[2]
fail = 0


def check(cond, msg):
    global fail
    print(("ok   " if cond else "FAIL ") + msg)
    fail += not cond


total = 20000 * 20001 // 2
for name, max_samples in (("samples_limit", 16000), ("bytes_limit", 16000)):
    p = json.loads(subprocess.run([pprofdump, f"{d}/{name}.pb.gz"], capture_output=True, text=True,
                                  check=True).stdout)
    vals = {s["stack"][0]: s["values"][0] for s in p["samples"]}
    check(sum(vals.values()) == total, f"{name}: total conserved ({sum(vals.values())} == {total})")
    check(len(p["samples"]) <= max_samples, f"{name}: {len(p['samples'])} samples ≤ {max_samples}")
    check("[other]" in vals, f"{name}: an [other] stack holds the folded ones")
    kept = sorted(int(k[3:]) for k in vals if k.startswith("fn_"))
    check(kept and kept[0] == 20000 - len(kept) and kept[-1] == 19999,
          f"{name}: the kept stacks are the hottest ({len(kept)} kept, coldest kept fn_{kept[0] if kept else '-'})")
    check(vals.get("[other]") == sum(range(1, 20000 - len(kept) + 1)),
          f"{name}: [other] holds exactly the folded values")

# Python frames: one function per (name, file), one location per line.
p = json.loads(subprocess.run([pprofdump, f"{d}/python.pb.gz"], capture_output=True, text=True,
                              check=True).stdout)


def py(name, file, line, start_line):
    return {"name": name, "file": file, "line": line, "start_line": start_line}


main = py("<module>", "/app/main.py", 3, 1)
memcpy = {"name": "memcpy", "file": "", "line": 0, "start_line": 0}
got = sorted((s["values"][0], s["frames"], s["addresses"], s["mappings"]) for s in p["samples"])
want = sorted([
    (1 + 8, [py("run", "/app/a.py", 10, 5), main], [0, 0], [0, 0]),
    (2, [py("run", "/app/a.py", 12, 5), main], [0, 0], [0, 0]),
    (4, [py("run", "/app/b.py", 20, 18), main], [0, 0], [0, 0]),
    (16, [memcpy, py("run", "/app/a.py", 10, 5), main], [0x1010, 0, 0], [1, 0, 0]),
])
check(got == want, f"python: frames keep file, line and start_line, native ones none ({got})")
check(p["functions"] == 4, f"python: run in a.py, run in b.py, <module>, memcpy are 4 functions "
      f"({p['functions']})")
check(p["locations"] == 5, f"python: run at a.py:10 and a.py:12 are 2 of 5 locations "
      f"({p['locations']})")
sys.exit(1 if fail else 0)
