"""Value types shared by every module: tiles, bundles, extents, tiling schemes, status rows.

One notation everywhere: a tile is written ``L{level}/R{row}/C{col}`` (decimal) and a bundle
``L{level:02d}/R{row:04x}C{col:04x}`` (lower-case hex, at least four digits), as ArcGIS names them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, cast, get_type_hints

import numpy as np
import numpy.typing as npt

# Re-exported: the results of a run are models too (defined apart, without numpy).
from .results import LevelSummary as LevelSummary
from .results import Problem as Problem
from .results import StatusReport as StatusReport
from .results import percent
from .results import sum_levels as sum_levels

#: Tiles per bundle side: a bundle is a block of 128 x 128 tiles (``PacketSize``).
BUNDLE_SIZE = 128


class Extent(NamedTuple):
    """A rectangle in map units: ``xmin, ymin, xmax, ymax``."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    @property
    def is_empty(self) -> bool:
        """True when the rectangle has no area."""
        return not (self.xmax > self.xmin and self.ymax > self.ymin)


class Tile(NamedTuple):
    """A tile address; rows count downward from the tiling scheme's origin."""

    level: int
    row: int
    col: int

    def __str__(self) -> str:
        return f"L{self.level}/R{self.row}/C{self.col}"

    @property
    def address(self) -> str:
        """The tile as messages write it: ``L05/R1234/C5678`` (row and column in decimal)."""
        return f"L{self.level:02d}/R{self.row}/C{self.col}"


#: A bundle's file stem (from its row and column) and its label (from its level, row and column).
_NAME = "R{:04x}C{:04x}"
_LABEL = "L{:02d}/" + _NAME


class BundleKey(NamedTuple):
    """A bundle: the level and the top-left tile (row, col divisible by 128)."""

    level: int
    row: int
    col: int

    @property
    def name(self) -> str:
        """The bundle's file stem, ``R0080C0100`` (at least 4 hex digits, more when needed)."""
        return _NAME.format(self.row, self.col)

    @property
    def label(self) -> str:
        """The bundle as messages and the ``bundleName`` field write it, ``L05/R0080C0100``."""
        return _LABEL.format(*self)

    @staticmethod
    def labels(
        levels: npt.NDArray[np.int64], rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
    ) -> list[str]:
        """The :attr:`label` of many bundles given in columns, without an object per bundle."""
        return [
            _LABEL.format(level, row, col)
            for level, row, col in zip(levels.tolist(), rows.tolist(), cols.tolist(), strict=True)
        ]

    def __str__(self) -> str:
        return self.label

    def holds(self, row: int, col: int) -> bool:
        """Whether tile (``row``, ``col``) of the bundle's level lies in the bundle."""
        return self.row <= row < self.row + BUNDLE_SIZE and self.col <= col < self.col + BUNDLE_SIZE

    @classmethod
    def of_tile(cls, tile: Tile) -> BundleKey:
        """The bundle that holds ``tile``."""
        return cls(tile.level, tile.row - tile.row % BUNDLE_SIZE, tile.col - tile.col % BUNDLE_SIZE)


class TileRange(NamedTuple):
    """A half-open block of tiles of one level: ``row0 <= row < row1``, ``col0 <= col < col1``."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def is_empty(self) -> bool:
        """True when the range holds no tile."""
        return self.row1 <= self.row0 or self.col1 <= self.col0

    @property
    def tiles(self) -> int:
        """Number of tiles in the range (Python int: exact at any level)."""
        return 0 if self.is_empty else (self.row1 - self.row0) * (self.col1 - self.col0)

    @property
    def bundles(self) -> TileRange:
        """The bundles holding a tile of the range, as a range of bundle rows and columns
        (numbered in bundles, not tiles); empty for an empty range."""
        if self.is_empty:
            return TileRange(0, 0, 0, 0)
        return TileRange(
            self.row0 // BUNDLE_SIZE,
            (self.row1 - 1) // BUNDLE_SIZE + 1,
            self.col0 // BUNDLE_SIZE,
            (self.col1 - 1) // BUNDLE_SIZE + 1,
        )

    def intersect(self, other: TileRange) -> TileRange:
        """The tiles in both ranges (possibly empty)."""
        return TileRange(
            max(self.row0, other.row0),
            min(self.row1, other.row1),
            max(self.col0, other.col0),
            min(self.col1, other.col1),
        )


@dataclass(frozen=True)
class LOD:
    """One level of detail of a tiling scheme."""

    level: int
    scale: float
    resolution: float


@dataclass(frozen=True)
class SpatialReference:
    """A cache's spatial reference as the cache declares it (``WKID``, ``LatestWKID``, ``WKT``)."""

    wkid: int | None = None
    latest_wkid: int | None = None
    wkt: str | None = None

    def user_input(self) -> str | None:
        """A CRS string GDAL and pyproj accept: ``EPSG:n`` when known, else ``ESRI:n`` or WKT."""
        for code in (self.latest_wkid, self.wkid):
            if code is not None and 0 < code < 100000:
                return f"EPSG:{code}"
        if self.wkt:
            return self.wkt
        if self.wkid is not None:
            return f"ESRI:{self.wkid}"
        return None

    def __str__(self) -> str:
        if self.wkid is None and self.latest_wkid is None:
            return "WKT only" if self.wkt else "unknown"
        codes = [str(c) for c in (self.wkid, self.latest_wkid) if c is not None]
        return "WKID " + "/".join(dict.fromkeys(codes))


