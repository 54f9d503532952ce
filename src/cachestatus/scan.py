"""The scanner: every bundle of every level, decoded in parallel, turned into status rows.

The scanner knows nothing of formats (it asks a :class:`~cachestatus.formats.CacheReader`) nor of
storage (it hands each :class:`~cachestatus.models.BundleStatus` to a callback as soon as it is
known, so memory does not grow with the number of bundles). Expected tiles are those of the level
that share interior area with the cache's full extent.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from . import grid
from .errors import CorruptBundle
from .formats.base import BundleFile, BundleIndex, CacheReader
from .models import (
    BUNDLE_SIZE,
    LOD,
    BundleKey,
    BundleState,
    BundleStatus,
    Extent,
    LevelSummary,
    Problem,
    TileRange,
    TilingScheme,
)

log = logging.getLogger(__name__)

#: Bundles handed to a worker process at a time.
CHUNK = 64
#: Below this many bundles the scan runs in the calling process: workers would cost more.
PARALLEL_THRESHOLD = 512


class Progress(Protocol):
    """What the scanner reports progress to (the CLI's rich bar implements it)."""

    def start(self, total: int) -> None:
        """The number of bundles to scan is known."""

    def advance(self, count: int) -> None:
        """``count`` more bundles are done."""


@dataclass(frozen=True)
class LevelPlan:
    """One level to scan: its LOD and the block of tiles expected there."""

    lod: LOD
    expected: TileRange


@dataclass
class ScanOutcome:
    """What a scan found, besides the rows it handed over."""

    levels: list[LevelSummary]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows: int = 0
    missing_rows_omitted: int = 0


def plan_levels(reader: CacheReader, levels: Iterable[int] | None = None) -> list[LevelPlan]:
    """The levels to scan (all LODs by default) with their expected tiles."""
    scheme = reader.scheme
    extent = reader.full_extent or grid.grid_extent(scheme)
    wanted = scheme.levels if levels is None else tuple(levels)
    plans = []
    for level in wanted:
        expected = (
            grid.tiles_in_extent(scheme, level, extent)
            if extent is not None
            else TileRange(0, 0, 0, 0)
        )
        plans.append(LevelPlan(scheme.lod(level), expected))
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


def polygon_range(key: BundleKey, expected: TileRange, sizes: np.ndarray | None = None) -> TileRange:
    """The tiles a bundle's polygon covers: its square clipped to the level's expected tiles.

    A bundle outside the expected area is clipped to its stored tiles instead, or left whole.
    """
    square = grid.bundle_range(key)
    clipped = square.intersect(expected)
    if not clipped.is_empty:
        return clipped
    if sizes is not None:
        rows = np.flatnonzero(sizes.any(axis=1))
        cols = np.flatnonzero(sizes.any(axis=0))
        if rows.size:
            return TileRange(key.row + int(rows[0]), key.row + int(rows[-1]) + 1,
                             key.col + int(cols[0]), key.col + int(cols[-1]) + 1)
    return square


def evaluate(
    scheme: TilingScheme,
    plan: LevelPlan,
    bundle: BundleFile,
    index: BundleIndex | None,
    error: str = "",
) -> BundleStatus:
    """Turn a decoded bundle index (or the reason it could not be decoded) into a status row."""
    key = bundle.key
    inside = grid.bundle_range(key).intersect(plan.expected)
    expected = inside.count
    if index is None:
        return BundleStatus(
            key=key,
            state=BundleState.IN_PROGRESS if bundle.locked else BundleState.CORRUPT,
            tiles_expected=expected,
            tiles_present=0,
            tiles_stray=0,
            tile_bytes=0,
            file_bytes=0,
            dead_bytes=0,
            modified=None,
            bounds=grid.range_bounds(scheme, key.level, polygon_range(key, plan.expected)),
            detail=error,
        )
    sizes = index.sizes
    stored = int(np.count_nonzero(sizes))
    present = 0
    if expected:
        window = sizes[inside.row0 - key.row : inside.row1 - key.row,
                       inside.col0 - key.col : inside.col1 - key.col]
        present = stored if expected == BUNDLE_SIZE * BUNDLE_SIZE else int(np.count_nonzero(window))
    modified = (
        datetime.fromtimestamp(index.modified, tz=UTC) if index.modified is not None else None
    )
    return BundleStatus(
        key=key,
        state=classify(expected, present, bundle.locked),
        tiles_expected=expected,
        tiles_present=present,
        tiles_stray=stored - present,
        tile_bytes=index.tile_bytes,
        file_bytes=index.file_bytes,
        dead_bytes=index.dead_bytes,
        modified=modified,
        bounds=grid.range_bounds(scheme, key.level, polygon_range(key, plan.expected, sizes)),
        detail="a caching job holds a .lock on it" if bundle.locked else "",
    )


def scan_bundle(reader: CacheReader, plan: LevelPlan, bundle: BundleFile) -> BundleStatus:
    """Read and evaluate one bundle; damage becomes a ``CORRUPT`` row, never an exception."""
    try:
        index = reader.read_bundle(bundle)
    except CorruptBundle as exc:
        return evaluate(reader.scheme, plan, bundle, None, exc.reason)
    except OSError as exc:
        return evaluate(reader.scheme, plan, bundle, None, f"cannot read: {exc.strerror or exc}")
    return evaluate(reader.scheme, plan, bundle, index)


def missing_row(scheme: TilingScheme, plan: LevelPlan, key: BundleKey) -> BundleStatus:
    """The row of a bundle that has expected tiles but no file."""
    return BundleStatus(
        key=key,
        state=BundleState.MISSING,
        tiles_expected=grid.bundle_range(key).intersect(plan.expected).count,
        tiles_present=0,
        tiles_stray=0,
        tile_bytes=0,
        file_bytes=0,
        dead_bytes=0,
        modified=None,
        bounds=grid.range_bounds(scheme, key.level, polygon_range(key, plan.expected)),
    )


# Worker-process state: set once per process by _init_worker, so tasks carry only bundle lists.
_worker_reader: CacheReader | None = None
_worker_plans: dict[int, LevelPlan] = {}


def _init_worker(reader: CacheReader, plans: dict[int, LevelPlan]) -> None:
    global _worker_reader, _worker_plans
    _worker_reader, _worker_plans = reader, plans


def _scan_chunk(bundles: Sequence[BundleFile]) -> list[BundleStatus]:
    assert _worker_reader is not None, "worker not initialised"
    return [scan_bundle(_worker_reader, _worker_plans[b.key.level], b) for b in bundles]


def _chunks(items: Iterator[BundleFile], size: int) -> Iterator[list[BundleFile]]:
    chunk: list[BundleFile] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _pool_context() -> multiprocessing.context.BaseContext:
    # forkserver: workers start from a clean process, safe with the threads GDAL and the progress
    # bar run in the parent; spawn where forkserver does not exist (Windows, macOS default).
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class Scanner:
    """Scan a cache: list bundles, decode them (in parallel), hand rows to ``sink``.

    Args:
        reader: the open cache.
        levels: level IDs to scan; all LODs when ``None``.
        workers: worker processes; all cores when ``None``, in-process when 1.
        max_missing_rows: cap on ``MISSING`` rows (level totals stay exact).
        progress: receives the bundle total and each finished chunk.
    """

    def __init__(
        self,
        reader: CacheReader,
        levels: Iterable[int] | None = None,
        workers: int | None = None,
        max_missing_rows: int = 100_000,
        progress: Progress | None = None,
    ) -> None:
        self.reader = reader
        self.plans = plan_levels(reader, levels)
        self.workers = default_workers() if workers is None or workers <= 0 else workers
        self.max_missing_rows = max_missing_rows
        self.progress = progress
        #: Bundles to scan, known after :meth:`prepare`.
        self.total: int | None = None
        #: Rectangle holding every row's polygon, known after :meth:`prepare`.
        self.domain = Extent(reader.scheme.origin_x, reader.scheme.origin_y - 1.0,
                             reader.scheme.origin_x + 1.0, reader.scheme.origin_y)
        self._listing_problems: list[Problem] = []

    def _bundles(self, problems: list[Problem] | None) -> Iterator[BundleFile]:
        for plan in self.plans:
            for found in self.reader.list_bundles(plan.lod.level):
                if isinstance(found, BundleFile):
                    yield found
                elif problems is not None:
                    problems.append(found)

    def prepare(self) -> None:
        """List every level once: count bundles, collect naming problems, find the rows' extent.

        Idempotent; :meth:`run` calls it when needed. After it, :attr:`total` and
        :attr:`domain` are known, so that a store can be created before rows arrive.
        """
        if self.total is not None:
            return
        scheme = self.reader.scheme
        by_level = {p.lod.level: p for p in self.plans}
        boxes = [grid.range_bounds(scheme, p.lod.level, p.expected)
                 for p in self.plans if not p.expected.is_empty]
        total = 0
        for bundle in self._bundles(self._listing_problems):
            total += 1
            square = grid.bundle_range(bundle.key)
            if square.intersect(by_level[bundle.key.level].expected).is_empty:
                boxes.append(grid.range_bounds(scheme, bundle.key.level, square))
        self.total = total
        if boxes:
            self.domain = Extent(min(b.xmin for b in boxes), min(b.ymin for b in boxes),
                                 max(b.xmax for b in boxes), max(b.ymax for b in boxes))

    def _statuses(self, total: int) -> Iterator[BundleStatus]:
        by_level = {plan.lod.level: plan for plan in self.plans}
        bundles = self._bundles(None)  # problems were collected while counting
        if self.workers == 1 or total < PARALLEL_THRESHOLD:
            for bundle in bundles:
                yield scan_bundle(self.reader, by_level[bundle.key.level], bundle)
                if self.progress:
                    self.progress.advance(1)
            return
        with ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_pool_context(),
            initializer=_init_worker,
            initargs=(self.reader, by_level),
        ) as pool:
            pending: deque[Future[list[BundleStatus]]] = deque()
            window = 4 * self.workers
            for chunk in _chunks(bundles, CHUNK):
                pending.append(pool.submit(_scan_chunk, chunk))
                if len(pending) >= window:
                    yield from self._drain(pending.popleft())
            while pending:
                yield from self._drain(pending.popleft())

    def _drain(self, future: Future[list[BundleStatus]]) -> Iterator[BundleStatus]:
        rows = future.result()
        if self.progress:
            self.progress.advance(len(rows))
        yield from rows

    def run(self, sink: Callable[[BundleStatus], None]) -> ScanOutcome:
        """Scan every bundle, call ``sink`` once per ``TaskStatus`` row, return the totals."""
        scheme = self.reader.scheme
        self.prepare()
        assert self.total is not None
        total = self.total
        problems = list(self._listing_problems)
        warnings = [
            f"level folder {name} is not a level of the tiling scheme; it was not scanned"
            for name in self.reader.unknown_levels()
        ]
        if self.reader.full_extent is None:
            warnings.append(
                "the cache declares no full extent (conf.cdi); expected tiles are those of "
                "the whole grid"
            )
        if self.progress:
            self.progress.start(total)
        summaries = {
            p.lod.level: LevelSummary(p.lod.level, p.lod.scale, p.lod.resolution,
                                      tiles_expected=p.expected.count)
            for p in self.plans
        }
        found: dict[int, set[tuple[int, int]]] = {p.lod.level: set() for p in self.plans}
        rows = 0
        for status in self._statuses(total):
            key = status.key
            level = summaries[key.level]
            level.bundles += 1
            level.tiles_present += status.tiles_present
            level.tiles_stray += status.tiles_stray
            level.tile_bytes += status.tile_bytes
            found[key.level].add((key.row, key.col))
            if status.state is BundleState.CORRUPT:
                problems.append(Problem(key.label, "corrupt", status.detail))
            sink(status)
            rows += 1
        omitted = 0
        budget = self.max_missing_rows
        for plan in self.plans:
            level_found = found[plan.lod.level]
            if not level_found:
                continue  # a level never built: its totals say so, rows would only be noise
            missing = grid.bundle_count(plan.expected) - sum(
                1 for (r, c) in level_found
                if not grid.bundle_range(BundleKey(plan.lod.level, r, c))
                .intersect(plan.expected).is_empty
            )
            written = 0
            if budget > 0:
                for key in grid.bundles_of_range(plan.lod.level, plan.expected):
                    if (key.row, key.col) in level_found:
                        continue
                    sink(missing_row(scheme, plan, key))
                    written += 1
                    if written >= budget:
                        break
            budget -= written
            rows += written
            omitted += missing - written
        if omitted:
            warnings.append(
                f"{omitted:,} MISSING bundle rows were left out of TaskStatus "
                f"(--max-missing-rows {self.max_missing_rows:,}); LevelStatus counts them all"
            )
        return ScanOutcome(
            levels=[summaries[p.lod.level] for p in self.plans],
            problems=problems,
            warnings=warnings,
            rows=rows,
            missing_rows_omitted=omitted,
        )


__all__ = [
    "LevelPlan",
    "Progress",
    "ScanOutcome",
    "Scanner",
    "classify",
    "evaluate",
    "plan_levels",
]
