"""Where a scan's work runs: in the calling process, or in worker processes.

An :class:`Executor` is a context manager that the operation owns: ``with executor_for(...) as
ex:``; no worker outlives the block, whatever ends it. Inside, :meth:`Executor.map` runs a
:data:`ChunkWork` on lists of bundles (results in order, a bounded number in flight) and
:meth:`Executor.run` maps a plain function over items (a :data:`Run`). :func:`executor_for` decides
between :class:`InProcess` and :class:`ProcessPool` from the size of the work.

Two functions say how the cache reaches the work, and nothing else does: :func:`worker_reader`
(what a worker process reads with) and :func:`level_listings` (how a level's bundles are listed,
with the listing's own processes where the reader finds them worth it).
"""

from __future__ import annotations

import logging
import multiprocessing.pool
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.util import Finalize
from typing import Protocol, Self, TypeVar

from .content import BlankTiles
from .formats.base import BundleFile, CacheReader, LevelListing
from .formats.spec import CacheSpec
from .parallel import ProcessMap, signals_deferred, start_pool, stop_pool
from .plan import LevelPlan, ScanPolicy

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
    one): the open reader, the level plans by level ID and the run's memory of blank tiles."""

    reader: CacheReader
    plans: dict[int, LevelPlan]
    blank_tiles: BlankTiles = field(default_factory=BlankTiles)


#: Work on a list of bundles, run in a worker process (or in the calling one): gets the process's
#: context, returns what travels back (it must pickle, as must the function itself).
ChunkWork = Callable[[ChunkContext, list[BundleFile]], T]


class Executor(Protocol):
    """Runs a scan's work; a context manager that releases whatever it started."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def map(self, work: ChunkWork[T], chunks: Iterable[list[BundleFile]]) -> Iterator[T]:
        """``work`` on each list of bundles, results in the order of ``chunks``."""
        ...

    def run(self, func: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``func`` on each item, results in order."""
        ...


class InProcess:
    """Runs everything in the calling process, with the caller's reader."""

    def __init__(self, reader: CacheReader, plans: Iterable[LevelPlan]) -> None:
        self.context = ChunkContext(reader, {p.lod.level: p for p in plans})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, work: ChunkWork[T], chunks: Iterable[list[BundleFile]]) -> Iterator[T]:
        """``work`` on each list of bundles, here, one after the other."""
        for bundles in chunks:
            yield work(self.context, bundles)

    def run(self, func: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``func`` on each item, here."""
        return [func(item) for item in items]


# Worker-process state, set once per process by _init_worker: tasks carry only bundle lists.
# An error opening the cache is kept there, and raised by each task.
_worker: ChunkContext | Exception | None = None


def worker_reader(spec: CacheSpec) -> CacheReader:
    """The reader a worker process reads with: its own, opened once from the cache's spec and
    closed when the worker ends. The calling process has told what opening finds (warnings)."""
    quiet = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        reader = spec.open()
    finally:
        logging.disable(quiet)
    Finalize(reader, reader.close, exitpriority=0)
    return reader


def _init_worker(spec: CacheSpec, plans: dict[int, LevelPlan]) -> None:
    global _worker
    try:
        _worker = ChunkContext(worker_reader(spec), plans)
    except Exception as exc:  # the cache changed since it was opened: each task says so
        _worker = exc


def _in_worker(work: ChunkWork[T], bundles: list[BundleFile]) -> T:
    if isinstance(_worker, Exception):
        raise _worker
    assert _worker is not None, "worker not initialised"
    return work(_worker, bundles)


class ProcessPool:
    """Worker processes that each hold the cache and the level plans, set up once.

    The workers start when the block is entered (before the caller starts any thread: a fork
    then is safe) and are stopped when it is left, in bounded time, however it is left.

    Args:
        reader: the open cache (see :func:`worker_reader` for what each worker gets).
        plans: the level plans.
        processes: how many workers.
    """

    def __init__(self, reader: CacheReader, plans: Iterable[LevelPlan], processes: int) -> None:
        self.reader = reader
        self.plans = {p.lod.level: p for p in plans}
        self.processes = processes
        self._pool: multiprocessing.pool.Pool | None = None

    def __enter__(self) -> Self:
        log.debug("working with %d worker processes", self.processes)
        # The pool is ours as soon as it exists: an interrupt is raised only once it is held,
        # and then stops it (a with block whose __enter__ raises never calls __exit__).
        try:
            with signals_deferred():
                self._pool = start_pool(
                    self.processes, _init_worker, (self.reader.spec, self.plans)
                )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            stop_pool(pool)

    def _running(self) -> multiprocessing.pool.Pool:
        assert self._pool is not None, "the pool runs only inside its with block"
        return self._pool

    def map(self, work: ChunkWork[T], chunks: Iterable[list[BundleFile]]) -> Iterator[T]:
        """``work`` on each list, in the workers, results in order. A bounded number of lists
        is queued ahead: workers stay busy while results are used, memory stays flat."""
        pool = self._running()
        pending: deque[multiprocessing.pool.AsyncResult[T]] = deque()
        window = WINDOW_PER_PROCESS * self.processes
        for bundles in chunks:
            pending.append(pool.apply_async(_in_worker, (work, bundles)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def run(self, func: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``func`` on each item, in the workers."""
        return self._running().map(func, items)


def executor_for(
    policy: ScanPolicy,
    workers: int,
    total: int,
    reader: CacheReader,
    plans: Sequence[LevelPlan],
) -> Executor:
    """Where ``total`` bundles of ``plans`` are worked on: in up to ``workers`` processes, or
    here when one worker is asked for, when there are too few bundles to be worth processes
    (:data:`PARALLEL_THRESHOLD`), or when the reader's listing already holds it all. Work that
    reads every tile (``policy.reads_tiles``) is worth processes from two bundles up, in any
    format."""
    if policy.reads_tiles:
        processes = min(workers, total)
    elif total < PARALLEL_THRESHOLD or not reader.parallel:
        processes = 1
    else:
        processes = min(workers, -(-total // CHUNK))
    if processes <= 1:
        return InProcess(reader, plans)
    return ProcessPool(reader, plans, processes)


def level_listings(reader: CacheReader, levels: Sequence[int], workers: int) -> list[LevelListing]:
    """The listing of each level, each listed once; readers whose listing is costly may spread
    it over up to ``workers`` processes, started and stopped here, before any executor's."""
    with ProcessMap(workers) as run:
        return [reader.list_level(level, run) for level in levels]


__all__ = [
    "CHUNK",
    "PARALLEL_THRESHOLD",
    "ChunkContext",
    "ChunkWork",
    "Executor",
    "InProcess",
    "ProcessPool",
    "executor_for",
    "level_listings",
    "worker_reader",
]
