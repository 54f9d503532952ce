"""Which tiles are expected at a level: a rectangle (the full extent) or an area of interest.

A tile is expected when its square shares interior area with the extent or the area; touching
an edge is not enough. For an area, tiles are classified by a quadtree over blocks of tiles:
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
    ``unit``; blocks that cannot be split (one unit wide both ways) are returned as they are."""
    r0, r1, c0, c1 = blocks.T
    out = []
    for row0, row1, col0, col1 in zip(
        r0.tolist(), r1.tolist(), c0.tolist(), c1.tolist(), strict=True
    ):
        if row1 - row0 >= col1 - col0:
            mid = _cut(row0, row1, unit)
            if mid is not None:
                out += [(row0, mid, col0, col1), (mid, row1, col0, col1)]
                continue
        mid = _cut(col0, col1, unit)
        if mid is not None:
            out += [(row0, row1, col0, mid), (row0, row1, mid, col1)]
            continue
        mid = _cut(row0, row1, unit)
        if mid is not None:
            out += [(row0, mid, col0, col1), (mid, row1, col0, col1)]
            continue
        out.append((row0, row1, col0, col1))
    return np.array(out, dtype=np.int64).reshape(-1, 4)


def _cut(low: int, high: int, unit: int) -> int | None:
    mid = (low + high) // 2 // unit * unit
    if mid <= low:
        mid += unit
    return mid if mid < high else None


class AreaExpectation(Expectation):
    """Expected tiles of an area of interest (a shapely polygon in the cache's CRS)."""

    def __init__(self, level: int, scheme: TilingScheme, area: Any) -> None:
        import shapely

        from .models import Extent

        self.scheme = scheme
        self.area = area
        shapely.prepare(area)
        xmin, ymin, xmax, ymax = area.bounds
        super().__init__(level, grid.tiles_in_extent(scheme, level, Extent(xmin, ymin, xmax, ymax)))
        self._total: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        import shapely

        self.__dict__.update(state)
        shapely.prepare(self.area)  # preparation does not survive pickling

    def _classify(
        self, blocks: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(inside, crossing) for each block: covered by the area / sharing interior with it."""
        import shapely

        w, h = grid.tile_span(self.scheme, self.level)
        ox, oy = self.scheme.origin_x, self.scheme.origin_y
        rects = shapely.box(
            ox + blocks[:, 2] * w,
            oy - blocks[:, 1] * h,
            ox + blocks[:, 3] * w,
            oy - blocks[:, 0] * h,
        )
        touching = shapely.relate_pattern(self.area, rects, "T********")
        inside = touching & shapely.covers(self.area, rects)
        return inside, touching & ~inside

    def partition(self, block: TileRange, unit: int) -> tuple[list[TileRange], list[TileRange]]:
        """Blocks of ``block`` inside the area, and blocks of at most ``unit`` x ``unit`` tiles
        (aligned on ``unit``) across its edge. With ``unit=1`` the edge blocks are single tiles,
        each expected (it shares interior area with the area)."""
        inside: list[TileRange] = []
        edge: list[TileRange] = []
        if block.is_empty:
            return inside, edge
        todo = np.array([block], dtype=np.int64)
        while todo.size:
            is_in, crossing = self._classify(todo)
            inside.extend(TileRange(*b) for b in todo[is_in].tolist())
            across = todo[crossing]
            small = (
                (across[:, 1] - across[:, 0] <= unit)
                & (across[:, 3] - across[:, 2] <= unit)
                & (across[:, 0] // unit == (across[:, 1] - 1) // unit)
                & (across[:, 2] // unit == (across[:, 3] - 1) // unit)
            )
            edge.extend(TileRange(*b) for b in across[small].tolist())
            todo = _split(across[~small], unit) if (~small).any() else np.zeros((0, 4), np.int64)
        return inside, edge

    def total(self) -> int:
        """Counted by the quadtree down to single tiles along the edge."""
        if self._total is None:
            inside, edge = self.partition(self.bounds, 1)
            self._total = sum(b.tiles for b in inside) + len(edge)
        return self._total

    def window(self, key: BundleKey) -> Window:
        """The bundle's tiles in the area: the block of their bounding box, and a mask."""
        square = grid.bundle_range(key).intersect(self.bounds)
        inside, edge = self.partition(square, 1)
        if not inside and not edge:
            return _NONE, np.zeros((0, 0), dtype=np.bool_)
        mask = np.zeros((square.row1 - square.row0, square.col1 - square.col0), dtype=np.bool_)
        for b in [*inside, *edge]:
            mask[
                b.row0 - square.row0 : b.row1 - square.row0,
                b.col0 - square.col0 : b.col1 - square.col0,
            ] = True
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        block = TileRange(
            square.row0 + int(rows[0]),
            square.row0 + int(rows[-1]) + 1,
            square.col0 + int(cols[0]),
            square.col0 + int(cols[-1]) + 1,
        )
        mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        return block, None if mask.all() else mask

    def _bundle_blocks(self) -> tuple[list[TileRange], list[TileRange]]:
        return self.partition(self.bounds, BUNDLE_SIZE)

    def bundles(self) -> Iterator[BundleKey]:
        """Bundles inside the area, then those across its edge."""
        inside, edge = self._bundle_blocks()
        for block in inside:
            yield from grid.bundles_of_range(self.level, block)
        for block in edge:
            yield BundleKey(
                self.level,
                block.row0 - block.row0 % BUNDLE_SIZE,
                block.col0 - block.col0 % BUNDLE_SIZE,
            )

    def bundle_count(self) -> int:
        """Bundles holding at least one expected tile."""
        inside, edge = self._bundle_blocks()
        return sum(grid.bundle_count(b) for b in inside) + len(edge)
