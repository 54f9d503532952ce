"""The status store's layers and fields (spec §3.3), each declared once.

A :class:`Layer` is a table: its name, its geometry type and its :class:`Column` s in order. A
column names the attribute its values come from (a :class:`~cachestatus.models.RowBatch` column
for ``TaskStatus``, a field of the records of the other tables), or derives them from others
(``percentComplete``, ``bundleName``...). The writer writes ``layer.columns`` in order; the
reader fills each attribute back from the field of that name (derived fields are not read).

Counts and byte sums that can pass 2**31 (a bundle's bytes, a level's tile counts) are 64-bit
integers. A FileGDB is written by default for every reader administrators still run (ArcMap 10.x,
ArcGIS Pro before 3.2, GDAL before 3.9 and the QGIS built on it): GDAL then stores 64-bit integers
as Double fields, exact to 2**53, far beyond any cache. With ``big_integer`` (``--big-integer``)
they are written as *Big Integer* fields (GDAL's OpenFileGDB layer option
``TARGET_ARCGIS_VERSION=ARCGIS_PRO_3_2_OR_LATER``), which only ArcGIS Pro 3.2 and later and
GDAL 3.9 and later open: older readers see no fields and no rows at all in such a layer.
GeoPackage stores them as INTEGER (64-bit) natively.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from ..models import BundleKey, RowBatch, TilingScheme, percent_complete
from .tables import (
    BUNDLE_FILES,
    DRIVERS,
    FLAG,
    GEOMETRY_TYPES,
    JOB_FIELDS,
    JOBS,
    LEVEL_STATUS,
    MISSING_AREAS,
    TASK_STATUS,
    TEXT,
    TIME,
)


class Run(NamedTuple):
    """What the rows a run writes share: its job and the cache's tiling scheme."""

    job_id: str
    scheme: TilingScheme


@dataclass(frozen=True)
class Column:
    """One field of a layer.

    Attributes:
        name: the field's name in the store.
        dtype: its numpy type as written: an integer or float type, :data:`TEXT`, :data:`TIME`
            or :data:`FLAG`.
        get: where the values come from: the name of an attribute of the layer's rows (the
            reader fills it back), or a function of the rows and the :class:`Run` for a field
            derived from others (not read back).
        nullable: whether the field may be null. Nulls are ``None`` in records; in a
            ``RowBatch`` column, -1 in a count and NaN in a time (seconds since the epoch).
    """

    name: str
    dtype: str
    get: str | Callable[[Any, Run], Any]
    nullable: bool = False

    @property
    def attribute(self) -> str | None:
        """The attribute the field stores and is read back into; ``None`` when derived."""
        return self.get if isinstance(self.get, str) else None

    def values(self, rows: Any, run: Run) -> Any:
        """The column's values for ``rows``: a :class:`RowBatch`, or a sequence of records."""
        if not isinstance(self.get, str):
            return self.get(rows, run)
        if isinstance(rows, Sequence):  # records
            return [getattr(row, self.get) for row in rows]
        return getattr(rows, self.get)  # columns: a RowBatch, BundleFileRows

    @property
    def _integer(self) -> bool:
        return np.dtype(self.dtype).kind == "i"

    def to_store(self, values: Any) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_] | None]:
        """``values`` (:meth:`values`) as written, and which are null where the type itself has
        no null (integers); a float holds NaN, a time NaT."""
        if isinstance(values, np.ndarray):  # a RowBatch column
            if self.dtype == TIME:
                return _epoch_ms(values), None
            if self._integer and self.nullable:
                return np.maximum(values, 0).astype(self.dtype), values < 0
            return values.astype(self.dtype, copy=False), None
        if self.dtype == TIME:
            return np.array([_datetime64(v) for v in values], dtype=TIME), None
        if self._integer and self.nullable:
            nulls = np.array([v is None for v in values], dtype=bool)
            return np.array([v or 0 for v in values], dtype=self.dtype), nulls
        if self.nullable:
            values = [np.nan if v is None else v for v in values]
        return np.array(values, dtype=self.dtype), None

    def column(self, stored: npt.NDArray[Any]) -> Any:
        """A :class:`RowBatch` column from the field's values as read: the inverse of
        :meth:`to_store` (GDAL reads a null integer as NaN)."""
        if self.dtype == TEXT:
            return stored.tolist()
        if self.dtype == TIME:
            nat = np.isnat(stored)
            ms = np.where(nat, 0, stored.astype(TIME).astype(np.int64))
            return np.where(nat, np.nan, ms / 1000)
        if self._integer and self.nullable:
            return np.where(np.isnan(stored), -1, stored).astype(np.int64)
        return stored.astype(np.int64 if self._integer else np.float64)

    def items(self, stored: npt.NDArray[Any]) -> list[Any]:
        """The field's values as read, as the values of records (``None`` for null)."""
        if self.dtype == TIME:
            # A start time left null in a store edited by hand reads as the epoch.
            default = None if self.nullable else datetime.fromtimestamp(0, UTC)
            return [default if t is None else t.replace(tzinfo=UTC) for t in stored.tolist()]
        values = self.column(stored)
        if self.dtype == TEXT:
            return list(values)
        items = values.tolist()
        if self.dtype == FLAG:
            return [bool(v) for v in items]
        if self._integer and self.nullable:
            return [None if v < 0 else v for v in items]
        return list(items)

    def nulls(self, count: int) -> npt.NDArray[Any]:
        """A field of ``count`` nulls as read: what a store written before the field was added
        gives for it."""
        return np.full(count, np.datetime64("NaT", "ms") if self.dtype == TIME else np.nan)


