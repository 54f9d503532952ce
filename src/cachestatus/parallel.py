"""Worker processes: how many, how they start, and a plain parallel map.

On Linux, workers are forked: they start in milliseconds and inherit what the parent has loaded.
Elsewhere they are spawned (fork is unsafe on macOS, absent on Windows). Pools are made before any
other thread exists in the process (the progress bar starts later) and before GDAL is used.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pool_context() -> multiprocessing.context.BaseContext:
    """Fork on Linux, spawn elsewhere."""
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def map_in_processes(func: Callable[[T], R], items: Sequence[T], processes: int) -> list[R]:
    """``func`` on each item, results in order: in up to ``processes`` worker processes, or in
    this one when there is one worker or one item. ``func`` and the items must pickle."""
    processes = min(processes, len(items))
    if processes <= 1:
        return [func(item) for item in items]
    with pool_context().Pool(processes) as pool:
        return pool.map(func, items)


__all__ = ["default_workers", "map_in_processes", "pool_context"]
