"""Timing on a shared, noisy machine: wait for the other processes to go quiet, time several runs,
keep the "clean" ones (other processes used < THRESH cores meanwhile), report median and best."""
from __future__ import annotations

import os
import resource
import statistics
import time

TICK = os.sysconf("SC_CLK_TCK")
THRESH = float(os.environ.get("BENCH_FOREIGN_THRESH", 0.15))
MAX_WAIT = float(os.environ.get("BENCH_MAX_WAIT", 20))


def _busy_total() -> float:
    with open("/proc/stat") as f:
        v = [int(t) for t in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICK


def _busy_self() -> float:
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def foreign_cores(seconds: float) -> float:
    """Cores used by OTHER processes over ``seconds`` (sleeping meanwhile)."""
    t0, s0 = _busy_total(), _busy_self()
    time.sleep(seconds)
    return max(0.0, (_busy_total() - t0) - (_busy_self() - s0)) / seconds


def wait_quiet(max_wait=None) -> float:
    max_wait = MAX_WAIT if max_wait is None else max_wait
    if max_wait <= 0:
        return 0.0
    start = time.time()
    while True:
        f = foreign_cores(0.5)
        if f < THRESH or time.time() - start > max_wait:
            return f
        time.sleep(2)


def timed(fn, items_per_call: int, calls: int = 5, runs: int = 5, budget: float = 120.0, max_wait=None) -> dict:
    """Throughput (items/s) of ``calls`` consecutive ``fn()`` per run, over ``runs`` clean runs
    (retrying dirty runs while within ``budget`` seconds; at least ``runs`` attempts), each run
    after waiting up to ``max_wait`` seconds (default ``MAX_WAIT``) for the machine to go quiet."""
    clean, dirty = [], []
    start = time.time()
    while len(clean) < runs and (len(clean) + len(dirty) < runs or time.time() - start < budget):
        wait_quiet(max_wait)
        b0, s0 = _busy_total(), _busy_self()
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        dt = time.perf_counter() - t
        foreign = max(0.0, (_busy_total() - b0) - (_busy_self() - s0)) / dt
        (clean if foreign < THRESH else dirty).append(items_per_call * calls / dt)
    use = clean or dirty
    return dict(median=statistics.median(use), best=max(use), runs=[round(r, 2) for r in use],
                clean=len(clean), dirty=len(dirty))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
