"""The scanner: every bundle of every level, decoded in parallel, turned into status rows.

The scanner knows nothing of formats (it asks a :class:`~cachestatus.formats.CacheReader`) nor of
storage (it hands rows to a callback in columnar batches, :class:`~cachestatus.models.RowBatch`,
as soon as they are known, so memory does not grow with the number of bundles). Expected tiles are
those of the level that share interior area with the cache's full extent.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.pool
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.util import Finalize
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from . import grid
from .content import BlankTiles
from .errors import BundleChanging, CorruptBundle, LimitExceeded
from .expected import AreaExpectation, Expectation, ExtentExpectation
from .formats.base import BundleFile, BundleIndex, CacheReader, LevelListing
from .formats.spec import CacheSpec
from .missing_areas import HOLE, ROW_BITS, MissingArea, MissingAreas, row_bits
from .models import (
    BUNDLE_SIZE,
    LOD,
    BundleKey,
    BundleSet,
    BundleState,
    BundleStatus,
    Extent,
    LevelSummary,
    Problem,
    RowBatch,
    TileRange,
    TilingScheme,
)
from .parallel import ProcessMap, resolve_workers, signals_deferred, stop_pool
from .parallel import start_pool as start_worker_pool
from .selection import requested_levels

log = logging.getLogger(__name__)

#: Bundles handed to a worker process at a time.
CHUNK = 256
#: Below this many bundles the scan runs in the calling process: workers would cost more.
PARALLEL_THRESHOLD = 1024
#: MISSING rows handed to the sink at a time.
MISSING_BATCH = 10_000
_FULL = BUNDLE_SIZE * BUNDLE_SIZE
#: Blocks a bundle's holes are sent as, at most; beyond, they go as bit masks of their rows
#: (at most 128 rows of 128 bits): what a worker sends for a bundle stays small, however
#: scattered its holes are.
MAX_BUNDLE_HOLES = 128


class Progress(Protocol):
    """What the scanner reports progress to (the CLI's rich bar implements it)."""

    def start(self, total: int) -> None:
        """The number of bundles to scan is known."""

    def advance(self, count: int) -> None:
        """``count`` more bundles are done."""


@dataclass(frozen=True)
class LevelPlan:
    """One level to scan: its LOD and the tiles expected there."""

    lod: LOD
    expected: Expectation


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


#: The largest tile row or column a status store holds (TaskStatus's bundleRow and bundleCol
#: are 32-bit): bundles beyond are listed as problems, MISSING rows beyond are left out.
MAX_TILE_INDEX = 2**31 - 1
#: The most tiles a level may expect: level totals are 64-bit counts in the store.
MAX_LEVEL_TILES = 2**63 - 1
#: Tile rows and columns beyond this are not exact in 64-bit floats (map coordinates).
MAX_GRID_INDEX = 2**52


def _expectation(
    scheme: TilingScheme, level: int, extent: Extent | None, area: Any | None
) -> Expectation:
    if area is not None:
        return AreaExpectation(level, scheme, area)
    if extent is not None:
        return ExtentExpectation(level, grid.tiles_in_extent(scheme, level, extent))
    return ExtentExpectation(level, TileRange(0, 0, 0, 0))


def _check_limits(level: int, expected: Expectation) -> None:
    b = expected.bounds
    if max(b.row1, b.col1) > MAX_GRID_INDEX:
        raise LimitExceeded(
            f"level {level}: its expected tiles reach tile row {b.row1:,} and column {b.col1:,}; "
            f"beyond {MAX_GRID_INDEX:,} tile positions are not exact in map coordinates"
        )
    total = expected.total()
    if total > MAX_LEVEL_TILES:
        raise LimitExceeded(
            f"level {level}: {total:,} tiles expected, more than a status store counts "
            f"({MAX_LEVEL_TILES:,})"
        )


def plan_levels(
    reader: CacheReader,
    levels: Iterable[int] | None = None,
    area: Any | None = None,
    warnings: list[str] | None = None,
) -> list[LevelPlan]:
    """The levels to scan (all LODs by default) with their expected tiles.

    Args:
        reader: the open cache.
        levels: level IDs (or ranges, see :func:`~cachestatus.selection.requested_levels`);
            every LOD when ``None``.
        area: a shapely polygon in the cache's CRS: tiles sharing interior with it are expected.
            Without it, those of the full extent (or of the whole grid) are.
        warnings: with a list, levels too large to count or store (more tiles than a 64-bit
            count, an area of interest of too many tile rows there) are left out with a warning
            in it; without, they are kept as they are (``info`` shows them).

    Raises:
        UsageError: bad level values, a level the scheme lacks.
        LimitExceeded: with ``warnings``, every level asked for is too large.
    """
    scheme = reader.scheme
    extent = reader.full_extent or grid.grid_extent(scheme)
    wanted = scheme.levels if levels is None else requested_levels(scheme, levels, warnings)
    plans = []
    too_large: list[str] = []
    for level in wanted:
        try:
            expected = _expectation(scheme, level, extent, area)
            if warnings is not None:
                _check_limits(level, expected)
        except LimitExceeded as exc:
            if warnings is None:
                raise
            too_large.append(str(exc))
            continue
        plans.append(LevelPlan(scheme.lod(level), expected))
    if too_large and warnings is not None:
        if not plans:
            raise LimitExceeded(
                f"{too_large[0]}"
                + (f" (and {len(too_large) - 1} more levels)" if len(too_large) > 1 else "")
                + "; choose other levels or a smaller area"
            )
        warnings.extend(f"{message}: the level was left out" for message in too_large)
    return plans


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


def evaluate(
    plan: LevelPlan,
    bundle: BundleFile,
    index: BundleIndex | None,
    error: str = "",
    blank: npt.NDArray[np.bool_] | None = None,
) -> BundleStatus:
    """Turn a decoded bundle index (or the reason it could not be decoded) into a status row.

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
        return BundleStatus(
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
            holes,
        )
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
    return BundleStatus(
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
        holes,
        blanks,
    )


def _missing_blocks(lacking: npt.NDArray[np.bool_], block: TileRange) -> npt.NDArray[np.int64]:
    """What a bundle misses (``lacking``, over its block of expected tiles), exactly, as tagged
    rows (see :mod:`~cachestatus.missing_areas`): few blocks (``HOLE``) where they can be, else
    bit masks of the rows (``ROW_BITS``) where its holes are scattered."""
    blocks = grid.mask_blocks(lacking, block.row0, block.col0, MAX_BUNDLE_HOLES)
    if blocks is not None and len(blocks) <= MAX_BUNDLE_HOLES:
        return np.column_stack([np.full(len(blocks), HOLE), blocks]).astype(np.int64)
    rows = row_bits(lacking, block.row0, block.col0)
    return np.column_stack([np.full(len(rows), ROW_BITS), rows]).astype(np.int64)


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
) -> BundleStatus:
    """Read and evaluate one bundle; damage becomes a ``CORRUPT`` row, never an exception.

    With ``blank`` (which tells a tile without content from its bytes), every stored tile is
    read too, and the row counts the tiles without content.
    """
    try:
        index = reader.read_bundle(bundle)
        blanks = None if blank is None else blank_tiles(reader, bundle, blank)
    except BundleChanging as exc:
        return evaluate(plan, bundle._replace(locked=True), None, exc.reason)
    except CorruptBundle as exc:
        return evaluate(plan, bundle, None, exc.reason)
    except OSError as exc:
        return evaluate(plan, bundle, None, f"cannot read: {exc.strerror or exc}")
    return evaluate(plan, bundle, index, blank=blanks)


def missing_row(plan: LevelPlan, key: BundleKey) -> BundleStatus:
    """The row of a bundle that has expected tiles but no file."""
    block, mask = plan.expected.window(key)
    expected = block.tiles if mask is None else int(np.count_nonzero(mask))
    return BundleStatus(key, BundleState.MISSING, expected, 0, 0, 0, 0, 0, None, block)


@dataclass
class ChunkContext:
    """What work on lists of bundles is given, once per process (a worker's, or the calling
    one): the open reader, the level plans and the run's memory of blank tiles."""

    reader: CacheReader
    plans: dict[int, LevelPlan]
    blank_tiles: BlankTiles = field(default_factory=BlankTiles)


# Worker-process state, set once per process by _init_worker: tasks carry only bundle lists.
# An error opening the cache is kept there, and raised by each task.
_worker: ChunkContext | Exception | None = None

T = TypeVar("T")
SizedT = TypeVar("SizedT", bound=Sized)
#: Work on a list of bundles, run in a worker process (or in the calling one): gets the process's
#: context, returns what travels back (it must pickle, as must the function itself).
ChunkWork = Callable[[ChunkContext, list[BundleFile]], T]


def _init_worker(spec: CacheSpec, plans: dict[int, LevelPlan]) -> None:
    """Open the worker's own reader of ``spec``, closed when the worker ends."""
    global _worker
    quiet = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the calling process has told what opening finds
    try:
        reader = spec.open()
    except Exception as exc:  # the cache changed since it was opened: each task says so
        _worker = exc
        return
    finally:
        logging.disable(quiet)
    Finalize(reader, reader.close, exitpriority=0)
    _worker = ChunkContext(reader, plans)


def _in_worker(work: ChunkWork[T], bundles: list[BundleFile]) -> T:
    if isinstance(_worker, Exception):
        raise _worker
    assert _worker is not None, "worker not initialised"
    return work(_worker, bundles)


def scan_chunk(context: ChunkContext, bundles: list[BundleFile], blank: bool = False) -> RowBatch:
    """Scan a list of bundles into one batch of rows (columns travel cheaply between processes);
    with ``blank``, tiles without content are counted too."""
    judge = context.blank_tiles if blank else None
    return RowBatch.from_statuses(
        [scan_bundle(context.reader, context.plans[b.key.level], b, judge) for b in bundles]
    )


def chunks(items: Iterable[BundleFile], size: int = 256) -> Iterator[list[BundleFile]]:
    """``items`` in lists of ``size``."""
    chunk: list[BundleFile] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class WorkerPool:
    """Worker processes that each hold a reader of the cache and the level plans, set up once.

    Args:
        spec: the cache (each worker opens its own reader of it).
        plans: the level plans by level ID.
        processes: how many workers.
    """

    def __init__(self, spec: CacheSpec, plans: dict[int, LevelPlan], processes: int) -> None:
        self.processes = processes
        self._pool: multiprocessing.pool.Pool | None = start_worker_pool(
            processes, _init_worker, (spec, plans)
        )

    def map(self, work: ChunkWork[T], bundle_lists: Iterable[list[BundleFile]]) -> Iterator[T]:
        """``work`` on each list, in the workers, results in order. A bounded number of lists
        is queued ahead: workers stay busy while results are used, memory stays flat."""
        pending: deque[multiprocessing.pool.AsyncResult[T]] = deque()
        window = 32 * self.processes
        for bundles in bundle_lists:
            assert self._pool is not None, "the pool is closed"
            pending.append(self._pool.apply_async(_in_worker, (work, bundles)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def close(self) -> None:
        """Stop the workers (in bounded time, whatever state they are in); idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            stop_pool(pool)


def start_pool(
    reader: CacheReader,
    plans: Iterable[LevelPlan],
    workers: int,
    total: int,
    heavy: bool = False,
) -> WorkerPool | None:
    """Worker processes for ``total`` bundles, or ``None`` where the calling process should do
    the work (one worker asked for, too few bundles, or a reader whose listing holds it all).
    ``heavy`` work (every tile of a bundle read) is worth workers from two bundles up, in any
    format."""
    if heavy:
        if workers <= 1 or total < 2:
            return None
        processes = min(workers, total)
    elif workers <= 1 or total < PARALLEL_THRESHOLD or not reader.parallel:
        return None
    else:
        processes = min(workers, -(-total // CHUNK))
    log.debug("working with %d worker processes", processes)
    return WorkerPool(reader.spec, {p.lod.level: p for p in plans}, processes)


def run_chunks(
    work: ChunkWork[T],
    bundle_lists: Iterable[list[BundleFile]],
    here: ChunkContext,
    pool: WorkerPool | None,
) -> Iterator[T]:
    """``work`` on each list of bundles, in ``pool``'s workers or, without one, here (in
    ``here``'s context)."""
    if pool is not None:
        yield from pool.map(work, bundle_lists)
    else:
        for bundles in bundle_lists:
            yield work(here, bundles)


class Scanner:
    """Scan a cache: list bundles, decode them (in parallel), hand rows to ``sink``.

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
        heavy: the work on each bundle reads its tiles (``verify``, ``blank``): bundles go to
            worker processes one at a time, in every format.
    """

    def __init__(
        self,
        reader: CacheReader,
        levels: Iterable[int] | None = None,
        workers: int | None = None,
        max_missing_rows: int | None = 100_000,
        progress: Progress | None = None,
        area: Any | None = None,
        missing_on_unbuilt_levels: bool = False,
        only_expected: bool = False,
        blank: bool = False,
        heavy: bool = False,
    ) -> None:
        self.reader = reader
        self.blank = blank
        self.heavy = heavy or blank
        #: What the scanner has to say before the scan: levels left out, as too large...
        self.warnings: list[str] = []
        self.plans = plan_levels(reader, levels, area, self.warnings)
        self.missing_on_unbuilt_levels = missing_on_unbuilt_levels
        self.only_expected = only_expected
        self.workers = resolve_workers(workers)
        self.max_missing_rows = max_missing_rows
        self.progress = progress
        #: Bundles to scan, known after :meth:`prepare`.
        self.total: int | None = None
        #: The expected tiles' extent, known after :meth:`prepare`: the store's XY domain is
        #: built around it.
        self.domain = Extent(
            reader.scheme.origin_x,
            reader.scheme.origin_y - 1.0,
            reader.scheme.origin_x + 1.0,
            reader.scheme.origin_y,
        )
        self._problems: list[Problem] = []
        self._pool: WorkerPool | None = None
        #: Each level's plan and listing, made by :meth:`prepare`.
        self._listings: list[tuple[LevelPlan, LevelListing]] = []
        #: What is done with each list of bundles.
        self.work: ChunkWork[RowBatch] = partial(scan_chunk, blank=True) if blank else scan_chunk

    def _bundles(self, problems: list[Problem]) -> Iterator[BundleFile]:
        for plan, listing in self._listings:
            for found in listing:
                if not isinstance(found, BundleFile):
                    problems.append(found)
                elif max(found.key.row, found.key.col) > MAX_TILE_INDEX:
                    problems.append(
                        Problem(
                            found.key.label,
                            "unsupported",
                            f"its tile row or column is beyond {MAX_TILE_INDEX:,}, the largest "
                            "a status store holds; it was not scanned",
                        )
                    )
                elif not self.only_expected or plan.expected.holds(found.key):
                    yield found

    def prepare(self) -> None:
        """Count the bundles to scan, find the rows' extent, start the worker processes.

        Workers start here, before any other thread exists in this process (the progress bar
        starts later). Idempotent; :meth:`run` calls it when needed.
        """
        if self.total is not None:
            return
        try:
            self._prepare()
        except BaseException:  # an interrupt included: no worker outlives the scanner
            self.close()
            self.total = None
            raise

    def _prepare(self) -> None:
        # Each level listed once; a reader may spread the work over a pool that lives as long.
        with ProcessMap(self.workers) as run:
            self._listings = [(p, self.reader.list_level(p.lod.level, run)) for p in self.plans]
        scheme = self.reader.scheme
        if self.only_expected:
            self.total = sum(1 for _ in self._bundles([]))
        else:
            self.total = sum(listing.count for _, listing in self._listings)
        boxes = [
            grid.range_bounds(scheme, p.lod.level, p.expected.bounds)
            for p in self.plans
            if not p.expected.bounds.is_empty
        ]
        if boxes:
            self.domain = Extent(
                min(b.xmin for b in boxes),
                min(b.ymin for b in boxes),
                max(b.xmax for b in boxes),
                max(b.ymax for b in boxes),
            )
        log.debug("%d bundles on %d levels", self.total, len(self.plans))
        # The pool is ours as soon as it exists: an interrupt is raised only once it is held,
        # so that close() stops it.
        with signals_deferred():
            self._pool = start_pool(self.reader, self.plans, self.workers, self.total, self.heavy)

    def close(self) -> None:
        """Stop the worker processes (``run`` does it when it ends)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def each(self, work: ChunkWork[SizedT]) -> Iterator[SizedT]:
        """``work`` on every bundle to scan, a list at a time, in the workers once
        :meth:`prepare` has started them; progress advances by each result's length (one
        entry per bundle). Problems of the listing go to :attr:`listing_problems`."""
        self.prepare()
        here = ChunkContext(self.reader, {plan.lod.level: plan for plan in self.plans})
        bundle_lists = chunks(self._bundles(self._problems), 1 if self.heavy else CHUNK)
        for result in run_chunks(work, bundle_lists, here, self._pool):
            if self.progress:
                self.progress.advance(len(result))
            yield result

    @property
    def listing_problems(self) -> list[Problem]:
        """What the listing found that is not a bundle (names that do not parse...)."""
        return self._problems

    def run(self, sink: Callable[[RowBatch], None]) -> ScanOutcome:
        """Scan every bundle, hand the ``TaskStatus`` rows to ``sink`` in batches, return totals.

        ``batch.statuses()`` gives a batch's rows as :class:`BundleStatus` objects.
        """
        try:
            return self._run(sink)
        finally:
            self.close()

    def _run(self, sink: Callable[[RowBatch], None]) -> ScanOutcome:
        self.prepare()
        assert self.total is not None
        problems = self._problems
        warnings = [*self.warnings] + [
            f"level folder {name} is not a level of the tiling scheme; it was not scanned"
            for name in self.reader.unknown_levels()
        ]
        if self.reader.full_extent is None and not self.missing_on_unbuilt_levels:
            warnings.append(
                "the cache declares no full extent; expected tiles are those of the whole grid, "
                "and no MISSING rows are written (LevelStatus and MissingAreas still count them)"
            )
        if self.progress:
            self.progress.start(self.total)
        summaries = {
            p.lod.level: LevelSummary(
                p.lod.level,
                p.lod.scale,
                p.lod.resolution,
                tiles_expected=p.expected.total(),
                tiles_blank=0 if self.blank else None,
            )
            for p in self.plans
        }
        found = {p.lod.level: BundleSet() for p in self.plans}
        missing_areas = MissingAreas(
            self.reader.scheme, {p.lod.level: p.expected for p in self.plans}
        )
        rows = 0
        for batch in self.each(self.work):
            missing_areas.add(batch)
            for level_id in np.unique(batch.level).tolist():
                mine = batch.level == level_id
                level = summaries[level_id]
                level.bundles += int(np.count_nonzero(mine))
                level.tiles_present += int(batch.tiles_present[mine].sum())
                level.tiles_stray += int(batch.tiles_stray[mine].sum())
                level.tile_bytes += int(batch.tile_bytes[mine].sum())
                if level.tiles_blank is not None:
                    level.tiles_blank += int(np.maximum(batch.tiles_blank[mine], 0).sum())
                found[level_id].add(batch.row[mine], batch.col[mine])
            problems.extend(
                Problem(BundleKey(level_id, r, c).label, "corrupt", detail)
                for level_id, r, c, state, detail in zip(
                    batch.level.tolist(),
                    batch.row.tolist(),
                    batch.col.tolist(),
                    batch.state,
                    batch.detail,
                    strict=True,
                )
                if state == BundleState.CORRUPT
            )
            sink(batch)
            rows += len(batch)
        written, omitted = self._missing_rows(found, sink)
        if omitted:
            warnings.append(
                f"{omitted:,} MISSING bundle rows were left out of TaskStatus "
                f"(--max-missing-rows {self.max_missing_rows:,}); LevelStatus counts them all"
            )
        levels = [summaries[p.lod.level] for p in self.plans]
        areas, area_warnings = missing_areas.areas(levels, found)
        return ScanOutcome(
            levels=levels,
            problems=problems,
            warnings=warnings + area_warnings,
            rows=rows + written,
            missing_rows_omitted=omitted,
            missing_areas=areas,
        )

    def _missing_rows(
        self, found: dict[int, BundleSet], sink: Callable[[RowBatch], None]
    ) -> tuple[int, int]:
        """``MISSING`` rows for absent bundles of levels that have files; (written, omitted)."""
        if self.reader.full_extent is None and not self.missing_on_unbuilt_levels:
            return 0, 0  # the whole grid is a guess: a row per unbuilt bundle of it is noise
        budget = self.max_missing_rows if self.max_missing_rows is not None else 2**63
        written_total, omitted = 0, 0
        pending: list[BundleStatus] = []
        for plan in self.plans:
            level = plan.lod.level
            level_found = found[level]
            if not len(level_found) and not self.missing_on_unbuilt_levels:
                continue  # a level never built: its totals say so, rows would only be noise
            found_inside = plan.expected.count_holding(*level_found.arrays())
            missing = plan.expected.bundle_count() - found_inside
            written = 0
            if budget > 0 and missing > 0:
                beyond = 0
                for key in plan.expected.bundles():
                    if key.row > MAX_TILE_INDEX:
                        break  # rows come in order: the rest is beyond what a store holds
                    if key.col > MAX_TILE_INDEX:
                        beyond += 1
                        if written + beyond >= budget:
                            break
                        continue
                    if (key.row, key.col) in level_found:
                        continue
                    pending.append(missing_row(plan, key))
                    if len(pending) == MISSING_BATCH:
                        sink(RowBatch.from_statuses(pending))
                        pending = []
                    written += 1
                    if written >= budget:
                        break
            budget -= written
            written_total += written
            omitted += missing - written
        if pending:
            sink(RowBatch.from_statuses(pending))
        return written_total, omitted


__all__ = [
    "ChunkContext",
    "LevelPlan",
    "Progress",
    "ScanOutcome",
    "Scanner",
    "classify",
    "evaluate",
    "missing_row",
    "plan_levels",
    "scan_bundle",
    "scan_chunk",
]
