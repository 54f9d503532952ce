"""The scan: every listed bundle read by a work function on the run's executor, each result
handed to folds.

A scan is one short pipeline over the levels planned by :mod:`cachestatus.plan`. :func:`listed`
opens the run's one executor (:mod:`cachestatus.execute`), lists the planned levels on it
(:func:`list_plans`) and sizes it for the scan; :func:`scan` hands the listed bundles, in lists,
to a work function on that executor and each result to its folds, in order. Nothing here knows
formats (a :class:`~cachestatus.formats.CacheReader` lists and reads) nor storage (a fold takes
the rows, in columnar batches, as soon as they are known: memory does not grow with the number
of bundles).

The status scan (:func:`scan_status`) works with :func:`scan_chunk` and folds into level
totals, missing areas and the rows' sink; the deep check works with
:func:`~cachestatus.tilecheck.check_chunk` and folds into its own totals.
"""

from __future__ import annotations

import logging
import warnings as _warnings
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

import numpy as np
import numpy.typing as npt

from . import grid
from .errors import BundleChanging, CorruptBundle
from .execute import CHUNK, ChunkContext, ChunkWork, Cluster, Executor, executor_for
from .formats.base import (
    BundleFile,
    BundleIndex,
    CacheReader,
    LevelListing,
    Part,
    Run,
    Unsettled,
    run_here,
)
from .missing_areas import (
    HOLE,
    ROW_BITS,
    MissingArea,
    MissingAreas,
    MissingRows,
    row_bits,
    tagged_holes,
)
from .models import (
    BUNDLE_SIZE,
    CORRUPT,
    IN_PROGRESS,
    UNSUPPORTED,
    BundleKey,
    BundleState,
    BundleStatus,
    LevelSummary,
    Problem,
    RowBatch,
    TileRange,
)
from .parallel import resolve_io_concurrency, resolve_workers
from .plan import (
    MAX_MISSING_ROWS,
    MAX_TILE_INDEX,
    AbsentRows,
    LevelPlan,
    ScanPolicy,
    plan_levels,
)
from .totals import LevelTotals

if TYPE_CHECKING:
    from .execute_dask import DaskExecutor
    from .store.records import BundleFileRows

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Sized)
R = TypeVar("R")

_FULL = BUNDLE_SIZE * BUNDLE_SIZE
#: Blocks a bundle's holes are sent as, at most; beyond, they go as bit masks of their rows
#: (at most 128 rows of 128 bits): what a worker sends for a bundle stays small, however
#: scattered its holes are.
MAX_BUNDLE_HOLES = 128


class Progress(Protocol):
    """What the scanner reports progress to (the CLI's rich bar implements it)."""

    def start(self, total: int | None) -> None:
        """The scan starts: ``total`` bundles to scan, or ``None`` when they are not known
        before the scan ends (levels listed in parts, on a cluster)."""

    def advance(self, count: int) -> None:
        """``count`` more bundles are done."""


@dataclass
class ScanOutcome:
    """What a scan found, besides the rows it handed over."""

    levels: list[LevelSummary]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows: int = 0
    missing_rows_omitted: int = 0
    #: Per level, the dissolved area of the expected tiles that are not present.
    missing_areas: list[MissingArea] = field(default_factory=list)
    #: Bundles read, and bundles whose rows were reused from the previous rebuild.
    bundles_read: int = 0
    bundles_reused: int = 0


def classify(expected: int, present: int, locked: bool = False) -> BundleState:
    """The ``status`` of a bundle file from its counts (spec §3.3)."""
    if locked:
        return BundleState.IN_PROGRESS
    if present == 0:
        return BundleState.EMPTY
    if present >= expected:
        return BundleState.COMPLETE
    return BundleState.PARTIAL


def stored_range(key: BundleKey, sizes: npt.NDArray[np.unsignedinteger[Any]] | None) -> TileRange:
    """The polygon of a bundle without expected tiles: its stored tiles' block, or its square."""
    if sizes is not None:
        rows = np.flatnonzero(sizes.any(axis=1))
        cols = np.flatnonzero(sizes.any(axis=0))
        if rows.size:
            return TileRange(
                key.row + int(rows[0]),
                key.row + int(rows[-1]) + 1,
                key.col + int(cols[0]),
                key.col + int(cols[-1]) + 1,
            )
    return grid.bundle_range(key)


