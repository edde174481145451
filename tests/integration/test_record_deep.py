"""Complete stacks for deep programs with the default settings (issue 16): deep_stack (no frame
pointers) recurses 200 levels of 192-byte frames on its main thread and 100 levels on three
other threads, deeper than a 16 KiB stack copy. With the defaults (--unwind auto, --stack-size
0: each sample copies what its thread's stack holds, up to 64 KiB), >= 99% of main_leaf's
samples carry all 200 main_level frames and main, and >= 99% of thread_leaf's all 100
thread_level frames and the thread's root (start_thread / clone3). The same run pinned to
--stack-size 16384 reaches main for almost none: the test can tell."""
import os
import tempfile

from embertest import FIXTURES, Checker, decode, require_root_bpf, run_ember

require_root_bpf()
c = Checker("record_deep")
ROOTS = ("start_thread", "clone3", "clone")


def judge(p):
    main = [0, 0]
    thread = [0, 0]
    for s in p["samples"]:
        st, v = s["stack"], s["values"][0]
        if "main_leaf" in st:
            main[0] += v
            if st.count("main_level") == 200 and "main" in st:
                main[1] += v
        elif "thread_leaf" in st:
            thread[0] += v
            if st.count("thread_level") == 100 and any(r in st[-3:] for r in ROOTS):
                thread[1] += v
    return main, thread


with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "deep.pb.gz")
    run_ember(["record", "--quiet", "-F", "199", "-o", out, "--",
               os.path.join(FIXTURES, "deep_stack"), "6"], timeout=120)
    main, thread = judge(decode(out))
    c.check(main[0] > 0 and main[1] / main[0] >= 0.99,
            f"defaults: {main[1] / max(main[0], 1):.2%} of main_leaf's samples under all 200 "
            f"main_level frames and main ({main[0]} ns sampled)")
    c.check(thread[0] > 0 and thread[1] / thread[0] >= 0.99,
            f"defaults: {thread[1] / max(thread[0], 1):.2%} of thread_leaf's samples under all 100 "
            f"thread_level frames and the thread's root")
    out = os.path.join(d, "pinned.pb.gz")
    run_ember(["record", "--quiet", "-F", "199", "--stack-size", "16384", "-o", out, "--",
               os.path.join(FIXTURES, "deep_stack"), "4"], timeout=120)
    main, thread = judge(decode(out))
    c.check(main[0] > 0 and main[1] / main[0] < 0.05,
            f"--stack-size 16384 is too shallow for it: {main[1] / max(main[0], 1):.1%} reach main "
            f"(the fixture is as deep as it says)")
c.done()
