"""ember record on the 60/30/10 fixture built with frame pointers: the split within +-5 points
of the truth, and >= 95% of the samples in hot_alpha/hot_beta reach main."""
import os
import tempfile
import xml.etree.ElementTree as ET

from embertest import (FIXTURES, Checker, check_split, decode, require_root_bpf, run_ember,
                       share_by_function, total, truth_split)

require_root_bpf()
c = Checker("record_cpu")
with tempfile.TemporaryDirectory() as d:
    out, svg = os.path.join(d, "cpu.pb.gz"), os.path.join(d, "cpu.svg")
    proc = run_ember(["record", "--quiet", "-o", out, "--flamegraph", svg, "--",
                      os.path.join(FIXTURES, "cpu_split_fp"), "8"])
    p = decode(out)
    c.check(p["sample_types"] == [["cpu", "nanoseconds"]], f"sample type cpu/nanoseconds: {p['sample_types']}")
    c.check(p["period_type"] == ["cpu", "nanoseconds"], f"period type cpu/nanoseconds: {p['period_type']}")
    c.check(p["period"] == 1000000000 // 97, f"period 1e9/97: {p['period']}")
    c.check(p["time_nanos"] > 0 and p["duration_nanos"] > 5e9, "time_nanos and duration_nanos set")
    tot = total(p)
    hits = tot // p["period"]
    c.check(hits >= 250, f"enough samples for a split: {hits}")
    shares = share_by_function(p, ["hot_alpha", "hot_beta", "hot_gamma"])
    in3 = sum(shares.values())
    c.check(in3 >= 0.9 * tot, f"the three functions hold >= 90% of the CPU: {in3 / tot:.1%}")
    check_split(c, "fp", shares, truth_split(proc.stdout))
    reach = tot_ab = 0
    for s in p["samples"]:
        if "hot_alpha" in s["stack"] or "hot_beta" in s["stack"]:
            tot_ab += s["values"][0]
            if s["stack"][-1] == "main" or "main" in s["stack"]:
                reach += s["values"][0]
    c.check(tot_ab and reach >= 0.95 * tot_ab,
            f"samples in hot_alpha/hot_beta reaching main: {reach / max(tot_ab, 1):.1%} (want >= 95%)")
    mfiles = [m["file"] for m in p["mappings"]]
    c.check(any(f.endswith("cpu_split_fp") for f in mfiles), f"mapping for the binary: {mfiles}")
    c.check(all(m["build_id"] for m in p["mappings"] if m["file"].endswith("cpu_split_fp")),
            "the binary's mapping carries its build-id")
    root = ET.parse(svg).getroot()
    texts = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("title"))
    c.check("hot_alpha" in texts and "main" in texts, "flame graph SVG parses and names hot_alpha and main")
c.done()