#: A bundle file's status row, and what the file misses as tagged blocks ``(kind, row0, row1,
#: col0, col1)`` (kinds in :mod:`cachestatus.missing_areas`), ``None`` when it misses nothing.
Evaluated = tuple[BundleStatus, npt.NDArray[np.int64] | None]


def evaluate(
    plan: LevelPlan,
    bundle: BundleFile,
    index: BundleIndex | None,
    error: str = "",
    blank: npt.NDArray[np.bool_] | None = None,
) -> Evaluated:
    """Turn a decoded bundle index (or the reason it could not be decoded) into a status row,
    and what the bundle file misses.

    The row's polygon is the block of the bundle's expected tiles (the bundle clipped to the
    level's expected area), or, where nothing is expected, the block of its stored tiles.
    ``blank`` marks the bundle's tiles without content (128 x 128), when they were looked for.
    """
    key = bundle.key
    block, mask = plan.expected.window(key)
    expected = block.tiles if mask is None else int(np.count_nonzero(mask))
    if index is None:
        holes = None
        if expected:  # nothing could be read: every expected tile is missing, as counted
            lacking = np.ones((block.row1 - block.row0, block.col1 - block.col0), dtype=np.bool_)
            holes = _missing_blocks(lacking if mask is None else mask, block)
        row = BundleStatus(
            key,
            BundleState.IN_PROGRESS if bundle.locked else BundleState.CORRUPT,
            expected,
            0,
            0,
            0,
            0,
            0,
            None,
            block if expected else stored_range(key, None),
            error,
        )
        return row, holes
    inside = (
        slice(block.row0 - key.row, block.row1 - key.row),
        slice(block.col0 - key.col, block.col1 - key.col),
    )
    blanks = None if blank is None else 0
    if expected:
        window = index.sizes[inside]
        if expected == _FULL:
            present = index.tiles
        else:
            present = int(np.count_nonzero(window if mask is None else window[mask]))
        if blank is not None:
            blanks = int(np.count_nonzero(blank[inside] if mask is None else blank[inside][mask]))
    else:
        present = 0
    holes = None
    if expected and present < expected:
        lacking = window == 0
        holes = _missing_blocks(lacking if mask is None else lacking & mask, block)
    row = BundleStatus(
        key,
        classify(expected, present, bundle.locked),
        expected,
        present,
        index.tiles - present,
        index.tile_bytes,
        index.file_bytes,
        index.dead_bytes,
        index.modified,
        block if expected else stored_range(key, index.sizes),
        "a caching job holds a .lock on it" if bundle.locked else "",
        tiles_blank=blanks,
    )
    return row, holes


def _missing_blocks(lacking: npt.NDArray[np.bool_], block: TileRange) -> npt.NDArray[np.int64]:
    """What a bundle misses (``lacking``, over its block of expected tiles), exactly, as tagged
    rows (see :mod:`~cachestatus.missing_areas`): few blocks (``HOLE``) where they can be, else
    bit masks of the rows (``ROW_BITS``) where its holes are scattered."""
    blocks = grid.mask_blocks(lacking, block.row0, block.col0, MAX_BUNDLE_HOLES)
    if blocks is not None and len(blocks) <= MAX_BUNDLE_HOLES:
        return _tagged(HOLE, blocks)
    return _tagged(ROW_BITS, row_bits(lacking, block.row0, block.col0))


