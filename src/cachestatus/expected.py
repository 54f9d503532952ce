"""Which tiles are expected at a level: a rectangle (the full extent) or an area of interest.

A tile is expected when its square shares interior area with the extent or the area; touching
an edge is not enough (overlaps thinner than a billionth of a tile, float noise, do not count).
For an area, each tile row is cut from the area once: the parts of the area in a row give runs
of expected columns, so the work grows with the number of rows, never with the number of tiles,
and bundles inside the area get all their tiles without per-tile work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from . import grid
from .errors import LimitExceeded
from .grid import SNAP
from .models import BUNDLE_SIZE, BundleKey, TileRange, TilingScheme

#: A bundle's expected tiles: the block holding them, and a mask over it (``None``: all of it).
Window = tuple[TileRange, npt.NDArray[np.bool_] | None]
_NONE = TileRange(0, 0, 0, 0)
#: An area of interest is cut into at most this many tile rows per level (each row costs a cut
#: of the area, kept until the scan ends): a country at level 23, the world at level 18.
MAX_AREA_ROWS = 2**18
#: And its runs may pass through at most this many bundles per level (16 bytes each).
MAX_AREA_BUNDLES = 2**23


class Expectation(ABC):
    """The expected tiles of one level."""

    def __init__(self, level: int, bounds: TileRange) -> None:
        self.level = level
        #: A block holding every expected tile.
        self.bounds = bounds

    @abstractmethod
    def total(self) -> int:
        """How many tiles are expected (exact, at any depth)."""

    @abstractmethod
    def window(self, key: BundleKey) -> Window:
        """The expected tiles of one bundle."""

    @abstractmethod
    def bundles(self) -> Iterator[BundleKey]:
        """Every bundle holding at least one expected tile."""

    @abstractmethod
    def bundle_count(self) -> int:
        """How many bundles :meth:`bundles` yields."""

    @abstractmethod
    def blocks(self) -> npt.NDArray[np.int64]:
        """Blocks ``(row0, row1, col0, col1)`` covering exactly the expected tiles, shape (n, 4)."""

    def count_in(self, key: BundleKey) -> int:
        """Expected tiles inside one bundle."""
        block, mask = self.window(key)
        return block.tiles if mask is None else int(np.count_nonzero(mask))

    def holds(self, key: BundleKey) -> bool:
        """True when the bundle holds at least one expected tile."""
        return self.count_in(key) > 0

    def count_holding(self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]) -> int:
        """How many of the bundles (top-left ``rows`` and ``cols``) hold expected tiles."""
        return sum(
            1
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
            if self.holds(BundleKey(self.level, r, c))
        )


class ExtentExpectation(Expectation):
    """Expected tiles of a rectangle: a block of tiles, no per-tile work at all."""

    def total(self) -> int:
        """The tiles of the block."""
        return self.bounds.tiles

    def window(self, key: BundleKey) -> Window:
        """The bundle's tiles inside the block."""
        return grid.bundle_range(key).intersect(self.bounds), None

    def bundles(self) -> Iterator[BundleKey]:
        """Bundles overlapping the block, row by row."""
        return grid.bundles_of_range(self.level, self.bounds)

    def bundle_count(self) -> int:
        """Computed, not counted."""
        return grid.bundle_count(self.bounds)

    def blocks(self) -> npt.NDArray[np.int64]:
        """The block itself."""
        b = self.bounds
        return np.array([b] if not b.is_empty else [], dtype=np.int64).reshape(-1, 4)

    def holds(self, key: BundleKey) -> bool:
        """True when the bundle overlaps the block."""
        return not grid.bundle_range(key).intersect(self.bounds).is_empty

    def count_holding(self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]) -> int:
        """Bundles overlapping the block, counted in one vectorised step."""
        b = self.bounds
        if b.is_empty:
            return 0
        inside = (rows < b.row1) & (rows + BUNDLE_SIZE > b.row0)
        inside &= (cols < b.col1) & (cols + BUNDLE_SIZE > b.col0)
        return int(np.count_nonzero(inside))


