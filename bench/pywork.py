"""Benchmark workload: fixed CPU work at the bottom of a 30-frame Python stack.

Thirty distinct functions call each other (level_00 -> level_01 -> ... -> level_29); the last
spins on integer arithmetic. Prints `cpu_seconds X` (process CPU time) at the end.
Usage: python3 pywork.py ITERATIONS"""
import sys
import time

DEPTH = 30


def spin(n):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s


def make_level(k):
    if k == DEPTH - 1:
        def level(n):
            return spin(n)
    else:
        def level(n):
            return LEVELS[k + 1](n)
    level.__name__ = level.__qualname__ = "level_%02d" % k
    level.__code__ = level.__code__.replace(co_name=level.__name__, co_qualname=level.__name__) \
        if sys.version_info >= (3, 11) else level.__code__.replace(co_name=level.__name__)
    return level


LEVELS = [make_level(k) for k in range(DEPTH)]


def main(iters):
    t0 = time.process_time()
    for _ in range(iters):
        LEVELS[0](2000)
    print("cpu_seconds %.6f" % (time.process_time() - t0), flush=True)


main(int(sys.argv[1]))