def _tagged(kind: int, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``rows`` (shape (n, 4)) with ``kind`` in front of each."""
    tagged = np.empty((len(rows), 5), dtype=np.int64)
    tagged[:, 0] = kind
    tagged[:, 1:] = rows
    return tagged


#: What reading a bundle raises when the bundle is at fault, not the run: the bundle is
#: reported (see :func:`unreadable`) and the scan goes on.
UNREADABLE = (CorruptBundle, OSError)


def unreadable(exc: CorruptBundle | OSError) -> tuple[str, str]:
    """The problem kind and the reason of a bundle that could not be read, from what reading it
    raised (one of :data:`UNREADABLE`): ``in-progress`` for a bundle that changed while it was
    read, ``corrupt`` for any other."""
    if isinstance(exc, BundleChanging):
        return IN_PROGRESS, exc.reason
    if isinstance(exc, CorruptBundle):
        return CORRUPT, exc.reason
    return CORRUPT, f"cannot read: {exc.strerror or exc}"


def blank_tiles(
    reader: CacheReader, bundle: BundleFile, judge: Callable[[bytes], bool | None]
) -> npt.NDArray[np.bool_]:
    """Which tiles of a bundle carry no content (128 x 128), from their bytes.

    Raises:
        CorruptBundle: a tile's storage is damaged (its size prefix disagrees with the index...).
    """
    key = bundle.key
    found = np.zeros((BUNDLE_SIZE, BUNDLE_SIZE), dtype=bool)
    for tile in reader.read_tiles(bundle):
        if tile.damage:
            raise CorruptBundle(f"tile R{tile.row}/C{tile.col}: {tile.damage}")
        if judge(tile.data):
            found[tile.row - key.row, tile.col - key.col] = True
    return found


def scan_bundle(
    reader: CacheReader,
    plan: LevelPlan,
    bundle: BundleFile,
    blank: Callable[[bytes], bool | None] | None = None,
) -> Evaluated:
    """Read and evaluate one bundle; damage becomes a ``CORRUPT`` row, never an exception.

    With ``blank`` (which tells a tile without content from its bytes), every stored tile is
    read too, and the row counts the tiles without content.
    """
    return _scanned(reader, plan, bundle, blank)[0]


def _scanned(
    reader: CacheReader,
    plan: LevelPlan,
    bundle: BundleFile,
    blank: Callable[[bytes], bool | None] | None,
) -> tuple[Evaluated, int | str | None]:
    """:func:`scan_bundle`, and the stamp of the bundle file as read (``None``: unreadable, or
    a codec that does not tell)."""
    try:
        index = reader.read_bundle(bundle)
        blanks = None if blank is None else blank_tiles(reader, bundle, blank)
    except UNREADABLE as exc:
        kind, reason = unreadable(exc)
        return evaluate(plan, bundle._replace(locked=kind == IN_PROGRESS), None, reason), None
    return evaluate(plan, bundle, index, blank=blanks), index.stamp


@dataclass
class ScanBatch:
    """What the status work on a list of bundles sends back: their rows, and what their files
    miss."""

    rows: RowBatch
    #: The tagged rows of what the bundle files miss: level, kind, then the block or row bits
    #: (shape (m, 6); kinds and layout in :mod:`cachestatus.missing_areas`).
    holes: npt.NDArray[np.int64]
    #: Per row, the stamp of its bundle file as read (``None``: not known); its size is the
    #: row's ``file_bytes``. Empty: none known.
    stamps: list[int | str | None] = field(default_factory=list)
    #: The ``BundleFiles`` rows of rows reused from the previous rebuild (``None``: read now).
    files: BundleFileRows | None = None
    #: Reused rows the store being written holds already (a GeoPackage updated in place):
    #: folded into totals and missing areas, not written again.
    stored: bool = False

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class Reused:
    """Rows reused from the previous rebuild (:mod:`cachestatus.incremental`) and their
    ``BundleFiles`` rows, which keep what their bundle files miss: their :class:`ScanBatch`
    is made as it is folded (:meth:`batch`), so a run holds the holes of one batch at a time,
    not of every reused bundle."""

    rows: RowBatch
    files: BundleFileRows
    #: See :attr:`ScanBatch.stored`.
    stored: bool = False

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self) -> ScanBatch:
        """The rows, the holes their files keep (decoded now) and the files."""
        from .store.records import decode_holes

        files = self.files
        holes = [
            (level, decode_holes(text))
            for level, text in zip(files.level.tolist(), files.holes, strict=True)
            if text
        ]
        return ScanBatch(self.rows, tagged_holes(holes), files=files, stored=self.stored)


class ReusedRows(Protocol):
    """The rows an incremental rebuild reuses (:mod:`cachestatus.incremental`), read from the
    previous store a batch at a time as they are iterated: memory holds one batch, not every
    reused bundle's row."""

    def __len__(self) -> int:
        """How many bundles."""

    def __iter__(self) -> Iterator[Reused]:
        """The rows, a batch at a time."""


def scan_chunk(context: ChunkContext, bundles: list[BundleFile], blank: bool = False) -> ScanBatch:
    """Scan a list of bundles into one batch of rows (columns travel cheaply between processes);
    with ``blank``, tiles without content are counted too.

    With ``context.io_concurrency`` above 1, that many bundles are read (and evaluated) at once
    by the context's threads, where a read waits on a network; the rows keep the list's order.
    """
    judge = context.blank_tiles if blank else None
    reader, plans = context.reader, context.plans
    statuses: list[BundleStatus] = []
    holes: list[tuple[int, npt.NDArray[np.int64]]] = []
    stamps: list[int | str | None] = []
    scanned: Iterable[tuple[Evaluated, int | str | None]]
    if context.io_concurrency > 1 and len(bundles) > 1:
        scanned = context.in_flight(
            lambda bundle: _scanned(reader, plans[bundle.key.level], bundle, judge), bundles
        )
    else:
        ahead = reader.read_ahead(bundles)  # a cold disk reads the next ones meanwhile
        scanned = (_scanned(reader, plans[b.key.level], b, judge) for b in ahead)
    for bundle, ((status, missing), stamp) in zip(bundles, scanned, strict=True):
        statuses.append(status)
        stamps.append(stamp)
        if missing is not None:
            holes.append((bundle.key.level, missing))
    return ScanBatch(RowBatch.from_statuses(statuses), tagged_holes(holes), stamps)


def chunks(items: Iterable[BundleFile], size: int = CHUNK) -> Iterator[list[BundleFile]]:
    """``items`` in lists of ``size``."""
    chunk: list[BundleFile] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class Listing:
    """The bundle files a scan reads, level by level, as :func:`list_plans` found them."""

    reader: CacheReader
    plans: list[LevelPlan]
    policy: ScanPolicy
    #: Each plan's level listing.
    levels: list[LevelListing]
    #: How many bundle files the scan reads (or about: it sizes progress bars and pools).
    count: int = 0
    #: What the listing found that is not a bundle file to read (names that do not parse...),
    #: filled while :meth:`bundles` is iterated.
    problems: list[Problem] = field(default_factory=list)
    #: The rows of listed bundles reused from the previous rebuild instead of read (see
    #: :mod:`cachestatus.incremental`): they go to the folds before the others.
    reused: ReusedRows = ()
    #: The parts of the levels' listings, in order, where each part is listed where its
    #: bundles are read (:meth:`~cachestatus.formats.CacheReader.level_parts`), ``None``
    #: where the levels were listed here; :attr:`count` is then the expected bundles.
    parts: list[Part] | None = None

    def bundles(self) -> Iterator[BundleFile]:
        """The bundle files to read, in the listing's order."""
        return _bundles(self, self.problems)


def _bundles(listing: Listing, problems: list[Problem]) -> Iterator[BundleFile]:
    expected_only = listing.policy.expected_only
    for plan, level in zip(listing.plans, listing.levels, strict=True):
        yield from _kept(plan, level, problems, expected_only)


def _kept(
    plan: LevelPlan,
    found: Iterable[BundleFile | Problem],
    problems: list[Problem],
    expected_only: bool,
) -> Iterator[BundleFile]:
    """The bundle files a level's listing ``found`` that the scan reads, in order (only those
    holding expected tiles when ``expected_only``); its problems, and bundles beyond what a
    status holds, go to ``problems``."""
    for item in found:
        if not isinstance(item, BundleFile):
            problems.append(item)
        elif max(item.key.row, item.key.col) > MAX_TILE_INDEX:
            problems.append(
                Problem(
                    item.key.label,
                    UNSUPPORTED,
                    f"its tile row or column is beyond {MAX_TILE_INDEX:,}, the largest "
                    "a status store holds; it was not scanned",
                )
            )
        elif not expected_only or plan.expected.holds(item.key):
            yield item


@dataclass
class PartScan(Generic[R]):
    """What work on the bundles of one part of a level's listing sends back
    (:func:`scan_part`): the work's results, a list of bundles at a time, the part's problems,
    what is left to decide after the level's last part, and how many names were listed."""

    results: list[R]
    problems: list[Problem]
    unsettled: Unsettled
    names: int


#: What a part's task carries: the part, the work on its bundles, and whether only bundles
#: holding expected tiles are read.
PartTask = tuple[Part, ChunkWork[R], bool]


def scan_part(context: ChunkContext, task: PartTask[R]) -> PartScan[R]:
    """One part of a level's listing listed (:meth:`~cachestatus.formats.CacheReader.list_part`)
    and its bundles worked on, :data:`~cachestatus.execute.CHUNK` at a time, where the task
    runs: the rows come back in the listing's order, as the client's listing gives them."""
    part, work, expected_only = task
    listed = context.reader.list_part(part)
    problems: list[Problem] = []
    kept = _kept(context.plans[part.level], listed.found, problems, expected_only)
    results = [work(context, bundles) for bundles in chunks(kept)]
    return PartScan(results, problems, listed.unsettled, listed.names)


def _parts_scanned(listing: Listing, executor: DaskExecutor, work: ChunkWork[T]) -> Iterator[T]:
    """``work``'s results on the bundles of each part of :attr:`Listing.parts`, listed and
    read on the cluster, in the parts' order; after a level's last part, the bundles that only
    every part together decides (:class:`~cachestatus.formats.base.Unsettled`), read then.
    Problems go to the listing's, in the same order as the client's listing gives them."""
    assert listing.parts is not None, "a listing in parts"
    parts = listing.parts
    plans = {p.lod.level: p for p in listing.plans}
    expected_only = listing.policy.expected_only
    tasks = ((part, work, expected_only) for part in parts)
    unsettled: Unsettled | None = None
    for at, done in enumerate(executor.map_each(scan_part, tasks)):
        level = parts[at].level
        listing.problems.extend(done.problems)
        if unsettled is None:
            unsettled = done.unsettled
        else:
            unsettled.add(done.unsettled)
        yield from done.results
        if at + 1 == len(parts) or parts[at + 1].level != level:
            settled = list(
                _kept(plans[level], unsettled.resolved(), listing.problems, expected_only)
            )
            unsettled = None
            if settled:
                yield from executor.map(work, [settled])


def list_plans(
    reader: CacheReader,
    plans: Sequence[LevelPlan],
    policy: ScanPolicy,
    run: Run = run_here,
    counted: bool = True,
) -> Listing:
    """List the levels of ``plans``, each once (readers whose listing is costly may spread it
    through ``run``, an :meth:`~cachestatus.execute.Executor.run`), and count the bundle files
    to read (``policy`` may keep only those holding expected tiles); unless not ``counted``:
    the count is left 0 for a caller that counts what it keeps (a folder is listed once more
    to count it)."""
    levels = [reader.list_level(p.lod.level, run) for p in plans]
    listing = Listing(reader, list(plans), policy, levels)
    if not counted:
        return listing
    if policy.expected_only:
        listing.count = sum(1 for _ in _bundles(listing, []))
    else:
        listing.count = sum(level.count for level in levels)
    log.debug("%d bundles on %d levels", listing.count, len(plans))
    return listing


def in_parts(
    reader: CacheReader, plans: Sequence[LevelPlan], policy: ScanPolicy, executor: DaskExecutor
) -> Listing:
    """The listing of ``plans`` in parts (a reader that :attr:`lists_parts
    <cachestatus.formats.CacheReader.lists_parts>`), each listed on the cluster by the task
    that reads its bundles (:func:`scan_part`), nothing listed here; the executor sized for the
    expected bundles, a part holding about as many of them as a task reads."""
    expected = sum(grid.bundle_count(p.expected.bounds) for p in plans)
    executor.size_for(expected)
    size = executor.task_bundles
    parts = [
        part
        for plan in plans
        for part in reader.level_parts(plan.lod.level, plan.expected.bounds, size)
    ]
    log.debug("%d parts of %d levels, about %d bundles", len(parts), len(plans), expected)
    return Listing(reader, list(plans), policy, [], count=expected, parts=parts)


#: Takes a listing (not counted) and returns the one to scan, counted, whose
#: :attr:`Listing.reused` holds the rows of the bundles it leaves out
#: (:meth:`cachestatus.incremental.Previous.split`).
Reuse = Callable[[Listing], Listing]


@contextmanager
def listed(
    reader: CacheReader,
    plans: Sequence[LevelPlan],
    policy: ScanPolicy,
    workers: int,
    reuse: Reuse | None = None,
    io_concurrency: int | None = None,
    cluster: Cluster | None = None,
) -> Iterator[tuple[Listing, Executor]]:
    """The run's one executor (:func:`~cachestatus.execute.executor_for`, up to ``workers``
    processes, each keeping ``io_concurrency`` bundle reads in flight, the storage's default
    when ``None``: see :func:`~cachestatus.parallel.resolve_io_concurrency`), or on a Dask
    ``cluster`` when one is given, and the listing
    of ``plans`` made on it, the executor sized for its scan (after ``reuse`` took out the
    bundles whose previous rows are reused).

    Every process of the run is started by then: the block may start threads. None outlives
    it, whatever ends it.
    """
    in_flight = resolve_io_concurrency(io_concurrency, reader)
    with executor_for(policy, workers, reader, plans, in_flight, cluster) as executor:
        if reuse is None and not policy.reads_tiles and reader.lists_parts:
            from .execute_dask import DaskExecutor  # a cluster's module, loaded for one

            if isinstance(executor, DaskExecutor):
                yield in_parts(reader, plans, policy, executor), executor
                return
        listing = list_plans(reader, plans, policy, executor.run, counted=reuse is None)
        if reuse is not None:
            listing = reuse(listing)  # counts the bundles it leaves to read
        executor.size_for(listing.count)
        yield listing, executor


#: What :func:`scan` hands each result to.
Fold = Callable[[T], None]


def scan(
    listing: Listing,
    executor: Executor,
    work: ChunkWork[T],
    folds: Sequence[Fold[T]],
    progress: Progress | None = None,
) -> None:
    """``work`` on every listed bundle file, a list at a time (one bundle at a time for work
    that reads every tile), on ``executor``; each result goes to every fold, in order, and
    advances progress by its length (one entry per bundle). Progress counts the bundles whose
    rows are reused (:attr:`Listing.reused`) too, done from the start."""
    if progress:
        reused = len(listing.reused)
        progress.start(None if listing.parts is not None else listing.count + reused)
        if reused:
            progress.advance(reused)
    size = 1 if listing.policy.reads_tiles else CHUNK
    results: Iterator[T]
    if listing.parts is not None:
        results = _parts_scanned(listing, cast("DaskExecutor", executor), work)
    else:
        results = executor.map(work, chunks(listing.bundles(), size))
    for result in results:
        if progress:
            progress.advance(len(result))
        for fold in folds:
            fold(result)


def scan_warnings(reader: CacheReader, policy: ScanPolicy) -> list[str]:
    """What a status scan has to say before it starts: levels it cannot scan, and a cache
    without a full extent when that leaves out rows."""
    warnings = [
        f"level folder {name} is not a level of the tiling scheme; it was not scanned"
        for name in reader.unknown_levels()
    ]
    if reader.full_extent is None and policy.absent_rows is not AbsentRows.EVERY_LEVEL:
        warnings.append(
            "the cache declares no full extent; expected tiles are those of the whole grid, "
            "and no MISSING rows are written (LevelStatus and MissingAreas still count them)"
        )
    return warnings


def _written(sink: Callable[[RowBatch], None], batch: ScanBatch) -> None:
    """A batch's rows to ``sink``, but for rows it has already (:attr:`ScanBatch.stored`)."""
    if not batch.stored:
        sink(batch.rows)


def scan_status(
    listing: Listing,
    executor: Executor,
    sink: Callable[[RowBatch], None] | None = None,
    folds: Sequence[Fold[ScanBatch]] = (),
    progress: Progress | None = None,
    warnings: Sequence[str] = (),
) -> ScanOutcome:
    """The status of every listed bundle: its row to ``sink`` (in batches, as the scan goes),
    then the ``MISSING`` rows the policy asks for; level totals, problems and missing areas
    returned.

    Args:
        listing: what to scan (:func:`listed`).
        executor: where the bundles are read, sized for them (:func:`listed`).
        sink: receives every row; ``batch.statuses()`` gives a batch's rows as
            :class:`BundleStatus` objects.
        folds: also receive each batch of bundle files' rows and holes.
        progress: receives the bundle total and each finished list.
        warnings: said first (those of the planning).
    """
    reader, plans, policy = listing.reader, listing.plans, listing.policy
    said = [*warnings, *scan_warnings(reader, policy)]
    totals = LevelTotals(plans, policy.blank, listing.problems)
    areas = MissingAreas(reader.scheme, {p.lod.level: p.expected for p in plans})
    out: list[Fold[ScanBatch]] = [] if sink is None else [partial(_written, sink)]
    work = partial(scan_chunk, blank=True) if policy.blank else scan_chunk
    every: list[Fold[ScanBatch]] = [areas.add, totals.add, *folds, *out]
    for part in listing.reused:
        reused_batch = part.batch()
        for fold in every:
            fold(reused_batch)
    reused = totals.rows
    scan(listing, executor, work, every, progress)
    absent = MissingRows(plans, policy, declared_extent=reader.full_extent is not None)
    if sink is not None:
        for batch in absent.batches(totals.found):
            sink(batch)
    levels = totals.levels
    missing_areas, area_warnings = areas.areas(levels, totals.found)
    return ScanOutcome(
        levels=levels,
        problems=listing.problems,
        warnings=[*said, *absent.warnings, *area_warnings],
        rows=totals.rows + absent.written,
        missing_rows_omitted=absent.omitted,
        missing_areas=missing_areas,
        bundles_read=totals.rows - reused,
        bundles_reused=reused,
    )


class Scanner:
    """Scan a cache: list bundles, decode them (in parallel), hand rows to ``sink``.

    Deprecated: a thin front of :func:`scan_status`, kept for callers of earlier versions.

    Args:
        reader: the open cache.
        levels: level IDs to scan; all LODs when ``None``.
        workers: worker processes; all cores when ``None``, in-process when 1.
        max_missing_rows: cap on ``MISSING`` rows (level totals stay exact).
        progress: receives the bundle total and each finished chunk.
        area: an area of interest (shapely polygon in the cache's CRS) instead of the full extent.
        missing_on_unbuilt_levels: write ``MISSING`` rows on levels without any bundle file too
            (a report asks for every bundle of its area; a rebuild leaves unbuilt levels to
            their totals).
        only_expected: skip bundle files that hold no expected tile (a report over an area is
            about that area: bundles outside it are not even read).
        blank: also read every stored tile and count those without content.
        heavy: bundles go to worker processes one at a time, in every format.
    """

    def __init__(
        self,
        reader: CacheReader,
        levels: Iterable[int] | None = None,
        workers: int | None = None,
        max_missing_rows: int | None = MAX_MISSING_ROWS,
        progress: Progress | None = None,
        area: Any | None = None,
        missing_on_unbuilt_levels: bool = False,
        only_expected: bool = False,
        blank: bool = False,
        heavy: bool = False,
    ) -> None:
        _warnings.warn(
            "cachestatus.Scanner is deprecated: use rebuild() or report(), or "
            "cachestatus.scan.scan_status()",
            DeprecationWarning,
            stacklevel=2,
        )
        self.reader = reader
        self.progress = progress
        #: What the scanner has to say before the scan: levels left out, as too large...
        self.warnings: list[str] = []
        self.plans = plan_levels(reader, levels, area, self.warnings)
        self.workers = resolve_workers(workers)
        self.policy = ScanPolicy(
            expected_only=only_expected,
            absent_rows=AbsentRows.EVERY_LEVEL
            if missing_on_unbuilt_levels
            else AbsentRows.BUILT_LEVELS,
            max_missing_rows=max_missing_rows,
            blank=blank,
            deep=heavy,
        )

    def run(self, sink: Callable[[RowBatch], None]) -> ScanOutcome:
        """Scan every bundle, hand the ``TaskStatus`` rows to ``sink`` in batches, return totals.

        ``batch.statuses()`` gives a batch's rows as :class:`BundleStatus` objects.
        """
        with listed(self.reader, self.plans, self.policy, self.workers) as (listing, executor):
            return scan_status(
                listing, executor, sink, progress=self.progress, warnings=self.warnings
            )


__all__ = [
    "UNREADABLE",
    "Evaluated",
    "Listing",
    "PartScan",
    "Progress",
    "Reuse",
    "ScanBatch",
    "ScanOutcome",
    "Scanner",
    "chunks",
    "classify",
    "evaluate",
    "in_parts",
    "list_plans",
    "listed",
    "scan",
    "scan_bundle",
    "scan_chunk",
    "scan_part",
    "scan_status",
    "scan_warnings",
    "unreadable",
]
