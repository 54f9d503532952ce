"""What MBTiles and GeoPackage share: tiles in an SQLite table, opened read-only.

The table holds ``(zoom_level, tile_column, tile_row, tile_data)``; tiles are reported in
virtual 128 x 128 bundles of the grid. One walk of the ``(zoom, column, row)`` index per level
gives its tiles as runs of rows (:class:`RunIndex`); with sizes, one indexed range query per
bundle reads each tile's length (``length(tile_data)``, from the record header without the
blob). The file is opened through an SQLite ``mode=ro`` URI: no journal, no WAL, nothing
written.

The file is untrusted: its "tables" may be views that compute without end, its values may be of
any type. Every connection is opened by :func:`open_read_only` (in listing processes too), with
``trusted_schema`` off, blobs no longer than the file, and a budget of SQLite steps per query
proportional to the file's size (:class:`TileDatabase`); every value read from the file passes
one validating function for its kind (:func:`level_number`, :func:`grid_number`) where it
enters. A tile whose address is not one of its level's grid is listed as a problem, never
counted, and the scan goes on.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from ..errors import CorruptBundle, InvalidCacheConfig
from ..models import BUNDLE_SIZE, BundleKey, Problem
from ..parallel import map_in_processes
from .base import (
    BundleFile,
    BundleIndex,
    FileHead,
    SingleFileCache,
    StoredTile,
)
from .bytesource import open_regular, read_exactly
from .listed import BundleRows

#: Beyond this many stretches of columns to fetch, one query for the whole level is cheaper.
MAX_RANGE_QUERIES = 256

#: Byte 18 of an SQLite file: its write version, 2 in write-ahead-log (WAL) mode.
_WRITE_VERSION = 18
_WAL = 2

#: The highest zoom level read: a level of 2**30 x 2**30 tiles. Beyond it rows and columns
#: outgrow what a status holds (32-bit ``bundleRow``, ``bundleCol``); no real cache goes there.
MAX_LEVEL = 30
#: Rows and columns of a level stay below this (a status stores them as 32-bit integers).
GRID_LIMIT = 2**31

#: SQLite virtual-machine steps a query may take per byte of the file. An honest query visits
#: each record of the file at most once, in a few dozen steps, and a record takes several bytes
#: (measured: 0.1 step a byte walking an MBTiles index, about 1 on an index-only table): 64 is a
#: generous multiple that a real file never reaches, and a view that never ends soon does.
STEPS_PER_BYTE = 64
#: The budget of the smallest files: a fraction of a second of work.
MIN_STEPS = 20_000_000
#: Steps between two calls of the progress handler: its cost is lost in the noise.
PROGRESS_STEPS = 100_000
#: The longest blob or string a query may make, at least (else the file's size).
MIN_LENGTH = 1 << 20

#: Tiles with a bad address listed one by one per level; the others are counted.
MAX_LISTED = 20
#: Distinct values of ``zoom_level`` read: more is not a tile table.
MAX_LEVEL_VALUES = 10_000


def quote_name(name: str) -> str:
    """An SQL identifier for a table or index name read from the file: ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


def shown_value(value: object) -> str:
    """A value read from the file as messages print it: short, on one line."""
    if isinstance(value, bytes):
        text = f"a blob of {len(value):,} bytes"
    elif value is None:
        text = "NULL"
    else:
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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


class WorkLimitExceeded(sqlite3.OperationalError):
    """A query took more SQLite steps than the file's size can justify (a view that never ends,
    a crafted schema); it was stopped."""


class _Watch:
    """The progress handler of one connection: stops a query past its budget, and keeps what
    stopped it (the budget, or an exception such as ``KeyboardInterrupt`` raised by a signal
    handler while the handler ran)."""

    def __init__(self, calls: int) -> None:
        self.allowed = calls
        self.calls = 0
        self.reason: BaseException | None = None

    def __call__(self) -> int:
        try:
            self.calls += 1
            if self.calls > self.allowed:
                self.reason = WorkLimitExceeded("stopped: too many steps")
                return 1
            return 0
        except BaseException as exc:  # a signal handler's exception: stop, and raise it after
            self.reason = exc
            return 1


