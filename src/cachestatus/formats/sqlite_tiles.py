"""What MBTiles and GeoPackage share: tiles in an SQLite table, opened read-only.

The table holds ``(zoom_level, tile_column, tile_row, tile_data)``; tiles are reported in
virtual 128 x 128 bundles of the grid. One walk of the ``(zoom, column, row)`` index per level
gives its tiles as runs of rows (:class:`RunIndex`); with sizes, one indexed range query per
bundle reads each tile's length (``length(tile_data)``, from the record header without the
blob). The file is opened read-only and hardened (:mod:`.sqlite_db`).

Every value read from the file passes one validating function for its kind
(:func:`level_number`, :func:`grid_number`) where it enters. A tile whose address is not one of
its level's grid is listed as a problem, never counted, and the scan goes on.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from ..errors import CorruptBundle, InvalidCacheConfig, UsageError
from ..grid import RowT
from ..models import BAD_TILE, BUNDLE_SIZE, BundleKey, Problem, Tile
from .base import (
    BundleFile,
    BundleIndex,
    LevelListing,
    Run,
    SingleFileCache,
    StoredTile,
    run_here,
)
from .listed import BundleRows, KeysOnly, VirtualListing

if TYPE_CHECKING:
    from ..storage import ObjectStorage
from .sqlite_db import (
    TileDatabase,
    WorkLimitExceeded,
    open_read_only,
    quote_name,
    shown_value,
    unreadable,
)

#: Beyond this many stretches of columns to fetch, one query for the whole level is cheaper.
MAX_RANGE_QUERIES = 256

#: The highest zoom level read: a level of 2**30 x 2**30 tiles. Beyond it rows and columns
#: outgrow what a status holds (32-bit ``bundleRow``, ``bundleCol``); no real cache goes there.
MAX_LEVEL = 30

#: Tiles with a bad address listed one by one per level; the others are counted.
MAX_LISTED = 20
#: Distinct values of ``zoom_level`` read: more is not a tile table.
MAX_LEVEL_VALUES = 10_000


def level_number(value: object, highest: int = MAX_LEVEL) -> int | None:
    """A zoom level read from the file, or ``None`` when the value is not one: an integer (or a
    float without a fraction) from 0 to ``highest``. Text, blobs, NULL and fractions are not."""
    return grid_number(value, highest + 1)


def grid_number(value: object, size: int) -> int | None:
    """A tile column or row (or level) read from the file, or ``None`` when the value is not one
    of ``0 .. size - 1``: an integer, or a float without a fraction (SQLite compares 5.0 equal
    to 5, so range queries find it as tile 5). Never raises, whatever the type or size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < size else None
    if isinstance(value, float) and value.is_integer() and 0 <= value < size:
        return int(value)
    return None


