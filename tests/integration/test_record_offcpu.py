"""Off-CPU profiles (issue 16): offcpu_mix blocks its main thread 300 ms asleep, ~200 ms on a
pipe and ~100 ms on a mutex held by another thread per round, and prints how long each phase
took. `ember record --profiles cpu,offcpu` writes the off_cpu profile (off_cpu/nanoseconds,
switches/count) beside the CPU one: each phase's share of the three within +-5 points of the
fixture's own clock, >= 95% of each under run_round and main, the three together within +-5%
of the wall time they took, and the thread that only computes (burn) with no off-CPU time
worth its name; in --unwind auto (frame pointers in the fixture, none in libc's waits) and
--unwind dwarf (no frame pointers anywhere)."""
import os
import tempfile

from embertest import FIXTURES, Checker, decode, require_root_bpf, run_ember

require_root_bpf()
c = Checker("record_offcpu")
PHASES = ("sleep_phase", "pipe_phase", "mutex_phase")

with tempfile.TemporaryDirectory() as d:
    for mode, fixture in (("auto", "offcpu_mix"), ("dwarf", "offcpu_mix_nofp")):
        out = os.path.join(d, f"{mode}.pb.gz")
        proc = run_ember(["record", "--quiet", "--unwind", mode, "--profiles", "cpu,offcpu",
                          "-o", out, "--", os.path.join(FIXTURES, fixture), "8"], timeout=120)
        truth = {}
        for line in proc.stdout.splitlines():
            name, _, v = line.partition(" ")
            if name in PHASES:
                truth[name] = int(v)
        off = os.path.join(d, f"{mode}.offcpu.pb.gz")
        c.check(os.path.exists(off), f"{mode}: the off-CPU profile is written beside -o")
        if not os.path.exists(off) or len(truth) != 3:
            c.done()
        p = decode(off)
        types = [tuple(t) for t in p["sample_types"]]
        c.check(types == [("off_cpu", "nanoseconds"), ("switches", "count")] and
                tuple(p["period_type"]) == ("off_cpu", "nanoseconds"),
                f"{mode}: sample types {types}, period type {p['period_type']}")
        got = {f: 0 for f in PHASES}
        under = {f: 0 for f in PHASES}
        switches = {f: 0 for f in PHASES}
        burn = total = 0
        for s in p["samples"]:
            st, ns = s["stack"], s["values"][0]
            total += ns
            fn = next((f for f in st if f in PHASES), None)
            if fn:
                got[fn] += ns
                switches[fn] += s["values"][1]
                if "run_round" in st and "main" in st:
                    under[fn] += ns
            elif "burn" in st:
                burn += ns
        tt, tg = sum(truth.values()), sum(got.values())
        for f in PHASES:
            share, want = 100 * got[f] / max(tg, 1), 100 * truth[f] / tt
            c.check(abs(share - want) <= 5,
                    f"{mode}: {f} {share:.1f}% of the three (the fixture's clock: {want:.1f}%)")
            c.check(got[f] and under[f] / got[f] >= 0.95,
                    f"{mode}: {f}: {100 * under[f] / max(got[f], 1):.1f}% under run_round and main")
        c.check(abs(tg - tt) <= 0.05 * tt,
                f"{mode}: the three phases' off-CPU time {tg / 1e6:.0f} ms, their wall time "
                f"{tt / 1e6:.0f} ms (+-5%)")
        c.check(switches["sleep_phase"] >= 8,
                f"{mode}: sleep_phase blocked at least once a round ({switches['sleep_phase']} switches)")
        c.check(burn <= 0.01 * max(total, 1),
                f"{mode}: the computing thread shows no off-CPU time worth its name "
                f"({burn / 1e6:.1f} ms of {total / 1e6:.0f})")
c.done()
