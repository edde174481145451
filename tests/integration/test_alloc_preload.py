#!/usr/bin/env python3
"""`ember run --profiles alloc -- alloc_sites`: preload mode (libember_alloc.so samples
in-process and reports sampled allocations through USDT probes).

Same answers as the uprobe test: 3:1 alloc_space split (±5 points), totals ±10%, the leak holds
≥70% of inuse_space, no phantom leak on a balanced run."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import embertest as et  # noqa: E402
import allocprof_check as ac  # noqa: E402


def main():
    et.require_root_bpf()
    c = et.Checker("alloc_preload")
    c.check(os.path.exists(os.path.join(et.BUILD, "libember_alloc.so")), "libember_alloc.so is built")
    for mode in ("leak", "balanced"):
        profile, truth, _, labels = ac.record("run", mode)
        ac.check_run(c, f"preload/{mode}", profile, truth, mode == "balanced")
        c.check(labels.get("__name__") == "memory" and labels.get("__delta__") == "false"
                and labels.get("service_name") == "alloc_sites",
                f"preload/{mode}: the receiver got __name__=memory, __delta__=false, service alloc_sites: {labels}")
        ids = {f"memory:{t}:{u}:{profile['period_type'][0]}:{profile['period_type'][1]}" for t, u in profile["sample_types"]}
        c.check(ids == {"memory:alloc_objects:count:space:bytes", "memory:alloc_space:bytes:space:bytes",
                        "memory:inuse_objects:count:space:bytes", "memory:inuse_space:bytes:space:bytes"},
                f"preload/{mode}: profile types {sorted(ids)}")
        c.check(any("alloc mode preload" in x for x in profile.get("comments", [])),
                f"preload/{mode}: preload mode was used")
    c.done()


if __name__ == "__main__":
    main()
