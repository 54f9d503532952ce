"""Where a run's parallel work runs: in the calling process, or in worker processes.

The operation owns one :class:`Executor` for the whole run, a context manager: ``with
executor_for(...) as ex:``; no worker outlives the block, whatever ends it. Inside, in this order:

1. :meth:`Executor.run` is the :class:`~cachestatus.formats.base.Run` the reader lists levels
   with (a plain function mapped over items, spread over processes when the reader asks);
2. :meth:`Executor.size_for` decides where the scan of the listed bundles runs, and starts the
   processes it needs: none start after it, so the caller may start threads then (a fork after
   a thread is unsafe);
3. :meth:`Executor.map` runs a :data:`ChunkWork` on lists of bundles (results in order, a
   bounded number in flight).

:func:`executor_for` gives :class:`InProcess` for one worker, else a :class:`ProcessPool`
(or, for a run on a Dask :class:`Cluster`, :class:`~cachestatus.execute_dask.DaskExecutor`), whose
processes serve the listing and the scan alike: a worker needs nothing from the listing (its
results travel in the bundles, :attr:`~cachestatus.formats.base.BundleFile.payload`) and opens
its own reader from the cache's spec (:func:`worker_reader`) when its first list of bundles
comes. :func:`scan_processes` is how many processes a scan is worth.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Self, TypeVar

from .content import BlankTiles
from .errors import UsageError
from .formats.base import BundleFile, CacheReader, run_here
from .formats.spec import CacheSpec
from .parallel import start_pool, stop_pool
from .plan import LevelPlan, ScanPolicy

if TYPE_CHECKING:
    import multiprocessing.pool
    from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Bundles handed to a worker process at a time.
CHUNK = 256
#: Below this many bundles the scan runs in the calling process: workers would cost more.
PARALLEL_THRESHOLD = 1024
#: Lists of bundles queued ahead per worker process: workers stay busy while results are used,
#: memory stays flat.
WINDOW_PER_PROCESS = 32


@dataclass
class ChunkContext:
    """What work on lists of bundles is given, once per process (a worker's, or the calling
    one): the open reader, the level plans by level ID, the run's memory of blank tiles, and
    how many bundle reads to keep in flight.

    With more than one read in flight, the context owns the threads that read (:meth:`in_flight`),
    started with the first list of bundles and kept for the next ones; :meth:`close` stops them
    (a worker process's stop with it).
    """

    reader: CacheReader
    plans: dict[int, LevelPlan]
    blank_tiles: BlankTiles = field(default_factory=BlankTiles)
    #: Bundle reads kept in flight (1: one after the other, in the calling thread).
    io_concurrency: int = 1
    _threads: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

    def in_flight(self, func: Callable[[BundleFile], R], bundles: list[BundleFile]) -> Iterator[R]:
        """``func`` on each bundle from :attr:`io_concurrency` threads, results in the order of
        ``bundles`` (``func`` must be safe to call from several threads at once)."""
        if self._threads is None:
            from concurrent.futures import ThreadPoolExecutor

            self._threads = ThreadPoolExecutor(self.io_concurrency, thread_name_prefix="read")
        return self._threads.map(func, bundles)

    def close(self) -> None:
        """Stop the reading threads, if any run."""
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(cancel_futures=True)


@dataclass(frozen=True)
class Cluster:
    """A Dask cluster a run's work goes to (:mod:`cachestatus.execute_dask`): the address of a
    running scheduler, or, without one, a local cluster of ``workers`` processes started for the
    run."""

    scheduler: str | None = None
    workers: int = 2


#: Where Dask's own programs take the scheduler's address from when none is given.
SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"


def cluster_for(scheduler: str | None, cluster: int | None, workers: int | None) -> Cluster | None:
    """The Dask cluster a run asks for: the ``scheduler``'s, or a local one of ``cluster``
    processes; without either, the scheduler of :data:`SCHEDULER_VARIABLE` when it is set and
    the run does not ask for local ``workers``; else none (the run's own processes).

    Raises:
        UsageError: both a scheduler and a local cluster, or either with local workers.
    """
    if scheduler is not None and cluster is not None:
        raise UsageError("give a Dask scheduler's address or a local cluster's size, not both")
    if (scheduler is not None or cluster is not None) and workers is not None:
        raise UsageError(
            "workers is the number of local processes; on a Dask cluster its workers scan"
        )
    if cluster is not None:
        if cluster < 1:
            raise UsageError(f"cluster={cluster!r}: a local cluster needs at least 1 worker")
        return Cluster(workers=cluster)
    if scheduler is None and workers is None:
        scheduler = os.environ.get(SCHEDULER_VARIABLE) or None
    return None if scheduler is None else Cluster(scheduler)


#: Work on a list of bundles, run in a worker process (or in the calling one): gets the process's
#: context, returns what travels back (it must pickle, as must the function itself).
ChunkWork = Callable[[ChunkContext, list[BundleFile]], T]


class Executor(Protocol):
    """Runs a run's parallel work, the listing's then the scan's; a context manager that
    releases whatever it started."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def run(self, func: Callable[[T], R], items: Sequence[T], /) -> list[R]:
        """``func`` on each item, results in order (the listing's :class:`Run`)."""
        ...

    def size_for(self, total: int) -> int:
        """Decide where the scan of ``total`` bundles runs, and start the processes it needs;
        none start after. Returns the number of processes the scan uses (1: here)."""
        ...

    def map(self, work: ChunkWork[T], chunks: Iterable[list[BundleFile]]) -> Iterator[T]:
        """``work`` on each list of bundles, results in the order of ``chunks``."""
        ...


class InProcess:
    """Runs everything in the calling process, with the caller's reader."""

    def __init__(
        self, reader: CacheReader, plans: Iterable[LevelPlan], io_concurrency: int = 1
    ) -> None:
        self.context = ChunkContext(
            reader, {p.lod.level: p for p in plans}, io_concurrency=io_concurrency
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.context.close()

    #: ``func`` on each item, here: :func:`~cachestatus.formats.base.run_here` itself, so that
    #: readers list in one piece.
    run = staticmethod(run_here)

    def size_for(self, total: int) -> int:
        """The scan runs here: 1."""
        return 1

    def map(self, work: ChunkWork[T], chunks: Iterable[list[BundleFile]]) -> Iterator[T]:
        """``work`` on each list of bundles, here, one after the other."""
        for bundles in chunks:
            yield work(self.context, bundles)


def scan_processes(policy: ScanPolicy, workers: int, total: int, reader: CacheReader) -> int:
    """How many of ``workers`` processes the scan of ``total`` bundles is worth: 1 (it runs
    here) when one worker is asked for, when there are too few bundles to be worth processes
    (:data:`PARALLEL_THRESHOLD`) or when the reader's listing already holds it all
    (``reader.parallel``); else one per :data:`CHUNK` bundles, at most ``workers``. Work that
    reads every tile (``policy.reads_tiles``) is worth a process per bundle, in any format."""
    if policy.reads_tiles:
        return max(1, min(workers, total))
    if total < PARALLEL_THRESHOLD or not reader.parallel:
        return 1
    return min(workers, -(-total // CHUNK))


# Worker-process state, set once per process by _init_worker: what the work's context is made
# of, until the first list of bundles opens the reader (a worker that only lists never opens
# it); then the context, or the error opening the cache raised, which each task raises again.
# Tasks carry only bundle lists.
_worker: tuple[CacheSpec, dict[int, LevelPlan], int] | ChunkContext | Exception | None = None


def worker_reader(spec: CacheSpec) -> CacheReader:
    """The reader a worker process reads with: its own, opened once from the cache's spec. It
    is never closed by us: the pool stops its workers with SIGTERM, and the operating system
    closes their handles. The calling process has told what opening finds (warnings)."""
    quiet = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        return spec.open()
    finally:
        logging.disable(quiet)


def _init_worker(spec: CacheSpec, plans: dict[int, LevelPlan], io_concurrency: int) -> None:
    global _worker
    _worker = (spec, plans, io_concurrency)


def _in_worker(work: ChunkWork[T], bundles: list[BundleFile]) -> T:
    global _worker
    if isinstance(_worker, tuple):
        spec, plans, io_concurrency = _worker
        try:
            _worker = ChunkContext(worker_reader(spec), plans, io_concurrency=io_concurrency)
        except Exception as exc:  # the cache changed since it was opened: each task says so
            _worker = exc
    if isinstance(_worker, Exception):
        raise _worker
    assert _worker is not None, "worker not initialised"
    return work(_worker, bundles)


class ProcessPool:
    """Up to ``workers`` worker processes for a run's listing and its scan, one pool for both.

    The pool starts with the first work worth processes: a listing spread over more than one
    item (with all ``workers``), or a scan that :meth:`size_for` finds worth them (with as many
    as :func:`scan_processes` says). A scan keeps the listing's pool, whatever its size; a scan
    that runs here stops it. The workers are stopped when the block is left, in bounded time,
    however it is left.

    Args:
        reader: the open cache (see :func:`worker_reader` for what each worker gets).
        plans: the level plans.
        policy: what the scan reads (work that reads every tile is worth more processes).
        workers: how many processes, at most.
        io_concurrency: bundle reads each process keeps in flight.
    """

    def __init__(
        self,
        reader: CacheReader,
        plans: Iterable[LevelPlan],
        policy: ScanPolicy,
        workers: int,
        io_concurrency: int = 1,
    ) -> None:
        #: Where a scan not worth processes runs: here, with the caller's reader.
        self.here = InProcess(reader, plans, io_concurrency)
        self.policy = policy
        self.workers = workers
        #: Worker processes running (0: none).
        self.processes = 0
        self._pool: multiprocessing.pool.Pool | None = None
        self._sized = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
        self.here.__exit__(*exc)

    def _stop(self) -> None:
        """Stop the workers, if any run."""
        pool, self._pool = self._pool, None
        self.processes = 0
        if pool is not None:
            stop_pool(pool)

    def _running(self, processes: int) -> multiprocessing.pool.Pool:
        """The pool, started with ``processes`` workers if none runs yet."""
        if self._pool is None:
            log.debug("working with %d worker processes", processes)
            context = self.here.context
            self._pool = start_pool(
                processes,
                _init_worker,
                (context.reader.spec, context.plans, context.io_concurrency),
                remote=context.reader.location is not None,
            )
            self.processes = processes
        return self._pool

    def run(self, func: Callable[[T], R], items: Sequence[T], /) -> list[R]:
        """``func`` on each item: in the workers when there are several items, here when
        one."""
        if len(items) <= 1:
            return run_here(func, items)
        return self._running(self.workers).map(func, items)

    def size_for(self, total: int) -> int:
        """Decide where the scan of ``total`` bundles runs (:func:`scan_processes`): in the
        workers, started now if the listing started none, or here, the listing's workers
        stopped. Returns the number of processes the scan uses (1: here)."""
        self._sized = True
        wanted = scan_processes(self.policy, self.workers, total, self.here.context.reader)
        if wanted <= 1:
            self._stop()
            return 1
        self._running(wanted)
        return self.processes

    def map(self, work: ChunkWork[T], chunks: Iterable[list[BundleFile]]) -> Iterator[T]:
        """``work`` on each list, where :meth:`size_for` decided, results in order."""
        assert self._sized, "size_for() decides where the scan runs, before map()"
        if self._pool is None:
            return self.here.map(work, chunks)
        return self._mapped(self._pool, work, chunks)

    def _mapped(
        self,
        pool: multiprocessing.pool.Pool,
        work: ChunkWork[T],
        chunks: Iterable[list[BundleFile]],
    ) -> Iterator[T]:
        """``work`` on each list in the workers. A bounded number of lists is queued ahead:
        workers stay busy while results are used, memory stays flat."""
        pending: deque[multiprocessing.pool.AsyncResult[T]] = deque()
        window = WINDOW_PER_PROCESS * self.processes
        for bundles in chunks:
            pending.append(pool.apply_async(_in_worker, (work, bundles)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def executor_for(
    policy: ScanPolicy,
    workers: int,
    reader: CacheReader,
    plans: Sequence[LevelPlan],
    io_concurrency: int = 1,
    cluster: Cluster | None = None,
) -> Executor:
    """The executor of a run over ``plans`` with up to ``workers`` processes, each keeping
    ``io_concurrency`` bundle reads in flight: on ``cluster`` when one is given (a
    :class:`~cachestatus.execute_dask.DaskExecutor`), in this process when one worker is asked
    for, else a :class:`ProcessPool` (whose processes start only for work worth them)."""
    if cluster is not None:
        from .execute_dask import DaskExecutor

        return DaskExecutor(reader, plans, policy, cluster, io_concurrency)
    if workers <= 1:
        return InProcess(reader, plans, io_concurrency)
    return ProcessPool(reader, plans, policy, workers, io_concurrency)


__all__ = [
    "CHUNK",
    "PARALLEL_THRESHOLD",
    "SCHEDULER_VARIABLE",
    "ChunkContext",
    "ChunkWork",
    "Cluster",
    "Executor",
    "InProcess",
    "ProcessPool",
    "cluster_for",
    "executor_for",
    "scan_processes",
    "worker_reader",
]
