"""py_offsets: the interpreter judges the offsets Ember derived from its ELF file.

`python py_offsets.py where` prints one line: sys.hexversion (hex), the file that holds
_PyRuntime in this process (the mapped libpython3.X, else the executable), 1/0 for a debug build
(sys.gettotalrefcount), 1/0 for a free-threaded build (Py_GIL_DISABLED).

`python py_offsets.py check NAME=VALUE...` (the fields of struct pyoffsets, 4294967295 =
absent) reads this process's own memory through ctypes at those offsets and compares what it
finds with what CPython's C API and Python objects say; one line per check: "ok NAME" or
"BAD NAME got X want Y", then "done". Stdlib only.
"""
import ctypes
import opcode
import os
import sys
import sysconfig
import threading

NONE = 0xFFFFFFFF
api = ctypes.pythonapi
rd = ctypes.c_uint64.from_address
rd32 = ctypes.c_int32.from_address
rd8 = ctypes.c_uint8.from_address
rd64s = ctypes.c_int64.from_address
results = []


def check(name, got, want):
    results.append("ok %s" % name if got == want else "BAD %s got %r want %r" % (name, got, want))


def where():
    path = None
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and "/libpython3." in parts[5]:
                path = parts[5]
                break
    path = path or os.path.realpath(sys.executable)
    ft = 1 if sysconfig.get_config_var("Py_GIL_DISABLED") else 0
    print("%x %s %d %d" % (sys.hexversion, path, hasattr(sys, "gettotalrefcount"), ft))


def fn(name, res, *args):
    f = getattr(api, name)
    f.restype = res
    f.argtypes = args
    return f


def probe(o, tstate, results):
    # Reads must not call Python functions: each would push a frame of its own.
    fr = rd(tstate + o["tstate_frame"]).value
    if o["cframe_current_frame"] != NONE:
        fr = rd(fr + o["cframe_current_frame"]).value
    code = rd(fr + o["frame_code"]).value
    if o["instr_kind"] == 1:
        instr = rd32(fr + o["frame_instr"]).value; line = sys._getframe().f_lineno
    else:
        instr = rd(fr + o["frame_instr"]).value; line = sys._getframe().f_lineno
    prev = rd(fr + o["frame_previous"]).value
    prev_code = rd(prev + o["frame_code"]).value
    # The root of the chain, while every frame of it is still live (3.11+ reuse their memory).
    f, seen, root = fr, 0, 0
    while f and seen < 100:
        root, f, seen = f, rd(f + o["frame_previous"]).value, seen + 1
    root_is_entry = rd8(root + o["frame_is_entry"]).value if o["frame_is_entry"] != NONE else -1
    root_owner = rd8(root + o["frame_owner"]).value if o["frame_owner"] != NONE else -1
    return fr, code, instr, line, prev_code, root_is_entry, root_owner


def outer(o, tstate):
    return probe(o, tstate, results)


