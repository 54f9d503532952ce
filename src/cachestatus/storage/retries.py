"""How many requests to object storage a run retried, counted across its processes.

One counter in shared memory, made by the process that opens a remote cache before it starts
its workers, which are handed it as they start (:mod:`cachestatus.parallel`) and add to it.
"""

from __future__ import annotations

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
    """Make the counter now, so that worker processes started later share it."""
    global _counter
    if _counter is None:
        import multiprocessing  # a local run never counts: its start-up does not import it

        # Workers of a remote cache are spawned (see cachestatus.parallel): the counter's lock
        # must be one a spawned process may be handed.
        _counter = multiprocessing.get_context("spawn").Value("q", 0)


def counter() -> Any:
    """The shared counter (``None`` before a remote cache is opened), for worker processes."""
    return _counter


def use_counter(shared: Any) -> None:
    """Count into ``shared``, a counter handed over by the process that started this one."""
    global _counter
    if shared is not None:
        _counter = shared


def requests_retried() -> int:
    """Requests retried so far, by this process and its workers."""
    return 0 if _counter is None else int(_counter.value)
