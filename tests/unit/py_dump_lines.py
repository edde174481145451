"""py_dump_lines: the interpreter's own answer for every line-table lookup of its stdlib.

Run as `pythonX.Y py_dump_lines.py`: compiles every .py under this version's stdlib (sorted,
so the output is deterministic; the test suites Lib/test, */tests, idlelib/idle_test and
site-packages are left out to keep the run short), walks every code object (recursing into
co_consts) and writes to stdout, little-endian:

  header: b"EMBPYLN1", u32 sys.hexversion, u32 judge (1 = PyCode_Addr2Line via
          ctypes.pythonapi, 2 = co_lines() because the C API was not reachable)
  per code object: i32 co_firstlineno, u32 len(co_linetable), the table bytes,
          u32 n = len(co_code) // 2, then n x i32: the line of the instruction at byte
          offset 2*i (-1 = none)
  end: i32 0, u32 0xffffffff

Stdlib only; a file that does not compile under this version is skipped.
"""
import ctypes
import os
import struct
import sys
import sysconfig
import warnings

SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


def judge():
    try:
        f = ctypes.pythonapi.PyCode_Addr2Line
        f.argtypes = (ctypes.py_object, ctypes.c_int)
        f.restype = ctypes.c_int
        return 1, lambda co, off: f(co, off)
    except (AttributeError, OSError):
        pass

    def from_co_lines(co, off):
        for start, end, line in co.co_lines():
            if start <= off < end:
                return -1 if line is None else line
        return -1
    return 2, from_co_lines


def main():
    warnings.simplefilter("ignore")  # SyntaxWarnings of odd stdlib sources
    kind, addr2line = judge()
    out = sys.stdout.buffer
    out.write(b"EMBPYLN1" + struct.pack("<II", sys.hexversion, kind))
    lib = sysconfig.get_paths()["stdlib"]
    code_type = type(main.__code__)
    for root, dirs, files in os.walk(lib):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    co = compile(f.read(), path, "exec", dont_inherit=True)
            except (SyntaxError, ValueError, OSError):
                continue
            stack = [co]
            while stack:
                c = stack.pop()
                stack.extend(k for k in reversed(c.co_consts) if type(k) is code_type)
                tab = c.co_linetable
                n = len(c.co_code) // 2
                lines = [addr2line(c, 2 * i) for i in range(n)]
                out.write(struct.pack("<iI", c.co_firstlineno, len(tab)))
                out.write(tab)
                out.write(struct.pack("<I%di" % n, n, *lines))
    out.write(struct.pack("<iI", 0, 0xFFFFFFFF))
    out.flush()


if __name__ == "__main__":
    main()
