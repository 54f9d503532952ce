"""What MBTiles and GeoPackage share: tiles in an SQLite table, opened read-only.

The table holds ``(zoom_level, tile_column, tile_row, tile_data)``; tiles are reported in
virtual 128 x 128 bundles of the grid. One grouped query lists a level's bundles; one indexed
range query per bundle gives its tiles and sizes (``length(tile_data)``, read from the record
header without the blob). The file is opened through an SQLite ``mode=ro`` URI: no journal,
no WAL, nothing written.
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

from .. import grid
from ..errors import CorruptBundle, InvalidCacheConfig
from ..models import BUNDLE_SIZE, BundleKey, Problem
from .base import BundleFile, BundleIndex, SingleFileCache, StoredTile

TILES = BUNDLE_SIZE * BUNDLE_SIZE

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

    def _bundle_counts(self, level: int) -> dict[BundleKey, int]:
        """The level's bundles holding tiles and their row counts: one grouped query over the
        index, kept (a scan asks for each level while it counts, lists and reads bundles)."""
        cache: dict[int, dict[BundleKey, int]] = self.__dict__.setdefault("_counts", {})
        if level not in cache:
            found = self._query(
                f'SELECT tile_column >> 7, tile_row >> 7, count(*) FROM "{self.table}" '
                "WHERE zoom_level = ? GROUP BY 1, 2",
                (level,),
            )
            top = max(0, (1 << level) // BUNDLE_SIZE - 1)  # TMS bundle rows count up too
            keys = {
                BundleKey(
                    level, (top - r if self.tms_rows else r) * BUNDLE_SIZE, c * BUNDLE_SIZE
                ): n
                for c, r, n in found
            }
            cache[level] = dict(sorted(keys.items()))
        return cache[level]

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
        """From the same grouped query as :meth:`list_bundles`."""
        return len(self._bundle_counts(level))

    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """The virtual bundles holding tiles."""
        for key in self._bundle_counts(level):
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
        """The tiles of one bundle (and their sizes, with :attr:`sizes`): one indexed range
        query. Without sizes, a full bundle is known from the listing's count alone."""
        key = bundle.key
        full = self._unique_tiles and self._bundle_counts(key.level).get(key) == TILES
        if full and not self.sizes:
            return BundleIndex(np.ones((BUNDLE_SIZE, BUNDLE_SIZE), np.uint64), TILES, 0, 0, 0, None)
        # Without sizes the query stays in the (zoom, column, row) index: tiles are counted.
        value = "ifnull(length(tile_data), 0)" if self.sizes else "1"
        try:
            found = self._bundle_query(key, value).fetchall()
        except sqlite3.DatabaseError as exc:
            raise CorruptBundle(f"the SQLite file cannot be read here ({exc})") from None
        sizes = np.zeros((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)
        if found:
            table = np.array(found, dtype=np.int64)
            rows = grid.tms_row(key.level, table[:, 1]) if self.tms_rows else table[:, 1]
            sizes[rows - key.row, table[:, 0] - key.col] = table[:, 2]
        tile_bytes = int(sizes.sum()) if self.sizes else 0
        return BundleIndex(sizes, int(np.count_nonzero(sizes)), tile_bytes, 0, 0, None)

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