def _catch_watch_exceptions(unraisable: Any) -> None:
    """Keep an exception raised as SQLite called a :class:`_Watch` (a ``KeyboardInterrupt``
    raised on entering it, before its ``try``): the sqlite3 module only reports such
    exceptions as "unraisable", and the query that was stopped raises it again. Any other
    unraisable exception goes to the hook that was there before."""
    if isinstance(unraisable.object, _Watch) and unraisable.exc_value is not None:
        if unraisable.object.reason is None:
            unraisable.object.reason = unraisable.exc_value
        return
    _previous_hook(unraisable)


_previous_hook = sys.unraisablehook


@functools.cache
def _install_hook() -> None:
    global _previous_hook
    _previous_hook = sys.unraisablehook
    sys.unraisablehook = _catch_watch_exceptions
    # Without it, an exception in a callback is dropped silently; with it, it is "unraisable".
    sqlite3.enable_callback_tracebacks(True)


class TileDatabase(sqlite3.Connection):
    """A connection to an untrusted SQLite file: each query within a budget of steps, stoppable
    by Ctrl-C. Made by :func:`open_read_only`; query through :meth:`rows` and :meth:`each`."""

    path: Path
    size: int
    budget: int
    _watch: _Watch

    def harden(self, path: Path) -> None:
        """Set the limits for the file at ``path``.

        ``trusted_schema`` off: the schema's views and triggers may not call functions with side
        effects. Strings and blobs no longer than the file (a view may make bigger ones). The
        budget: :data:`STEPS_PER_BYTE` steps a byte of the file and its WAL, per query.
        """
        self.path = path
        size = 0
        for part in (str(path), f"{path}-wal"):
            with contextlib.suppress(OSError):  # no WAL beside it
                size += os.path.getsize(part)
        self.size = size
        self.budget = max(MIN_STEPS, STEPS_PER_BYTE * size)
        _install_hook()
        self._watch = _Watch(-(-self.budget // PROGRESS_STEPS))
        self.set_progress_handler(self._watch, PROGRESS_STEPS)
        self.execute("PRAGMA trusted_schema = OFF")
        # One call of some functions (printf of a huge width, randomblob, replace) can take
        # seconds inside SQLite, between two steps, where neither the budget nor Ctrl-C acts:
        # a view of the file may call only cheap ones.
        self.set_authorizer(_only_cheap_functions)
        longest = self.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        self.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, min(longest, max(MIN_LENGTH, size)))

    def each(self, sql: str, args: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of a query, one at a time, within the budget.

        Raises:
            WorkLimitExceeded: the query ran past its budget.
            sqlite3.DatabaseError: the file cannot be read.
            KeyboardInterrupt: (or another signal handler's exception) the query was stopped.
        """
        self._watch.calls, self._watch.reason = 0, None
        try:
            yield from self.execute(sql, args)
        except sqlite3.OperationalError as exc:
            reason, self._watch.reason = self._watch.reason, None
            if isinstance(reason, WorkLimitExceeded):
                raise WorkLimitExceeded(
                    f"a query ran past {self.budget:,} SQLite steps, more than a file of "
                    f"{self.size:,} bytes can need"
                ) from None
            if reason is not None:
                raise reason from None
            if "interrupt" in str(exc):  # stopped by the handler, its exception lost
                raise KeyboardInterrupt from None
            raise

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All the rows of a query, within the budget (see :meth:`each`)."""
        return list(self.each(sql, args))


def _regular_header(path: Path) -> bytes:
    """The first bytes of the file at ``path`` (up to its write version), opened without
    blocking.

    Raises:
        InvalidCacheConfig: the path is a FIFO, a device, a folder: SQLite would block on a
            FIFO, waiting for a writer.
    """
    try:
        fd, st = open_regular(str(path))
    except CorruptBundle as exc:
        raise InvalidCacheConfig(f"{path}: {exc.reason.replace(' like a bundle', '')}") from None
    except OSError:
        return b""  # SQLite says why it cannot be opened
    try:
        return read_exactly(fd, 0, _WRITE_VERSION + 1, st.st_size)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _in_wal_mode(header: bytes) -> bool:
    return len(header) > _WRITE_VERSION and header[_WRITE_VERSION] == _WAL


#: The SQL functions a query over a cache may call: cheap ones, linear in their arguments. The
#: readers' own queries use some of them; views written by other programs rarely need others.
CHEAP_FUNCTIONS = frozenset(
    {
        "abs", "avg", "coalesce", "count", "hex", "ifnull", "iif", "instr", "length", "lower",
        "max", "min", "nullif", "quote", "round", "substr", "substring", "sum", "total", "trim",
        "ltrim", "rtrim", "typeof", "upper", "unicode", "likely", "unlikely",
    }
)  # fmt: skip


def _only_cheap_functions(
    action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
) -> int:
    """SQLite's authorizer: a function outside :data:`CHEAP_FUNCTIONS` is refused."""
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() not in CHEAP_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def open_read_only(path: Path) -> TileDatabase:
    """A read-only connection to an SQLite file (``mode=ro`` URI) that leaves its folder as it
    is, hardened against what the file may hold (:meth:`TileDatabase.harden`): the one place
    that opens the SQLite files of caches, in listing processes too.

    A database in WAL mode opened read-only would create ``-wal`` and ``-shm`` files beside it
    (and leave them): with no ``-wal`` file there, no writer is at work and the file holds all
    its content, so it is opened ``immutable`` instead, which creates nothing.

    Raises:
        InvalidCacheConfig: the file cannot be opened, or is not a regular file.
    """
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    if _in_wal_mode(_regular_header(path)) and not Path(f"{path}-wal").exists():
        uri += "&immutable=1"
    try:
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, factory=TileDatabase)
        db.harden(path)
    except sqlite3.Error as exc:
        raise InvalidCacheConfig(f"{path}: cannot be opened as SQLite ({exc})") from None
    return db


#: The first 16 bytes of every SQLite 3 file.
SQLITE_HEADER = b"SQLite format 3\x00"
#: Bytes 68-71 of an SQLite file: its application ID (``PRAGMA application_id``), big-endian.
_APPLICATION_ID = slice(68, 72)
#: The application IDs of GeoPackages: ``GPKG`` (1.2 and later), ``GP10`` and ``GP11`` (1.0,
#: 1.1). MBTiles 1.3 files may say ``MPBX``; most MBTiles say nothing (0).
GEOPACKAGE_IDS = (b"GPKG", b"GP10", b"GP11")
MBTILES_ID = b"MPBX"
#: The columns of an MBTiles ``tiles`` table or view.
MBTILES_COLUMNS = frozenset({"zoom_level", "tile_column", "tile_row", "tile_data"})
#: Tables and views whose presence tells the kind of an SQLite tile store.
_TELLING = ("tiles", "map", "images", "gpkg_contents", "metadata")


class SQLiteContent(NamedTuple):
    """What detection learns of an SQLite file from its header and schema (a few pages)."""

    #: The application ID (bytes 68-71), ``b"GPKG"`` for a GeoPackage, zeros for most others.
    application_id: bytes
    #: Which of ``tiles``, ``map``, ``images``, ``gpkg_contents``, ``metadata`` it holds (tables
    #: or views, lower case: SQLite's names ignore case).
    tables: frozenset[str]
    #: Whether ``tiles`` has the columns of MBTiles' tile table.
    tile_columns: bool
    #: The tile tables ``gpkg_contents`` names and the file holds.
    geopackage_tiles: tuple[str, ...]
    #: Why the schema could not be read; empty when it was.
    error: str = ""

    @property
    def geopackage(self) -> bool:
        """A GeoPackage, by its application ID or its ``gpkg_contents`` table (older writers
        leave the ID at 0)."""
        return self.application_id in GEOPACKAGE_IDS or "gpkg_contents" in self.tables

    @property
    def mbtiles(self) -> bool:
        """An MBTiles file: a ``tiles`` table or view with MBTiles' columns, or the ``map`` and
        ``images`` tables it is a view over; and not a GeoPackage (whose tile table may be
        named ``tiles`` too, with rows counted the other way)."""
        if self.geopackage:
            return False
        return self.tile_columns or {"map", "images"} <= self.tables

    def describe(self) -> str:
        """What the file is, for the message of a file that no format reads."""
        if self.error:
            return f"an SQLite file whose tables cannot be read ({self.error})"
        if self.geopackage:
            return "a GeoPackage without tile tables (a vector or attribute GeoPackage?)"
        if "tiles" in self.tables:
            return "an SQLite file whose 'tiles' lacks MBTiles' columns " + ", ".join(
                sorted(MBTILES_COLUMNS)
            )
        return "an SQLite file without tile tables (no MBTiles 'tiles', no GeoPackage tiles)"


def geopackage_tile_tables(db: TileDatabase) -> list[str]:
    """The tile tables (or views) ``gpkg_contents`` names that the file holds, by name; none
    when ``gpkg_contents`` cannot be read.

    Raises:
        WorkLimitExceeded: ``gpkg_contents`` never ends.
    """
    try:
        found = db.rows(
            "SELECT c.table_name FROM gpkg_contents AS c WHERE c.data_type = 'tiles' AND EXISTS ("
            "SELECT 1 FROM sqlite_master AS m WHERE m.type IN ('table', 'view') "
            "AND m.name = c.table_name COLLATE NOCASE) ORDER BY c.table_name"
        )
    except WorkLimitExceeded:
        raise
    except sqlite3.DatabaseError:
        return []
    return [name for (name,) in found if isinstance(name, str)]


def sqlite_content(path: Path, found: FileHead) -> SQLiteContent | None:
    """What the SQLite file at ``path`` holds, ``None`` when it is not an SQLite file (its
    head ``found`` lacks the SQLite header). Its schema is read through :func:`open_read_only`,
    hardened as every reader is, a few pages at most; kept for the next format that asks."""
    if not found.head.startswith(SQLITE_HEADER):
        return None
    return _sqlite_content(str(path), found.size, found.head[:100])


@functools.lru_cache(maxsize=16)
def _sqlite_content(path: str, size: int, header: bytes) -> SQLiteContent:
    """:func:`sqlite_content`, kept per file and header (its change counter moves with every
    write outside WAL mode)."""
    application_id = header[_APPLICATION_ID]
    try:
        db = open_read_only(Path(path))
    except InvalidCacheConfig as exc:
        return SQLiteContent(application_id, frozenset(), False, (), str(exc))
    try:
        marks = ", ".join("?" * len(_TELLING))
        tables = frozenset(
            str(name)
            for (name,) in db.rows(
                "SELECT lower(name) FROM sqlite_master WHERE type IN ('table', 'view') "
                f"AND lower(name) IN ({marks})",
                _TELLING,
            )
        )
        columns = False
        if "tiles" in tables:
            info = db.rows('PRAGMA table_info("tiles")')
            columns = {str(row[1]).lower() for row in info} >= MBTILES_COLUMNS
        tile_tables = tuple(geopackage_tile_tables(db)) if "gpkg_contents" in tables else ()
        return SQLiteContent(application_id, tables, columns, tile_tables)
    except sqlite3.DatabaseError as exc:  # a damaged file, a schema that never ends
        return SQLiteContent(application_id, frozenset(), False, (), str(exc))
    finally:
        db.close()


def unreadable(
    path: Path, exc: sqlite3.Error, what: str = "one of its tables"
) -> InvalidCacheConfig:
    """The error for a query of the cache's definition or listing that failed."""
    if isinstance(exc, WorkLimitExceeded):
        return InvalidCacheConfig(
            f"{path}: {what} does not behave like a table: {exc} (a view that never ends?)"
        )
    return InvalidCacheConfig(f"{path}: not a readable SQLite file ({exc})")


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
            Problem(
                self._where, "bad-tile", f"{tiles} at {what}: off {self.grid_name}; not counted"
            )
        )

    def listed(self) -> list[Problem]:
        """The problems, and one for what is beyond the listed ones."""
        found = list(self.problems)
        if self.more:
            found.append(
                Problem(
                    self._where,
                    "bad-tile",
                    f"and {self.more:,} more tiles off {self.grid_name}; not counted",
                )
            )
        if self.more_values:
            found.append(
                Problem(
                    self._where,
                    "bad-tile",
                    f"and the tiles at {self.more_values:,} more zoom_level values off "
                    f"{self.grid_name}; not counted",
                )
            )
        return found


#: Below this file size, walking the index in several processes costs more than it saves.
PARALLEL_BYTES = 32 * 1024 * 1024
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


class SQLiteTileCache(SingleFileCache):
    """Base of the readers of tiles in an SQLite table.

    Subclasses set :attr:`table` and :attr:`tms_rows` (rows counted up from the bottom) while
    they open the file, and say how large each level's grid is (:meth:`level_size`).
    """

    #: The tile table (or view).
    table: str = "tiles"
    #: True when rows count up from the bottom (MBTiles' TMS rows).
    tms_rows: bool = False
    #: The grid, as messages about tiles off it name it.
    grid_name: str = "the grid"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._db: TileDatabase | None = None

    def _connect(self) -> TileDatabase:
        if self._db is None:
            self._db = open_read_only(self.path)
        return self._db

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

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_db": None}

    def level_size(self, level: int) -> tuple[int, int]:
        """Columns and rows of ``level``'s grid: a tile outside is not counted."""
        return 1 << level, 1 << level

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

    def _bad_tiles(self, level: int) -> BadTiles:
        found: dict[int, BadTiles] = self.__dict__.setdefault("_bad", {})
        if level not in found:
            found[level] = BadTiles(self.path, level, self.grid_name)
        return found[level]

    def prefetch(self, levels: list[int]) -> None:
        """Walk the index of ``levels`` in :attr:`workers` processes, each a stretch of columns,
        when the file is large enough to pay for starting them."""
        cache: dict[int, RunIndex] = self.__dict__.setdefault("_run_cache", {})
        todo = [level for level in levels if level not in cache]
        if self.workers <= 1 or not todo or os.path.getsize(self.path) < PARALLEL_BYTES:
            return  # each level is walked here when it is first asked for
        tasks: list[SummaryTask] = []
        table = quote_name(self.table)
        for level in todo:
            # The first and last column in the index's order (NULL first, text and blobs last):
            # one seek each. Stretches between them cover every column only when both are
            # columns of the grid; else the level is walked here, in one piece.
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
                continue
            step = -(-(last - first + 1) // (2 * self.workers))
            tasks += [
                (self.path, self.table, level, start, min(start + step - 1, last))
                for start in range(first, last + 1, step)
            ]
        parts: dict[int, Summary] = {}
        for task, summary in zip(
            tasks, map_in_processes(column_summary, tasks, self.workers), strict=True
        ):
            parts.setdefault(task[2], []).extend(summary)
        for level, found in parts.items():
            cache[level] = self._run_index(level, found)

    def _run_index(self, level: int, summary: Summary) -> RunIndex:
        """Runs from a level's column summary: whole columns as they are, the rows of the
        others fetched. A column that is not one of the grid's is listed as bad tiles."""
        width, height = self.level_size(level)
        bad = self._bad_tiles(level)
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
                    return self._all_rows_index(level)
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
        if self.tms_rows:  # TMS rows count up: flip the run
            low, high = height - 1 - high, height - 1 - low
        runs = np.column_stack([col[whole], low[whole], high[whole] + 1])
        gapped = self._rows_of(level, col[~whole])
        return RunIndex(level, np.concatenate([runs, gapped]))

    def _all_rows_index(self, level: int) -> RunIndex:
        """The level's runs from all its rows, each checked (when no summary can be made)."""
        found = self._query(
            f"SELECT tile_column, tile_row FROM {quote_name(self.table)} WHERE zoom_level = ?",
            (level,),
            what=self._tile_table,
        )
        width = self.level_size(level)[0]
        bad = self._bad_tiles(level)
        for c, _ in found:
            if grid_number(c, width) is None:
                bad.add(f"tile_column {shown_value(c)}")
        return RunIndex(level, self._checked_runs(level, found, None))

    def _checked_runs(
        self, level: int, found: list[tuple[Any, ...]], columns: npt.NDArray[np.int64] | None
    ) -> npt.NDArray[np.int64]:
        """Runs of the tiles ``(tile_column, tile_row)`` read from the file, each address
        checked: a tile in one of ``columns`` (all: ``None``) whose row is not on the grid is
        listed; a tile whose column is not on it was listed with its column."""
        width, height = self.level_size(level)
        wanted = None if columns is None else set(columns.tolist())
        bad = self._bad_tiles(level)
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
        rows = height - 1 - pairs[:, 1] if self.tms_rows else pairs[:, 1]
        return rows_to_runs(pairs[:, 0], rows)

    def _rows_of(self, level: int, columns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
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
        return self._checked_runs(level, found, columns)

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

    def count_bundles(self, level: int) -> int:
        """From the same runs as :meth:`list_bundles`."""
        return len(self._runs(level).counts())

    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """The virtual bundles holding tiles, and the tiles of the level off its grid (with the
        first level, the tiles at no level of the grid)."""
        runs = self._runs(level)
        if self.scheme.levels and level == self.scheme.levels[0]:
            yield from self.__dict__.get("_bad_levels", [])
        yield from self._bad_tiles(level).listed()
        for key in runs.counts():
            yield BundleFile(key, f"{self.path}#{key.label}")

    def _bundle_query(self, key: BundleKey, value: str) -> Iterator[tuple[Any, ...]]:
        """``(tile_column, tile_row, value)`` of the stored tiles of one bundle: an indexed
        range query."""
        low, high = key.row, key.row + BUNDLE_SIZE - 1
        if self.tms_rows:
            top = self.level_size(key.level)[1] - 1
            low, high = top - min(high, top), top - key.row
        return self._connect().each(
            f"SELECT tile_column, tile_row, {value} FROM {quote_name(self.table)} "
            "WHERE zoom_level = ? AND tile_column BETWEEN ? AND ? AND tile_row BETWEEN ? AND ?",
            (key.level, key.col, key.col + BUNDLE_SIZE - 1, low, high),
        )

    def _tile_of(self, key: BundleKey, col: object, row: object) -> tuple[int, int] | None:
        """The (row, col) of a tile of bundle ``key`` read from the file, rows counted down;
        ``None`` when the address is not one of the grid's (listed with the level)."""
        width, height = self.level_size(key.level)
        column, found = grid_number(col, width), grid_number(row, height)
        if column is None or found is None:
            return None
        down = height - 1 - found if self.tms_rows else found
        return (down, column) if key.holds(down, column) else None

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """The tiles of one bundle: from the level's runs, or with :attr:`sizes` from one
        indexed range query that reads each tile's length."""
        key = bundle.key
        if not self.sizes:
            presence = self._runs(key.level).presence(key)
            return BundleIndex(presence, int(np.count_nonzero(presence)), 0, 0, 0, None)
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

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None
