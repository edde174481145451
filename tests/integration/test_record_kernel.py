"""A syscall-heavy fixture shows kernel frames above its user frames."""
import os
import tempfile

from embertest import FIXTURES, Checker, decode, require_root_bpf, run_ember

require_root_bpf()
ksyms = set()
with open("/proc/kallsyms") as f:
    for line in f:
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "tTwW":
            ksyms.add(parts[2])
c = Checker("record_kernel")
with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "sys.pb.gz")
    run_ember(["record", "--quiet", "-o", out, "--", os.path.join(FIXTURES, "syscall_heavy"), "4"])
    p = decode(out)
    under = with_kernel = misordered = 0
    names = set()
    for s in p["samples"]:
        st = s["stack"]
        if "do_syscalls" not in st:
            continue
        under += s["values"][0]
        above = st[:st.index("do_syscalls")]
        kern = [fn for fn in above if fn in ksyms]
        if kern:
            with_kernel += s["values"][0]
            names.update(kern)
            # kernel frames sit at the leaf end: none below the first user frame
            first_user = next(i for i, fn in enumerate(st) if fn not in ksyms)
            if any(fn in ksyms for fn in st[first_user:]):
                misordered += s["values"][0]
    c.check(under > 0, "samples under do_syscalls")
    c.check(with_kernel >= 0.5 * under,
            f"samples under do_syscalls with kernel frames above: {with_kernel / max(under, 1):.1%} (want >= 50%)")
    c.check(misordered == 0, f"kernel frames always above the user frames (misordered value {misordered})")
    c.check(any("sys_" in n or "syscall" in n for n in names),
            f"a system call entry among the kernel frames: {sorted(names)[:8]}")
c.done()
