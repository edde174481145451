"""Complete stacks without frame pointers: the 60/30/10 fixture built with -O2
-fomit-frame-pointer, in --unwind dwarf and in --unwind auto: >= 99.5% of the samples in its
three functions reach main (those under qsort's callback included), the split within +-5
points; frame pointers alone reach main for none of them (the fixture really has none). A C++
fixture with inlined frames and exceptions unwinds to main."""
import os
import tempfile

from embertest import FIXTURES, Checker, check_split, decode, require_root_bpf, run_ember, truth_split

require_root_bpf()
c = Checker("record_dwarf")
FNS = ("hot_alpha", "hot_beta", "hot_gamma")


def analyse(p):
    shares = {f: 0 for f in FNS}
    reach = {f: 0 for f in FNS}
    for s in p["samples"]:
        fn = next((f for f in s["stack"] if f in shares), None)
        if fn:
            shares[fn] += s["values"][0]
            if "main" in s["stack"]:
                reach[fn] += s["values"][0]
    return shares, reach


with tempfile.TemporaryDirectory() as d:
    for mode in ("fp", "dwarf", "auto"):
        out = os.path.join(d, f"{mode}.pb.gz")
        proc = run_ember(["record", "--quiet", "--unwind", mode, "-o", out, "--",
                          os.path.join(FIXTURES, "cpu_split_nofp"), "8"])
        shares, reach = analyse(decode(out))
        tot = sum(shares.values())
        reached = sum(reach.values()) / tot if tot else 0
        if mode == "fp":
            c.check(tot > 0 and reached < 0.5, f"fp: the fixture has no frame pointers ({reached:.1%} reach main)")
            continue
        c.check(tot > 0 and reached >= 0.995, f"{mode}: {reached:.2%} of the samples in the three functions reach main (want >= 99.5%)")
        c.check(reach["hot_gamma"] >= 0.995 * shares["hot_gamma"] > 0,
                f"{mode}: under qsort's callback too ({reach['hot_gamma'] / max(shares['hot_gamma'], 1):.1%})")
        check_split(c, mode, shares, truth_split(proc.stdout))

    out = os.path.join(d, "cpp.pb.gz")
    run_ember(["record", "--quiet", "--unwind", "dwarf", "-o", out, "--", os.path.join(FIXTURES, "cpp_unwind"), "4"])
    p = decode(out)
    tot = sum(s["values"][0] for s in p["samples"])
    in_spin = [s for s in p["samples"] if any(f.startswith("spin(") for f in s["stack"])]
    reached = sum(s["values"][0] for s in in_spin if "main" in s["stack"])
    spin_tot = sum(s["values"][0] for s in in_spin)
    c.check(spin_tot > 0.5 * tot, f"C++: spin() holds most samples ({spin_tot / max(tot, 1):.1%})")
    c.check(spin_tot and reached >= 0.99 * spin_tot, f"C++: {reached / max(spin_tot, 1):.1%} of spin()'s samples unwind to main through templates and exception code")
c.done()
