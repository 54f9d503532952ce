"""Update a GeoPackage status store in place of rewriting it, through SQLite: the rows of
bundles a rebuild reused stay, the others are deleted, and the rebuild's own rows are appended
through GDAL; a rebuild that changed nothing only adds its ``Jobs`` row (:func:`carry`).

A GeoPackage is a SQLite database, so rows can be deleted from it (a FileGDB written by GDAL
cannot). Deleting through SQLite keeps the store whole: GDAL's triggers on each table remove a
deleted row's R-tree entry and lower ``gpkg_ogr_contents``' feature count; the rows added
after are written by GDAL (pyogrio's append), geometry blobs, R-tree and layer extent as in a
store written whole. ``gpkg_contents.last_change`` is set as GDAL sets it.

The module imports neither numpy nor GDAL: an unchanged rebuild answered by
:mod:`cachestatus.unchanged` reads and updates its store through it alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tables import GEOMETRY_TYPES, JOB_FIELDS, JOBS, LEVEL_STATUS, TIME, JobRecord

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: How GDAL writes ``gpkg_contents.last_change`` (UTC, milliseconds).
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def has_fields(store: Path, fields: Mapping[str, Sequence[str]]) -> bool:
    """Whether each table of ``fields`` in the GeoPackage at ``store`` has every field named
    (a store written by an earlier version may lack a field added since)."""
    db = connect(store, read_only=True)
    try:
        for table, names in fields.items():
            stored = {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}
            if not stored.issuperset(names):
                return False
        return True
    finally:
        db.close()


#: The triggers GDAL puts on the tables it writes: its R-tree's and its feature count's, and
#: those the GeoPackage specification names for its own tables (``gpkg_tile_matrix``'s
#: checks).
_GDAL_TRIGGERS = (
    "rtree_",
    "trigger_insert_feature_count_",
    "trigger_delete_feature_count_",
    "gpkg_",
)
#: GeoPackage geometry type names as GDAL names them.
_GEOMETRY_NAMES = {"POLYGON": "Polygon", "MULTIPOLYGON": "MultiPolygon"}


def foreign_triggers(store: Path) -> list[str]:
    """The triggers of the GeoPackage at ``store`` that GDAL did not write: put there by other
    software (GDAL 1.x's geometry type checks, a user's audit table)."""
    db = connect(store, read_only=True)
    try:
        found = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        return [str(name) for (name,) in found if not str(name).startswith(_GDAL_TRIGGERS)]
    finally:
        db.close()


def geometry_types(store: Path) -> dict[str, str]:
    """The geometry type each spatial table of the GeoPackage at ``store`` declares, by table
    name, as GDAL names them (``MultiPolygon``)."""
    db = connect(store, read_only=True)
    try:
        found = db.execute("SELECT table_name, geometry_type_name FROM gpkg_geometry_columns")
        return {str(table): _GEOMETRY_NAMES.get(str(kind).upper(), kind) for table, kind in found}
    finally:
        db.close()


def writable(store: Path) -> bool:
    """Whether rows may be written into the GeoPackage at ``store`` through SQLite, as GDAL
    would write them: it has no trigger GDAL did not write (:func:`foreign_triggers`: rows
    written would fire them, calling functions SQLite may lack), and its spatial tables
    declare the geometry types this version writes (an earlier one declared ``MissingAreas``
    a ``Polygon`` layer, and wrote multipolygons into it). A store that is not is written
    whole, by GDAL."""
    declared = geometry_types(store)
    current = all(declared.get(table) == kind for table, kind in GEOMETRY_TYPES.items())
    return current and not foreign_triggers(store)


def tables(store: Path) -> set[str]:
    """The tables the GeoPackage at ``store`` registers (its layers, as GDAL lists them)."""
    db = connect(store, read_only=True)
    try:
        return {str(row[0]) for row in db.execute("SELECT table_name FROM gpkg_contents")}
    finally:
        db.close()


def count(store: Path, table: str) -> int:
    """How many rows ``table`` of the GeoPackage at ``store`` holds."""
    db = connect(store, read_only=True)
    try:
        return int(db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
    finally:
        db.close()


def keep_only(store: Path, kept: Mapping[str, npt.NDArray[np.integer[Any]]]) -> dict[str, int]:
    """Delete from each table of ``kept`` every row whose feature id is not one of its ids.
    Returns how many rows each table holds then."""
    db = connect(store, read_only=False)
    try:
        db.execute("BEGIN")
        for table, fids in kept.items():
            db.execute("CREATE TEMP TABLE kept (fid INTEGER PRIMARY KEY)")
            db.executemany("INSERT OR IGNORE INTO temp.kept VALUES (?)", _parts(fids))
            db.execute(f'DELETE FROM "{table}" WHERE fid NOT IN (SELECT fid FROM temp.kept)')
            db.execute("DROP TABLE temp.kept")
            touch(db, table)
        counts = _counts(db, list(kept))
        db.execute("COMMIT")
    finally:
        db.close()
    return counts


def drop_bundles(
    store: Path,
    tables: Sequence[str],
    keys: Iterable[tuple[int, int, int]],
    also: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Delete from each of ``tables`` (with ``levelID``, ``bundleRow`` and ``bundleCol``
    fields) the rows of the bundles ``keys`` (level, row and column), and the rows that match
    the table's condition in ``also`` (SQL on its fields): the work in Python grows with the
    bundles to delete, not with the rows kept. Returns how many rows each table holds
    then."""
    db = connect(store, read_only=False)
    try:
        db.execute("BEGIN")
        # INTEGER columns, as the layers' keys are: the lookup then uses the primary key.
        db.execute(
            "CREATE TEMP TABLE listed (l INTEGER, r INTEGER, c INTEGER, PRIMARY KEY (l, r, c)) "
            "WITHOUT ROWID"
        )
        db.executemany("INSERT OR IGNORE INTO temp.listed VALUES (?, ?, ?)", keys)
        listed = "SELECT 1 FROM temp.listed WHERE l = levelID AND r = bundleRow AND c = bundleCol"
        for table in tables:
            extra = (also or {}).get(table)
            db.execute(
                f'DELETE FROM "{table}" WHERE EXISTS ({listed})' + (f" OR {extra}" if extra else "")
            )
            touch(db, table)
        counts = _counts(db, tables)
        db.execute("COMMIT")
    finally:
        db.close()
    return counts


