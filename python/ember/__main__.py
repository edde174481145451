"""python -m ember run [EMBER OPTIONS] script.py ARGS...
   python -m ember run [EMBER OPTIONS] -m module ARGS...
   python -m ember COMMAND ARGS...          (any other command: the ember binary itself)

`run` calls ember.watch() on this very interpreter, then runs the script or module as
`python script.py` would (sys.argv, __main__). Ember options: --server URL, --profiles LIST,
--label KEY=VALUE (repeatable), --interval SEC, --sample-rate HZ, --cuda-graph-trace node|graph.
"""
import os
import runpy
import sys

from . import EmberNotFound, find_ember, watch

USAGE = ("usage: python -m ember run [--server URL] [--profiles cpu,gpu] [--label K=V]... "
         "[--interval SEC] [--sample-rate HZ] [--cuda-graph-trace node|graph] "
         "(script.py | -m module) [ARGS...]")

VALUED = {"--server", "--profiles", "--label", "--interval", "--sample-rate", "--cuda-graph-trace"}


def parse(argv):
    """(watch kwargs, ("path"|"module", target), target args) from the words after `run`."""
    kw = {"labels": {}}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-m":
            if i + 1 >= len(argv):
                raise SystemExit("python -m ember run: -m needs a module name\n" + USAGE)
            return kw, ("module", argv[i + 1]), argv[i + 2:]
        if a in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        name, eq, val = a.partition("=")
        if name in VALUED:
            if not eq:
                if i + 1 >= len(argv):
                    raise SystemExit(f"python -m ember run: {name} needs a value\n" + USAGE)
                val = argv[i + 1]
                i += 1
            if name == "--label":
                k, e, v = val.partition("=")
                if not e or not k:
                    raise SystemExit(f"python -m ember run: --label wants KEY=VALUE, not {val!r}")
                kw["labels"][k] = v
            elif name == "--profiles":
                kw["profiles"] = val
            elif name == "--interval":
                kw["interval"] = float(val)
            elif name == "--sample-rate":
                kw["sample_rate"] = int(val)
            elif name == "--cuda-graph-trace":
                kw["cuda_graph_trace"] = val
            else:
                kw["server"] = val
            i += 1
            continue
        if a.startswith("-"):
            raise SystemExit(f"python -m ember run: unknown option {a}\n" + USAGE)
        return kw, ("path", a), argv[i + 1:]
    raise SystemExit("python -m ember run: no script or -m module\n" + USAGE)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] != "run":
        try:
            binary = find_ember()
        except EmberNotFound as e:
            print(f"python -m ember: {e}", file=sys.stderr)
            return 2
        os.execv(binary, [binary] + argv)
    kw, (kind, target), rest = parse(argv[1:])
    watch(**kw)
    if kind == "module":
        sys.argv = [target] + rest
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [target] + rest
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