#: The CRSs of most caches, as :meth:`SpatialReference.user_input` writes them, which every PROJ
#: database holds (pyproj is a dependency): known without importing pyproj, which costs a
#: tenth of a second (Web Mercator, WGS 84, NAD83, ETRS89, World Mercator, the WGS 84 UTM zones).
PROJ_KNOWS = frozenset(
    [f"EPSG:{code}" for code in (3857, 4326, 4269, 4258, 3395)]
    + [f"EPSG:{base + zone}" for base in (32600, 32700) for zone in range(1, 61)]
)


@functools.lru_cache(maxsize=64)
def crs_known(text: str) -> bool:
    """Whether PROJ makes a CRS of ``text`` (``EPSG:n``, ``ESRI:n`` or WKT); pyproj is imported
    only for one not in :data:`PROJ_KNOWS`."""
    if text in PROJ_KNOWS:
        return True
    try:
        from pyproj import CRS

        CRS.from_user_input(text)
    except Exception:  # pyproj raises CRSError, and others for odd input
        return False
    return True


@dataclass(frozen=True)
class TilingScheme:
    """Where tiles are: origin, tile size, levels, spatial reference, storage."""

    spatial_reference: SpatialReference
    origin_x: float
    origin_y: float
    tile_cols: int
    tile_rows: int
    dpi: float
    lods: tuple[LOD, ...]
    tile_format: str = "PNG"
    storage_format: str = "esriMapCacheStorageModeCompactV2"
    packet_size: int = BUNDLE_SIZE

    def lod(self, level: int) -> LOD:
        """The LOD with this ``LevelID``; ``KeyError`` if the scheme has none."""
        for lod in self.lods:
            if lod.level == level:
                return lod
        raise KeyError(level)

    @property
    def levels(self) -> tuple[int, ...]:
        """The level IDs of all LODs, in the scheme's order."""
        return tuple(lod.level for lod in self.lods)


class BundleState(StrEnum):
    """The ``status`` field of a ``TaskStatus`` row."""

    COMPLETE = "COMPLETE"
    PARTIAL = "PARTIAL"
    EMPTY = "EMPTY"
    MISSING = "MISSING"
    CORRUPT = "CORRUPT"
    IN_PROGRESS = "IN_PROGRESS"


