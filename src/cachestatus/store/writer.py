"""Write a status store through GDAL (pyogrio): ``TaskStatus`` streamed in batches, then
``LevelStatus`` and ``Jobs``, then an atomic swap into place.
"""

from __future__ import annotations

import functools
import math
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from ..errors import StatusWriteError
from ..missing_areas import MissingArea
from ..models import Extent, LevelSummary, RowBatch, SpatialReference, TilingScheme
from . import atomic
from .geometry import rectangles_wkb, tile_rectangles
from .lock import StoreLock
from .schema import (
    DRIVERS,
    JOB_FIELDS,
    JOBS,
    LEVEL_FIELDS,
    LEVEL_STATUS,
    MISSING_AREAS,
    MISSING_FIELDS,
    TASK_FIELDS,
    TASK_STATUS,
)

#: Rows buffered before they are written: memory stays flat whatever the cache's size, and most
#: rows are written while the scan goes on, leaving little for the end.
BATCH = 5_000


@dataclass(frozen=True)
class JobRecord:
    """One row of the ``Jobs`` table."""

    job_id: str
    mode: str
    started: datetime
    finished: datetime | None
    cache_path: str
    format: str
    parameters: str
    tool_version: str
    outcome: str


def _epoch_ms(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds (NaN = unknown) as ``datetime64[ms]`` (NaT = unknown), UTC."""
    out = np.full(seconds.shape, np.datetime64("NaT", "ms"))
    known = ~np.isnan(seconds)
    out[known] = np.round(seconds[known] * 1000).astype("int64").astype("datetime64[ms]")
    return out


def _datetime64(value: datetime | None) -> np.datetime64:
    if value is None:
        return np.datetime64("NaT", "ms")
    return np.datetime64(value.replace(tzinfo=None), "ms")  # stored values are UTC


def domain_bounds(extent: Extent, margin: float = 1.0) -> Extent:
    """A square around ``extent`` with ``margin`` spans (its larger side) on every side.

    With ``margin=1`` it is the XY domain; polygons are clipped to ``margin=0.5``, well inside
    it (GDAL cannot encode a coordinate lying exactly on the domain's edge).
    """
    span = max(extent.xmax - extent.xmin, extent.ymax - extent.ymin, 1.0)
    low_x, low_y = extent.xmin - margin * span, extent.ymin - margin * span
    size = (1 + 2 * margin) * span
    return Extent(low_x, low_y, low_x + size, low_y + size)


def xy_domain(extent: Extent, geographic: bool) -> dict[str, str]:
    """OpenFileGDB layer options whose XY domain holds every polygon inside ``extent``.

    The domain starts one span below and left of the extent and is three spans wide (polygons
    reaching beyond half a span around the extent, which only far stray bundles have, are
    clipped there); the resolution is GDAL's default (1e-4 map units, 1e-9 degrees) unless the
    span needs it coarser.
    """
    domain = domain_bounds(extent)
    finest = 1e9 if geographic else 1e4
    scale = min(finest, 10 ** math.floor(math.log10(2**53 / (domain.xmax - domain.xmin))))
    return {
        "XORIGIN": repr(domain.xmin),
        "YORIGIN": repr(domain.ymin),
        "XYSCALE": repr(float(scale)),
    }


class StatusWriter:
    """Writes one status store beside ``target`` and swaps it in on :meth:`commit`.

    Used as a context manager: leaving it by an exception removes the temporary store and leaves
    whatever was at ``target`` untouched. The caller holds the store's ``lock`` (see
    :func:`cachestatus.store.guard.claim`); the store is swapped in only while it still does.
    """

    def __init__(
        self,
        target: Path,
        scheme: TilingScheme,
        domain: Extent,
        job_id: str,
        token: str,
        lock: StoreLock | None = None,
        big_integer: bool = False,
    ) -> None:
        self.target = target
        self.lock = lock
        self.big_integer = big_integer
        self.driver = DRIVERS[target.suffix.lower()]
        self.scheme = scheme
        self.job_id = job_id
        self.token = token
        self.temp = atomic.sibling(target, "tmp", token)
        self.crs, _ = store_crs(scheme.spatial_reference)
        self.clip = domain_bounds(domain, margin=0.5)
        self._domain_source = domain
        self._batches: list[RowBatch] = []
        self._queued = 0
        self._created = False
        self.rows_written = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()

    def _layer_options(self, spatial: bool) -> dict[str, str] | None:
        """FileGDB layer options: an XY domain for the feature class, and Big Integer fields
        when asked for (see :mod:`cachestatus.store.schema`)."""
        if self.driver != "OpenFileGDB":
            return None
        options = {}
        if self.big_integer:
            options["TARGET_ARCGIS_VERSION"] = "ARCGIS_PRO_3_2_OR_LATER"
        if spatial:
            geographic = _is_geographic(self.scheme.spatial_reference.wkt or self.crs)
            options.update(xy_domain(self._domain_source, geographic))
        return options

    def abort(self) -> None:
        """Remove the temporary store; the target is not touched."""
        atomic.remove(self.temp)

    def add(self, batch: RowBatch) -> None:
        """Queue ``TaskStatus`` rows; they are written once :data:`BATCH` rows are queued."""
        self._batches.append(batch)
        self._queued += len(batch)
        if self._queued >= BATCH:
            self._flush()

    def _write(
        self,
        layer: str,
        geometry: Any,
        columns: Sequence[tuple[str, str]],
        data: list[np.ndarray],
        append: bool,
        spatial: bool,
        nulls: dict[str, np.ndarray] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {}
        if spatial:
            kwargs = {"geometry_type": "Polygon", "crs": self.crs}
        # GDAL is loaded on the first write, while worker processes are already scanning.
        from pyogrio.raw import write as ogr_write

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                # A cache without a usable CRS: store_crs() has warned the user already.
                warnings.filterwarnings("ignore", message="'crs' was not provided")
                ogr_write(
                    str(self.temp),
                    geometry,
                    data,
                    [name for name, _ in columns],
                    field_mask=None if not nulls else [nulls.get(name) for name, _ in columns],
                    layer=layer,
                    driver=self.driver,
                    append=append,
                    layer_options=None if append else self._layer_options(spatial),
                    **kwargs,
                )
        except Exception as exc:  # pyogrio raises its own error types and OSError
            raise StatusWriteError(
                f"{self.target}: writing {layer} failed: {_write_failure(self.temp.parent, exc)}"
            ) from exc

    def _flush(self) -> None:
        batches, self._batches, self._queued = self._batches, [], 0
        if not batches and self._created:
            return
        rows = RowBatch.concat(batches) if batches else RowBatch.from_statuses([])
        lods = sorted(self.scheme.lods, key=lambda lod: lod.level)
        where = np.searchsorted([lod.level for lod in lods], rows.level)
        scales = np.array([lod.scale for lod in lods])[where] if len(rows) else np.zeros(0)
        resolutions = (
            np.array([lod.resolution for lod in lods])[where] if len(rows) else np.zeros(0)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            percent = np.where(
                rows.tiles_expected > 0, 100.0 * rows.tiles_present / rows.tiles_expected, np.nan
            )
        names = [
            f"L{lv:02d}/R{r:04x}C{c:04x}"
            for lv, r, c in zip(
                rows.level.tolist(), rows.row.tolist(), rows.col.tolist(), strict=True
            )
        ]
        cols: list[Any] = [
            names,
            [self.job_id] * len(rows),
            rows.level,
            scales,
            resolutions,
            rows.row,
            rows.col,
            rows.tiles_expected,
            rows.tiles_present,
            rows.tiles_stray,
            percent,
            rows.state,
            rows.tile_bytes,
            rows.file_bytes,
            rows.dead_bytes,
            _epoch_ms(rows.mtime),
            rows.detail,
            np.maximum(rows.tiles_blank, 0),
        ]
        data = [np.asarray(c, dtype=dt) for c, (_, dt) in zip(cols, TASK_FIELDS, strict=True)]
        geometry = rectangles_wkb(*tile_rectangles(self.scheme, rows.level, rows.tiles, self.clip))
        self._write(
            TASK_STATUS,
            geometry,
            TASK_FIELDS,
            data,
            append=self._created,
            spatial=True,
            nulls={"tilesBlank": rows.tiles_blank < 0},
        )
        self._created = True
        self.rows_written += len(rows)

    def commit(
        self,
        levels: Sequence[LevelSummary],
        jobs: Sequence[JobRecord],
        missing: Sequence[MissingArea] = (),
    ) -> None:
        """Write the last rows, ``MissingAreas``, ``LevelStatus`` and ``Jobs``, then swap the
        store into place."""
        self._flush()
        self._write_missing(missing)
        level_cols: list[list[Any]] = [
            [lv.level for lv in levels],
            [lv.scale for lv in levels],
            [lv.resolution for lv in levels],
            [lv.bundles for lv in levels],
            [lv.tiles_expected for lv in levels],
            [lv.tiles_present for lv in levels],
            [lv.tiles_stray for lv in levels],
            [np.nan if lv.percent_complete is None else lv.percent_complete for lv in levels],
            [lv.tile_bytes for lv in levels],
            [self.job_id] * len(levels),
            [lv.tiles_blank or 0 for lv in levels],
        ]
        self._write_table(
            LEVEL_STATUS,
            LEVEL_FIELDS,
            level_cols,
            {"tilesBlank": np.array([lv.tiles_blank is None for lv in levels], dtype=bool)},
        )
        job_cols: list[list[Any]] = [
            [j.job_id for j in jobs],
            [j.mode for j in jobs],
            [_datetime64(j.started) for j in jobs],
            [_datetime64(j.finished) for j in jobs],
            [j.cache_path for j in jobs],
            [j.format for j in jobs],
            [j.parameters for j in jobs],
            [j.tool_version for j in jobs],
            [j.outcome for j in jobs],
        ]
        self._write_table(JOBS, JOB_FIELDS, job_cols)
        if self.lock is not None:
            self.lock.check()
        try:
            atomic.replace(self.temp, self.target, self.token)
        except OSError as exc:
            raise StatusWriteError(
                f"{self.target}: could not be replaced ({exc.strerror}); the previous status "
                "is unchanged"
            ) from exc

    def _write_missing(self, missing: Sequence[MissingArea]) -> None:
        import shapely

        geometry = np.array(
            [shapely.to_wkb(shapely.force_2d(area.geometry)) for area in missing], dtype=object
        )
        columns: list[list[Any]] = [
            [area.level for area in missing],
            [area.scale for area in missing],
            [area.tiles_missing for area in missing],
            [int(area.exact) for area in missing],
        ]
        data = [np.array(c, dtype=dt) for c, (_, dt) in zip(columns, MISSING_FIELDS, strict=True)]
        self._write(MISSING_AREAS, geometry, MISSING_FIELDS, data, append=False, spatial=True)

    def _write_table(
        self,
        layer: str,
        fields: Sequence[tuple[str, str]],
        columns: list[list[Any]],
        nulls: dict[str, np.ndarray] | None = None,
    ) -> None:
        data = [np.array(c, dtype=dt) for c, (_, dt) in zip(columns, fields, strict=True)]
        self._write(layer, None, fields, data, append=False, spatial=False, nulls=nulls)


@functools.lru_cache(maxsize=16)
def store_crs(sr: SpatialReference) -> tuple[str | None, str | None]:
    """The CRS the store is written in, and a warning when the cache's cannot be used.

    Called before the scan: a CRS that GDAL could not set would otherwise fail the write after
    it. A cache whose spatial reference PROJ does not know gets a store without a CRS (its
    coordinates are still the cache's), and the warning says so.
    """
    text = sr.user_input()
    if text is None:
        return None, None
    try:
        from pyproj import CRS

        CRS.from_user_input(text)
    except Exception:  # pyproj's CRSError, and others for odd input
        return None, (
            f"the cache's spatial reference ({sr}: {text[:60]!r}) is not one PROJ knows; the "
            "status is written without a coordinate system (its coordinates are the cache's)"
        )
    return text, None


#: Below this many free bytes, a failed write is put down to a full disk.
_NEARLY_FULL = 4 * 1024 * 1024


def _write_failure(folder: Path, exc: Exception) -> str:
    """Why a write failed, in the user's words: GDAL says "Unspecified error" for a full disk."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return str(exc)
    if free < _NEARLY_FULL:
        return f"No space left on device ({free:,} bytes free in {folder})"
    return str(exc)


def _is_geographic(crs: str | None) -> bool:
    if crs is None:
        return False
    if crs.lstrip().upper().startswith(("PROJCS", "PROJCRS")):
        return False  # WKT: decided without importing pyproj
    if crs.lstrip().upper().startswith(("GEOGCS", "GEOGCRS")):
        return True
    try:
        from pyproj import CRS

        return bool(CRS.from_user_input(crs).is_geographic)
    except Exception:  # an unknown CRS: projected defaults are the safe side
        return False
