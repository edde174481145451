#!/usr/bin/env python3
"""query: evaluates a Python expression over a receiver's logs and prints the result, so that
C tests can assert on them without a JSON parser.

Usage: query.py [--record FILE] [--requests FILE] EXPR
In EXPR, R is the list of records (accepted series) and Q the list of requests, both decoded
from receiver.py's JSON lines (missing files read as []). A str result is printed as is,
anything else as compact JSON with sorted keys."""
import argparse
import json
import os


def load(path):
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        # A last line the receiver is still writing has no newline yet: not parsed.
        return [json.loads(line) for line in f if line.endswith("\n") and line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--record")
    ap.add_argument("--requests")
    ap.add_argument("expr")
    a = ap.parse_args()
    v = eval(a.expr, {"R": load(a.record), "Q": load(a.requests), "json": json})
    print(v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":")))


if __name__ == "__main__":
    main()
