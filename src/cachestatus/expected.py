"""Which tiles are expected at a level: a rectangle (the full extent) or an area of interest.

A tile is expected when its square shares interior area with the extent or the area; touching
an edge is not enough (overlaps thinner than a billionth of a tile, float noise, do not count). For an area, tiles are classified by a quadtree over blocks of tiles:
blocks inside the area count whole, blocks outside are dropped, and only blocks across its edge
are split, so the work grows with the length of the edge, not with the number of tiles.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from . import grid
from .grid import SNAP
from .models import BUNDLE_SIZE, BundleKey, TileRange, TilingScheme

#: A bundle's expected tiles: the block holding them, and a mask over it (``None``: all of it).
Window = tuple[TileRange, npt.NDArray[np.bool_] | None]
_NONE = TileRange(0, 0, 0, 0)


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

    def count_in(self, key: BundleKey) -> int:
        """Expected tiles inside one bundle."""
        block, mask = self.window(key)
        return block.tiles if mask is None else int(np.count_nonzero(mask))


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


def _split(blocks: npt.NDArray[np.int64], unit: int) -> npt.NDArray[np.int64]:
    """Split blocks (row0, row1, col0, col1) in two along their longer side, at a multiple of
    ``unit``; a block spanning one unit that way is split the other way. Every block given can be
    split (it spans more than one unit one way or the other)."""
    r0, r1, c0, c1 = blocks.T
    row_mid, col_mid = _cuts(r0, r1, unit), _cuts(c0, c1, unit)
    by_rows = (row_mid >= 0) & ((r1 - r0 >= c1 - c0) | (col_mid < 0))
    rows, cols = blocks[by_rows], blocks[~by_rows]
    rm, cm = row_mid[by_rows], col_mid[~by_rows]
    return np.concatenate([
        np.column_stack([rows[:, 0], rm, rows[:, 2], rows[:, 3]]),
        np.column_stack([rm, rows[:, 1], rows[:, 2], rows[:, 3]]),
        np.column_stack([cols[:, 0], cols[:, 1], cols[:, 2], cm]),
        np.column_stack([cols[:, 0], cols[:, 1], cm, cols[:, 3]]),
    ])


def _cuts(
    low: npt.NDArray[np.int64], high: npt.NDArray[np.int64], unit: int
) -> npt.NDArray[np.int64]:
    """A cut at a multiple of ``unit`` strictly inside each (low, high), or -1 where none is."""
    mid = (low + high) // 2 // unit * unit
    mid = np.where(mid <= low, mid + unit, mid)
    return np.where(mid < high, mid, -1)


class AreaExpectation(Expectation):
    """Expected tiles of an area of interest (a shapely polygon in the cache's CRS).

    Everything is classified once, when the expectation is made (before worker processes
    start): bundles inside the area are kept as blocks, and each bundle across the area's edge
    gets its mask of expected tiles. Later questions are lookups.
    """

    def __init__(self, level: int, scheme: TilingScheme, area: Any) -> None:
        import shapely

        from .models import Extent

        self.scheme = scheme
        self.area = area
        shapely.prepare(area)
        xmin, ymin, xmax, ymax = area.bounds
        super().__init__(level, grid.tiles_in_extent(scheme, level, Extent(xmin, ymin, xmax, ymax)))
        inside, edge = self.partition(np.array([self.bounds], dtype=np.int64), BUNDLE_SIZE)
        self._inside = [TileRange(*b) for b in inside.tolist()]
        self._edge = self._edge_windows(edge)
        self._total = sum(b.tiles for b in self._inside) + sum(
            block.tiles if mask is None else int(np.count_nonzero(mask))
            for block, mask in self._edge.values()
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        import shapely

        self.__dict__.update(state)
        shapely.prepare(self.area)  # preparation does not survive pickling

    def _classify(
        self, blocks: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(inside, crossing) for each block: covered by the area / across its edge.

        Blocks are tested shrunk by a billionth of a tile on every side, so that prepared
        ``covers`` and ``intersects`` (fast) decide "shares interior area": an area that only
        touches a block's edge does not meet the shrunk block. It is the tolerance the grid
        module snaps coordinates with: overlaps thinner than that are float noise.
        """
        import shapely

        w, h = grid.tile_span(self.scheme, self.level)
        dx, dy = w * SNAP, h * SNAP
        ox, oy = self.scheme.origin_x, self.scheme.origin_y
        rects = shapely.box(ox + blocks[:, 2] * w + dx, oy - blocks[:, 1] * h + dy,
                            ox + blocks[:, 3] * w - dx, oy - blocks[:, 0] * h - dy)
        inside = shapely.covers(self.area, rects)
        crossing = ~inside
        crossing[crossing] = shapely.intersects(self.area, rects[crossing])
        return inside, crossing

    def partition(
        self, blocks: npt.NDArray[np.int64], unit: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Split ``blocks`` (rows of row0, row1, col0, col1) into blocks inside the area and
        blocks of at most ``unit`` x ``unit`` tiles (aligned on ``unit``) across its edge, all
        blocks of a depth in one vectorised step. With ``unit=1`` the edge blocks are single
        tiles, each sharing interior with the area (so expected)."""
        inside, edge = [], []
        todo = blocks[(blocks[:, 1] > blocks[:, 0]) & (blocks[:, 3] > blocks[:, 2])]
        while todo.size:
            is_in, crossing = self._classify(todo)
            inside.append(todo[is_in])
            across = todo[crossing]
            small = ((across[:, 1] - across[:, 0] <= unit) & (across[:, 3] - across[:, 2] <= unit)
                     & (across[:, 0] // unit == (across[:, 1] - 1) // unit)
                     & (across[:, 2] // unit == (across[:, 3] - 1) // unit))
            edge.append(across[small])
            todo = _split(across[~small], unit)
        empty = np.zeros((0, 4), dtype=np.int64)
        return np.concatenate([empty, *inside]), np.concatenate([empty, *edge])

    def _edge_windows(self, edge: npt.NDArray[np.int64]) -> dict[tuple[int, int], Window]:
        """The window of every bundle across the area's edge, all found in one partition."""
        inside, tiles = self.partition(edge, 1)
        # One 128 x 128 mask per edge bundle; single tiles are set in one step.
        ids = {(r0 - r0 % BUNDLE_SIZE, c0 - c0 % BUNDLE_SIZE): i
               for i, (r0, _, c0, _) in enumerate(edge.tolist())}
        masks = np.zeros((len(ids), BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.bool_)
        rows, cols = tiles[:, 0], tiles[:, 2]
        which = np.fromiter(
            (ids[(r - r % BUNDLE_SIZE, c - c % BUNDLE_SIZE)]
             for r, c in zip(rows.tolist(), cols.tolist(), strict=True)),
            dtype=np.int64, count=len(rows),
        )
        masks[which, rows % BUNDLE_SIZE, cols % BUNDLE_SIZE] = True
        for r0, r1, c0, c1 in inside.tolist():
            i = ids[(r0 - r0 % BUNDLE_SIZE, c0 - c0 % BUNDLE_SIZE)]
            masks[i, r0 % BUNDLE_SIZE : (r1 - 1) % BUNDLE_SIZE + 1,
                  c0 % BUNDLE_SIZE : (c1 - 1) % BUNDLE_SIZE + 1] = True
        windows: dict[tuple[int, int], Window] = {}
        for (brow, bcol), i in ids.items():
            mask = masks[i]
            rows_on = np.flatnonzero(mask.any(axis=1))
            if not rows_on.size:
                continue  # the bundle only touched the area
            cols_on = np.flatnonzero(mask.any(axis=0))
            block = TileRange(brow + int(rows_on[0]), brow + int(rows_on[-1]) + 1,
                              bcol + int(cols_on[0]), bcol + int(cols_on[-1]) + 1)
            cut = mask[rows_on[0] : rows_on[-1] + 1, cols_on[0] : cols_on[-1] + 1]
            windows[(brow, bcol)] = (block, None if cut.all() else cut.copy())
        return windows

    def total(self) -> int:
        """Inside blocks whole, edge bundles by their masks."""
        return self._total

    def window(self, key: BundleKey) -> Window:
        """A lookup: an edge bundle's mask, a whole bundle inside, or nothing."""
        import shapely

        found = self._edge.get((key.row, key.col))
        if found is not None:
            return found
        square = grid.bundle_range(key).intersect(self.bounds)
        if square.is_empty:
            return _NONE, np.zeros((0, 0), dtype=np.bool_)
        # Not across the edge: the whole bundle is inside the area, or outside it.
        b = grid.range_bounds(self.scheme, self.level, square)
        if shapely.intersects_xy(self.area, (b.xmin + b.xmax) / 2, (b.ymin + b.ymax) / 2):
            return square, None
        return _NONE, np.zeros((0, 0), dtype=np.bool_)

    def bundles(self) -> Iterator[BundleKey]:
        """Bundles inside the area, then those across its edge."""
        for block in self._inside:
            yield from grid.bundles_of_range(self.level, block)
        for row, col in self._edge:
            yield BundleKey(self.level, row, col)

    def bundle_count(self) -> int:
        """Bundles holding at least one expected tile."""
        return sum(grid.bundle_count(b) for b in self._inside) + len(self._edge)
