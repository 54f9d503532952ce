"""Read a status store back without rescanning the cache: its rows with their polygons, its
missing areas, level totals, problems and jobs.

Every table is read through its declaration in :mod:`~cachestatus.store.schema`: each stored
field fills the attribute of the same column, by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ..errors import StatusNotFound
from ..models import (
    CORRUPT,
    BundleKey,
    LevelSummary,
    MissingAreaRecord,
    Problem,
    RowBatch,
    StatusReport,
    TilingScheme,
)
from .geometry import rectangle_tiles
from .records import BundleFileRows, FileStamps, JobRecord, StoredRows
from .schema import (
    BUNDLE_FILES,
    BUNDLE_FILES_LAYER,
    JOBS,
    JOBS_LAYER,
    LEVEL_STATUS,
    LEVEL_STATUS_LAYER,
    MISSING_AREAS,
    MISSING_AREAS_LAYER,
    TASK_STATUS,
    TASK_STATUS_LAYER,
    TEXT,
    TIME,
    Column,
    Layer,
)
from .tables import is_geopackage

T = TypeVar("T")

#: The ``BundleFiles`` fields :func:`read_file_stamps` reads.
_STAMP_FIELDS = ("levelID", "bundleRow", "bundleCol", "fileBytes", "stamp")
#: The ``TaskStatus`` fields :func:`read_keys` reads.
_KEY_FIELDS = ("levelID", "bundleRow", "bundleCol", "status")


def _table(
    path: Path,
    layer: Layer,
    where: str | None = None,
    geometry: bool = False,
    names: Sequence[str] | None = None,
) -> tuple[list[tuple[str, Column, npt.NDArray[Any]]], Any]:
    """The stored fields of a layer (derived ones left out; only ``names`` when given) with
    their values as read, nulls for a field added after the store was written; and with
    ``geometry``, the polygons (shapely), else ``None``.

    Raises:
        StatusNotFound: a field every store has is missing (not a store cachestatus wrote).
    """
    # GDAL's OpenFileGDB driver does not see ignored fields in filters: ``names`` holds the
    # fields ``where`` tests. Derived fields (a row's bundleName, jobID...) are not read back:
    # not asked for either (GDAL skips a name the table lacks, a field added since).
    wanted = [c.name for c in layer.columns if c.attribute is not None] if names is None else names
    wkb = None
    if is_geopackage(path) and not geometry:
        # GDAL hands a GeoPackage's attribute filter to SQLite as it is: the same rows.
        table = _gpkg_fields(path, layer, wanted, where)
    else:
        from pyogrio.raw import read as ogr_read  # GDAL loads on first use: a faster start-up

        meta, _fids, wkb, values = ogr_read(
            str(path),
            layer=layer.name,
            read_geometry=geometry,
            where=where,
            columns=list(wanted),
        )
        table = dict(zip(meta["fields"], values, strict=True))
    count = len(next(iter(table.values()))) if table else 0
    fields = []
    for column in layer.columns:
        attribute = column.attribute
        if attribute is None or (names is not None and column.name not in names):
            continue
        stored = table.get(column.name)
        if stored is None:
            if not column.nullable:
                raise StatusNotFound(
                    f"{path}: its {layer.name} table has no {column.name} field; it is not a "
                    "store cachestatus wrote (rebuild it with `cachestatus rebuild`)"
                )
            stored = column.nulls(count)
        fields.append((attribute, column, stored))
    if not geometry:
        return fields, None
    import shapely

    return fields, shapely.from_wkb(wkb)


def _gpkg_fields(
    path: Path, layer: Layer, names: Sequence[str], where: str | None = None
) -> dict[str, npt.NDArray[Any]]:
    """The fields ``names`` of a GeoPackage's table (those it has; of the rows matching
    ``where`` when given), read through SQLite in the order of its rows, as GDAL gives them:
    integers, floats (NaN for null, and for a nullable integer), text (``None`` for null),
    times as ``datetime64[ms]`` (NaT for null). Many times faster than GDAL for a table of many
    rows, which an incremental rebuild reads."""
    from . import partial

    db = partial.connect(path, read_only=True)
    try:
        stored = {row[1] for row in db.execute(f'PRAGMA table_info("{layer.name}")')}
        columns = [c for c in layer.columns if c.name in names and c.name in stored]
        if not columns:
            return {}
        selected = ", ".join(f'"{c.name}"' for c in columns)
        condition = "" if where is None else f" WHERE {where}"
        rows = db.execute(
            f'SELECT {selected} FROM "{layer.name}"{condition} ORDER BY fid'
        ).fetchall()
    finally:
        db.close()
    values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return {c.name: _as_read(c, v) for c, v in zip(columns, values, strict=True)}


def _as_read(column: Column, values: Sequence[Any]) -> npt.NDArray[Any]:
    """A field's SQLite values as GDAL reads them (see :func:`_gpkg_fields`)."""
    if column.dtype == TEXT:
        return np.array(values, dtype=object)
    if column.dtype == TIME:
        # GDAL's text, UTC without a zone (one that says Z read the same)
        texts = ["NaT" if v is None else str(v).removesuffix("Z") for v in values]
        return np.array(texts, dtype=TIME)
    kind = np.dtype(column.dtype).kind
    if kind == "i" and not column.nullable and None not in values:
        return np.array(values, dtype=np.int64)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _records(
    path: Path, layer: Layer, record: Callable[..., T], where: str | None = None
) -> list[T]:
    """The rows of a table as records (``record`` takes the fields by attribute, and the
    polygon as ``geometry`` where the table has them); only those matching ``where`` (an
    attribute filter) when given."""
    fields, geometry = _table(path, layer, where, geometry=layer.geometry is not None)
    columns = {attribute: column.items(stored) for attribute, column, stored in fields}
    if geometry is not None:
        columns["geometry"] = list(geometry)
    return [
        record(**dict(zip(columns, row, strict=True)))
        for row in zip(*columns.values(), strict=True)
    ]


