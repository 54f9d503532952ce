"""Rows written into a GeoPackage status store through SQLite, as GDAL writes them.

An incremental rebuild updates a copy of its GeoPackage store in place
(:meth:`~cachestatus.store.writer.StatusWriter.update`): the rows it adds are few (those of the
bundles it read, the level totals, the missing areas), and opening the store through GDAL for
each table costs more than writing them. This module writes them with the standard library's
``sqlite3`` into the tables GDAL created, the way GDAL's GPKG driver writes them:

- each field as GDAL binds it: integers and floats as such (a null where the field mask says
  so, and for a NaN float, as pyogrio writes it), text, and times as UTC text without a zone,
  milliseconds only when there are some (:func:`~cachestatus.store.partial.stored_time`);
- each geometry as a GeoPackage binary (GeoPackage 1.2, §2.1.3): ``GP``, version 0, flags
  ``0b011`` (little-endian, an ``[minx, maxx, miny, maxy]`` envelope), the table's ``srs_id``,
  the envelope, then the WKB as given (little-endian ISO WKB: what GDAL writes back);
- the R-tree and the feature count kept by the triggers GDAL put on each table (their
  ``ST_IsEmpty`` and ``ST_MinX``... are given to SQLite here, reading the blob's header, as
  GDAL's own functions do); the layer's extent in ``gpkg_contents`` grown to hold the new
  polygons (or set to theirs, for a table written whole), and ``last_change`` set to now.

A table written whole (``append`` false) loses its rows first and numbers the new ones from 1,
as the table GDAL would create again. Geometries that are empty or null are left to GDAL
(:func:`write_rows` returns false), as are stores whose table lacks a field written.
"""

from __future__ import annotations

import math
import sqlite3
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .partial import connect, touch
from .tables import TIME

#: A GeoPackage geometry blob's header with an XY envelope: magic, version, flags, srs_id, then
#: minx, maxx, miny, maxy (GeoPackage 1.2, §2.1.3.1.1).
_HEADER = struct.Struct("<2sBBi4d")
#: The header's flags as GDAL writes them for a polygon: little-endian (bit 0), envelope
#: ``[minx, maxx, miny, maxy]`` (bits 1-3: 1).
_FLAGS = 0b0000_0011
#: Flag bits: the envelope's kind (bits 1-3) and an empty geometry (bit 4).
_ENVELOPE_BITS, _EMPTY_BIT = 0b0000_1110, 0b0001_0000
#: The byte sizes of the envelopes a blob may have, by the flags' envelope kind (0-4).
_ENVELOPE_SIZES = (0, 32, 48, 48, 64)


def geometry_blob(wkb: bytes, srs_id: int, envelope: Sequence[float]) -> bytes:
    """The GeoPackage binary of a geometry: its header (``envelope`` as minx, miny, maxx,
    maxy), then its WKB."""
    xmin, ymin, xmax, ymax = envelope
    return _HEADER.pack(b"GP", 0, _FLAGS, srs_id, xmin, xmax, ymin, ymax) + wkb


def _envelope(blob: Any) -> tuple[float, float, float, float] | None:
    """minx, maxx, miny, maxy from a GeoPackage binary's header; ``None`` for no geometry,
    an empty one, or a header without an envelope."""
    if not isinstance(blob, bytes) or len(blob) < 8 or blob[:2] != b"GP":
        return None
    flags = blob[3]
    kind = (flags & _ENVELOPE_BITS) >> 1
    if flags & _EMPTY_BIT or not kind or kind >= len(_ENVELOPE_SIZES):
        return None
    order = "<" if flags & 1 else ">"
    values: tuple[float, float, float, float] = struct.unpack_from(f"{order}4d", blob, 8)
    return values


def _is_empty(blob: Any) -> int | None:
    if not isinstance(blob, bytes) or len(blob) < 8 or blob[:2] != b"GP":
        return None
    return 1 if blob[3] & _EMPTY_BIT else 0


def _side(index: int) -> Any:
    def value(blob: Any) -> float | None:
        envelope = _envelope(blob)
        return None if envelope is None else envelope[index]

    return value


def _functions(db: sqlite3.Connection) -> None:
    """The functions GDAL's R-tree triggers call, which plain SQLite lacks."""
    db.create_function("ST_IsEmpty", 1, _is_empty, deterministic=True)
    for index, name in enumerate(("ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY")):
        db.create_function(name, 1, _side(index), deterministic=True)


