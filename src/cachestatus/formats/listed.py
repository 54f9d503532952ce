"""Listings of virtual bundles, for the formats without bundle files (tile files, SQLite tables,
PMTiles directories).

Such a listing gives, per level, every stored tile (or run of tiles); tiles are grouped into
virtual 128 x 128 bundles, and each listed bundle carries its part of the listing
(:attr:`~.base.BundleFile.payload`): reading it is a lookup in what it carries, in any process.
"""

from __future__ import annotations

import itertools
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from ..models import BUNDLE_SIZE, BundleKey, Problem
from .base import BundleFile, BundleIndex, CacheReader, LevelListing, Run, run_here


class BundleRows:
    """The rows of a table grouped by the virtual bundle each falls in, bundles in row order.

    Args:
        level: the level of the bundles.
        table: rows of any width.
        bundles: each row's bundle row and column (tile row and column // 128), two columns.
    """

    def __init__(
        self, level: int, table: npt.NDArray[np.int64], bundles: npt.NDArray[np.int64]
    ) -> None:
        keys = (bundles[:, 0] << 32) | bundles[:, 1]
        order = np.argsort(keys)  # the rows of a bundle side by side, in any order
        self.level = level
        self.table, keys = table[order], keys[order]
        #: Where each bundle's rows start in :attr:`table`.
        self.starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1][: len(keys)]
        self._keys = keys[self.starts]

    def count(self) -> int:
        """How many bundles hold rows."""
        return len(self._keys)

    def bundles(self) -> Iterator[BundleKey]:
        """The bundles holding rows, row by row."""
        for key in self._keys.tolist():
            yield BundleKey(self.level, (key >> 32) * BUNDLE_SIZE, (key & 0xFFFFFFFF) * BUNDLE_SIZE)

    def parts(self) -> Iterator[tuple[BundleKey, npt.NDArray[np.int64]]]:
        """The bundles holding rows, row by row, each with its rows."""
        ends = np.r_[self.starts[1:], len(self.table)][: len(self.starts)].tolist()
        for key, start, end in zip(self.bundles(), self.starts.tolist(), ends, strict=True):
            yield key, self.table[start:end]

    def distinct(self, column: int) -> Iterator[list[int]]:
        """The distinct values of ``column`` in each bundle's rows, bundle by bundle as
        :meth:`parts` gives them (found for all bundles at once)."""
        bundle = np.repeat(np.arange(self.count()), np.diff(np.r_[self.starts, len(self.table)]))
        value = self.table[:, column]
        order = np.lexsort((value, bundle))
        bundle, value = bundle[order], value[order]
        first = np.ones(len(value), dtype=bool)
        first[1:] = (bundle[1:] != bundle[:-1]) | (value[1:] != value[:-1])
        values = value[first].tolist()
        ends = np.searchsorted(bundle[first], np.arange(self.count()), side="right").tolist()
        for start, end in itertools.pairwise([0, *ends]):
            yield values[start:end]


class BundleSource(Protocol):
    """The bundles of a level's listing, each with what reading it needs."""

    def count(self) -> int:
        """How many bundles :meth:`parts` yields, or about."""
        ...

    def parts(self) -> Iterator[tuple[BundleKey, Any]]:
        """Each bundle, and its payload."""
        ...


class KeysOnly:
    """The bundles of a source without their payloads: for a reader that reads each bundle
    from the file itself (an SQLite cache read with sizes)."""

    def __init__(self, source: BundleSource) -> None:
        self.source = source

    def count(self) -> int:
        """The source's count."""
        return self.source.count()

    def parts(self) -> Iterator[tuple[BundleKey, None]]:
        """The source's bundles, each with ``None``."""
        for key, _ in self.source.parts():
            yield key, None


class NoBundles:
    """The source of a level whose bundles are left out (its listing says why)."""

    def count(self) -> int:
        """None."""
        return 0

    def parts(self) -> Iterator[tuple[BundleKey, None]]:
        """Nothing."""
        return iter(())


class VirtualListing(LevelListing):
    """The listing of a level of virtual bundles: its problems, then the bundles of ``source``,
    each named ``{where}#L05R0080C0000`` and carrying its payload."""

    def __init__(
        self, level: int, where: str, problems: list[Problem], source: BundleSource
    ) -> None:
        self.level, self.where, self.problems, self.source = level, where, problems, source

    @property
    def count(self) -> int:
        """From the source, without making the bundles."""
        return self.source.count()

    def __iter__(self) -> Iterator[BundleFile | Problem]:
        """The problems, then the bundles."""
        yield from self.problems
        for key, payload in self.source.parts():
            yield BundleFile(key, f"{self.where}#{key.label}", payload=payload)


class Grouped(BundleRows):
    """Tiles of one level (row, col, size) grouped into virtual bundles."""

    def __init__(
        self, level: int, tiles: list[tuple[int, int, int]] | npt.NDArray[np.int64]
    ) -> None:
        table = np.asarray(tiles, dtype=np.int64).reshape(-1, 3)
        super().__init__(level, table, table[:, :2] // BUNDLE_SIZE)


def tile_sizes(key: BundleKey, tiles: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """The (128, 128) tile sizes of bundle ``key`` from its tiles (row, col, size); 0 where
    no tile."""
    sizes = np.zeros((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)
    sizes[tiles[:, 0] - key.row, tiles[:, 1] - key.col] = tiles[:, 2]
    return sizes


class ListedTiles(CacheReader):
    """Reading for the caches of one file per tile: a bundle's payload holds its tiles (row,
    col, size) as ``payload.tiles``. Subclasses list a level (:meth:`list_level`)."""

    parallel = False
    options: ClassVar[tuple[str, ...]] = ("sizes",)

    def __init__(self, path: Path, *, sizes: bool = False) -> None:
        super().__init__(path)
        #: Read each tile file's size (a stat each); without, tiles are counted, not sized. In
        #: object storage sizes come free with the listing: always read.
        self.sizes = sizes or self.location is not None

    @abstractmethod
    def list_level(self, level: int, run: Run = run_here) -> LevelListing:
        """Every tile file of ``level``, grouped into virtual bundles."""

    # These from list_level here, not from a bundle-file reader later in a subclass's MRO (an
    # exploded cache is an ArcGIS folder cache too).
    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """Virtual bundles holding tile files, after the listing's problems."""
        return iter(self.list_level(level))

    def count_bundles(self, level: int) -> int:
        """From the same listing."""
        return self.list_level(level).count

    def read_ahead(self, bundles: Sequence[BundleFile]) -> Iterator[BundleFile]:
        """As they are: the listing holds what reading them needs (here too, not a bundle-file
        reader's later in a subclass's MRO)."""
        return iter(bundles)

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """From the listing: sizes of the tile files of the bundle."""
        sizes = tile_sizes(bundle.key, bundle.payload.tiles)
        tile_bytes = int(sizes.sum()) if self.sizes else 0
        return BundleIndex(sizes, int(np.count_nonzero(sizes)), tile_bytes, 0, 0, None)
