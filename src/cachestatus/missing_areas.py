"""What a scan finds missing: per level, the dissolved polygons of expected tiles that are not
present (:class:`MissingAreas`), and the ``MISSING`` rows of bundles without a file
(:class:`MissingRows`).

A level's missing area has two parts. The expected tiles of bundles without a file: the expected
area less the blocks of the files found, drawn from large rectangles whatever the level's size.
And what the files miss: their holes, which the scan sends as blocks, or as bit masks of their
rows where they are scattered (:func:`hole_blocks` turns both into blocks).

Holes are drawn exactly while a level has at most :data:`MAX_EXACT_BLOCKS` blocks of them, which
every level with 100,000 missing tiles or fewer has, however scattered they are: the polygons are
then exactly the missing tiles, their area the number of missing tiles times a tile's area.
Beyond, the files that miss tiles are drawn whole instead: a cover holding every missing tile
(:attr:`MissingArea.exact` is false), still a good area of interest for the next caching job (a
job that recreates only empty tiles skips those already built). The count of missing tiles is
exact either way, and so is ``missing --tiles``, made from the holes themselves.

What a scan keeps meanwhile does not grow with the bundle files: per level, two bits per
bundle of the expected area (:class:`FileBlocks`: the files, those missing tiles), the holes up
to :data:`MAX_EXACT_BLOCKS` blocks, and the blocks of files an area of interest cuts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import grid
from .models import (
    BUNDLE_SIZE,
    BundleKey,
    BundleSet,
    BundleState,
    BundleStatus,
    LevelSummary,
    MissingAreaRecord,
    RowBatch,
    TileRange,
    TilingScheme,
)
from .plan import MAX_TILE_INDEX, AbsentRows, LevelPlan, ScanPolicy

if TYPE_CHECKING:
    from .scan import ScanBatch

#: Kinds of the tagged rows a scan sends for what a file misses (:attr:`ScanBatch.holes`):
#: ``HOLE`` rows are blocks ``(row0, row1, col0, col1)``; ``ROW_BITS`` rows are one tile row
#: ``(row, col0, bits 0-63, bits 64-127)``, bit ``i`` set when tile ``col0 + i`` is missing.
HOLE, ROW_BITS = 0, 3

#: Blocks of holes drawn exactly per level; beyond, the level's files that miss tiles are drawn
#: whole (a cover). At least 100,000: every level with that many missing tiles or fewer is exact.
MAX_EXACT_BLOCKS = 250_000
#: Batches of a level's bundle-file blocks cut by an area of interest kept apart, at most; then
#: they are merged into one (:func:`merged_blocks`), so what a scan keeps grows with the outline
#: of the area, not the number of files (the other files are bits of a bitmap:
#: :class:`FileBlocks`).
COMPACT_PARTS = 64
#: Bundles of a level's bitmap of files read at a time, and runs of them merged at a time at
#: least, when its files' blocks are made (:meth:`FileBlocks.blocks`).
RUNS_AT_ONCE = 65_536
#: Over an area of interest, absent bundles are drawn one by one up to this many; beyond, the
#: whole expected area is drawn and the files' blocks are taken out of it.
MAX_ABSENT_BUNDLES = 100_000


@dataclass(frozen=True)
class MissingArea(MissingAreaRecord):
    """The missing tiles of one level, as the store's ``MissingAreas`` row holds them (``level``,
    ``scale``, ``tiles_missing``, ``geometry``, ``exact``; see :class:`MissingAreaRecord`), and
    ``outside_files``: the part of ``geometry`` in bundles without a file, always exact.
    """

    outside_files: Any = None


def merged_blocks(blocks: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Blocks ``(row0, row1, col0, col1)`` merged down the rows, then across the columns: the
    same tiles in fewer blocks (a level's bundle files in a few blocks per stretch of them)."""
    across = grid.merge_blocks(grid.merge_blocks(blocks)[:, [2, 3, 0, 1]])
    return across[:, [2, 3, 0, 1]]


def _union(scheme: TilingScheme, level: int, blocks: npt.NDArray[np.int64]) -> Any:
    import shapely

    boxes = shapely.box(*grid.blocks_bounds(scheme, level, grid.merge_blocks(blocks)))
    # Most blocks are disjoint from most others: unioning disjoint subsets is ten times faster
    # than a plain union of thousands of boxes.
    return shapely.disjoint_subset_union_all(boxes)


