#!/usr/bin/env python3
"""`ember record --profiles alloc -- alloc_sites`: uprobe mode (no restart, no preload).

alloc_sites allocates 3:1 in bytes from site_alpha and site_beta and leaks from site_leak;
the memory profile must split alloc_space 3:1 (±5 points), estimate the bytes really allocated
(±10%), put the leak on top of inuse_space (≥70%), and show no phantom leak on a balanced run."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import embertest as et  # noqa: E402
import allocprof_check as ac  # noqa: E402


def main():
    et.require_root_bpf()
    if not os.path.exists("/sys/bus/event_source/devices/uprobe"):
        et.skip("kernel has no uprobe PMU (CONFIG_UPROBE_EVENTS)")
    c = et.Checker("alloc_uprobe")
    for mode in ("leak", "balanced"):
        profile, truth, _, _ = ac.record("record", mode)
        ac.check_run(c, f"uprobe/{mode}", profile, truth, mode == "balanced")
        c.check(any("alloc mode session" in x or "alloc mode classic" in x
                    for x in profile.get("comments", [])), f"uprobe/{mode}: uprobe mode was used")
    c.done()


if __name__ == "__main__":
    main()