class AreaExpectation(Expectation):
    """Expected tiles of an area of interest (a shapely polygon in the cache's CRS).

    The area is cut into tile rows once, when the expectation is made (before worker processes
    start): the part of the area in each row's strip gives, by its extent, the run of columns
    whose tiles share interior area with it. Rows are cut from bands of one bundle row at a
    time, so each cut works on a small polygon. Every later question is answered from these
    runs of columns: no tile is ever tested on its own.
    """

    def __init__(self, level: int, scheme: TilingScheme, area: Any) -> None:
        from .models import Extent

        self.scheme = scheme
        self.area = area
        xmin, ymin, xmax, ymax = area.bounds
        super().__init__(level, grid.tiles_in_extent(scheme, level, Extent(xmin, ymin, xmax, ymax)))
        height = self.bounds.row1 - self.bounds.row0
        if height > MAX_AREA_ROWS:
            raise LimitExceeded(
                f"level {level}: the area of interest spans {height:,} tile rows; at most "
                f"{MAX_AREA_ROWS:,} are worked out per level"
            )
        rows, col0, col1 = self._runs()
        #: Runs of expected tiles, sorted by row then column: row, first col, col after the last.
        self._row, self._col0, self._col1 = rows, col0, col1
        self._total = int((col1 - col0).sum())
        #: (row, col) of the top-left tile of every bundle holding expected tiles, sorted.
        self._bundles = self._bundle_cells()
        self._holding: set[tuple[int, int]] | None = None

    def _strip_bounds(
        self, row0: npt.NDArray[np.int64], row1: npt.NDArray[np.int64]
    ) -> tuple[Any, ...]:
        """xmin, ymin, xmax, ymax of rectangles over rows ``[row0, row1)`` and the whole width
        of the bounds, shrunk by the grid's snap tolerance so that an area only touching them
        does not meet them."""
        w, h = grid.tile_span(self.scheme, self.level)
        ox, oy = self.scheme.origin_x, self.scheme.origin_y
        return (
            ox + self.bounds.col0 * w,
            oy - row1 * h + h * SNAP,
            ox + self.bounds.col1 * w,
            oy - row0 * h - h * SNAP,
        )

    def _strips(self, row0: npt.NDArray[np.int64], row1: npt.NDArray[np.int64]) -> Any:
        """The rectangles of :meth:`_strip_bounds`."""
        import shapely

        return shapely.box(*self._strip_bounds(row0, row1))

    def _runs(self) -> tuple[npt.NDArray[np.int64], ...]:
        import shapely

        b = self.bounds
        empty = np.zeros(0, dtype=np.int64)
        if b.is_empty:
            return empty, empty, empty
        # Bands of one bundle row each, then the rows of each band, cut from the band's polygon.
        band_rows = np.arange(b.row0 - b.row0 % BUNDLE_SIZE, b.row1, BUNDLE_SIZE)
        band_rows0 = np.maximum(band_rows, b.row0)
        band_rows1 = np.minimum(band_rows + BUNDLE_SIZE, b.row1)
        bands = shapely.intersection(self.area, self._strips(band_rows0, band_rows1))
        # A band whose part is a rectangle (an extent, the inside of an area with straight
        # edges) needs no cut: each row's part is that rectangle within the row's strip.
        boxed = shapely.equals(bands, shapely.envelope(bands)) & (shapely.area(bands) > 0)
        rows = np.arange(b.row0, b.row1)
        band_of = (rows - band_rows[0]) // BUNDLE_SIZE
        cut = ~boxed[band_of]
        cuts = shapely.intersection(bands[band_of[cut]], self._strips(rows[cut], rows[cut] + 1))
        parts, which = shapely.get_parts(cuts, return_index=True)
        keep = shapely.area(parts) > 0  # an area touching a strip leaves lines or points
        extents = [shapely.bounds(parts[keep])]
        found = [rows[cut][which[keep]]]
        if not cut.all():
            found_rows, rects = rows[~cut], shapely.bounds(bands[band_of[~cut]])
            xmin, ymin, xmax, ymax = self._strip_bounds(found_rows, found_rows + 1)
            part = np.column_stack(
                [
                    np.maximum(rects[:, 0], xmin),
                    np.maximum(rects[:, 1], ymin),
                    np.minimum(rects[:, 2], xmax),
                    np.minimum(rects[:, 3], ymax),
                ]
            )
            # Of positive area, as a cut's part must be to count.
            shared = (part[:, 0] < part[:, 2]) & (part[:, 1] < part[:, 3])
            extents.append(part[shared])
            found.append(found_rows[shared])
        bounds = np.concatenate(extents)
        w, _ = grid.tile_span(self.scheme, self.level)
        ox = self.scheme.origin_x
        # A connected part of positive area shares interior with every tile its extent overlaps.
        col0 = np.floor((bounds[:, 0] - ox) / w + SNAP).astype(np.int64)
        col1 = np.ceil((bounds[:, 2] - ox) / w - SNAP).astype(np.int64)
        row = np.concatenate(found)
        return _merge_runs(row, np.maximum(col0, b.col0), np.minimum(col1, b.col1))

    def _bundle_cells(self) -> npt.NDArray[np.int64]:
        """(row, col) of the top-left tile of every bundle a run passes through, sorted."""
        brow, first, after = _merge_runs(
            self._row // BUNDLE_SIZE, self._col0 // BUNDLE_SIZE, (self._col1 - 1) // BUNDLE_SIZE + 1
        )
        count = after - first
        if int(count.sum()) > MAX_AREA_BUNDLES:
            raise LimitExceeded(
                f"level {self.level}: the area of interest covers {int(count.sum()):,} bundles; "
                f"at most {MAX_AREA_BUNDLES:,} are worked out per level"
            )
        offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        cells = np.column_stack([np.repeat(brow, count), np.repeat(first, count) + offsets])
        return cells * BUNDLE_SIZE

    def total(self) -> int:
        """The sum of the runs' lengths."""
        return self._total

    def _runs_in(self, key: BundleKey) -> tuple[npt.NDArray[np.int64], ...]:
        lo = np.searchsorted(self._row, key.row, side="left")
        hi = np.searchsorted(self._row, key.row + BUNDLE_SIZE, side="left")
        col0 = np.maximum(self._col0[lo:hi], key.col)
        col1 = np.minimum(self._col1[lo:hi], key.col + BUNDLE_SIZE)
        on = col1 > col0
        return self._row[lo:hi][on], col0[on], col1[on]

    def count_in(self, key: BundleKey) -> int:
        """Expected tiles of one bundle, from the runs, without building a mask."""
        _, col0, col1 = self._runs_in(key)
        return int((col1 - col0).sum())

    def window(self, key: BundleKey) -> Window:
        """The bundle's expected tiles: their block, and a mask unless the block is full."""
        rows, col0, col1 = self._runs_in(key)
        if not rows.size:
            return _NONE, np.zeros((0, 0), dtype=np.bool_)
        block = TileRange(int(rows.min()), int(rows.max()) + 1, int(col0.min()), int(col1.max()))
        if (col1 - col0).sum() == block.tiles:
            return block, None
        height, width = block.row1 - block.row0, block.col1 - block.col0
        edges = np.zeros((height, width + 1), dtype=np.int32)
        np.add.at(edges, (rows - block.row0, col0 - block.col0), 1)
        np.add.at(edges, (rows - block.row0, col1 - block.col0), -1)
        return block, np.cumsum(edges, axis=1)[:, :width] > 0

    def bundles(self) -> Iterator[BundleKey]:
        """Bundles holding at least one expected tile, row by row."""
        for brow, bcol in self._bundles.tolist():
            yield BundleKey(self.level, brow, bcol)

    def bundle_count(self) -> int:
        """Bundles holding at least one expected tile."""
        return len(self._bundles)

    def blocks(self) -> npt.NDArray[np.int64]:
        """The runs, merged down the rows into rectangles."""
        return grid.merge_blocks(
            np.column_stack([self._row, self._row + 1, self._col0, self._col1]).astype(np.int64)
        )

    def count_holding(self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]) -> int:
        """Bundles among the area's, counted in one vectorised step."""
        theirs = np.column_stack([np.asarray(rows, np.int64), np.asarray(cols, np.int64)])
        if not len(theirs) or not len(self._bundles):
            return 0
        # Exact at any row and column (no packing of two numbers into one).
        both = np.concatenate([self._bundles.astype(np.int64).reshape(-1, 2), theirs])
        _, ids = np.unique(both, axis=0, return_inverse=True)
        ids = ids.reshape(-1)
        mine = ids[: len(self._bundles)]
        return int(np.count_nonzero(np.isin(ids[len(self._bundles) :], mine)))

    def holds(self, key: BundleKey) -> bool:
        """A set lookup."""
        if self._holding is None:
            self._holding = set(map(tuple, self._bundles.tolist()))
        return (key.row, key.col) in self._holding


def _merge_runs(
    row: npt.NDArray[np.int64], col0: npt.NDArray[np.int64], col1: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], ...]:
    """Sort runs by row and column and merge those of a row that overlap or touch."""
    order = np.lexsort((col0, row))
    row, col0, col1 = row[order], col0[order], col1[order]
    if not row.size:
        return row, col0, col1
    # A run starts a new merged run unless it is on the previous run's row and begins at or
    # before the furthest column reached so far on that row.
    out_row, out0, out1 = [row[0]], [col0[0]], [col1[0]]
    for r, c0, c1 in zip(row[1:].tolist(), col0[1:].tolist(), col1[1:].tolist(), strict=True):
        if r == out_row[-1] and c0 <= out1[-1]:
            out1[-1] = max(out1[-1], c1)
        else:
            out_row.append(r)
            out0.append(c0)
            out1.append(c1)
    return (
        np.array(out_row, dtype=np.int64),
        np.array(out0, dtype=np.int64),
        np.array(out1, dtype=np.int64),
    )
