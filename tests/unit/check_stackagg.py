"""Decodes stackagg's folded profiles with pprofdump: totals are conserved, the limits hold,
and the coldest stacks are the ones under [other]."""
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
sys.exit(1 if fail else 0)
