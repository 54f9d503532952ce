"""Read a status store back without rescanning the cache: its rows with their polygons, its
missing areas, level totals, problems and jobs.

Every table is read through its declaration in :mod:`~cachestatus.store.schema`: each stored
field fills the attribute of the same column, by name.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ..errors import StatusNotFound, StatusWriteError
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
from .records import (
    BundleFileRows,
    FileStamps,
    JobRecord,
    StoredRows,
    stamp_values,
    take_rows,
)
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

#: The ``BundleFiles`` fields :func:`file_stamp_parts` reads.
_STAMP_FIELDS = ("levelID", "bundleRow", "bundleCol", "fileBytes", "stamp")
#: The ``TaskStatus`` fields :func:`key_parts` reads.
_KEY_FIELDS = ("levelID", "bundleRow", "bundleCol", "status")


#: A function a field's values are read through (:func:`_table_rows`).
Convert = Callable[[npt.NDArray[Any]], npt.NDArray[Any]]


def _same(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return values


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
    fields, polygons, _ = _table_rows(path, layer, where, geometry, names)
    return fields, polygons


def _table_rows(
    path: Path,
    layer: Layer,
    where: str | None = None,
    geometry: bool = False,
    names: Sequence[str] | None = None,
    fids: npt.NDArray[np.int64] | None = None,
) -> tuple[list[tuple[str, Column, npt.NDArray[Any]]], Any, npt.NDArray[np.int64]]:
    """:func:`_table`, of only the rows whose feature ids are ``fids`` (ascending; not with
    ``where`` but in a GeoPackage) when given, and the feature id of each row read: rows come
    in the order of their ids."""
    # GDAL's OpenFileGDB driver does not see ignored fields in filters: ``names`` holds the
    # fields ``where`` tests. Derived fields (a row's bundleName, jobID...) are not read back:
    # not asked for either (GDAL skips a name the table lacks, a field added since).
    wanted = [c.name for c in layer.columns if c.attribute is not None] if names is None else names
    wkb = None
    if is_geopackage(path) and not geometry:
        # GDAL hands a GeoPackage's attribute filter to SQLite as it is: the same rows.
        read_fids, table = _gpkg_fields(path, layer, wanted, where, fids)
    else:
        from pyogrio.raw import read as ogr_read  # GDAL loads on first use: a faster start-up

        meta, read_fids, wkb, values = ogr_read(
            str(path),
            layer=layer.name,
            read_geometry=geometry,
            where=where,
            columns=list(wanted),
            fids=fids,
            return_fids=True,
        )
        table = dict(zip(meta["fields"], values, strict=True))
        read_fids = np.asarray(read_fids, dtype=np.int64)
    fields = _named_fields(path, layer, names, table, len(read_fids))
    if not geometry:
        return fields, None, read_fids
    import shapely

    return fields, shapely.from_wkb(wkb), read_fids


def _named_fields(
    path: Path,
    layer: Layer,
    names: Sequence[str] | None,
    table: Mapping[str, npt.NDArray[Any]],
    count: int,
) -> list[tuple[str, Column, npt.NDArray[Any]]]:
    """The fields of ``layer`` (only ``names`` when given) that are read back, each with its
    values in ``table`` (by field name; ``count`` nulls for a field added after the store was
    written)."""
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
    return fields


def _field_parts(
    path: Path,
    layer: Layer,
    names: Sequence[str],
    where: str | None = None,
    convert: Mapping[str, Convert] | None = None,
) -> Iterator[tuple[npt.NDArray[np.int64], list[tuple[str, Column, npt.NDArray[Any]]]]]:
    """:func:`_table_rows` (without polygons) a part at a time, in the order of their ids:
    millions of texts (stamps, states) are not held at once. Through GDAL (a FileGDB),
    without ``where``: :data:`_GDAL_PART` rows at a time, each part from its position (GDAL's
    OpenFileGDB driver goes to a row by its position at once)."""
    if is_geopackage(path):
        for fids, table in _gpkg_parts(path, layer, names, where, None, convert):
            yield fids, _named_fields(path, layer, names, table, len(fids))
        return
    assert where is None, "parts by position are parts of the whole table"
    from pyogrio.raw import read as ogr_read

    last = 0  # feature ids start at 1
    for start in itertools.count(0, _GDAL_PART):
        meta, fids, _, values = ogr_read(
            str(path),
            layer=layer.name,
            read_geometry=False,
            columns=list(names),
            skip_features=start,
            max_features=_GDAL_PART,
            return_fids=True,
        )
        if not len(fids):
            return
        # Should a position count a deleted row, parts would overlap: a row is handed on once.
        fids = np.asarray(fids, dtype=np.int64)
        new = fids > last
        last = max(last, int(fids.max()))
        table = {name: column[new] for name, column in zip(meta["fields"], values, strict=True)}
        for name, function in (convert or {}).items():
            if name in table:
                table[name] = function(table[name])
        yield fids[new], _named_fields(path, layer, names, table, int(new.sum()))


#: Rows fetched from SQLite at a time: the tuples of a whole table of millions of rows would
#: take several times the arrays made of them.
_FETCH = 16_384
#: Rows read through GDAL at a time (:func:`_field_parts`): each read opens the store
#: (0.24 s for 65,536 rows of ``BundleFiles``, at any position, as a part of a whole read).
_GDAL_PART = 65_536


def _gpkg_fields(
    path: Path,
    layer: Layer,
    names: Sequence[str],
    where: str | None = None,
    fids: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int64], dict[str, npt.NDArray[Any]]]:
    """The feature ids and the fields ``names`` of a GeoPackage's table (:func:`_gpkg_parts`),
    all parts together."""
    parts = list(_gpkg_parts(path, layer, names, where, fids))
    if not parts:
        empty = {c.name: _as_read(c, ()) for c in layer.columns if c.name in names}
        return np.zeros(0, dtype=np.int64), empty
    read = {name: np.concatenate([part[name] for _, part in parts]) for name in parts[0][1]}
    return np.concatenate([fids for fids, _ in parts]), read


def _gpkg_parts(
    path: Path,
    layer: Layer,
    names: Sequence[str],
    where: str | None = None,
    fids: npt.NDArray[np.int64] | None = None,
    convert: Mapping[str, Convert] | None = None,
) -> Iterator[tuple[npt.NDArray[np.int64], dict[str, npt.NDArray[Any]]]]:
    """The feature ids and the fields ``names`` of a GeoPackage's table (those it has; of the
    rows matching ``where``, and of those whose ids are ``fids``, when given), read through
    SQLite in the order of its rows, as GDAL gives them: integers, floats (NaN for null, and
    for a nullable integer), text (``None`` for null), times as ``datetime64[ms]`` (NaT for
    null). Many times faster than GDAL for a table of many rows, which an incremental rebuild
    reads. Handed on :data:`_FETCH` rows at a time, a field named in ``convert`` passed
    through its function."""
    from . import partial

    convert = convert or {}
    db = partial.connect(path, read_only=True)
    try:
        stored = {row[1] for row in db.execute(f'PRAGMA table_info("{layer.name}")')}
        columns = [c for c in layer.columns if c.name in names and c.name in stored]
        selected = "".join(f', "{c.name}"' for c in columns)
        conditions = [] if where is None else [f"({where})"]
        if fids is not None:
            conditions.append(f"fid IN ({','.join(map(str, fids.tolist()))})")
        condition = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        cursor = db.execute(f'SELECT fid{selected} FROM "{layer.name}"{condition} ORDER BY fid')
        while rows := cursor.fetchmany(_FETCH):
            values = list(zip(*rows, strict=True))
            del rows
            yield (
                np.array(values[0], dtype=np.int64),
                {
                    c.name: convert.get(c.name, _same)(_as_read(c, v))
                    for c, v in zip(columns, values[1:], strict=True)
                },
            )
    finally:
        db.close()


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
    path: Path,
    file_fids: npt.NDArray[np.int64],
    row_fids: npt.NDArray[np.int64],
    counts_only: bool = False,
) -> tuple[BundleFileRows, RowBatch]:
    """The store's ``BundleFiles`` rows whose feature ids are ``file_fids`` (ascending), and
    its ``TaskStatus`` rows whose ids are ``row_fids``, in that order (without polygons: each
    row's ``tiles`` is -1): a batch of the rows an incremental rebuild reuses, read as they
    are folded. The ids are those :func:`file_stamp_parts` and :func:`key_parts` give.

    With ``counts_only``, only the fields of :data:`COUNTED_FIELDS` are read, the others left
    unknown (-1, NaN, empty text): rows to fold into level totals and missing areas, not to
    write (those a GeoPackage updated in place keeps as they are).
    """
    names = COUNTED_FIELDS[BUNDLE_FILES] if counts_only else None
    fields, _, files_read = _table_rows(path, BUNDLE_FILES_LAYER, names=names, fids=file_fids)
    found = {attribute: column.column(stored) for attribute, column, stored in fields}
    files = BundleFileRows(**_unread(BUNDLE_FILES_LAYER, found))
    names = COUNTED_FIELDS[TASK_STATUS] if counts_only else None
    wanted = np.unique(row_fids)
    fields, _, read = _table_rows(path, TASK_STATUS_LAYER, names=names, fids=wanted)
    found = {attribute: column.column(stored) for attribute, column, stored in fields}
    tiles = np.full((len(read), 4), -1, dtype=np.int64)
    rows = RowBatch(**_unread(TASK_STATUS_LAYER, found), tiles=tiles)
    if not (np.array_equal(files_read, file_fids) and np.array_equal(read, wanted)):
        raise StatusWriteError(
            f"{path}: rows it held when this run started are gone: another program changed "
            "it meanwhile; run the rebuild again"
        )
    return files, take_rows(rows, np.searchsorted(read, row_fids))


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


def file_stamp_parts(path: Path) -> Iterator[FileStamps] | None:
    """The feature id, key, size and stamp (:func:`~.records.stamp_values`) of each of the
    store's ``BundleFiles`` rows, in the order of their ids, a part at a time
    (:func:`_field_parts`), or ``None`` for a store without a ``BundleFiles`` table: what
    telling changed bundle files from others needs, and no more.

    Raises:
        StatusNotFound: there is no status store at ``path``, or not one of ours.
    """
    layers = _check(path)
    if BUNDLE_FILES not in layers or TASK_STATUS not in layers:
        return None
    parts = _field_parts(path, BUNDLE_FILES_LAYER, _STAMP_FIELDS, convert={"stamp": stamp_values})
    return (
        FileStamps(
            fid=fids,
            **{
                attribute: stored if column.dtype == TEXT else column.column(stored)
                for attribute, column, stored in fields
            },
        )
        for fids, fields in parts
    )


def key_parts(
    path: Path, states: Collection[str], among: bool = True
) -> Iterator[tuple[npt.NDArray[np.int64], ...]]:
    """The feature ids and bundle keys (levels, rows, columns) of the ``TaskStatus`` rows whose
    status is one of ``states`` (or, unless ``among``, none of them), in the order of their
    ids, a part at a time (:func:`_field_parts`)."""
    listed = ", ".join(f"'{state}'" for state in sorted(states))
    where = f"status {'' if among else 'NOT '}IN ({listed})"
    parts: Iterable[tuple[npt.NDArray[np.int64], list[tuple[str, Column, npt.NDArray[Any]]]]]
    if is_geopackage(path):  # SQLite filters without handing on a text
        parts = _field_parts(path, TASK_STATUS_LAYER, _KEY_FIELDS[:3], where)
    elif among:  # few rows, as a rule: GDAL filters them as it reads them (``status`` read)
        fields, _, fids = _table_rows(path, TASK_STATUS_LAYER, where, names=_KEY_FIELDS)
        parts = [(fids, fields)]
    else:  # most rows: their states read a part at a time, filtered here
        parts = _field_parts(path, TASK_STATUS_LAYER, _KEY_FIELDS)
    for fids, fields in parts:
        found = {a: v if c.dtype == TEXT else c.column(v) for a, c, v in fields}
        if "state" in found and not among:
            which = np.array([s not in states for s in found["state"]], dtype=np.bool_)
            fids, found = fids[which], {a: v[which] for a, v in found.items() if a != "state"}
        yield fids, found["level"], found["row"], found["col"]


def read_keys(path: Path, states: Collection[str]) -> tuple[npt.NDArray[np.int64], ...]:
    """:func:`key_parts` of the rows among ``states``, all parts together."""
    parts = list(key_parts(path, states))
    if not parts:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(4))
    return tuple(np.concatenate(columns) for columns in zip(*parts, strict=True))


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
