"""py_codes: code objects of this interpreter, for unit.pycode to read from outside.

Prints "types CODE STR BYTES" (the type objects' addresses), then one line per code object:
"code ADDR FIRSTLINENO QUALNAME NAME FILENAME LINETABLE" (the last four hex-encoded UTF-8 /
bytes; QUALNAME is co_name on 3.10), then "ready", and keeps every object alive until stdin
closes. The code objects: everything reachable from a few stdlib modules' code (sorted,
deterministic) and three with non-ASCII names and files (1-, 2- and 4-byte str kinds).
"""
import sys

SRC = "def caf\u00e9():\n    return 1\n" \
      "class \u0416\u0443\u043a:\n    def m\u00e9th(self):\n        pass\n" \
      "def \U00010400x():\n    pass\n"


def main():
    keep = []
    mods = []
    for name in ("json.decoder", "email.message", "textwrap", "argparse", "dataclasses"):
        __import__(name)
        mods.append(sys.modules[name])
    roots = [compile(open(m.__file__, "rb").read(), m.__file__, "exec") for m in mods]
    roots.append(compile(SRC, "/tmp/\u0444\u20ac\U00010400.py", "exec"))
    code_type = type(main.__code__)
    stack = list(reversed(roots))
    while stack:
        c = stack.pop()
        keep.append(c)
        stack.extend(k for k in reversed(c.co_consts) if type(k) is code_type)
    out = ["types %d %d %d" % (id(code_type), id(str), id(bytes))]
    for c in keep:
        q = getattr(c, "co_qualname", c.co_name)
        out.append("code %d %d %s %s %s %s" % (
            id(c), c.co_firstlineno, q.encode().hex() or "-", c.co_name.encode().hex() or "-",
            c.co_filename.encode().hex() or "-", c.co_linetable.hex() or "-"))
    out.append("ready")
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    sys.stdin.read()


if __name__ == "__main__":
    main()
