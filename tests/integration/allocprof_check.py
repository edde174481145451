"""Shared checks of the allocation tests: one fixture run under `ember record` (uprobe mode) or
`ember run` (preload mode), judged with pprofdump against the byte totals the fixture prints."""
import json
import os
import tempfile

import embertest as et

SITES = ["site_alpha", "site_beta", "site_leak"]
FIXTURE = os.path.join(et.FIXTURES, "alloc_sites")


def site_of(sample):
    for fn in sample["stack"]:
        for s in SITES:
            if fn == s or fn.startswith(s + "."):  # GCC clones: site_leak.constprop.0
                return s
    return None


def by_site(profile, idx):
    res = {s: 0 for s in SITES}
    for smp in profile["samples"]:
        s = site_of(smp)
        if s:
            res[s] += smp["values"][idx]
    return res


def record(command, mode, extra=()):
    """`record` writes a file; `run` pushes its intervals to the test receiver: one interval
    longer than the fixture, so the profile is the whole run. Returns (profile, truth, proc,
    series labels or None)."""
    with tempfile.TemporaryDirectory() as d:
        if command == "record":
            out = os.path.join(d, "alloc.pb.gz")
            proc = et.run_ember([command, "--profiles", "alloc", "-q", "-o", out, *extra,
                                 "--", FIXTURE, mode, "1024"], timeout=240)
            truth = json.loads(proc.stdout.strip().splitlines()[-1])
            return et.decode(out), truth, proc, None
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
        from agenttest import Receiver
        rcv = Receiver(d)
        try:
            proc = et.run_ember([command, "--profiles", "alloc", "--server", rcv.url, "--interval", "600",
                                 *extra, "--", FIXTURE, mode, "1024"], timeout=240)
            series = [s for s in rcv.series() if s["labels"].get("__name__") == "memory"]
        finally:
            rcv.stop()
        truth = json.loads(proc.stdout.strip().splitlines()[-1])
        if len(series) != 1:
            raise AssertionError(f"expected one memory series from `ember run`, got {len(series)}")
        return series[0]["profile"], truth, proc, series[0]["labels"]


def check_run(c, label, profile, truth, balanced):
    c.check([tuple(t) for t in profile["sample_types"]] ==
            [("alloc_objects", "count"), ("alloc_space", "bytes"),
             ("inuse_objects", "count"), ("inuse_space", "bytes")],
            f"{label}: sample types are alloc_objects/count, alloc_space/bytes, "
            f"inuse_objects/count, inuse_space/bytes")
    c.check(tuple(profile["period_type"]) == ("space", "bytes") and profile["period"] == 524288,
            f"{label}: period type space/bytes, period 524288 (got {profile['period_type']} "
            f"{profile['period']})")
    alloc = by_site(profile, 1)
    inuse = by_site(profile, 3)
    ab_true = truth["site_alpha"] / (truth["site_alpha"] + truth["site_beta"])
    ab_est = alloc["site_alpha"] / max(1, alloc["site_alpha"] + alloc["site_beta"])
    c.check(abs(ab_est - ab_true) <= 0.05,
            f"{label}: site_alpha holds {100 * ab_est:.1f}% of alpha+beta alloc_space "
            f"(truth {100 * ab_true:.1f}% ± 5 points)")
    for s in SITES:
        err = alloc[s] / truth[s] - 1
        print(f"     {label}: {s} alloc_space {alloc[s] / 2**20:.1f} MiB vs "
              f"{truth[s] / 2**20:.1f} MiB ({100 * err:+.1f}%)")
    est_total, true_total = sum(alloc.values()), sum(truth[s] for s in SITES)
    c.check(abs(est_total / true_total - 1) <= 0.10,
            f"{label}: scaled alloc_space of the sites {est_total / 2**20:.0f} MiB within ±10% of "
            f"the {true_total / 2**20:.0f} MiB really allocated")
    inuse_total = et.total(profile, 3)
    if balanced:
        c.check(sum(inuse.values()) == 0,
                f"{label}: balanced run: no inuse_space at the sites (got {inuse})")
        c.check(inuse_total <= 0.01 * true_total,
                f"{label}: balanced run: inuse_space {inuse_total} B is < 1% of the volume")
    else:
        share = inuse["site_leak"] / max(1, inuse_total)
        c.check(share >= 0.70, f"{label}: site_leak holds {100 * share:.1f}% of inuse_space (≥ 70%)")
        err = inuse["site_leak"] / truth["leaked"] - 1
        c.check(abs(err) <= 0.20, f"{label}: site_leak inuse_space {inuse['site_leak'] / 2**20:.1f} "
                f"MiB vs {truth['leaked'] / 2**20:.1f} MiB leaked ({100 * err:+.1f}%, ±20%)")
    comment = " ".join(profile.get("comments", []))
    c.check("live set complete" in comment, f"{label}: the profile says the live set is complete "
            f"({comment})")
