"""Timing whole processes for the benchmarks: alternate runs, medians."""

from __future__ import annotations

import statistics
import subprocess
import time


def timed(cmd: list[str]) -> float:
    """Wall time of one run of ``cmd`` (its output discarded); fails if the command fails."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def alternate(first: list[str], second: list[str], repeat: int) -> tuple[list[float], list[float]]:
    """Run both commands once to warm the page cache, then ``repeat`` times each, alternately,
    so that both see the same machine state; the times of each."""
    timed(first)
    timed(second)
    a, b = [], []
    for _ in range(repeat):
        a.append(timed(first))
        b.append(timed(second))
    return a, b


def median(times: list[float]) -> float:
    """The median of a list of times."""
    return statistics.median(times)


def runs(times: list[float]) -> str:
    """The times as ``0.123, 0.125, ...``."""
    return ", ".join(f"{t:.3f}" for t in times)
