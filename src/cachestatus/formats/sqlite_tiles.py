"""What MBTiles and GeoPackage share: tiles in an SQLite table, opened read-only.

The table holds ``(zoom_level, tile_column, tile_row, tile_data)``; tiles are reported in
virtual 128 x 128 bundles of the grid. One walk of the ``(zoom, column, row)`` index per level
gives its tiles as runs of rows (:class:`RunIndex`); with sizes, one indexed range query per
bundle reads each tile's length (``length(tile_data)``, from the record header without the
blob). The file is opened through an SQLite ``mode=ro`` URI: no journal, no WAL, nothing
written.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from .. import grid
from ..errors import CorruptBundle, InvalidCacheConfig
from ..models import BUNDLE_SIZE, BundleKey, Problem
from ..parallel import map_in_processes
from .base import BundleFile, BundleIndex, SingleFileCache, StoredTile
from .listed import BundleRows

#: Beyond this many stretches of columns to fetch, one query for the whole level is cheaper.
MAX_RANGE_QUERIES = 256

#: Byte 18 of an SQLite file: its write version, 2 in write-ahead-log (WAL) mode.
_WRITE_VERSION = 18
_WAL = 2


def _in_wal_mode(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            header = f.read(_WRITE_VERSION + 1)
    except OSError:
        return False
    return len(header) > _WRITE_VERSION and header[_WRITE_VERSION] == _WAL


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to an SQLite file (``mode=ro`` URI) that leaves its folder as it is.

    A database in WAL mode opened read-only would create ``-wal`` and ``-shm`` files beside it
    (and leave them): with no ``-wal`` file there, no writer is at work and the file holds all
    its content, so it is opened ``immutable`` instead, which creates nothing.

    Raises:
        InvalidCacheConfig: the file cannot be opened.
    """
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    if _in_wal_mode(path) and not Path(f"{path}-wal").exists():
        uri += "&immutable=1"
    try:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        raise InvalidCacheConfig(f"{path}: cannot be opened as SQLite ({exc})") from None


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