def row_bits(mask: npt.NDArray[np.bool_], row0: int, col0: int) -> npt.NDArray[np.int64]:
    """``ROW_BITS`` rows (without their kind) for the rows of a mask (at most 128 columns)
    whose top-left tile is ``(row0, col0)``: one row per mask row with a ``True`` cell."""
    rows = np.flatnonzero(mask.any(axis=1))
    padded = np.zeros((len(rows), BUNDLE_SIZE), dtype=np.bool_)
    padded[:, : mask.shape[1]] = mask[rows]
    words = np.packbits(padded, axis=1, bitorder="little").view("<i8").astype(np.int64)
    return np.column_stack(
        [rows.astype(np.int64) + row0, np.full(len(rows), col0, dtype=np.int64), words]
    ).reshape(-1, 4)


def tagged_holes(found: Sequence[tuple[int, npt.NDArray[np.int64]]]) -> npt.NDArray[np.int64]:
    """What bundle files miss, given as (level, tagged blocks ``(kind, ...)``) for each, as
    tagged rows ``(level, kind, ...)``, shape (m, 6)."""
    if not found:
        return np.zeros((0, 6), dtype=np.int64)
    levels = np.repeat([level for level, _ in found], [len(rows) for _, rows in found])
    return np.column_stack([levels, np.concatenate([rows for _, rows in found])])


#: Rows of bit masks decoded at a time (:func:`hole_blocks`): about 0.6 KiB each while they
#: are (a batch of 2,048 bundles missing tiles on every row has 262,144).
_DECODED = 8_192


