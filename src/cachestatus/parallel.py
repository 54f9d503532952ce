"""Worker processes: how many, and how they start and stop.

On Linux, workers are forked: they start in milliseconds and inherit what the parent has loaded.
Elsewhere they are spawned (fork is unsafe on macOS, absent on Windows), and so they are for a
cache in object storage (the obstore client's runtime does not survive a fork). A run's pool is
made before any thread of ours starts (the progress bar, the store lock's refresh): a fork copies
only the forking thread, and a lock another thread held stays held in the child. GDAL may have
been used by then (an area of interest is read through pyogrio, a status store is being written).

Interrupts are the parent's business: workers ignore SIGINT (a Ctrl-C reaches the whole process
group) and die quietly on SIGTERM (how a pool is stopped). SIGINT and SIGTERM are held back while
a pool starts and while it stops, so that an interrupt at that moment can neither leave a pool
half made nor cut its cleanup short: it is raised as soon as the pool is whole, or gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.pool
import operator
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import UsageError
from .storage import retries

log = logging.getLogger(__name__)

#: Workers beyond this many per core are not started: the scan reads files, it does not wait on
#: a network, and each worker costs a process.
WORKERS_PER_CORE = 4
#: How long stopping a pool may wait for it to wind down before its workers are killed.
STOP_TIMEOUT = 5.0

_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None
)


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def max_workers() -> int:
    """The most worker processes a run starts: :data:`WORKERS_PER_CORE` per core."""
    return WORKERS_PER_CORE * default_workers()


def resolve_workers(workers: object) -> int:
    """The number of worker processes for ``workers``: all cores for ``None`` or ``<= 0``
    (arcpy's ``-1``), at most :func:`max_workers` (with a logged warning when clamped).

    Raises:
        UsageError: not a whole number.
    """
    if workers is None:
        return default_workers()
    try:
        if isinstance(workers, (bool, float)):
            raise TypeError
        value = operator.index(workers)  # type: ignore[arg-type]  # int, numpy integers
    except TypeError:
        raise UsageError(
            f"workers={workers!r}: give a whole number of worker processes "
            "(1 scans in the calling process; 0 or none: all cores)"
        ) from None
    if value <= 0:
        return default_workers()
    most = max_workers()
    if value > most:
        log.warning(
            "%d worker processes asked for; %d are used (%d per core on %d cores)",
            value,
            most,
            WORKERS_PER_CORE,
            default_workers(),
        )
        return most
    return value


def pool_context() -> multiprocessing.context.BaseContext:
    """Fork on Linux, spawn elsewhere, and spawn once obstore is loaded: its requests run on
    threads of a runtime that a forked child inherits without them, and would wait forever."""
    forkable = sys.platform == "linux" and "obstore" not in sys.modules
    return multiprocessing.get_context("fork" if forkable else "spawn")


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (in this thread) until the block ends; then they act.

    Processes forked inside the block start with both held back too. Does nothing where
    signals cannot be masked (Windows) or off the main thread (signals go to the main thread).
    """
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not (
        threading.main_thread()
    ):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _init_worker(
    initializer: Callable[..., object] | None, initargs: tuple[Any, ...], retried: Any
) -> None:
    """In each worker: ignore SIGINT, die quietly on SIGTERM, count retried requests where the
    parent does, then the pool's own set-up."""
    retries.use_counter(retried)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    if initializer is not None:
        initializer(*initargs)


def start_pool(
    processes: int,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
) -> multiprocessing.pool.Pool:
    """A pool of ``processes`` workers that leave interrupts to this process.

    An interrupt while the pool starts is raised once it is whole, after it has been stopped:
    no worker outlives it.
    """
    pool: multiprocessing.pool.Pool | None = None
    try:
        with signals_deferred():
            pool = pool_context().Pool(
                processes,
                initializer=_init_worker,
                initargs=(initializer, initargs, retries.counter()),
            )
    except BaseException:
        if pool is not None:
            stop_pool(pool)
        raise
    return pool


def stop_pool(pool: multiprocessing.pool.Pool) -> None:
    """Stop every worker of ``pool`` and wait for them, in bounded time.

    The pool is terminated in a helper thread; a worker killed from outside can leave the task
    queue's lock held, on which termination would wait forever: after :data:`STOP_TIMEOUT`, or
    at once when a worker has already died, the workers left are killed outright.
    """
    with signals_deferred():
        workers = list(getattr(pool, "_pool", []))
        stopper = threading.Thread(target=pool.terminate, name="stop-pool", daemon=True)
        stopper.start()
        died = any(p.exitcode is not None for p in workers)
        stopper.join(0.5 if died else STOP_TIMEOUT)
        for process in list(getattr(pool, "_pool", [])) + workers:
            if process.exitcode is None:
                process.kill()
            process.join(STOP_TIMEOUT)
        if not stopper.is_alive():
            pool.join()


__all__ = [
    "default_workers",
    "max_workers",
    "pool_context",
    "resolve_workers",
    "signals_deferred",
    "start_pool",
    "stop_pool",
]