def run_checks(o):
    head = fn("PyInterpreterState_Head", ctypes.c_void_p)()
    interp = fn("PyInterpreterState_Get", ctypes.c_void_p)()
    nxt = fn("PyInterpreterState_Next", ctypes.c_void_p, ctypes.c_void_p)
    thead = fn("PyInterpreterState_ThreadHead", ctypes.c_void_p, ctypes.c_void_p)
    tnext = fn("PyThreadState_Next", ctypes.c_void_p, ctypes.c_void_p)
    getid = fn("PyInterpreterState_GetID", ctypes.c_int64, ctypes.c_void_p)
    tstate = fn("PyThreadState_Get", ctypes.c_void_p)()
    addr2line = fn("PyCode_Addr2Line", ctypes.c_int, ctypes.py_object, ctypes.c_int)
    runtime = ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime"))

    check("runtime_interpreters_head", rd(runtime + o["runtime_interpreters_head"]).value, head)
    if o["runtime_finalizing"] != NONE:
        check("runtime_finalizing", rd(runtime + o["runtime_finalizing"]).value, 0)
    check("interp_next", rd(interp + o["interp_next"]).value, nxt(interp) or 0)
    check("interp_threads_head", rd(interp + o["interp_threads_head"]).value, thead(interp))
    check("interp_id", rd64s(interp + o["interp_id"]).value, getid(interp))

    # A second thread, so that the thread list has a next.
    ev, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=lambda: (ready.set(), ev.wait()))
    t.start()
    ready.wait()
    h = thead(interp)
    check("tstate_next", rd(h + o["tstate_next"]).value, tnext(h) or 0)
    ev.set()
    t.join()
    check("tstate_interp", rd(tstate + o["tstate_interp"]).value, interp)
    check("tstate_thread_id", rd(tstate + o["tstate_thread_id"]).value, threading.get_ident())
    if o["tstate_native_thread_id"] != NONE:
        check("tstate_native_thread_id", rd(tstate + o["tstate_native_thread_id"]).value,
              threading.get_native_id())

    fr, code, instr, line, prev_code, root_is_entry, root_owner = outer(o, tstate)
    co = probe.__code__
    check("frame_code", code, id(co))
    check("frame_previous", prev_code, id(outer.__code__))
    if o["instr_kind"] == 1:
        off = 2 * instr
    else:
        off = instr - (code + o["code_code_adaptive"])
    check("frame_instr", addr2line(co, off), line)
    # The exact instruction: the frame reads the pointer while `.value` (LOAD_ATTR) runs.
    ok_off = 0 <= off < len(co.co_code) and off % 2 == 0
    check("frame_instr(opcode)", opcode.opname[co.co_code[off]] if ok_off else off, "LOAD_ATTR")
    if o["frame_is_entry"] != NONE:
        check("frame_is_entry", rd8(fr + o["frame_is_entry"]).value, 0)
    if o["frame_owner"] != NONE:
        check("frame_owner", rd8(fr + o["frame_owner"]).value, 0)
    # Entry markers at the root of the chain: 3.11 is_entry on <module>, 3.12+ owner 3
    # (FRAME_OWNED_BY_CSTACK).
    if o["frame_is_entry"] != NONE:
        check("frame_is_entry(<module>)", root_is_entry, 1)
    elif o["frame_owner"] != NONE:
        check("frame_owner(entry marker)", root_owner, 3)

    check("code_firstlineno", rd32(code + o["code_firstlineno"]).value, co.co_firstlineno)
    check("code_filename", rd(code + o["code_filename"]).value, id(co.co_filename))
    check("code_name", rd(code + o["code_name"]).value, id(co.co_name))
    if o["code_qualname"] != NONE:
        check("code_qualname", rd(code + o["code_qualname"]).value, id(co.co_qualname))
    check("code_linetable", rd(code + o["code_linetable"]).value, id(co.co_linetable))
    if o["code_code"] != NONE:
        check("code_code", rd(code + o["code_code"]).value, id(co.co_code))

    s = "ascii_" + str(os.getpid())
    check("object_type", rd(id(s) + o["object_type"]).value, id(str))
    check("unicode_length", rd64s(id(s) + o["unicode_length"]).value, len(s))
    st = rd32(id(s) + o["unicode_state"]).value
    check("unicode_state(ascii)", ((st >> 2) & 7, (st >> 5) & 1, (st >> 6) & 1), (1, 1, 1))
    check("unicode_ascii_data", ctypes.string_at(id(s) + o["unicode_ascii_data"], len(s)),
          s.encode())
    for u, kind, enc in (("\u00e9t\u00e9" + str(os.getpid()), 1, "latin-1"),
                         ("\u20ac" + str(os.getpid()), 2, "utf-16-le")):
        st = rd32(id(u) + o["unicode_state"]).value
        check("unicode_state(kind %d)" % kind, ((st >> 2) & 7, (st >> 5) & 1, (st >> 6) & 1),
              (kind, 1, 0))
        check("unicode_compact_data(kind %d)" % kind,
              ctypes.string_at(id(u) + o["unicode_compact_data"], kind * len(u)), u.encode(enc))
    b = bytes(range(7)) * 3
    check("bytes_size", rd64s(id(b) + o["bytes_size"]).value, len(b))
    check("bytes_sval", ctypes.string_at(id(b) + o["bytes_sval"], len(b) + 1), b + b"\0")


def main():
    if sys.argv[1] == "where":
        where()
        return
    o = {k: int(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
    run_checks(o)
    for r in results:
        print(r)
    print("done")


if __name__ == "__main__":
    main()