def _rows(
    path: Path, where: str | None = None, scheme: TilingScheme | None = None, geometry: bool = False
) -> tuple[RowBatch, Any]:
    """``TaskStatus`` rows, and with ``geometry`` their polygons (shapely). Each row's ``tiles``
    is the block of its polygon in ``scheme``, or -1 without a scheme."""
    fields, polygons = _table(path, TASK_STATUS_LAYER, where, geometry or scheme is not None)
    columns = {attribute: column.column(stored) for attribute, column, stored in fields}
    if scheme is None:
        tiles = np.full((len(columns["state"]), 4), -1, dtype=np.int64)
    else:
        import shapely

        tiles = rectangle_tiles(scheme, columns["level"], shapely.bounds(polygons))
    rows = RowBatch(**columns, tiles=tiles)
    return rows, polygons


def _layers(path: Path) -> set[str]:
    if is_geopackage(path):
        from . import partial

        return partial.tables(path)
    from pyogrio import list_layers

    return {str(name) for name, _ in list_layers(str(path))}


def _check(path: Path) -> set[str]:
    """Check the store is there and ours; its layer names."""
    if not path.exists():
        raise StatusNotFound(
            f"{path}: no status store here; run `cachestatus rebuild` first "
            "(or give --status with the store's path)"
        )
    try:
        layers = _layers(path)
    except Exception as exc:  # pyogrio's DataSourceError and friends
        raise StatusNotFound(f"{path}: not a readable status store ({exc})") from None
    missing = {LEVEL_STATUS, JOBS} - layers
    if missing:
        raise StatusNotFound(
            f"{path}: not a cachestatus store (no {', '.join(sorted(missing))} "
            "table); rebuild it with `cachestatus rebuild`"
        )
    return layers


def read_jobs(path: Path) -> list[JobRecord]:
    """All rows of the store's ``Jobs`` table, oldest first."""
    _check(path)
    return _records(path, JOBS_LAYER, JobRecord)