def rows_to_runs(cols: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Tiles (column, row) as runs of consecutive rows in one column: (col, row0, row1), half-open.

    Duplicates (a table without a unique index may hold a tile twice) count once.
    """
    if not len(cols):
        return np.zeros((0, 3), dtype=np.int64)
    order = np.lexsort((rows, cols))
    cols, rows = cols[order], rows[order]
    keep = np.r_[True, (cols[1:] != cols[:-1]) | (rows[1:] != rows[:-1])]
    cols, rows = cols[keep], rows[keep]
    starts = np.flatnonzero(np.r_[True, (cols[1:] != cols[:-1]) | (rows[1:] != rows[:-1] + 1)])
    ends = np.r_[starts[1:], len(rows)]
    return np.column_stack([cols[starts], rows[starts], rows[ends - 1] + 1])


def as_int_table(found: list[tuple[Any, ...]], width: int) -> npt.NDArray[np.int64] | None:
    """Rows read from the file as an integer array of ``width`` columns, or ``None`` when a value
    is not an integer (a float, text, a blob, NULL): numpy would truncate or refuse it."""
    if not found:
        return np.zeros((0, width), dtype=np.int64)
    try:
        table = np.array(found)
    except (ValueError, TypeError, UnicodeError):  # numpy cannot even make strings of them
        return None
    return table.astype(np.int64) if table.dtype.kind == "i" and table.ndim == 2 else None


class RunIndex(BundleRows):
    """The stored tiles of one level as runs of rows, cut at bundle boundaries.

    A seeded cache stores whole blocks: each column is one run, and a level of millions of
    tiles is a few thousand runs. A bundle's part of it (its runs: col, row0, row1) is all that
    reading the bundle needs (:func:`presence`).
    """

    def __init__(self, level: int, runs: npt.NDArray[np.int64]) -> None:
        col, row0, row1 = runs[:, 0], runs[:, 1], runs[:, 2]
        first, last = row0 // BUNDLE_SIZE, (row1 - 1) // BUNDLE_SIZE
        pieces = last - first + 1 if len(runs) else np.zeros(0, dtype=np.int64)
        which = np.repeat(np.arange(len(runs)), pieces)
        step = np.arange(len(which)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        band = first[which] + step
        table = np.column_stack(
            [
                col[which],
                np.maximum(row0[which], band * BUNDLE_SIZE),
                np.minimum(row1[which], (band + 1) * BUNDLE_SIZE),
            ]
        ).reshape(-1, 3)
        super().__init__(level, table, np.column_stack([band, table[:, 0] // BUNDLE_SIZE]))


def presence(key: BundleKey, runs: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """The (128, 128) array of bundle ``key``: 1 where one of its ``runs`` (col, row0, row1,
    rows counted down) holds a tile."""
    found = np.zeros((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)
    for col, row0, row1 in runs.tolist():
        found[row0 - key.row : row1 - key.row, col - key.col] = 1
    return found


class BadTiles:
    """The tiles of one level (or of no level) whose address is not on the grid: the first
    :data:`MAX_LISTED` addresses as problems, the others counted."""

    def __init__(self, path: Path, level: int | None, grid_name: str) -> None:
        self.path, self.level, self.grid_name = path, level, grid_name
        self.problems: list[Problem] = []
        #: Tiles, and values of ``zoom_level``, beyond the listed ones.
        self.more = self.more_values = 0

    @property
    def _where(self) -> str:
        return f"{self.path.name}#" + (
            f"L{self.level:02d}" if self.level is not None else "zoom_level"
        )

    def add(self, what: str, count: int = 1) -> None:
        """``count`` tiles whose address is ``what`` (``tile_column 'abc'``)."""
        if len(self.problems) >= MAX_LISTED:
            self.more += count
            return
        tiles = "a tile" if count == 1 else f"{count:,} tiles"
        self.problems.append(
            Problem(self._where, BAD_TILE, f"{tiles} at {what}: off {self.grid_name}; not counted")
        )

    def listed(self) -> list[Problem]:
        """The problems, and one for what is beyond the listed ones."""
        found = list(self.problems)
        if self.more:
            found.append(
                Problem(
                    self._where,
                    BAD_TILE,
                    f"and {self.more:,} more tiles off {self.grid_name}; not counted",
                )
            )
        if self.more_values:
            found.append(
                Problem(
                    self._where,
                    BAD_TILE,
                    f"and the tiles at {self.more_values:,} more zoom_level values off "
                    f"{self.grid_name}; not counted",
                )
            )
        return found


#: Below this file size, walking the index in several processes costs more than it saves.
PARALLEL_BYTES = 32 * 1024 * 1024
#: Most stretches of columns a level of a larger file is walked in (spread over processes).
LISTING_TASKS = 32
#: Fewest columns in a stretch: a level of fewer is walked in one piece.
STRETCH_COLUMNS = 256
#: A stretch of one level's index to summarise: file, table, level, first and last column
#: (``None``: all of them).
SummaryTask = tuple[Path, str, int, int | None, int | None]
#: A column of a level as the index walk sums it up: column, tiles, first row, last row, sum
#: of the rows (an integer only when every row is one). Values as read: any type.
Summary = list[tuple[Any, ...]]


def column_summary(task: SummaryTask, db: TileDatabase | None = None) -> Summary:
    """(column, count, first row, last row, sum of rows) of each column of a stretch of a level:
    one walk of the (zoom, column, row) index in its own order, no sorting. Runs in a listing
    process too: without ``db`` it opens (and closes) its own connection.

    ``sum()`` is an integer only when every row of the column is one; it fails on rows so large
    that they overflow: then the rows of the level are all fetched and checked one by one
    (``None`` in place of the summary).

    Raises:
        InvalidCacheConfig: the file cannot be read, or its tile table never ends.
    """
    path, table, level, first, last = task
    sql = (
        "SELECT tile_column, count(*), min(tile_row), max(tile_row), sum(tile_row) "
        f"FROM {quote_name(table)} WHERE zoom_level = ?"
    )
    args: tuple[int, ...] = (level,)
    if first is not None and last is not None:
        sql, args = sql + " AND tile_column BETWEEN ? AND ?", (level, first, last)
    connection = open_read_only(path) if db is None else db
    try:
        return connection.rows(sql + " GROUP BY tile_column", args)
    except sqlite3.DatabaseError as exc:
        if "overflow" in str(exc) and not isinstance(exc, WorkLimitExceeded):
            return [(None, 0, None, None, None)]  # a row far off any grid: no summary
        raise unreadable(path, exc, f"the tile table {table!r}") from None
    finally:
        if db is None:
            connection.close()


def remote_sqlite(url: str, what: str) -> UsageError:
    """The refusal of an SQLite cache (``what``: its format) in object storage or over HTTP."""
    return UsageError(
        f"{url}: {what} is an SQLite database, which cannot be read from object storage or "
        "over HTTP; copy the file locally first (SQLite needs a file)"
    )


class SQLiteTileCache(SingleFileCache):
    """Base of the readers of tiles in an SQLite table.

    Subclasses read the file's definition (:meth:`_open`): they set :attr:`table`, the scheme,
    the extent, and the tiles at no level; and say how large each level's grid is
    (:meth:`level_size`). A definition that cannot be read closes the connection before the
    error goes up.
    """

    #: The tile table (or view).
    table: str = "tiles"
    #: True when rows count up from the bottom (MBTiles' TMS rows).
    tms_rows: ClassVar[bool] = False
    #: The grid, as messages about tiles off it name it.
    grid_name: str = "the grid"
    options: ClassVar[tuple[str, ...]] = ("sizes",)
    # One connection, with one query budget, serves every read.
    thread_safe = False
    # Tile reads (read_tile, presence) have a connection of their own, one query at a time.
    _tile_db: TileDatabase | None = None

    @classmethod
    def detect_remote(cls, storage: ObjectStorage) -> bool:
        """An object named with the format's suffix: recognised, to be refused by name
        (:meth:`open_remote`)."""
        return storage.location.key.lower().endswith(cls.suffix)

    @classmethod
    def open_remote(cls, storage: ObjectStorage, **options: Any) -> Self:
        """Refused: SQLite reads a file, not ranges of an object.

        Raises:
            UsageError: always, saying to copy the file locally.
        """
        raise remote_sqlite(storage.location.url, cls.name)

    def __init__(self, path: Path, *, sizes: bool = False) -> None:
        super().__init__(path)
        #: Read each tile's length (one range query a bundle); without, tiles are counted from
        #: the index and not sized.
        self.sizes = sizes
        self._tile_lock = threading.Lock()
        self._db: TileDatabase | None = None
        #: Tiles at values of ``zoom_level`` that are no level: listed with the first level.
        self._bad_levels: list[Problem] = []
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    @abstractmethod
    def _open(self) -> None:
        """Read the cache's definition from the file.

        Raises:
            InvalidCacheConfig: the file does not define a cache of the format.
        """

    def _connect(self) -> TileDatabase:
        if self._db is None:
            self._db = self._handles.enter_context(contextlib.closing(open_read_only(self.path)))
        return self._db

    def close(self) -> None:
        """Close the database."""
        super().close()
        self._db = self._tile_db = None

    def _tile_rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The rows of a query of :meth:`read_tile` or :meth:`presence`.

        Their connection is the reader's second one, used by one thread at a time (a lock):
        a query's budget is counted per connection, so the listing's connection is not shared,
        and a server that runs each request in a thread of its own would open a connection
        per request were there one per thread. A tile lookup is one seek of the table's
        index, microseconds: threads lose little waiting for it.

        Raises:
            CorruptBundle: the file cannot be opened or read.
        """
        with self._tile_lock:
            try:
                if self._tile_db is None:
                    opened = contextlib.closing(open_read_only(self.path))
                    self._tile_db = self._handles.enter_context(opened)
                return self._tile_db.rows(sql, args)
            except InvalidCacheConfig as exc:
                raise CorruptBundle(str(exc)) from None
            except sqlite3.DatabaseError as exc:
                raise CorruptBundle(f"the SQLite file cannot be read here ({exc})") from None

    def grid_size(self, level: int) -> tuple[int, int]:
        """Rows and columns of ``level``'s grid (:meth:`level_size`)."""
        cols, rows = self.level_size(level)
        return rows, cols

    def read_tile(self, level: int, row: int, col: int) -> bytes | None:
        """One indexed ``SELECT`` of the tile's ``tile_data`` (its row flipped for MBTiles).
        A ``tile_data`` that is neither a blob nor NULL (a number, text) is damage:
        :class:`CorruptBundle`."""
        if not self.holds_tile(level, row, col):
            return None
        found = self._tile_rows(
            f"SELECT tile_data FROM {quote_name(self.table)} "
            "WHERE zoom_level = ? AND tile_column = ? AND tile_row = ? LIMIT 1",
            (level, col, self._rows_to_xyz(level, row)),
        )
        data = found[0][0] if found else None
        if data is not None and not isinstance(data, bytes):
            raise CorruptBundle(
                f"tile {Tile(level, row, col)}: tile_data is {shown_value(data)}, not a blob of "
                "image bytes"
            )
        return data or None

    def presence(
        self, level: int, row: int, col: int, height: int, width: int
    ) -> npt.NDArray[np.bool_]:
        """One indexed range query over the window's tiles (of ``tile_data`` longer than 0)."""
        found, window = self.empty_window(level, row, col, height, width)
        if window.is_empty:
            return found
        ends = self._rows_to_xyz(level, window.row0), self._rows_to_xyz(level, window.row1 - 1)
        stored = self._tile_rows(
            f"SELECT tile_column, tile_row FROM {quote_name(self.table)} "
            "WHERE zoom_level = ? AND tile_column BETWEEN ? AND ? AND tile_row BETWEEN ? AND ? "
            "AND length(tile_data) > 0",
            (level, window.col0, window.col1 - 1, min(ends), max(ends)),
        )
        rows, cols = self.grid_size(level)
        for c, r in stored:
            column, down = grid_number(c, cols), grid_number(r, rows)
            if column is not None and down is not None:
                found[self._rows_to_xyz(level, down) - row, column - col] = True
        return found

    def _query(
        self, sql: str, args: tuple[Any, ...] = (), what: str = "one of its tables"
    ) -> list[tuple[Any, ...]]:
        """The rows of a query of the cache's definition or listing.

        Raises:
            InvalidCacheConfig: the file cannot be read, or ``what`` never ends.
        """
        try:
            return self._connect().rows(sql, args)
        except sqlite3.DatabaseError as exc:
            raise unreadable(self.path, exc, what) from None

    @property
    def _tile_table(self) -> str:
        return f"the tile table {self.table!r}"

    def level_size(self, level: int) -> tuple[int, int]:
        """Columns and rows of ``level``'s grid: a tile outside is not counted."""
        return 1 << level, 1 << level

    def _rows_to_xyz(self, level: int, rows: RowT) -> RowT:
        """Rows of ``level`` as the table counts them, counted down from the top (XYZ); and
        back, as the flip is its own inverse. MBTiles counts them up (TMS)."""
        return self.level_size(level)[1] - 1 - rows if self.tms_rows else rows

    def _level_values(self, highest: int, indexed: bool) -> tuple[list[int], BadTiles]:
        """The levels the tile table holds tiles of (0 to ``highest``), and its tiles at values
        of ``zoom_level`` that are not levels (``-1``, ``40``, ``'abc'``, NULL, ``2.5``).

        With an index led by ``zoom_level``, each next value is one seek of the index (in
        SQLite's order: NULL, numbers, text, blobs); else one walk of the table.

        Raises:
            InvalidCacheConfig: the table cannot be read, never ends, or holds more than
            :data:`MAX_LEVEL_VALUES` distinct ``zoom_level`` values.
        """
        table = quote_name(self.table)
        values: list[Any] = []
        if indexed:
            found = self._query(
                f"SELECT zoom_level FROM {table} ORDER BY zoom_level LIMIT 1", what=self._tile_table
            )
            while found and len(values) <= MAX_LEVEL_VALUES:
                values.append(found[0][0])
                found = self._query(
                    f"SELECT zoom_level FROM {table} WHERE "
                    + ("zoom_level IS NOT NULL" if found[0][0] is None else "zoom_level > ?")
                    + " ORDER BY zoom_level LIMIT 1",
                    () if found[0][0] is None else (found[0][0],),
                    what=self._tile_table,
                )
        else:
            try:
                for (value,) in self._connect().each(f"SELECT DISTINCT zoom_level FROM {table}"):
                    values.append(value)
                    if len(values) > MAX_LEVEL_VALUES:
                        break
            except sqlite3.DatabaseError as exc:
                raise unreadable(self.path, exc, self._tile_table) from None
        if len(values) > MAX_LEVEL_VALUES:
            raise InvalidCacheConfig(
                f"{self.path}: {self._tile_table} holds more than {MAX_LEVEL_VALUES:,} distinct "
                "zoom levels; it is not a tile table"
            )
        levels: set[int] = set()
        bad = BadTiles(self.path, None, self.grid_name)
        for value in values:
            level = level_number(value, highest)
            if level is not None:
                levels.add(level)
            elif len(bad.problems) < MAX_LISTED:
                ((count,),) = self._query(
                    f"SELECT count(*) FROM {table} WHERE zoom_level IS ?",
                    (value,),
                    what=self._tile_table,
                )
                bad.add(f"zoom_level {shown_value(value)}", count)
            else:
                bad.more_values += 1
        return sorted(levels), bad

    def list_level(self, level: int, run: Run = run_here) -> LevelListing:
        """The virtual bundles holding tiles, and the tiles of the level off its grid (with the
        first level, the tiles at no level of the grid). Without sizes, each bundle carries its
        runs of tiles.

        One query walks the (zoom, column, row) index in its own order and gives each column's
        count and first and last row: under a unique index, a column whose count spans its
        rows is one run, known without its rows. Only the other columns' rows are fetched. In a
        file large enough (:data:`PARALLEL_BYTES`), the walk is spread over ``run`` in
        stretches of columns.
        """
        bad = BadTiles(self.path, level, self.grid_name)
        runs = self._run_index(level, self._summary(level, run), bad)
        first = self.scheme.levels[:1] == (level,)
        problems = [*(self._bad_levels if first else []), *bad.listed()]
        source = KeysOnly(runs) if self.sizes else runs  # with sizes, bundles are queried
        return VirtualListing(level, str(self.path), problems, source)

    def count_bundles(self, level: int) -> int:
        """From the same runs as :meth:`list_level`."""
        return self.list_level(level).count

    def _summary(self, level: int, run: Run) -> Summary:
        """The column summary of ``level`` (:func:`column_summary`): one walk here, or in
        stretches of columns through a ``run`` that spreads them (not :func:`run_here`) when
        the file and the level are large enough to pay for it (:data:`PARALLEL_BYTES`,
        :data:`STRETCH_COLUMNS`)."""
        whole: SummaryTask = (self.path, self.table, level, None, None)
        if run is run_here or os.path.getsize(self.path) < PARALLEL_BYTES:
            return column_summary(whole, self._connect())
        table = quote_name(self.table)
        # The first and last column in the index's order (NULL first, text and blobs last): one
        # seek each. Stretches between them cover every column only when both are columns of
        # the grid; else the level is walked in one piece.
        ((low, high),) = self._query(
            f"SELECT (SELECT tile_column FROM {table} WHERE zoom_level = ? "
            "ORDER BY tile_column LIMIT 1), "
            f"(SELECT tile_column FROM {table} WHERE zoom_level = ? "
            "ORDER BY tile_column DESC LIMIT 1)",
            (level, level),
            what=self._tile_table,
        )
        width = self.level_size(level)[0]
        first, last = grid_number(low, width), grid_number(high, width)
        if first is None or last is None:
            return column_summary(whole, self._connect())
        stretches = min(LISTING_TASKS, (last - first + 1) // STRETCH_COLUMNS)
        if stretches <= 1:
            return column_summary(whole, self._connect())
        step = -(-(last - first + 1) // stretches)
        tasks = [
            (self.path, self.table, level, start, min(start + step - 1, last))
            for start in range(first, last + 1, step)
        ]
        return [column for part in run(column_summary, tasks) for column in part]

    def _run_index(self, level: int, summary: Summary, bad: BadTiles) -> RunIndex:
        """Runs from a level's column summary: whole columns as they are, the rows of the
        others fetched. A column that is not one of the grid's goes to ``bad``."""
        width, height = self.level_size(level)
        table = as_int_table(summary, 5)
        if table is not None:  # every value an integer: checked at once
            col, count, low, high, total = table.T
            on_grid = (col >= 0) & (col < width)
            for c, n in zip(col[~on_grid].tolist(), count[~on_grid].tolist(), strict=True):
                bad.add(f"tile_column {c}", n)
            col, count, low, high, total = table[on_grid].T
        else:  # some value is not an integer: one column at a time
            kept = []
            for c, n, lo, hi, tot in summary:
                if c is None and n == 0:  # the rows overflow a sum: fetch them all
                    return self._all_rows_index(level, bad)
                column = grid_number(c, width)
                if column is None:
                    bad.add(f"tile_column {shown_value(c)}", int(n))
                    continue
                ints = all(isinstance(v, int) for v in (lo, hi, tot))
                kept.append((column, n, lo, hi, tot) if ints else (column, n, -1, -1, -1))
            col, count, low, high, total = np.array(kept, dtype=np.int64).reshape(-1, 5).T
        # A whole column: its rows on the grid, as many as its span, summing as the span does
        # (a NULL row, a row of 2.5, cannot hide among them), under a unique index.
        whole = (
            (low >= 0)
            & (high < height)
            & (count == high - low + 1)
            & (total * 2 == (low + high) * count)
            & self._unique_tiles
        )
        ends = self._rows_to_xyz(level, low), self._rows_to_xyz(level, high)
        low, high = np.minimum(*ends), np.maximum(*ends)
        runs = np.column_stack([col[whole], low[whole], high[whole] + 1])
        gapped = self._rows_of(level, col[~whole], bad)
        return RunIndex(level, np.concatenate([runs, gapped]))

    def _all_rows_index(self, level: int, bad: BadTiles) -> RunIndex:
        """The level's runs from all its rows, each checked (when no summary can be made)."""
        found = self._query(
            f"SELECT tile_column, tile_row FROM {quote_name(self.table)} WHERE zoom_level = ?",
            (level,),
            what=self._tile_table,
        )
        width = self.level_size(level)[0]
        for c, _ in found:
            if grid_number(c, width) is None:
                bad.add(f"tile_column {shown_value(c)}")
        return RunIndex(level, self._checked_runs(level, found, None, bad))

    def _checked_runs(
        self,
        level: int,
        found: list[tuple[Any, ...]],
        columns: npt.NDArray[np.int64] | None,
        bad: BadTiles,
    ) -> npt.NDArray[np.int64]:
        """Runs of the tiles ``(tile_column, tile_row)`` read from the file, each address
        checked: a tile in one of ``columns`` (all: ``None``) whose row is not on the grid goes
        to ``bad``; a tile whose column is not on it went there with its column."""
        width, height = self.level_size(level)
        wanted = None if columns is None else set(columns.tolist())
        pairs = as_int_table(found, 2)
        if pairs is None:
            checked = []
            for c, r in found:
                column = grid_number(c, width)
                if column is None:
                    continue
                row = grid_number(r, height)
                if row is None:
                    if wanted is None or column in wanted:
                        bad.add(f"tile_column {column}, tile_row {shown_value(r)}")
                    continue
                checked.append((column, row))
            pairs = np.array(checked, dtype=np.int64).reshape(-1, 2)
        else:
            on_grid = (pairs[:, 0] >= 0) & (pairs[:, 0] < width)
            pairs = pairs[on_grid]
            fine = (pairs[:, 1] >= 0) & (pairs[:, 1] < height)
            for c, r in pairs[~fine].tolist():
                if wanted is None or c in wanted:
                    bad.add(f"tile_column {c}, tile_row {r}")
            pairs = pairs[fine]
        if columns is not None:
            pairs = pairs[np.isin(pairs[:, 0], columns)]
        return rows_to_runs(pairs[:, 0], self._rows_to_xyz(level, pairs[:, 1]))

    def _rows_of(
        self, level: int, columns: npt.NDArray[np.int64], bad: BadTiles
    ) -> npt.NDArray[np.int64]:
        """The runs of the stored tiles in ``columns``: one range query per stretch of
        neighbouring columns, or one query for the level when they are too scattered."""
        if not len(columns):
            return np.zeros((0, 3), dtype=np.int64)
        breaks = np.flatnonzero(np.diff(columns) != 1) + 1
        firsts, lasts = columns[np.r_[0, breaks]], columns[np.r_[breaks - 1, len(columns) - 1]]
        select = f"SELECT tile_column, tile_row FROM {quote_name(self.table)} WHERE zoom_level = ?"
        if len(firsts) > MAX_RANGE_QUERIES:
            found = self._query(select, (level,), what=self._tile_table)
        else:
            found = [
                row
                for first, last in zip(firsts.tolist(), lasts.tolist(), strict=True)
                for row in self._query(
                    select + " AND tile_column BETWEEN ? AND ?",
                    (level, first, last),
                    what=self._tile_table,
                )
            ]
        return self._checked_runs(level, found, columns, bad)

    @functools.cached_property
    def _unique_tiles(self) -> bool:
        """Whether a unique index on (zoom_level, tile_column, tile_row) guards the table: then
        a bundle with 16,384 rows holds every one of its tiles."""
        wanted = {"zoom_level", "tile_column", "tile_row"}
        return any(unique and set(columns) == wanted for columns, unique in self._indexes)

    @functools.cached_property
    def _indexes(self) -> list[tuple[list[str], bool]]:
        """The tile table's indexes: their columns in order, and whether each is unique (none
        for a view)."""
        found = []
        try:
            for _, name, unique, *_ in self._query(f"PRAGMA index_list({quote_name(self.table)})"):
                info = self._query(f"PRAGMA index_info({quote_name(str(name))})")
                found.append(([str(c[2]) for c in sorted(info)], bool(unique)))
        except InvalidCacheConfig:
            pass
        return found

    @property
    def _zoom_indexed(self) -> bool:
        """Whether an index led by ``zoom_level`` lets each level be found by one seek."""
        return any(columns[:1] == ["zoom_level"] for columns, _ in self._indexes)

    def _bundle_query(self, key: BundleKey, value: str) -> Iterator[tuple[Any, ...]]:
        """``(tile_column, tile_row, value)`` of the stored tiles of one bundle: an indexed
        range query."""
        last = min(key.row + BUNDLE_SIZE, self.level_size(key.level)[1]) - 1
        ends = self._rows_to_xyz(key.level, key.row), self._rows_to_xyz(key.level, last)
        return self._connect().each(
            f"SELECT tile_column, tile_row, {value} FROM {quote_name(self.table)} "
            "WHERE zoom_level = ? AND tile_column BETWEEN ? AND ? AND tile_row BETWEEN ? AND ?",
            (key.level, key.col, key.col + BUNDLE_SIZE - 1, min(ends), max(ends)),
        )

    def _tile_of(self, key: BundleKey, col: object, row: object) -> tuple[int, int] | None:
        """The (row, col) of a tile of bundle ``key`` read from the file, rows counted down;
        ``None`` when the address is not one of the grid's (listed with the level)."""
        width, height = self.level_size(key.level)
        column, found = grid_number(col, width), grid_number(row, height)
        if column is None or found is None:
            return None
        down = self._rows_to_xyz(key.level, found)
        return (down, column) if key.holds(down, column) else None

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """The tiles of one bundle: from its runs, or with :attr:`sizes` from one indexed range
        query that reads each tile's length."""
        key = bundle.key
        if not self.sizes:
            found = presence(key, bundle.payload)
            return BundleIndex(found, int(np.count_nonzero(found)), 0, 0, 0, None)
        sizes = np.zeros((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)
        try:
            for col, row, length in self._bundle_query(key, "ifnull(length(tile_data), 0)"):
                tile = self._tile_of(key, col, row)
                if tile is not None and isinstance(length, int) and length >= 0:
                    sizes[tile[0] - key.row, tile[1] - key.col] = length
        except sqlite3.DatabaseError as exc:
            raise CorruptBundle(f"the SQLite file cannot be read here ({exc})") from None
        return BundleIndex(sizes, int(np.count_nonzero(sizes)), int(sizes.sum()), 0, 0, None)

    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tiles and their blobs, in the table's order. A ``tile_data`` that is
        not a blob (a number, text) is a damaged tile."""
        key = bundle.key
        try:
            for col, row, data in self._bundle_query(key, "tile_data"):
                tile = self._tile_of(key, col, row)
                if tile is None:
                    continue
                if data is None or isinstance(data, bytes):
                    yield StoredTile(*tile, data or b"")
                else:
                    yield StoredTile(
                        *tile, b"", f"tile_data is {shown_value(data)}, not a blob of image bytes"
                    )
        except sqlite3.DatabaseError as exc:
            raise CorruptBundle(f"the SQLite file cannot be read here ({exc})") from None