@dataclass(frozen=True)
class Layer:
    """A table of the store: its name, geometry type (``None``: no geometry) and fields."""

    name: str
    geometry: str | None
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        """The field names, in order."""
        return [c.name for c in self.columns]

    def record_fields(self, records: Sequence[Any]) -> list[npt.NDArray[Any]]:
        """The fields of ``records`` as written, for a layer whose fields are all stored
        attributes, none null (``MissingAreas`` exported on its own)."""
        assert all(c.attribute and not c.nullable for c in self.columns), self.name
        return [
            c.to_store([getattr(r, str(c.attribute)) for r in records])[0] for c in self.columns
        ]


def _epoch_ms(seconds: npt.NDArray[np.float64]) -> npt.NDArray[np.datetime64]:
    """Epoch seconds (NaN = unknown) as ``datetime64[ms]`` (NaT = unknown), UTC."""
    out = np.full(seconds.shape, np.datetime64("NaT", "ms"))
    known = ~np.isnan(seconds)
    out[known] = np.round(seconds[known] * 1000).astype("int64").astype(TIME)
    return out


def _datetime64(value: datetime | None) -> np.datetime64:
    if value is None:
        return np.datetime64("NaT", "ms")
    return np.datetime64(value.replace(tzinfo=None), "ms")  # stored values are UTC


def _job_id(rows: Any, run: Run) -> list[str]:
    return [run.job_id] * len(rows)


def _bundle_labels(rows: RowBatch, run: Run) -> list[str]:
    return BundleKey.labels(rows.level, rows.row, rows.col)


def _row_percent(rows: RowBatch, run: Run) -> npt.NDArray[np.float64]:
    return percent_complete(rows.tiles_present, rows.tiles_expected)


def _lod_values(attribute: str) -> Callable[[RowBatch, Run], npt.NDArray[np.float64]]:
    """The values of a LOD attribute (``scale``, ``resolution``) for each row's level."""

    def get(rows: RowBatch, run: Run) -> npt.NDArray[np.float64]:
        lods = sorted(run.scheme.lods, key=lambda lod: lod.level)
        where: npt.NDArray[np.intp] = np.searchsorted([lod.level for lod in lods], rows.level)
        return np.array([getattr(lod, attribute) for lod in lods], dtype=np.float64)[where]

    return get