def read_rows(
    path: Path, where: str | None = None, scheme: TilingScheme | None = None
) -> StoredRows:
    """The store's ``TaskStatus`` rows, with their polygons (shapely, in the store's CRS).

    Args:
        path: the status store.
        where: an attribute filter on the store's fields (OGR SQL), e.g. ``"status = 'CORRUPT'"``.
        scheme: the cache's tiling scheme. With it, each row's ``tiles`` is the block of tiles
            its polygon covers (the polygon of a stray bundle far outside the cache's extent is
            clipped in the store, and so is its block). Without it the store cannot tell tiles
            from map units, and ``tiles`` is -1.

    Raises:
        StatusNotFound: there is no status store at ``path``.
    """
    if TASK_STATUS not in _check(path):
        return StoredRows(RowBatch.from_statuses([]), np.zeros(0, dtype=object))
    return StoredRows(*_rows(path, where, scheme, geometry=True))


#: What :func:`read_bundle_files` reads with ``counts_only``: the fields the level totals and
#: missing areas are folded from, by table.
COUNTED_FIELDS = {
    TASK_STATUS: (
        "levelID",
        "bundleRow",
        "bundleCol",
        "tilesExpected",
        "tilesPresent",
        "tilesStray",
        "status",
        "tileBytes",
        "tilesBlank",
    ),
    BUNDLE_FILES: (
        "levelID",
        "bundleRow",
        "bundleCol",
        "blockRow0",
        "blockRow1",
        "blockCol0",
        "blockCol1",
        "holes",
    ),
}


def read_bundle_files(
    path: Path, counts_only: bool = False
) -> tuple[BundleFileRows, RowBatch] | None:
    """The store's ``BundleFiles`` rows and its ``TaskStatus`` rows (without polygons: each
    row's ``tiles`` is -1), or ``None`` for a store without a ``BundleFiles`` table (written
    by a report, or by an earlier version).

    With ``counts_only``, only the fields of :data:`COUNTED_FIELDS` are read, the others left
    unknown (-1, NaN, empty text): rows to fold into level totals and missing areas, not to
    write (those a GeoPackage updated in place keeps as they are).

    Raises:
        StatusNotFound: there is no status store at ``path``, or not one of ours.
    """
    layers = _check(path)
    if BUNDLE_FILES not in layers or TASK_STATUS not in layers:
        return None
    names = COUNTED_FIELDS[BUNDLE_FILES] if counts_only else None
    fields, _ = _table(path, BUNDLE_FILES_LAYER, names=names)
    found = {attribute: column.column(stored) for attribute, column, stored in fields}
    files = BundleFileRows(**_unread(BUNDLE_FILES_LAYER, found))
    if not counts_only:
        rows, _ = _rows(path)
        return files, rows
    fields, _ = _table(path, TASK_STATUS_LAYER, names=COUNTED_FIELDS[TASK_STATUS])
    found = {attribute: column.column(stored) for attribute, column, stored in fields}
    tiles = np.full((len(found["state"]), 4), -1, dtype=np.int64)
    return files, RowBatch(**_unread(TASK_STATUS_LAYER, found), tiles=tiles)


def _unread(layer: Layer, found: dict[str, Any]) -> dict[str, Any]:
    """The columns ``found`` of ``layer``'s rows, and those not read as unknown: -1 in an
    integer column, NaN in a float or time one, empty text."""
    count = len(next(iter(found.values())))
    columns = dict(found)
    for column in layer.columns:
        attribute = column.attribute
        if attribute is None or attribute in columns:
            continue
        if column.dtype == TEXT:
            columns[attribute] = [""] * count
        elif column.dtype == TIME or np.dtype(column.dtype).kind == "f":
            columns[attribute] = np.full(count, np.nan)
        else:
            columns[attribute] = np.full(count, -1, dtype=np.int64)
    return columns