def hole_blocks(
    tagged: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The levels and blocks ``(row0, row1, col0, col1)`` of tagged rows ``(level, kind, ...)``
    (:attr:`ScanBatch.holes`): exactly the tiles they say are missing."""
    tagged = tagged.reshape(-1, 6)
    blocks = tagged[tagged[:, 1] == HOLE]
    bits = tagged[tagged[:, 1] == ROW_BITS]
    levels, found = [blocks[:, 0]], [blocks[:, 2:]]
    for start in range(0, len(bits), _DECODED):
        part = bits[start : start + _DECODED]
        mask = np.unpackbits(
            np.ascontiguousarray(part[:, 4:6].astype("<i8")).view(np.uint8),
            axis=1,
            bitorder="little",
        ).astype(np.bool_)
        runs = grid.mask_runs(mask, 0, 0)  # row = index of the tagged row, cols relative
        which = runs[:, 0]
        levels.append(part[which, 0])
        found.append(
            np.column_stack(
                [
                    part[which, 2],
                    part[which, 2] + 1,
                    part[which, 3] + runs[:, 2],
                    part[which, 3] + runs[:, 3],
                ]
            )
        )
    if len(found) == 1:
        return levels[0], found[0]
    return np.concatenate(levels), np.concatenate(found)


def _meeting(
    line_a: npt.NDArray[np.int64],
    lo_a: npt.NDArray[np.int64],
    hi_a: npt.NDArray[np.int64],
    line_b: npt.NDArray[np.int64],
    lo_b: npt.NDArray[np.int64],
    hi_b: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Pairs ``(i, j)`` of edges on the same grid line that overlap by a positive length: edge
    ``i`` of the first set (``line_a[i]``, from ``lo_a[i]`` to ``hi_a[i]``) and ``j`` of the
    second. The edges of one set on one line never overlap each other (the blocks are disjoint).
    """
    _, line_ids = np.unique(np.concatenate([line_a, line_b]), return_inverse=True)
    values, value_ids = np.unique(np.concatenate([lo_a, hi_a, lo_b, hi_b]), return_inverse=True)
    n, m = len(line_a), len(line_b)
    span = len(values) + 1  # keys (line, position) as one number, exact in int64
    la, lb = line_ids[:n] * span, line_ids[n:] * span
    v = value_ids.reshape(-1)
    a_lo, a_hi, b_lo, b_hi = v[:n], v[n : 2 * n], v[2 * n : 2 * n + m], v[2 * n + m :]
    order = np.argsort(lb + b_lo, kind="stable")
    keys_lo, keys_hi = (lb + b_lo)[order], (lb + b_hi)[order]
    first = np.searchsorted(keys_hi, la + a_lo, side="right")
    count = np.maximum(np.searchsorted(keys_lo, la + a_hi, side="left") - first, 0)
    i = np.repeat(np.arange(n, dtype=np.int64), count)
    start = np.repeat(first - (np.cumsum(count) - count), count)
    j = order[start + np.arange(len(i))]
    return i, j.astype(np.int64)


def _components(count: int, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> Any:
    """The component of each of ``count`` items linked by pairs ``(a[k], b[k])``: the smallest
    item of each (roots hooked to the smaller root, paths halved, until no pair joins two)."""
    parent = np.arange(count, dtype=np.int64)
    while True:
        while True:  # every item points at its root
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
        ra, rb = parent[a], parent[b]
        apart = ra != rb
        if not apart.any():
            return parent
        low, high = np.minimum(ra[apart], rb[apart]), np.maximum(ra[apart], rb[apart])
        np.minimum.at(parent, high, low)


def _exact_parts(
    scheme: TilingScheme, level: int, blocks: npt.NDArray[np.int64]
) -> npt.NDArray[np.object_]:
    """Polygons covering exactly the tiles of disjoint blocks, one per group of blocks joined by
    their edges (groups never share an edge; they may touch at a corner).

    Blocks of one group are merged with a coverage union, which needs neighbours to share their
    vertices: each block's ring gets a vertex wherever a neighbour's corner lies on its edge.
    Work grows with the number of blocks, never with a group's size in tiles, and scattered
    tiles (groups of one block) need no union at all.
    """
    import shapely

    blocks = grid.merge_blocks(blocks.reshape(-1, 4).astype(np.int64))
    n = len(blocks)
    if not n:
        return np.zeros(0, dtype=object)
    r0, r1, c0, c1 = (blocks[:, k] for k in range(4))
    down_i, down_j = _meeting(r1, c0, c1, r0, c0, c1)  # j just below i
    right_i, right_j = _meeting(c1, r0, r1, c0, r0, r1)  # j just right of i
    group = _components(n, np.r_[down_i, right_i], np.r_[down_j, right_j])
    alone = np.bincount(group, minlength=n)[group] == 1
    xmin, ymin, xmax, ymax = grid.blocks_bounds(scheme, level, blocks)
    parts = [np.asarray(shapely.box(xmin[alone], ymin[alone], xmax[alone], ymax[alone]))]
    if alone.all():
        return parts[0]
    width, height = c1 - c0, r1 - r0
    # Points of each ring as (block, position along the ring, col, row): clockwise from the
    # top-left corner, top edge, right, bottom, left.
    ids, pos, cols, rows = [], [], [], []

    def add(block: Any, along: Any, col: Any, row: Any) -> None:
        ids.append(block)
        pos.append(along)
        cols.append(col)
        rows.append(row)

    every = np.arange(n, dtype=np.int64)
    add(every, 0 * every, c0, r0)
    add(every, width, c1, r0)
    add(every, width + height, c1, r1)
    add(every, 2 * width + height, c0, r1)
    # Where a neighbour's corner lies inside an edge, that edge gets a vertex there.
    for col in (c0[down_j], c1[down_j]):  # on the bottom edge of the block above
        on = (col > c0[down_i]) & (col < c1[down_i])
        u, x = down_i[on], col[on]
        add(u, width[u] + height[u] + (c1[u] - x), x, r1[u])
    for col in (c0[down_i], c1[down_i]):  # on the top edge of the block below
        on = (col > c0[down_j]) & (col < c1[down_j])
        u, x = down_j[on], col[on]
        add(u, x - c0[u], x, r0[u])
    for row in (r0[right_j], r1[right_j]):  # on the right edge of the block on the left
        on = (row > r0[right_i]) & (row < r1[right_i])
        u, y = right_i[on], row[on]
        add(u, width[u] + (y - r0[u]), c1[u], y)
    for row in (r0[right_i], r1[right_i]):  # on the left edge of the block on the right
        on = (row > r0[right_j]) & (row < r1[right_j])
        u, y = right_j[on], row[on]
        add(u, 2 * width[u] + height[u] + (r1[u] - y), c0[u], y)
    ring, along = np.concatenate(ids), np.concatenate(pos)
    col_all, row_all = np.concatenate(cols), np.concatenate(rows)
    joined = ~alone[ring]
    ring, along, col_all, row_all = ring[joined], along[joined], col_all[joined], row_all[joined]
    order = np.lexsort((along, ring))
    ring, along, col_all, row_all = ring[order], along[order], col_all[order], row_all[order]
    fresh = np.r_[True, (ring[1:] != ring[:-1]) | (along[1:] != along[:-1])]
    ring, col_all, row_all = ring[fresh], col_all[fresh], row_all[fresh]
    # The same arithmetic as grid.blocks_bounds: a shared vertex has the very same coordinates.
    w, h = grid.tile_span(scheme, level)
    xy = np.column_stack(
        [
            scheme.origin_x + col_all.astype(np.float64) * w,
            scheme.origin_y - row_all.astype(np.float64) * h,
        ]
    )
    _, ring_index = np.unique(ring, return_inverse=True)
    polygons = shapely.polygons(shapely.linearrings(xy, indices=ring_index.reshape(-1)))
    # Rings come in block order, as the blocks of the groups do.
    _, group_index = np.unique(group[~alone], return_inverse=True)
    order = np.argsort(group_index.reshape(-1), kind="stable")
    groups = shapely.multipolygons(polygons[order], indices=group_index.reshape(-1)[order])
    parts.append(shapely.coverage_union_all(groups.reshape(-1, 1), axis=1))
    return np.concatenate(parts)


def _joined(outside: Any, holes: npt.NDArray[np.object_]) -> Any:
    """``outside`` and the polygons of ``holes`` dissolved: only holes meeting ``outside`` are
    unioned with it, the others (which meet no other hole by an edge) are added as they are."""
    import shapely

    if not len(holes):
        return outside
    if outside is None or outside.is_empty:
        return shapely.multipolygons(holes)
    pieces = shapely.get_parts(outside)
    meeting = np.zeros(len(holes), dtype=np.bool_)
    meeting[shapely.STRtree(pieces).query(holes, predicate="intersects")[0]] = True
    merged = shapely.union(outside, shapely.multipolygons(holes[meeting]))
    return shapely.multipolygons(np.concatenate([shapely.get_parts(merged), holes[~meeting]]))


class FileBlocks:
    """The blocks of some bundle files of one level, kept in a bitmap over the bundle grid of
    the level's expected ``bounds`` (:class:`~cachestatus.models.BundleSet`): what a scan keeps
    does not grow with the files. A file's block is the bundle clipped to ``bounds`` but where
    an area of interest cuts it: such blocks (along the area's outline) are kept as they are.

    Args:
        bounds: the level's expected tiles' extent.
    """

    def __init__(self, bounds: TileRange) -> None:
        self.bounds = bounds
        self._bundles = BundleSet(bounds)
        self._other: list[npt.NDArray[np.int64]] = []

    def _clipped(
        self, rows: npt.NDArray[np.int64], col0: npt.NDArray[np.int64], col1: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        """Blocks of one bundle row's height at ``rows`` over columns ``[col0, col1)``, clipped
        to the bounds."""
        b = self.bounds
        return np.column_stack(
            [
                np.maximum(rows, b.row0),
                np.minimum(rows + BUNDLE_SIZE, b.row1),
                np.maximum(col0, b.col0),
                np.minimum(col1, b.col1),
            ]
        ).reshape(-1, 4)

    def add(
        self,
        rows: npt.NDArray[np.int64],
        cols: npt.NDArray[np.int64],
        blocks: npt.NDArray[np.int64],
    ) -> None:
        """Keep the blocks ``(row0, row1, col0, col1)`` of the files of bundles ``(rows,
        cols)``."""
        clipped = (blocks == self._clipped(rows, cols, cols + BUNDLE_SIZE)).all(axis=1)
        self._bundles.add(rows[clipped], cols[clipped])
        if not clipped.all():
            self._other.append(blocks[~clipped])
            if len(self._other) >= COMPACT_PARTS:
                self._other = [merged_blocks(np.concatenate(self._other))]

    def blocks(self) -> npt.NDArray[np.int64]:
        """The files' blocks: runs of files side by side along a bundle row, merged down the
        rows (so a stretch of files gives a few blocks), and the others.

        The runs are read a few rows at a time and merged in once they outnumber the blocks
        merged so far: a stretch of files never has its runs held all at once."""
        blocks = np.concatenate([np.zeros((0, 4), np.int64), *self._other])
        waiting: list[npt.NDArray[np.int64]] = []
        count = 0
        for rows, col0, col1 in self._bundles.runs(RUNS_AT_ONCE):
            waiting.append(self._clipped(rows, col0, col1))
            count += len(rows)
            if count > max(len(blocks), RUNS_AT_ONCE):
                blocks = grid.merge_blocks(np.concatenate([blocks, *waiting]))
                waiting, count = [], 0
        return grid.merge_blocks(np.concatenate([blocks, *waiting]))


class MissingAreas:
    """Gathers, during a scan, the blocks of the bundle files found and their holes."""

    def __init__(self, scheme: TilingScheme, expected: dict[int, Any]) -> None:
        self.scheme = scheme
        #: Level ID to its :class:`~cachestatus.expected.Expectation`.
        self.expected = expected
        # Per level, the blocks of the files, and of those that miss expected tiles (with the
        # holes, or drawn whole for a cover).
        self._files = {lv: FileBlocks(e.bounds) for lv, e in expected.items()}
        self._incomplete = {lv: FileBlocks(e.bounds) for lv, e in expected.items()}
        self._holes: dict[int, list[npt.NDArray[np.int64]]] = {lv: [] for lv in expected}
        self._hole_count: dict[int, int] = dict.fromkeys(expected, 0)
        #: Levels whose holes are too many pieces to draw exactly: they get a cover.
        self.covered: set[int] = set()

    def add(self, batch: ScanBatch) -> None:
        """Keep the blocks of the files and what they miss, from a batch of rows."""
        rows = batch.rows
        files = (rows.tiles_expected > 0) & (
            np.array(rows.state, dtype=object) != BundleState.MISSING.value
        )
        complete = files & (rows.tiles_present >= rows.tiles_expected)
        for level in np.unique(rows.level[files]).tolist():
            mine = rows.level == level
            for kept, which in (
                (self._files[level], files & mine),
                (self._incomplete[level], files & ~complete & mine),
            ):
                kept.add(rows.row[which], rows.col[which], rows.tiles[which])
        tagged = batch.holes
        for level in np.unique(tagged[:, 0]).tolist() if len(tagged) else []:
            if level in self.covered:
                continue
            # Rows of a bundle's bit masks merge back into blocks down the rows.
            blocks = grid.merge_blocks(hole_blocks(tagged[tagged[:, 0] == level])[1])
            self._hole_count[level] += len(blocks)
            if self._hole_count[level] > MAX_EXACT_BLOCKS:
                self.covered.add(level)
                self._holes[level] = []
                continue
            self._holes[level].append(blocks)

    def _absent_windows(self, level: int, found: BundleSet) -> npt.NDArray[np.int64] | None:
        """Blocks of the expected tiles of the bundles without a file, where an area of interest
        makes the expected area costly to draw whole; ``None`` to subtract instead."""
        from .expected import AreaExpectation

        expected = self.expected[level]
        if not isinstance(expected, AreaExpectation) or not len(found):
            return None
        if expected.bundle_count() - len(found) > MAX_ABSENT_BUNDLES:
            return None
        blocks = [np.zeros((0, 4), dtype=np.int64)]
        for key in expected.bundles():
            if (key.row, key.col) in found:
                continue
            block, mask = expected.window(key)
            if mask is None:
                blocks.append(np.array([block], dtype=np.int64))
            else:
                cells = grid.mask_blocks(mask, block.row0, block.col0)
                assert cells is not None  # no limit given
                blocks.append(cells)
        return np.concatenate(blocks)

    def _outside_files(self, level: int, found: BundleSet) -> Any:
        """The expected tiles of the bundles without a file, exactly."""
        import shapely

        absent = self._absent_windows(level, found)
        if absent is not None:  # the windows of the absent bundles
            return _union(self.scheme, level, absent)
        geometry = _union(self.scheme, level, self.expected[level].blocks())
        files = self._files[level].blocks()
        if len(files):
            geometry = shapely.difference(geometry, _union(self.scheme, level, files))
        return geometry

    def areas(
        self, levels: Sequence[LevelSummary], found: dict[int, BundleSet]
    ) -> tuple[list[MissingArea], list[str]]:
        """One area per level with missing tiles, and warnings for levels given a cover.

        ``found`` gives, per level, the bundles (row, col) that have a file.
        """
        import shapely

        out, warnings = [], []
        for summary in levels:
            missing = summary.tiles_expected - summary.tiles_present
            if missing <= 0:
                continue
            level = summary.level
            outside = self._outside_files(level, found.get(level, BundleSet()))
            if level in self.covered:
                incomplete = self._incomplete[level].blocks()
                geometry = shapely.union(outside, _union(self.scheme, level, incomplete))
                warnings.append(cover_warning(level, missing))
            else:
                holes = np.concatenate([np.zeros((0, 4), np.int64), *self._holes[level]])
                geometry = _joined(outside, _exact_parts(self.scheme, level, holes))
            out.append(
                MissingArea(
                    level,
                    summary.scale,
                    missing,
                    geometry,
                    exact=level not in self.covered,
                    outside_files=outside,
                )
            )
        return out, warnings


def cover_warning(level: int, missing: int) -> str:
    """What a run says of a level whose missing area is a cover (``exact`` = 0)."""
    return (
        f"level {level}: its {missing:,} missing tiles are scattered in more than "
        f"{MAX_EXACT_BLOCKS:,} pieces; its MissingAreas polygon covers them with the "
        "bundles that miss tiles (exact = 0), and tilesMissing counts them exactly"
    )


#: MISSING rows handed to the sink at a time.
MISSING_BATCH = 10_000


def missing_row(plan: LevelPlan, key: BundleKey) -> BundleStatus:
    """The row of a bundle that has expected tiles but no file."""
    block, mask = plan.expected.window(key)
    expected = block.tiles if mask is None else int(np.count_nonzero(mask))
    return BundleStatus(key, BundleState.MISSING, expected, 0, 0, 0, 0, 0, None, block)


class MissingRows:
    """The ``MISSING`` rows of the bundles a scan found no file for, within a budget.

    Which levels get rows is the policy's :attr:`~cachestatus.plan.ScanPolicy.absent_rows`; a
    cache that declares no full extent gets rows only when every level does (its expected
    tiles are then those of the whole grid, a guess). Rows beyond the budget, and beyond what a
    status store holds, are counted in :attr:`omitted`.

    Args:
        plans: the scan's level plans.
        policy: the scan's policy.
        declared_extent: whether the cache declares its full extent.
    """

    def __init__(self, plans: Sequence[LevelPlan], policy: ScanPolicy, declared_extent: bool):
        self.plans = plans
        self.scope = policy.absent_rows
        if self.scope is AbsentRows.BUILT_LEVELS and not declared_extent:
            self.scope = AbsentRows.NONE
        self.budget = policy.max_missing_rows
        #: Rows handed out by :meth:`batches`.
        self.written = 0
        #: Rows of absent bundles left out.
        self.omitted = 0

    def batches(self, found: dict[int, BundleSet]) -> Iterator[RowBatch]:
        """The rows in batches of :data:`MISSING_BATCH`; ``found`` gives, per level, the
        bundles (row, col) that have a file."""
        budget = self.budget if self.budget is not None else 2**63
        pending: list[BundleStatus] = []
        for plan, level_found, missing in self._absent(found):
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
                        yield RowBatch.from_statuses(pending)
                        pending = []
                    written += 1
                    if written >= budget:
                        break
            budget -= written
            self.written += written
            self.omitted += missing - written
        if pending:
            yield RowBatch.from_statuses(pending)

    def _absent(self, found: dict[int, BundleSet]) -> Iterator[tuple[LevelPlan, BundleSet, int]]:
        """The levels that get rows, each with its bundles that have a file and how many of
        its expected bundles have none."""
        if self.scope is AbsentRows.NONE:
            return
        for plan in self.plans:
            level_found = found[plan.lod.level]
            if not len(level_found) and self.scope is AbsentRows.BUILT_LEVELS:
                continue
            found_inside = sum(plan.expected.count_holding(*c) for c in level_found.chunks())
            yield plan, level_found, plan.expected.bundle_count() - found_inside

    def recount(self, found: dict[int, BundleSet], written: int) -> None:
        """Count as :meth:`batches` does, for the same ``found``, without making the rows: it
        handed out ``written`` rows then (a store holds them)."""
        self.written = written
        self.omitted = sum(missing for _, _, missing in self._absent(found)) - written

    @property
    def warnings(self) -> list[str]:
        """What :meth:`batches` has to say once done: rows left out."""
        if not self.omitted:
            return []
        return [
            f"{self.omitted:,} MISSING bundle rows were left out of TaskStatus "
            f"(--max-missing-rows {self.budget:,}); LevelStatus counts them all"
        ]
