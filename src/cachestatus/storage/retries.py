"""How many requests to object storage a run retried, counted across its processes.

One counter in shared memory, made by the process that opens a remote cache before it starts
its workers: forked workers add to the same counter (where workers are spawned, each counts its
own, and only the calling process's count is told).
"""

from __future__ import annotations

import multiprocessing
from typing import Any

_counter: Any = None


def count_retry() -> None:
    """Add one retried request."""
    global _counter
    if _counter is None:
        share_counter()
    with _counter.get_lock():
        _counter.value += 1


def share_counter() -> None:
    """Make the counter now, so that worker processes forked later share it."""
    global _counter
    if _counter is None:
        _counter = multiprocessing.Value("q", 0)


def requests_retried() -> int:
    """Requests retried so far, by this process and the workers forked from it."""
    return 0 if _counter is None else int(_counter.value)
