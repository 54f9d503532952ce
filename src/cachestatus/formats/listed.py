"""Readers whose listing already holds everything a status needs: tile files, PMTiles entries.

They give, per level, every stored tile as (row, col, size); tiles are grouped into virtual
128 x 128 bundles and "reading" a bundle is a lookup, in the calling process.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from ..models import BUNDLE_SIZE, BundleKey, Problem
from .base import BundleFile, BundleIndex, CacheReader


class BundleRows:
    """The rows of a table grouped by the virtual bundle each falls in, bundles in row order.

    Args:
        level: the level of the bundles.
        table: rows of any width.
        bundle_row: each row's bundle row (tile row // 128).
        bundle_col: each row's bundle column (tile column // 128).
    """

    def __init__(
        self,
        level: int,
        table: npt.NDArray[np.int64],
        bundle_row: npt.NDArray[np.int64],
        bundle_col: npt.NDArray[np.int64],
    ) -> None:
        keys = (bundle_row << 32) | bundle_col
        order = np.argsort(keys)  # the rows of a bundle side by side, in any order
        self.level = level
        self.table, keys = table[order], keys[order]
        #: Where each bundle's rows start in :attr:`table`.
        self.starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1][: len(keys)]
        self._keys = keys[self.starts]
        self._ends = np.r_[self.starts[1:], len(self.table)]

    def bundles(self) -> Iterator[BundleKey]:
        """The bundles holding rows, row by row."""
        for key in self._keys.tolist():
            yield BundleKey(self.level, (key >> 32) * BUNDLE_SIZE, (key & 0xFFFFFFFF) * BUNDLE_SIZE)

    def rows(self, key: BundleKey) -> npt.NDArray[np.int64]:
        """The rows of one bundle (none when it holds none)."""
        packed = (key.row // BUNDLE_SIZE) << 32 | key.col // BUNDLE_SIZE
        i = int(np.searchsorted(self._keys, packed))
        if i < len(self._keys) and self._keys[i] == packed:
            return self.table[self.starts[i] : self._ends[i]]
        return self.table[:0]


class Grouped(BundleRows):
    """Tiles of one level (row, col, size) grouped into virtual bundles."""

    def __init__(
        self, level: int, tiles: list[tuple[int, int, int]] | npt.NDArray[np.int64]
    ) -> None:
        table = np.asarray(tiles, dtype=np.int64).reshape(-1, 3)
        super().__init__(level, table, table[:, 0] // BUNDLE_SIZE, table[:, 1] // BUNDLE_SIZE)

    def sizes(self, key: BundleKey) -> npt.NDArray[np.uint64]:
        """The (128, 128) tile sizes of one bundle (0 where no tile)."""
        part = self.rows(key)
        sizes = np.zeros((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)
        sizes[part[:, 0] - key.row, part[:, 1] - key.col] = part[:, 2]
        return sizes


class ListedTiles(CacheReader):
    """Listing, grouping and reading for the caches of one file per tile."""

    parallel = False

    def _level_tiles(self, level: int) -> list[tuple[int, int, int]] | npt.NDArray[np.int64]:
        """Every stored tile of ``level`` as (row, col, size in bytes)."""
        raise NotImplementedError

    def _grouped(self, level: int) -> Grouped:
        # Every level listed once and kept (24 bytes a tile): a scan asks for each level while it
        # counts, lists and reads bundles, in that order.
        cache: dict[int, Grouped] = self.__dict__.setdefault("_groups", {})
        if level not in cache:
            cache[level] = Grouped(level, self._level_tiles(level))
        return cache[level]

    def _listing_problems(self, level: int) -> list[Problem]:
        """What the listing of ``level`` found that is not a tile (after :meth:`_grouped`)."""
        return []

    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """Virtual bundles holding tile files, after the listing's problems."""
        grouped = self._grouped(level)
        yield from self._listing_problems(level)
        for key in grouped.bundles():
            yield BundleFile(key, f"{self.path}#{key.label}")

    def count_bundles(self, level: int) -> int:
        """From the same listing."""
        return sum(1 for _ in self._grouped(level).bundles())

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """From the listing: sizes of the tile files of the bundle."""
        sizes = self._grouped(bundle.key.level).sizes(bundle.key)
        tile_bytes = int(sizes.sum()) if self.sizes else 0
        return BundleIndex(sizes, int(np.count_nonzero(sizes)), tile_bytes, 0, 0, None)