def _cells(dtype: str, values: npt.NDArray[Any], null: npt.NDArray[np.bool_] | None) -> list[Any]:
    """A field's values as SQLite binds them the way GDAL writes them: nulls as ``None``."""
    if dtype == TIME:  # as stored_time() writes a datetime: no ".000"
        texts = np.datetime_as_string(values.astype(TIME), unit="ms").tolist()
        nat = np.isnat(values).tolist()
        cells: list[Any] = [
            None if gap else text.removesuffix(".000") for text, gap in zip(texts, nat, strict=True)
        ]
    else:
        cells = values.tolist()
        if values.dtype.kind == "f":  # pyogrio writes a NaN as a null
            cells = [None if isinstance(v, float) and math.isnan(v) else v for v in cells]
    if null is not None:
        cells = [None if gap else v for v, gap in zip(cells, null.tolist(), strict=True)]
    return cells


def write_rows(
    store: Path,
    table: str,
    names: Sequence[str],
    fields: Sequence[tuple[str, npt.NDArray[Any], npt.NDArray[np.bool_] | None]],
    geometry: Sequence[bytes] | None,
    append: bool,
) -> bool:
    """Write rows into ``table`` of the GeoPackage ``store`` (a table GDAL created, with the
    fields ``names``): per field its type (:class:`~cachestatus.store.schema.Column`'s
    ``dtype``), values and null mask as written for GDAL, and with ``geometry`` one WKB polygon
    per row. Added to the rows there with ``append``, else in place of them.

    Returns whether it did: not (and nothing written) when a geometry is empty or null, or the
    table lacks a field (GDAL then writes them).
    """
    count = len(fields[0][1]) if fields else 0
    envelopes, wkbs = None, []
    if geometry is not None:
        import shapely

        wkbs = [bytes(wkb) for wkb in geometry]
        shapes = shapely.from_wkb(np.array(wkbs, dtype=object))
        if count and (shapely.is_missing(shapes) | shapely.is_empty(shapes)).any():
            return False
        envelopes = shapely.bounds(shapes).reshape(-1, 4)
    db = connect(store, read_only=False)
    try:
        stored = {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}
        if not stored.issuperset(names):
            return False
        columns = [_cells(dtype, values, null) for dtype, values, null in fields]
        quoted = [f'"{name}"' for name in names]
        srs_id, geom = 0, None
        if envelopes is not None:
            srs_id, geom = db.execute(
                "SELECT srs_id, column_name FROM gpkg_geometry_columns "
                "WHERE lower(table_name) = lower(?)",
                (table,),
            ).fetchone()
            blobs = [
                geometry_blob(wkb, srs_id, box)
                for wkb, box in zip(wkbs, envelopes.tolist(), strict=True)
            ]
            columns.insert(0, blobs)
            quoted.insert(0, f'"{geom}"')
        _functions(db)
        db.execute("BEGIN")
        if not append:
            db.execute(f'DELETE FROM "{table}"')
            db.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        if count:
            db.executemany(
                f'INSERT INTO "{table}" ({", ".join(quoted)}) '
                f"VALUES ({', '.join('?' * len(quoted))})",
                zip(*columns, strict=True),
            )
        if envelopes is not None:
            _extend(db, table, envelopes, append)
        touch(db, table)
        db.execute("COMMIT")
    finally:
        db.close()
    return True


def _extend(
    db: sqlite3.Connection, table: str, envelopes: npt.NDArray[np.float64], append: bool
) -> None:
    """Set the layer's extent in ``gpkg_contents`` as GDAL leaves it: grown to hold the
    ``envelopes`` (xmin, ymin, xmax, ymax rows) added, or theirs for a table written whole."""
    if not len(envelopes):
        if not append:  # an empty table created again has no extent
            db.execute(
                "UPDATE gpkg_contents SET min_x = NULL, min_y = NULL, max_x = NULL, "
                "max_y = NULL WHERE lower(table_name) = lower(?)",
                (table,),
            )
        return
    box = [*envelopes[:, :2].min(axis=0).tolist(), *envelopes[:, 2:].max(axis=0).tolist()]
    if append:
        old = db.execute(
            "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents "
            "WHERE lower(table_name) = lower(?)",
            (table,),
        ).fetchone()
        if old is not None and None not in old:
            box = [
                min(box[0], old[0]),
                min(box[1], old[1]),
                max(box[2], old[2]),
                max(box[3], old[3]),
            ]
    db.execute(
        "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ? "
        "WHERE lower(table_name) = lower(?)",
        (*(float(f"{v:.16g}") for v in box), table),  # GDAL writes 16 significant digits
    )


__all__ = ["geometry_blob", "write_rows"]
