"""An untrusted SQLite file, opened read-only and hardened, and what detection learns of it.

The file is untrusted: its "tables" may be views that compute without end, its values may be of
any type. Every connection to a cache's SQLite file is opened by :func:`open_read_only` (in
listing processes too), through an SQLite ``mode=ro`` URI (no journal, no WAL, nothing written),
with ``trusted_schema`` off, only cheap SQL functions, blobs no longer than the file, and a
budget of SQLite steps per query proportional to the file's size (:class:`TileDatabase`).
Detection reads a few pages of the schema through it (:func:`sqlite_content`).
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

from ..errors import CorruptBundle, InvalidCacheConfig
from .base import FileHead
from .bytesource import open_regular, read_exactly

#: Byte 18 of an SQLite file: its write version, 2 in write-ahead-log (WAL) mode.
_WRITE_VERSION = 18
_WAL = 2

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