def percent_complete(present: npt.ArrayLike, expected: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """100 x present / expected, element by element; NaN where nothing is expected."""
    present = np.asarray(present, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 100.0 * present / expected, np.nan)


class BundleStatus(NamedTuple):
    """The status of one bundle: one ``TaskStatus`` row (its polygon given as a block of tiles).

    A named tuple: scans build millions of them, and columns are made from them with ``zip``.

    The one declaration of the row: :class:`RowBatch` has a column per field, made by the
    field's type (``int``, ``int | None``, ``float | None``, ``str``, :class:`BundleState`,
    :class:`TileRange`; a field of another type needs its kind of column added next to
    :class:`RowBatch`). A new field costs one line here (at the end, with a default: scans build
    rows positionally) and one :class:`~cachestatus.store.schema.Column` in
    :data:`~cachestatus.store.schema.TASK_STATUS_LAYER`.
    """

    key: BundleKey
    state: BundleState
    tiles_expected: int
    tiles_present: int
    tiles_stray: int
    tile_bytes: int
    file_bytes: int
    dead_bytes: int
    #: Modification time of the bundle file, seconds since the epoch, ``None`` when unknown.
    mtime: float | None
    #: The tiles the row's polygon covers: the bundle clipped to the level's tile-aligned extent.
    tiles: TileRange
    detail: str = ""
    #: Present tiles without content (``--blank``); ``None`` when not counted.
    tiles_blank: int | None = None

    @property
    def percent_complete(self) -> float | None:
        """100 x present / expected, ``None`` where nothing is expected."""
        return percent(self.tiles_present, self.tiles_expected)

    @property
    def modified(self) -> datetime | None:
        """The bundle file's modification time (UTC)."""
        return None if self.mtime is None else datetime.fromtimestamp(self.mtime, tz=UTC)


class _ColumnKind(NamedTuple):
    """How the values of a :class:`BundleStatus` field travel in a :class:`RowBatch` column."""

    #: The column's numpy type; ``None`` for text, kept as a list of ``str``.
    dtype: str | None
    #: What stands for ``None`` in the column.
    null: float | None = None
    #: The shape of one value (a :class:`TileRange` is four ints).
    shape: tuple[int, ...] = ()
    #: An item of the column back as the field's value.
    value: Callable[[Any], Any] = int

    def column(self, values: Sequence[Any]) -> Any:
        """The column of a field's values."""
        if self.dtype is None:
            return [str(v) for v in values]
        if self.null is not None:
            values = [self.null if v is None else v for v in values]
        return np.array(values, dtype=self.dtype).reshape(len(values), *self.shape)

    def concat(self, parts: Sequence[Any]) -> Any:
        """One column holding ``parts`` in order."""
        if self.dtype is None:
            return [item for part in parts for item in part]
        return np.concatenate(parts)

    def item(self, column: Any, i: int) -> Any:
        """Row ``i`` of the column as the field's value."""
        value = column[i]
        if self.null is not None and (value == self.null or value != value):  # NaN != NaN
            return None
        return self.value(value)


_INT = _ColumnKind("int64")
#: How a field travels in a :class:`RowBatch` column, by the field's type.
_COLUMN_OF_TYPE: dict[object, _ColumnKind] = {
    int: _INT,
    int | None: _ColumnKind("int64", null=-1),
    float | None: _ColumnKind("float64", null=math.nan, value=float),
    str: _ColumnKind(None, value=str),
    BundleState: _ColumnKind(None, value=BundleState),
    TileRange: _ColumnKind("int64", shape=(4,), value=lambda v: TileRange(*v.tolist())),
}
#: The :class:`BundleStatus` fields that are a :class:`RowBatch` column each, and how: all but
#: the key (three columns).
_FIELD_COLUMNS = {
    name: _COLUMN_OF_TYPE[kind]
    for name, kind in get_type_hints(BundleStatus).items()
    if name != "key"
}
#: The :class:`RowBatch` columns, in order.
_ROW_COLUMNS = {"level": _INT, "row": _INT, "col": _INT, **_FIELD_COLUMNS}


@dataclass(frozen=True)
class MissingAreaRecord:
    """One row of the ``MissingAreas`` table: the missing tiles of one level as one
    (multi)polygon in the cache's CRS.

    ``geometry`` is exactly the missing tiles when ``exact``; otherwise it holds every missing
    tile and more (the whole expected block of each file that misses tiles). ``tiles_missing``
    is exact either way.
    """

    level: int
    scale: float
    tiles_missing: int
    geometry: Any
    exact: bool = True


#: :attr:`Problem.kind` of a bundle that cannot be read or decoded at all.
CORRUPT = "corrupt"
#: :attr:`Problem.kind` of a tile whose storage is damaged (size prefix, bounds).
DAMAGED = "damaged"
#: :attr:`Problem.kind` of a bundle that changed while it was read (a caching job writing it).
IN_PROGRESS = "in-progress"
#: :attr:`Problem.kind` of a bundle beyond what a status store holds.
UNSUPPORTED = "unsupported"
#: :attr:`Problem.kind` of a file or folder named like a bundle, a tile or a level that is none
#: (a name that does not parse, off the grid, a second name of one bundle): not read.
BAD_NAME = "bad-name"
#: :attr:`Problem.kind` of tiles a table stores off the grid: not counted.
BAD_TILE = "bad-tile"
#: :attr:`Problem.kind` of a level whose runs cover more bundles than a scan lists: left out.
TOO_MANY_BUNDLES = "too-many-bundles"


class RowBatch:
    """``TaskStatus`` rows in columns: how rows travel from workers to the store.

    A column per :class:`BundleStatus` field, of the same name (the key gives three: ``level``,
    ``row``, ``col``): numpy arrays (``tiles``, each row's polygon as a block of tiles, has shape
    (n, 4): row0, row1, col0, col1), text columns are lists. A ``None`` in a row is -1 in its
    int64 column (``tiles_blank``: not counted) and NaN in a float64 one (``mtime``: unknown).
    Build one with :meth:`from_statuses`, read it back with :meth:`statuses`.
    """

    #: The column names, in order.
    COLUMNS: ClassVar[tuple[str, ...]] = tuple(_ROW_COLUMNS)

    def __init__(self, **columns: Any) -> None:
        if columns.keys() != _ROW_COLUMNS.keys():
            raise TypeError(f"RowBatch takes the columns {', '.join(_ROW_COLUMNS)}")
        self.__dict__.update(columns)

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            """A column, by name (see :attr:`COLUMNS`)."""

    def __len__(self) -> int:
        return len(self.state)

    @classmethod
    def from_statuses(cls, statuses: Sequence[BundleStatus]) -> RowBatch:
        """Columns of a list of rows."""
        values: dict[str, Sequence[Any]] = dict.fromkeys(BundleStatus._fields, ())
        if statuses:
            values = dict(zip(BundleStatus._fields, zip(*statuses, strict=True), strict=True))
        keys = values["key"]
        key = np.array(keys, dtype=np.int64).reshape(len(keys), 3)
        return cls(
            level=key[:, 0],
            row=key[:, 1],
            col=key[:, 2],
            **{name: kind.column(values[name]) for name, kind in _FIELD_COLUMNS.items()},
        )

    @classmethod
    def concat(cls, batches: Sequence[RowBatch]) -> RowBatch:
        """One batch holding the rows of ``batches`` in order."""
        return cls(
            **{
                name: kind.concat([getattr(b, name) for b in batches])
                for name, kind in _ROW_COLUMNS.items()
            },
        )

    def statuses(self) -> Iterator[BundleStatus]:
        """The rows as :class:`BundleStatus` objects."""
        columns = {name: getattr(self, name) for name in _FIELD_COLUMNS}
        for i in range(len(self)):
            yield BundleStatus(
                key=BundleKey(int(self.level[i]), int(self.row[i]), int(self.col[i])),
                **{name: kind.item(columns[name], i) for name, kind in _FIELD_COLUMNS.items()},
            )


class BundleSet:
    """A set of bundles of one level: a bitmap over the bundle grid of ``window`` (one bit a
    bundle of it), and beside it, for bundles outside the window (or all of them without one),
    (row, col) pairs packed into sorted int64, 8 bytes each.

    Scans add bundles in batches; membership is a bit, or a binary search. A Python set of
    tuples would cost about a hundred bytes a bundle, and sorted pairs 8 bytes and, while they
    are sorted in, several times that: 10^7 bundles of a level would take hundreds of MiB,
    their bitmap 1.25 MiB. A window whose grid has more than :attr:`MAX_BITS` bundles gets no
    bitmap.
    """

    #: Bundles of a window's grid given a bitmap, at most (32 MiB of bits).
    MAX_BITS = 2**28

    def __init__(self, window: TileRange | None = None) -> None:
        self._parts: list[npt.NDArray[np.int64]] = []
        self._keys: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._pending = 0
        # The bitmap's grid: its first bundle's top-left tile, its rows and columns of bundles.
        self._row0 = self._col0 = self._rows = self._cols = 0
        if window is not None and not window.is_empty:
            grid = window.bundles
            rows, cols = grid.row1 - grid.row0, grid.col1 - grid.col0
            if rows * cols <= self.MAX_BITS:
                self._row0, self._col0 = grid.row0 * BUNDLE_SIZE, grid.col0 * BUNDLE_SIZE
                self._rows, self._cols = rows, cols
        self._bits = np.zeros(-(-self._rows * self._cols // 8), dtype=np.uint8)
        self._set_bits = 0

    @staticmethod
    def _pack(rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return (np.asarray(rows, dtype=np.int64) << 32) | np.asarray(cols, dtype=np.int64)

    def _cells(
        self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        """Which bundles are in the bitmap's grid, and their cells there."""
        r = np.asarray(rows, dtype=np.int64) - self._row0
        c = np.asarray(cols, dtype=np.int64) - self._col0
        inside = (r >= 0) & (c >= 0) & (r % BUNDLE_SIZE == 0) & (c % BUNDLE_SIZE == 0)
        inside &= (r < self._rows * BUNDLE_SIZE) & (c < self._cols * BUNDLE_SIZE)
        cells = (r[inside] // BUNDLE_SIZE) * self._cols + c[inside] // BUNDLE_SIZE
        return inside, cells

    def _has(self, cells: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        bits = (self._bits[cells >> 3] >> (cells & 7).astype(np.uint8)) & 1
        return np.asarray(bits == 1, dtype=np.bool_)

    def add(self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]) -> None:
        """Add bundles given by their top-left rows and columns (those outside the bitmap are
        sorted in once as many are added as are in the set: they stay at 8 bytes a bundle)."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        inside, cells = self._cells(rows, cols)
        if len(cells):
            cells = np.unique(cells)
            cells = cells[~self._has(cells)]
            self._set_bits += len(cells)
            np.bitwise_or.at(self._bits, cells >> 3, np.left_shift(1, cells & 7).astype(np.uint8))
        if inside.all():
            return
        self._parts.append(self._pack(rows[~inside], cols[~inside]))
        self._pending += len(self._parts[-1])
        if self._pending > max(len(self._keys), 65_536):
            self._sorted()

    def _sorted(self) -> npt.NDArray[np.int64]:
        if self._parts:
            self._keys = np.unique(np.concatenate([self._keys, *self._parts]))
            self._parts, self._pending = [], 0
        return self._keys

    def __contains__(self, bundle: object) -> bool:
        row, col = cast(tuple[int, int], bundle)
        r, c = row - self._row0, col - self._col0
        # One bundle in plain ints: missing areas ask once per expected bundle.
        if (
            0 <= r < self._rows * BUNDLE_SIZE
            and 0 <= c < self._cols * BUNDLE_SIZE
            and r % BUNDLE_SIZE == 0 == c % BUNDLE_SIZE
        ):
            cell = (r // BUNDLE_SIZE) * self._cols + c // BUNDLE_SIZE
            return bool(int(self._bits[cell >> 3]) >> (cell & 7) & 1)
        keys = self._sorted()
        key = (row << 32) | col
        i = int(np.searchsorted(keys, key))
        return i < len(keys) and int(keys[i]) == key

    def __len__(self) -> int:
        return self._set_bits + len(self._sorted())

    def chunks(
        self, size: int = 2**18
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        """The bundles' top-left rows and columns, row by row, in pieces of whole rows of the
        bitmap of about ``size`` bundles (what a level holds is never unpacked whole: a piece
        of 2^18 bundles and what is worked out of it take about 12 MiB, of 2^20 about 50),
        then those outside it, sorted."""
        step = max(1, size // max(self._cols, 1))  # rows of the bitmap a piece
        for row in range(0, self._rows, step):
            first, after = row * self._cols, min(row + step, self._rows) * self._cols
            packed = self._bits[first // 8 : -(-after // 8)]
            if not packed.any():  # a level's grid is mostly empty where few bundles are
                continue
            skip = first % 8  # the piece's first bit in its first byte
            bits = np.unpackbits(packed, bitorder="little")
            cells = np.flatnonzero(bits[skip : skip + after - first]) + first
            rows, cols = np.divmod(cells, self._cols)
            yield rows * BUNDLE_SIZE + self._row0, cols * BUNDLE_SIZE + self._col0
        keys = self._sorted()
        yield keys >> 32, keys & 0xFFFFFFFF

    def runs(
        self, size: int = 2**18
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        """The bundles as runs side by side along a row: the runs' top row, first column and
        the column after their last bundle, row by row, in pieces as :meth:`chunks` gives them
        (a run never spans two pieces of the bitmap)."""
        for rows, cols in self.chunks(size):
            if not len(rows):
                continue
            new = np.r_[True, (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1] + BUNDLE_SIZE)]
            starts = np.flatnonzero(new)
            last = np.r_[starts[1:], len(rows)] - 1
            yield rows[starts], cols[starts], cols[last] + BUNDLE_SIZE