#: Rows: a :class:`~cachestatus.models.RowBatch`. A new field of the row is one line in
#: :class:`~cachestatus.models.BundleStatus` and one column here. ``tilesBlank`` (tiles stored
#: without content, ``--blank``) is null where it was not counted.
TASK_STATUS_LAYER: Final = Layer(
    TASK_STATUS,
    GEOMETRY_TYPES[TASK_STATUS],
    (
        Column("bundleName", TEXT, _bundle_labels),
        Column("jobID", TEXT, _job_id),
        Column("levelID", "int32", "level"),
        Column("scale", "float64", _lod_values("scale")),
        Column("resolution", "float64", _lod_values("resolution")),
        Column("bundleRow", "int32", "row"),
        Column("bundleCol", "int32", "col"),
        Column("tilesExpected", "int32", "tiles_expected"),
        Column("tilesPresent", "int32", "tiles_present"),
        Column("tilesStray", "int32", "tiles_stray"),
        Column("percentComplete", "float64", _row_percent, nullable=True),
        Column("status", TEXT, "state"),
        Column("tileBytes", "int64", "tile_bytes"),
        Column("fileBytes", "int64", "file_bytes"),
        Column("deadBytes", "int64", "dead_bytes"),
        Column("modified", TIME, "mtime", nullable=True),
        Column("detail", TEXT, "detail"),
        Column("tilesBlank", "int32", "tiles_blank", nullable=True),
    ),
)

#: Rows: :class:`~cachestatus.models.LevelSummary`.
LEVEL_STATUS_LAYER: Final = Layer(
    LEVEL_STATUS,
    None,
    (
        Column("levelID", "int32", "level"),
        Column("scale", "float64", "scale"),
        Column("resolution", "float64", "resolution"),
        Column("bundles", "int32", "bundles"),
        Column("tilesExpected", "int64", "tiles_expected"),
        Column("tilesPresent", "int64", "tiles_present"),
        Column("tilesStray", "int64", "tiles_stray"),
        Column(
            "percentComplete",
            "float64",
            lambda levels, run: [lv.percent_complete for lv in levels],
            nullable=True,
        ),
        Column("tileBytes", "int64", "tile_bytes"),
        Column("jobID", TEXT, _job_id),
        Column("tilesBlank", "int64", "tiles_blank", nullable=True),
    ),
)

#: Rows: :class:`~cachestatus.models.MissingAreaRecord`. ``exact`` is 1 where the polygon
#: is exactly the missing tiles, 0 where it is a cover holding them all (and more).
MISSING_AREAS_LAYER: Final = Layer(
    MISSING_AREAS,
    GEOMETRY_TYPES[MISSING_AREAS],
    (
        Column("levelID", "int32", "level"),
        Column("scale", "float64", "scale"),
        Column("tilesMissing", "int64", "tiles_missing"),
        Column("exact", FLAG, "exact"),
    ),
)

#: Rows: :class:`~cachestatus.store.records.JobRecord`.
JOBS_LAYER: Final = Layer(
    JOBS, None, tuple(Column(name, dtype, get, null) for name, dtype, get, null in JOB_FIELDS)
)

#: Rows: :class:`~cachestatus.store.records.BundleFileRows`, one per bundle file a rebuild read
#: (or reused): what the next rebuild needs to reuse its ``TaskStatus`` row. ``size`` and
#: ``stamp`` (``st_mtime_ns`` or an ETag, as text) are exact, unlike ``TaskStatus.modified``
#: (milliseconds); ``blockRow0``... the row's block of tiles (its polygon's); ``holes`` the
#: tagged blocks the file misses (see :func:`~cachestatus.store.records.encode_holes`).
BUNDLE_FILES_LAYER: Final = Layer(
    BUNDLE_FILES,
    None,
    (
        Column("levelID", "int32", "level"),
        Column("bundleRow", "int32", "row"),
        Column("bundleCol", "int32", "col"),
        Column("fileBytes", "int64", "size"),
        Column("stamp", TEXT, "stamp"),
        Column("blockRow0", "int64", "row0"),
        Column("blockRow1", "int64", "row1"),
        Column("blockCol0", "int64", "col0"),
        Column("blockCol1", "int64", "col1"),
        Column("holes", TEXT, "holes"),
    ),
)

__all__ = [
    "BUNDLE_FILES",
    "BUNDLE_FILES_LAYER",
    "DRIVERS",
    "FLAG",
    "JOBS",
    "JOBS_LAYER",
    "LEVEL_STATUS",
    "LEVEL_STATUS_LAYER",
    "MISSING_AREAS",
    "MISSING_AREAS_LAYER",
    "TASK_STATUS",
    "TASK_STATUS_LAYER",
    "TEXT",
    "TIME",
    "Column",
    "Layer",
    "Run",
]
