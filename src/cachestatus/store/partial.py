"""Update a GeoPackage status store in place of rewriting it: the rows of bundles a rebuild
reused stay, the others are deleted, and the rebuild's own rows are appended through GDAL.

A GeoPackage is a SQLite database, so rows can be deleted from it (a FileGDB written by GDAL
cannot). Deleting through SQLite keeps the store whole: GDAL's triggers on each table remove a
deleted row's R-tree entry and lower ``gpkg_ogr_contents``' feature count; the rows added
after are written by GDAL (pyogrio's append), geometry blobs, R-tree and layer extent as in a
store written whole. ``gpkg_contents.last_change`` is set as GDAL sets it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: How GDAL writes ``gpkg_contents.last_change`` (UTC, milliseconds).
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def has_fields(store: Path, fields: Mapping[str, Sequence[str]]) -> bool:
    """Whether each table of ``fields`` in the GeoPackage at ``store`` has every field named
    (a store written by an earlier version may lack a field added since)."""
    db = sqlite3.connect(f"{store.absolute().as_uri()}?mode=ro", uri=True)
    try:
        for table, names in fields.items():
            stored = {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}
            if not stored.issuperset(names):
                return False
        return True
    finally:
        db.close()


def keep_only(store: Path, tables: Sequence[str], keys: tuple[npt.NDArray[np.int64], ...]) -> None:
    """Delete from each of ``tables`` (with ``levelID``, ``bundleRow`` and ``bundleCol``
    fields) every row whose bundle is not one of ``keys`` (level, row and column arrays)."""
    db = sqlite3.connect(store, isolation_level=None)
    try:
        db.execute("BEGIN")
        # INTEGER columns, as the layers' keys are: the lookup then uses the primary key.
        db.execute(
            "CREATE TEMP TABLE kept (l INTEGER, r INTEGER, c INTEGER, PRIMARY KEY (l, r, c)) "
            "WITHOUT ROWID"
        )
        db.executemany(
            "INSERT OR IGNORE INTO temp.kept VALUES (?, ?, ?)",
            zip(*(k.tolist() for k in keys), strict=True),
        )
        for table in tables:
            db.execute(
                f'DELETE FROM "{table}" WHERE NOT EXISTS (SELECT 1 FROM temp.kept WHERE '
                "l = levelID AND r = bundleRow AND c = bundleCol)"
            )
            db.execute(
                f"UPDATE gpkg_contents SET last_change = {_NOW} WHERE lower(table_name) = ?",
                (table.lower(),),
            )
        db.execute("COMMIT")
    finally:
        db.close()
