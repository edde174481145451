"""pycap_check: run by test_pycap.py under one interpreter, with the harness library's path as
argv[1]. Calls libember_cupti.so's in-process capture through ctypes (CDLL releases the GIL)
from Python code and compares each capture with sys._getframe() taken in the same function:
the same code objects, in the same order; every caller's instruction at its f_lasti, the
innermost at the line of the call; marker frames only where the version has them. Prints
"ok ..." / "BAD ..." lines and "done". Stdlib only."""
import ctypes
import sys
import threading
import types

MAX = 160
PYF_ADDR = (1 << 56) - 1
PYF_ENTRY, PYF_MARKER, PYF_NO_CODE = 1 << 56, 1 << 57, 1 << 58
COMPLETE, TRUNCATED, NO_TSTATE = 1, 2, 3
V = sys.version_info[:2]
# 3.11+: a code object's bytecode starts at its type's basic size (the PyCode_Type definition
# gives offsetof(PyCodeObject, co_code_adaptive) there): independent of Ember's tables.
ADAPTIVE = types.CodeType.__basicsize__


class Frame(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint64), ("key", ctypes.c_uint32), ("instr", ctypes.c_int32)]


lib = ctypes.CDLL(sys.argv[1])
lib.ember_pycap_harness_capture.restype = ctypes.c_size_t
lib.ember_pycap_harness_capture.argtypes = [ctypes.POINTER(Frame), ctypes.c_size_t,
                                            ctypes.POINTER(ctypes.c_uint32)]
lib.ember_pycap_harness_c_thread.restype = ctypes.c_size_t
lib.ember_pycap_harness_c_thread.argtypes = lib.ember_pycap_harness_capture.argtypes
lib.ember_pycap_harness_version.restype = ctypes.c_uint32
results = []
lock = threading.Lock()


def report(ok, what):
    with lock:
        results.append(("ok " if ok else "BAD ") + what)


def capture(max_frames=MAX):
    """(frames, status, expected, call line): the capture and sys._getframe() of the caller."""
    buf = (Frame * MAX)()
    st = ctypes.c_uint32()
    expected = chain(sys._getframe())
    line = sys._getframe().f_lineno + 1
    n = lib.ember_pycap_harness_capture(buf, max_frames, ctypes.byref(st))
    return list(buf[:n]), st.value, expected, line


def chain(f):
    """[(frame, f_lasti)] from f to the thread's first frame. The callers' instructions are
    taken now: they do not move until the capture below returns."""
    out = []
    while f is not None:
        out.append((f, f.f_lasti))
        f = f.f_back
    return out


def byte_offset(fr):
    if V == (3, 10):
        return 2 * fr.instr
    return fr.instr - ADAPTIVE


def line_of(code, off):
    for start, end, line in code.co_lines():
        if start <= off < end:
            return line
    return None


def judge(what, got, status, expected, call_line, want_status=COMPLETE, limit=MAX):
    codes = [g for g in got if not g.code & PYF_MARKER]
    markers = len(got) - len(codes)
    ok = True
    if status != want_status:
        report(False, f"{what}: status {status}, want {want_status}")
        return
    want = expected[:limit] if want_status == TRUNCATED else expected
    if want_status == TRUNCATED:
        # the limit counts marker frames too: compare what fits
        want = expected[:len(codes)]
    addrs = [g.code & PYF_ADDR for g in codes]
    if addrs != [id(f.f_code) for f, _ in want]:
        names = [f.f_code.co_name for f, _ in want]
        report(False, f"{what}: code objects differ from sys._getframe() ({len(addrs)} vs "
                      f"{len(want)}: {names[:6]}...)")
        return
    if any(g.code & PYF_NO_CODE or g.key == 0 for g in codes):
        report(False, f"{what}: a frame without its validation key")
        ok = False
    if V < (3, 12) and markers:
        report(False, f"{what}: {markers} marker frames on {V}")
        ok = False
    if V == (3, 11) and not codes[-1].code & PYF_ENTRY and want_status == COMPLETE:
        report(False, f"{what}: the thread's first frame is not marked as entered from C")
        ok = False
    inner, (inner_f, _) = codes[0], want[0]
    if line_of(inner_f.f_code, byte_offset(inner)) != call_line:
        report(False, f"{what}: innermost frame at line "
                      f"{line_of(inner_f.f_code, byte_offset(inner))}, the call is on {call_line}")
        ok = False
    for g, (f, lasti) in zip(codes[1:], want[1:]):
        if byte_offset(g) != lasti:
            report(False, f"{what}: {f.f_code.co_qualname if V >= (3, 11) else f.f_code.co_name}"
                          f" at byte {byte_offset(g)}, f_lasti {lasti}")
            ok = False
            break
    if ok:
        report(True, f"{what}: {len(codes)} frames (+{markers} markers) as sys._getframe()")


class Model:
    def forward(self, depth):
        if depth:
            return self.forward(depth - 1)
        return capture()


def layer(model, depth):
    return model.forward(depth)


def via_c(depth):
    # C calling back into Python: sorted() with a key, a native frame between Python runs
    out = []
    sorted([1], key=lambda x: out.append(layer(Model(), depth)))
    return out[0]


def worker(name, depth, through_c):
    # 50 captures while the other threads run; one line for them all
    for i in range(50):
        got = via_c(depth) if through_c else layer(Model(), depth)
        mark = len(results)
        judge(f"{name}, capture {i + 1} of 50", *got)
        with lock:
            last = results.pop(mark)
        if last.startswith("BAD") or i == 49:
            report(last.startswith("ok"), last[3:].strip() if last.startswith("ok") else last[4:])
            return


def deep(n):
    if n:
        return deep(n - 1)
    buf = (Frame * MAX)()
    st = ctypes.c_uint32()
    expected = chain(sys._getframe())
    line = sys._getframe().f_lineno + 1
    got = lib.ember_pycap_harness_capture(buf, 128, ctypes.byref(st))
    return list(buf[:got]), st.value, expected, line


def main():
    report(lib.ember_pycap_harness_version() >> 16 == (V[0] << 8 | V[1]),
           "the interpreter found is this one (%x)" % lib.ember_pycap_harness_version())
    judge("main thread", *layer(Model(), 3))
    threads = [threading.Thread(target=worker, args=(f"thread {i}", 2 + 3 * i, i % 2 == 1))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = deep(200)
    judge("200 deep, 128 at most", *got, want_status=TRUNCATED, limit=128)
    report(len(got[0]) == 128, f"the truncated capture holds 128 frames ({len(got[0])})")
    buf = (Frame * MAX)()
    st = ctypes.c_uint32()
    n = lib.ember_pycap_harness_c_thread(buf, MAX, ctypes.byref(st))
    report(n == 0 and st.value == NO_TSTATE,
           f"a thread C created has no Python frames ({n} frames, status {st.value})")
    for r in results:
        print(r)
    print("done")


main()