def read_file_stamps(path: Path) -> FileStamps | None:
    """The key, size and stamp of each of the store's ``BundleFiles`` rows (in the order
    :func:`read_bundle_files` gives them), or ``None`` for a store without a ``BundleFiles``
    table: what telling changed bundle files from others needs, and no more.

    Raises:
        StatusNotFound: there is no status store at ``path``, or not one of ours.
    """
    layers = _check(path)
    if BUNDLE_FILES not in layers or TASK_STATUS not in layers:
        return None
    fields, _ = _table(path, BUNDLE_FILES_LAYER, names=_STAMP_FIELDS)
    columns = {
        attribute: stored if column.dtype == TEXT else column.column(stored)
        for attribute, column, stored in fields
    }
    return FileStamps(**columns)


def read_keys(path: Path, where: str) -> tuple[npt.NDArray[np.int64], ...]:
    """The bundle keys (levels, rows, columns) of the ``TaskStatus`` rows matching ``where``,
    an attribute filter on the fields ``levelID``, ``bundleRow``, ``bundleCol`` and
    ``status``."""
    fields, _ = _table(path, TASK_STATUS_LAYER, where, names=_KEY_FIELDS)
    found = {attribute: column.column(stored) for attribute, column, stored in fields}
    return found["level"], found["row"], found["col"]


def read_level_states(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """The level and the status (text) of every ``TaskStatus`` row, in one read of the two
    fields."""
    fields, _ = _table(path, TASK_STATUS_LAYER, names=("levelID", "status"))
    found = {attribute: stored for attribute, _, stored in fields}
    return found["level"].astype(np.int64, copy=False), found["state"]


def read_levels(path: Path) -> list[LevelSummary]:
    """The store's ``LevelStatus`` rows, in the order they were written."""
    return _records(path, LEVEL_STATUS_LAYER, LevelSummary)


def read_area_counts(path: Path) -> list[tuple[int, int, bool]]:
    """Per row of the store's ``MissingAreas`` (its polygon left unread): the level, its
    missing tiles and whether the polygon is exact."""
    fields, _ = _table(path, MISSING_AREAS_LAYER)
    columns = {attribute: column.items(stored) for attribute, column, stored in fields}
    return list(zip(columns["level"], columns["tiles_missing"], columns["exact"], strict=True))


def count_rows(path: Path, layer: str) -> int:
    """How many rows a table of the store holds."""
    if is_geopackage(path):
        from . import partial

        return partial.count(path, layer)
    from pyogrio import read_info

    return int(read_info(str(path), layer=layer)["features"])


def read_missing_areas(path: Path, level: int | None = None) -> list[MissingAreaRecord]:
    """The store's ``MissingAreas`` rows: per level, its missing tiles as a shapely polygon;
    only those of ``level`` when given (the others are not read).

    Raises:
        StatusNotFound: there is no status store at ``path``.
    """
    if MISSING_AREAS not in _check(path):
        return []
    where = None if level is None else f"levelID = {int(level)}"
    return _records(path, MISSING_AREAS_LAYER, MissingAreaRecord, where)


def read_status(path: Path) -> StatusReport:
    """The stored status as a report: level totals, corrupt bundles, the last job."""
    layers = _check(path)
    levels = _records(path, LEVEL_STATUS_LAYER, LevelSummary)
    problems = []
    if TASK_STATUS in layers:
        bad, _ = _rows(path, where="status = 'CORRUPT'")
        labels = BundleKey.labels(bad.level, bad.row, bad.col)
        problems = [
            Problem(label, CORRUPT, detail)
            for label, detail in zip(labels, bad.detail, strict=True)
        ]
    jobs = _records(path, JOBS_LAYER, JobRecord)
    last = jobs[-1] if jobs else None
    elapsed = math.nan
    if last is not None and last.finished is not None:
        elapsed = (last.finished - last.started).total_seconds()
    return StatusReport(
        cache=last.cache_path if last else "",
        format=last.format if last else "",
        status_path=str(path),
        job_id=last.job_id if last else "",
        mode=last.mode if last else "",
        elapsed_s=elapsed,
        levels=levels,
        problems=problems,
    )
