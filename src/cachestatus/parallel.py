"""Worker processes: how many, how they start and stop; and how many reads each keeps in flight.

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

import operator
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .storage import retries

if TYPE_CHECKING:
    import multiprocessing.context
    import multiprocessing.pool

    from .formats import CacheReader


#: Workers beyond this many per core are not started: the scan reads files, it does not wait on
#: a network, and each worker costs a process.
WORKERS_PER_CORE = 4
#: Reads in flight per worker process on a network share (NFS, SMB...), where each read waits
#: on the network: what the run uses when it does not say.
SHARE_IO_CONCURRENCY = 16
#: File system types (``/proc/mounts``) whose reads go over a network.
NETWORK_FILE_SYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "ceph", "glusterfs", "lustre", "fuse.sshfs"}
)
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
        import logging  # loaded when needed: resolving a count never logs otherwise

        logging.getLogger(__name__).warning(
            "%d worker processes asked for; %d are used (%d per core on %d cores)",
            value,
            most,
            WORKERS_PER_CORE,
            default_workers(),
        )
        return most
    return value


def mount_type(path: str, mounts: str) -> str | None:
    """The file system type of the mount holding the absolute ``path``, from ``mounts`` in
    ``/proc/mounts``' format (device, mount point, type...; spaces in names written ``\\040``):
    the mount point that is the longest prefix of the path. ``None`` when none is.
    """
    found: tuple[int, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (found is None or len(point) >= found[0]):
            found = (len(point), fields[2])  # a later mount over the same point hides earlier
    return None if found is None else found[1]


def _unescape(field: str) -> str:
    """A ``/proc/mounts`` field with its octal escapes (``\\040``: a space) decoded."""
    if "\\" not in field:
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def on_network_share(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` lies on a network share: a mount of a :data:`NETWORK_FILE_SYSTEMS`
    type (Linux, from ``/proc/mounts``), or a UNC path (``\\\\server\\share``)."""
    text = os.fspath(path)
    if text.startswith("\\\\"):
        return True
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            mounts = f.read()
    except OSError:  # not Linux
        return False
    return mount_type(os.path.realpath(text), mounts) in NETWORK_FILE_SYSTEMS


def resolve_io_concurrency(requested: int | None, reader: CacheReader) -> int:
    """Bundle reads in flight per worker process: ``requested``, else the reader's storage's
    (:attr:`~cachestatus.formats.CacheReader.io_concurrency`), raised to
    :data:`SHARE_IO_CONCURRENCY` for a cache on a network share; always 1 for a reader that
    reads one bundle at a time (:attr:`~cachestatus.formats.CacheReader.thread_safe`).

    Raises:
        UsageError: ``requested`` is not a whole number of at least 1.
    """
    if requested is not None:
        try:
            if isinstance(requested, (bool, float)):
                raise TypeError
            asked = operator.index(requested)  # int, numpy integers
        except TypeError:
            asked = 0
        if asked < 1:
            raise UsageError(
                f"io_concurrency={requested!r}: give a whole number of reads in flight, 1 or more"
            )
    if not reader.thread_safe:
        return 1
    if requested is not None:
        return asked
    if reader.io_concurrency == 1 and on_network_share(reader.root):
        return SHARE_IO_CONCURRENCY
    return reader.io_concurrency


def pool_context(remote: bool = False) -> multiprocessing.context.BaseContext:
    """Fork on Linux, spawn elsewhere, and spawn for workers that read a ``remote`` cache:
    obstore's requests run on threads of a runtime that a forked child inherits without them,
    and would wait forever. (Workers reading local files never touch that runtime, so they
    fork even in a process that has read remote caches before.)"""
    import multiprocessing  # only for a run that starts workers: it costs a rebuild that does not

    forkable = sys.platform == "linux" and not remote
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
    remote: bool = False,
) -> multiprocessing.pool.Pool:
    """A pool of ``processes`` workers that leave interrupts to this process (started as
    :func:`pool_context` says for a ``remote`` cache or not).

    An interrupt while the pool starts is raised once it is whole, after it has been stopped:
    no worker outlives it.
    """
    pool: multiprocessing.pool.Pool | None = None
    try:
        with signals_deferred():
            pool = pool_context(remote).Pool(
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
    "NETWORK_FILE_SYSTEMS",
    "SHARE_IO_CONCURRENCY",
    "default_workers",
    "max_workers",
    "mount_type",
    "on_network_share",
    "pool_context",
    "resolve_io_concurrency",
    "resolve_workers",
    "signals_deferred",
    "start_pool",
    "stop_pool",
]