#: Rows handed to SQLite at a time (:func:`_parts`).
_PART = 16_384


def _parts(values: npt.NDArray[np.integer[Any]]) -> Iterator[tuple[int]]:
    """The integers ``values`` as rows of one Python int, a part at a time: millions of them
    turned into a list at once would take 30 bytes or more each."""
    for start in range(0, len(values), _PART):
        yield from ((v,) for v in values[start : start + _PART].tolist())


def _counts(db: sqlite3.Connection, tables: Sequence[str]) -> dict[str, int]:
    """How many rows each of ``tables`` holds, as GDAL counts them."""
    return {
        table: int(
            db.execute(
                "SELECT feature_count FROM gpkg_ogr_contents WHERE lower(table_name) = ?",
                (table.lower(),),
            ).fetchone()[0]
        )
        for table in tables
    }


def connect(store: Path, read_only: bool) -> sqlite3.Connection:
    """A connection to the store; to write, one to a temporary copy about to be swapped in,
    which waits for no disk sync (nor does GDAL writing a store) and keeps no rollback journal:
    a failure discards the copy. (A journal in memory held a copy of every page a transaction
    changed: 300 MiB to delete the changed rows of a store of 1,000,000 bundles.)"""
    if read_only:
        return sqlite3.connect(f"{store.absolute().as_uri()}?mode=ro", uri=True)
    db = sqlite3.connect(store, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA journal_mode = OFF")
    return db


def last_job(store: Path) -> dict[str, Any] | None:
    """The last row of the GeoPackage store's ``Jobs`` table, its fields by name as stored
    (times as text), or ``None`` for an empty table."""
    db = connect(store, read_only=True)
    try:
        cursor = db.execute(f'SELECT * FROM "{JOBS}" ORDER BY fid DESC LIMIT 1')
        row = cursor.fetchone()
        names = [d[0] for d in cursor.description]
    finally:
        db.close()
    return None if row is None else dict(zip(names, row, strict=True))


def stored_time(value: datetime | None) -> str | None:
    """A time as GDAL stores a ``datetime64[ms]`` field in a GeoPackage: UTC, without a zone,
    milliseconds only when there are some."""
    if value is None:
        return None
    ms = value.microsecond // 1000
    return f"{value:%Y-%m-%dT%H:%M:%S}" + (f".{ms:03d}" if ms else "")


def carry(store: Path, job: JobRecord) -> None:
    """Record a rebuild that found every row of the GeoPackage ``store`` as it is: its
    ``LevelStatus`` rows name the job, added to ``Jobs`` (:func:`append_job`)."""
    _write_job(store, job, name_levels=True)


def append_job(store: Path, job: JobRecord) -> None:
    """Add ``job`` to the ``Jobs`` table of the GeoPackage ``store``, its fields as GDAL writes
    them (:data:`~cachestatus.store.tables.JOB_FIELDS`): what writing the table again with the
    rows it holds and ``job`` leaves."""
    _write_job(store, job, name_levels=False)


def _write_job(store: Path, job: JobRecord, name_levels: bool) -> None:
    names = ", ".join(f'"{name}"' for name, *_ in JOB_FIELDS)
    values = [
        stored_time(getattr(job, get)) if dtype == TIME else getattr(job, get)
        for _, dtype, get, _ in JOB_FIELDS
    ]
    db = connect(store, read_only=False)
    try:
        db.execute("BEGIN")
        if name_levels:
            db.execute(f'UPDATE "{LEVEL_STATUS}" SET jobID = ?', (job.job_id,))
            touch(db, LEVEL_STATUS)
        db.execute(
            f'INSERT INTO "{JOBS}" ({names}) VALUES ({", ".join("?" * len(values))})', values
        )
        touch(db, JOBS)
        db.execute("COMMIT")
    finally:
        db.close()


def touch(db: sqlite3.Connection, table: str) -> None:
    """Set a table's ``gpkg_contents.last_change`` to now, as GDAL does on a write."""
    db.execute(
        f"UPDATE gpkg_contents SET last_change = {_NOW} WHERE lower(table_name) = ?",
        (table.lower(),),
    )