class RunIndex(BundleRows):
    """The stored tiles of one level as runs of rows, cut at bundle boundaries.

    A seeded cache stores whole blocks: each column is one run, and a level of millions of
    tiles is a few thousand runs. Bundles' tile counts are sums of run lengths; a bundle's
    presence is its runs painted into a 128 x 128 array.
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
        super().__init__(level, table, band, table[:, 0] // BUNDLE_SIZE)
        lengths = self.table[:, 2] - self.table[:, 1]
        self._counts = np.add.reduceat(lengths, self.starts) if len(lengths) else lengths

    def counts(self) -> dict[BundleKey, int]:
        """Every bundle holding tiles, row by row, with its number of tiles."""
        return dict(zip(self.bundles(), self._counts.tolist(), strict=True))

    def presence(self, key: BundleKey) -> npt.NDArray[np.uint64]:
        """The (128, 128) array of a bundle: 1 where a tile is stored."""
        found = np.zeros((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)
        for col, row0, row1 in self.rows(key).tolist():
            found[row0 - key.row : row1 - key.row, col - key.col] = 1
        return found


#: Below this file size, walking the index in several processes costs more than it saves.
PARALLEL_BYTES = 32 * 1024 * 1024
#: A stretch of one level's index to summarise: file, table, level, first and last column
#: (``None``: all of them).
SummaryTask = tuple[Path, str, int, int | None, int | None]


def column_summary(
    task: SummaryTask, db: sqlite3.Connection | None = None
) -> npt.NDArray[np.int64]:
    """(column, count, first row, last row) of each column of a stretch of a level: one walk of
    the (zoom, column, row) index in its own order, no sorting. Runs in a listing process too:
    without ``db`` it opens (and closes) its own connection.

    Raises:
        InvalidCacheConfig: the file cannot be read.
    """
    path, table, level, first, last = task
    sql = (
        "SELECT tile_column, count(*), min(tile_row), max(tile_row) "
        f'FROM "{table}" WHERE zoom_level = ?'
    )
    args: tuple[int, ...] = (level,)
    if first is not None and last is not None:
        sql, args = sql + " AND tile_column BETWEEN ? AND ?", (level, first, last)
    own = db is None
    connection = open_read_only(path) if db is None else db
    try:
        found = connection.execute(sql + " GROUP BY tile_column", args).fetchall()
    except sqlite3.DatabaseError as exc:
        raise InvalidCacheConfig(f"{path}: not a readable SQLite file ({exc})") from None
    finally:
        if own:
            connection.close()
    return np.array(found, dtype=np.int64).reshape(-1, 4)


class SQLiteTileCache(SingleFileCache):
    """Base of the readers of tiles in an SQLite table.

    Subclasses set :attr:`table` and :attr:`tms_rows` (rows counted up from the bottom) while
    they open the file.
    """

    #: The tile table (or view).
    table: str = "tiles"
    #: True when rows count up from the bottom (MBTiles' TMS rows).
    tms_rows: bool = False

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_read_only(self.path)
        return self._db

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connect().execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise InvalidCacheConfig(f"{self.path}: not a readable SQLite file ({exc})") from None

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_db": None}

    def _runs(self, level: int) -> RunIndex:
        """The level's stored tiles as runs, kept (a scan asks for each level while it counts,
        lists and reads bundles).

        One query walks the (zoom, column, row) index in its own order and gives each column's
        count and first and last row: under a unique index, a column whose count spans its
        rows is one run, known without its rows. Only the other columns' rows are fetched.
        """
        cache: dict[int, RunIndex] = self.__dict__.setdefault("_run_cache", {})
        if level not in cache:
            summary = column_summary((self.path, self.table, level, None, None), self._connect())
            cache[level] = self._run_index(level, summary)
        return cache[level]

    def prefetch(self, levels: list[int]) -> None:
        """Walk the index of ``levels`` in :attr:`workers` processes, each a stretch of columns,
        when the file is large enough to pay for starting them."""
        cache: dict[int, RunIndex] = self.__dict__.setdefault("_run_cache", {})
        todo = [level for level in levels if level not in cache]
        if self.workers <= 1 or not todo or os.path.getsize(self.path) < PARALLEL_BYTES:
            return  # each level is walked here when it is first asked for
        tasks: list[SummaryTask] = []
        for level in todo:
            # Two subqueries: SQLite seeks the index for a lone min() or max(), not for both.
            ((low, high),) = self._query(
                f'SELECT (SELECT min(tile_column) FROM "{self.table}" WHERE zoom_level = ?), '
                f'(SELECT max(tile_column) FROM "{self.table}" WHERE zoom_level = ?)',
                (level, level),
            )
            if low is None:
                cache[level] = self._run_index(level, np.zeros((0, 4), dtype=np.int64))
                continue
            step = -(-(high - low + 1) // (2 * self.workers))
            tasks += [
                (self.path, self.table, level, first, min(first + step - 1, high))
                for first in range(low, high + 1, step)
            ]
        parts: dict[int, list[npt.NDArray[np.int64]]] = {}
        for task, summary in zip(
            tasks, map_in_processes(column_summary, tasks, self.workers), strict=True
        ):
            parts.setdefault(task[2], []).append(summary)
        for level, found in parts.items():
            cache[level] = self._run_index(level, np.concatenate(found))

    def _run_index(self, level: int, summary: npt.NDArray[np.int64]) -> RunIndex:
        """Runs from a level's column summary: whole columns as they are, the rows of the
        others fetched."""
        col, count, low, high = summary.T
        whole = (count == high - low + 1) & self._unique_tiles
        top = (1 << level) - 1
        if self.tms_rows:  # TMS rows count up: flip the run
            low, high = top - high, top - low
        runs = np.column_stack([col[whole], low[whole], high[whole] + 1])
        gapped = self._rows_of(level, col[~whole])
        return RunIndex(level, np.concatenate([runs, gapped]))

    def _rows_of(self, level: int, columns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The runs of the stored tiles in ``columns``: one range query per stretch of
        neighbouring columns, or one query for the level when they are too scattered."""
        if not len(columns):
            return np.zeros((0, 3), dtype=np.int64)
        breaks = np.flatnonzero(np.diff(columns) != 1) + 1
        firsts, lasts = columns[np.r_[0, breaks]], columns[np.r_[breaks - 1, len(columns) - 1]]
        select = f'SELECT tile_column, tile_row FROM "{self.table}" WHERE zoom_level = ?'
        if len(firsts) > MAX_RANGE_QUERIES:
            found = np.array(self._query(select, (level,)), dtype=np.int64).reshape(-1, 2)
            found = found[np.isin(found[:, 0], columns)]
        else:
            found = np.array(
                [
                    row
                    for first, last in zip(firsts.tolist(), lasts.tolist(), strict=True)
                    for row in self._query(
                        select + " AND tile_column BETWEEN ? AND ?", (level, first, last)
                    )
                ],
                dtype=np.int64,
            ).reshape(-1, 2)
        rows = grid.tms_row(level, found[:, 1]) if self.tms_rows else found[:, 1]
        return rows_to_runs(found[:, 0], rows)

    @functools.cached_property
    def _unique_tiles(self) -> bool:
        """Whether a unique index on (zoom_level, tile_column, tile_row) guards the table: then
        a bundle with 16,384 rows holds every one of its tiles."""
        wanted = {"zoom_level", "tile_column", "tile_row"}
        try:
            for _, name, unique, *_ in self._query(f'PRAGMA index_list("{self.table}")'):
                columns = {str(c[2]) for c in self._query(f'PRAGMA index_info("{name}")')}
                if unique and columns == wanted:
                    return True
        except InvalidCacheConfig:
            pass
        return False

    def count_bundles(self, level: int) -> int:
        """From the same runs as :meth:`list_bundles`."""
        return len(self._runs(level).counts())

    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """The virtual bundles holding tiles."""
        for key in self._runs(level).counts():
            yield BundleFile(key, f"{self.path}#{key.label}")

    def _bundle_query(self, key: BundleKey, value: str) -> sqlite3.Cursor:
        """``(tile_column, tile_row, value)`` of the stored tiles of one bundle: an indexed
        range query."""
        low, high = key.row, key.row + BUNDLE_SIZE - 1
        if self.tms_rows:
            low = grid.tms_row(key.level, min(high, (1 << key.level) - 1))
            high = grid.tms_row(key.level, key.row)
        return self._connect().execute(
            f'SELECT tile_column, tile_row, {value} FROM "{self.table}" '
            "WHERE zoom_level = ? AND tile_column BETWEEN ? AND ? AND tile_row BETWEEN ? AND ?",
            (key.level, key.col, key.col + BUNDLE_SIZE - 1, low, high),
        )

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """The tiles of one bundle: from the level's runs, or with :attr:`sizes` from one
        indexed range query that reads each tile's length."""
        key = bundle.key
        if not self.sizes:
            presence = self._runs(key.level).presence(key)
            return BundleIndex(presence, int(np.count_nonzero(presence)), 0, 0, 0, None)
        try:
            found = self._bundle_query(key, "ifnull(length(tile_data), 0)").fetchall()
        except sqlite3.DatabaseError as exc:
            raise CorruptBundle(f"the SQLite file cannot be read here ({exc})") from None
        sizes = np.zeros((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)
        if found:
            table = np.array(found, dtype=np.int64)
            rows = grid.tms_row(key.level, table[:, 1]) if self.tms_rows else table[:, 1]
            sizes[rows - key.row, table[:, 0] - key.col] = table[:, 2]
        return BundleIndex(sizes, int(np.count_nonzero(sizes)), int(sizes.sum()), 0, 0, None)

    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tiles and their blobs, in the table's order."""
        key = bundle.key
        try:
            for col, row, data in self._bundle_query(key, "tile_data"):
                row = grid.tms_row(key.level, row) if self.tms_rows else row
                yield StoredTile(int(row), int(col), bytes(data or b""))
        except sqlite3.DatabaseError as exc:
            raise CorruptBundle(f"the SQLite file cannot be read here ({exc})") from None

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None
