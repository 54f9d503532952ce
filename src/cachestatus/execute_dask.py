"""The run's parallel work on a Dask cluster: :class:`DaskExecutor`, the executor of
:func:`~cachestatus.execute.executor_for` when a run names a scheduler or asks for a local
cluster (:class:`~cachestatus.execute.Cluster`).

It keeps the :class:`~cachestatus.execute.Executor` protocol, so the operations, the work
functions and the folds run on it unchanged. Dask costs milliseconds per task, so a task carries
a run of bundles (up to :data:`TASK_BUNDLES`, the scan's lists joined in the listing's order),
never one, and carries bundle files named by their keys alone as those keys
(:func:`~cachestatus.formats.base.packed`: a few bytes a bundle, not their paths). What a
task's worker needs besides its bundles (the cache's picklable spec, the level plans, the reads
in flight) goes to every worker once, scattered; each worker opens its own
reader from the spec, so credentials come from the worker's own environment, never from the
task. Results stream back as tasks finish (``as_completed``), a bounded number in flight, and are
handed on in the listing's order: the store is the same as the local run's, row for row.

A worker lost mid-run costs only its tasks: the scheduler runs them again elsewhere. Leaving the
block (an interrupt included) cancels what is still pending, closes the client, and stops the
local cluster when the executor started one.

``distributed`` is imported only here, and only when a cluster is asked for; without it,
:class:`~cachestatus.errors.MissingExtra` names ``pip install 'cachestatus[dask]'``.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import ExitStack
from functools import partial
from typing import Any, Self, TypeVar

from .errors import MissingExtra
from .execute import CHUNK, ChunkContext, ChunkWork, Cluster, worker_reader
from .formats.base import BundleFile, BundleRun, CacheReader, packed, run_here, unpacked
from .formats.spec import CacheSpec
from .plan import LevelPlan, ScanPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A")

DASK_EXTRA = "pip install 'cachestatus[dask]'"
#: Bundles a task reads, at most: about one bundle row of a national level. A task costs a few
#: milliseconds of scheduling; this many bundles take a worker long enough to make that small.
TASK_BUNDLES = 2048
#: Bundles a task reads, at most, for work that reads every tile (each bundle takes long).
TASK_BUNDLES_READING_TILES = 16
#: Tasks per worker thread the scan aims at, so that the cluster's workers end together.
TASKS_PER_THREAD = 4
#: Tasks in flight or waiting to be handed on, per worker thread: workers stay busy, and the
#: client holds at most this many results.
WINDOW_PER_THREAD = 4
#: What ends the items of :meth:`DaskExecutor.map_each`.
_END: Any = object()
#: Times a task that raised is run again (a task whose worker died is run again anyway).
RETRIES = 2


def require_distributed() -> Any:
    """The ``distributed`` module.

    Raises:
        MissingExtra: distributed is not installed (the ``dask`` extra).
    """
    try:
        import distributed
    except ImportError:
        raise MissingExtra(f"running on a Dask cluster needs distributed: {DASK_EXTRA}") from None
    return distributed


#: What a worker needs to make its context: the run's token, the cache's spec, the level plans,
#: and the reads in flight.
Setup = tuple[str, CacheSpec, dict[int, LevelPlan], int]

# Per worker thread: the run its context serves (by token), and the context, or the error
# opening the cache raised, which each task of that run raises again. A thread keeps the last
# run's context until the next run comes (workers outlive runs): then it is closed.
_contexts = threading.local()


def _context(setup: Setup) -> ChunkContext:
    token, spec, plans, io_concurrency = setup
    held: tuple[str, ChunkContext | Exception] | None = getattr(_contexts, "held", None)
    if held is None or held[0] != token:
        if held is not None and isinstance(held[1], ChunkContext):
            held[1].close()
            held[1].reader.close()
        made: ChunkContext | Exception
        try:
            made = ChunkContext(worker_reader(spec), plans, io_concurrency=io_concurrency)
        except Exception as exc:  # the cache changed since it was opened: each task says so
            made = exc
        held = (token, made)
        _contexts.held = held
    if isinstance(held[1], Exception):
        raise held[1]
    return held[1]


def _on_worker(setup: Setup, task: Callable[[ChunkContext, A], T], item: A) -> T:
    return task(_context(setup), item)


def _on_bundles(
    work: ChunkWork[T], context: ChunkContext, bundles: list[BundleFile] | tuple[BundleRun, ...]
) -> T:
    return work(context, unpacked(bundles))


def task_size(policy: ScanPolicy, total: int, threads: int) -> int:
    """Bundles per task for a scan of ``total`` bundles on ``threads`` worker threads: enough
    tasks to share out (:data:`TASKS_PER_THREAD` per thread), each as large as that allows up to
    :data:`TASK_BUNDLES` (:data:`TASK_BUNDLES_READING_TILES` for work reading every tile), and,
    for the status work, no smaller than the local run's lists."""
    share = -(-total // max(1, threads * TASKS_PER_THREAD))
    if policy.reads_tiles:
        return max(1, min(TASK_BUNDLES_READING_TILES, share))
    return max(CHUNK, min(TASK_BUNDLES, share))


def joined(chunks: Iterable[list[BundleFile]], size: int) -> Iterator[list[BundleFile]]:
    """The lists of ``chunks`` joined, in order, into lists of about ``size`` (a list is never
    cut)."""
    run: list[BundleFile] = []
    for chunk in chunks:
        run.extend(chunk)
        if len(run) >= size:
            yield run
            run = []
    if run:
        yield run


class DaskExecutor:
    """A run's listing and scan on a Dask cluster: a running scheduler's, or a local cluster of
    worker processes it starts (and stops) itself.

    Args:
        reader: the open cache (its spec goes to the workers, which open their own reader).
        plans: the level plans.
        policy: what the scan reads (work reading every tile gets smaller tasks).
        cluster: the scheduler's address, or the number of local worker processes.
        io_concurrency: bundle reads each worker thread keeps in flight.
    """

    def __init__(
        self,
        reader: CacheReader,
        plans: Iterable[LevelPlan],
        policy: ScanPolicy,
        cluster: Cluster,
        io_concurrency: int = 1,
    ) -> None:
        self.reader = reader
        self.plans = {p.lod.level: p for p in plans}
        self.policy = policy
        self.cluster = cluster
        self.io_concurrency = io_concurrency
        #: Bundles per task, and the cluster's worker threads, set by :meth:`size_for`.
        self.task_bundles = TASK_BUNDLES
        self.worker_threads = 1
        # distributed's Client and the scattered setup's Future (its types are not complete)
        self._client: Any = None
        self._setup: Any = None
        self._stack = ExitStack()
        self._token = uuid.uuid4().hex
        # The result streams handed out, closed before the client (see __exit__).
        self._streams: weakref.WeakSet[Generator[Any, None, None]] = weakref.WeakSet()

    def __enter__(self) -> Self:
        distributed = require_distributed()
        with ExitStack() as stack:
            if self.cluster.scheduler is None:
                log.debug("starting a local Dask cluster of %d workers", self.cluster.workers)
                local = stack.enter_context(
                    distributed.LocalCluster(
                        n_workers=self.cluster.workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address="127.0.0.1:0",  # never the 8787 a user's cluster has
                    )
                )
                client = stack.enter_context(distributed.Client(local))
            else:
                log.debug("connecting to the Dask scheduler at %s", self.cluster.scheduler)
                client = stack.enter_context(distributed.Client(self.cluster.scheduler))
            self._client = client
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            # A stream its reader left (an interrupt while a result was used) cancels its
            # pending tasks as it closes: now, while the client is open, not when it is
            # collected later. A cancel that fails (the scheduler gone) must not keep the
            # client and a local cluster open, nor hide what ended the run.
            for stream in list(self._streams):
                try:
                    stream.close()
                except Exception:
                    log.debug("cancelling the pending tasks failed", exc_info=True)
        finally:
            self._client = self._setup = None
            self._stack.close()

    @property
    def client(self) -> Any:
        """The run's Dask client (inside the block)."""
        assert self._client is not None, "the executor is used inside its with block"
        return self._client

    def threads(self) -> int:
        """Worker threads the cluster has now (at least 1)."""
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers))

    def run(self, func: Callable[[T], R], items: Sequence[T], /) -> list[R]:
        """``func`` on each item, results in order: on the cluster when there are several
        items (a reader spreading its listing), here when one."""
        if len(items) <= 1:
            return run_here(func, items)
        futures = self.client.map(func, items, pure=False, retries=RETRIES)
        try:
            results: list[R] = self.client.gather(futures)
        finally:
            self.client.cancel(futures)
        return results

    def size_for(self, total: int) -> int:
        """The scan runs on the cluster, in tasks sized for ``total`` bundles; the spec and the
        plans go to every worker now. Returns the cluster's worker threads."""
        threads = self.worker_threads = self.threads()
        self.task_bundles = task_size(self.policy, total, threads)
        setup: Setup = (self._token, self.reader.spec, self.plans, self.io_concurrency)
        self._setup = self.client.scatter(setup, broadcast=True, hash=False)
        log.debug("%d worker threads, %d bundles per task", threads, self.task_bundles)
        return threads

    def map(self, work: ChunkWork[T], chunks: Iterable[list[BundleFile]]) -> Iterator[T]:
        """``work`` on runs of the lists of bundles, on the cluster, results in order (one per
        run of :attr:`task_bundles` bundles)."""
        runs = (packed(bundles) or bundles for bundles in joined(chunks, self.task_bundles))
        return self.map_each(partial(_on_bundles, work), runs)

    def map_each(self, task: Callable[[ChunkContext, A], T], items: Iterable[A]) -> Iterator[T]:
        """``task`` on each item, on the cluster, with the worker's context; results in the
        order of ``items``. Each item is one Dask task, a bounded number waiting; results are
        taken as tasks finish and handed on in order. Whatever ends the iteration cancels the
        pending tasks."""
        assert self._setup is not None, "size_for() sends the setup, before the tasks"
        stream = self._streamed(self._setup, task, iter(items))
        self._streams.add(stream)
        return stream

    def _streamed(
        self, setup: Any, task: Callable[[ChunkContext, A], T], items: Iterator[A]
    ) -> Generator[T, None, None]:
        distributed = require_distributed()
        client = self.client
        window = WINDOW_PER_THREAD * self.worker_threads
        finished = distributed.as_completed()
        pending: dict[Any, int] = {}
        done: dict[int, T] = {}
        submitted = handed = 0
        try:
            while True:
                while submitted - handed < window:
                    item = next(items, _END)
                    if item is _END:
                        break
                    future = client.submit(
                        _on_worker, setup, task, item, pure=False, retries=RETRIES
                    )
                    pending[future] = submitted
                    finished.add(future)
                    submitted += 1
                if handed == submitted:
                    return
                while handed not in done:
                    future = next(finished)
                    done[pending.pop(future)] = future.result()
                    future.release()
                while handed in done:
                    yield done.pop(handed)
                    handed += 1
        finally:
            if pending:
                client.cancel(list(pending))


__all__ = [
    "DASK_EXTRA",
    "TASK_BUNDLES",
    "DaskExecutor",
    "joined",
    "require_distributed",
    "task_size",
]
