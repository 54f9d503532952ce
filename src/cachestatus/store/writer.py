"""Write a status store through GDAL (pyogrio): ``TaskStatus`` streamed in batches, then
``LevelStatus`` and ``Jobs``, then an atomic swap into place.
"""

from __future__ import annotations

import functools
import math
import shutil
import sqlite3
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from ..errors import StatusWriteError
from ..models import (
    BundleState,
    Extent,
    LevelSummary,
    MissingAreaRecord,
    RowBatch,
    SpatialReference,
    TilingScheme,
    crs_known,
)
from . import atomic, gpkg_rows, partial
from .geometry import rectangles_wkb, tile_rectangles
from .lock import StoreLock
from .records import BundleFileRows, JobRecord
from .schema import (
    BUNDLE_FILES_LAYER,
    DRIVERS,
    JOBS_LAYER,
    LEVEL_STATUS_LAYER,
    MISSING_AREAS_LAYER,
    TASK_STATUS_LAYER,
    Layer,
    Run,
)
from .tables import is_geopackage

#: Rows buffered before they are written: memory stays flat whatever the cache's size, and most
#: rows are written while the scan goes on, leaving little for the end.
BATCH = 5_000


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
        keep_files: bool = False,
    ) -> None:
        self.target = target
        self.lock = lock
        self.big_integer = big_integer
        self.driver = DRIVERS[target.suffix.lower()]
        self.scheme = scheme
        self.run = Run(job_id, scheme)
        self.token = token
        self.temp = atomic.sibling(target, "tmp", token)
        self.crs, _ = store_crs(scheme.spatial_reference)
        self.clip = domain_bounds(domain, margin=0.5)
        self._domain_source = domain
        self._batches: list[RowBatch] = []
        self._queued = 0
        self._created = False
        self.rows_written = 0
        #: ``BundleFiles`` rows are written (a rebuild's store: the next one may reuse rows).
        self.keep_files = keep_files
        self._files: list[BundleFileRows] = []
        self._files_queued = 0
        self._files_created = False
        #: Started from a copy of the previous store (:meth:`update`).
        self._updated = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
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

    def add_files(self, files: BundleFileRows) -> None:
        """Queue ``BundleFiles`` rows (when the store keeps them); written like rows."""
        if not self.keep_files or not len(files):
            return
        self._files.append(files)
        self._files_queued += len(files)
        if self._files_queued >= BATCH:
            self._flush_files()

    def _flush_files(self) -> None:
        parts, self._files, self._files_queued = self._files, [], 0
        if not parts and self._files_created:
            return
        if parts:
            self._write(
                BUNDLE_FILES_LAYER, BundleFileRows.concat(parts), append=self._files_created
            )
        else:  # a store without bundle files still tells the next rebuild it kept them
            self._write(BUNDLE_FILES_LAYER, [])
        self._files_created = True

    def _write(self, layer: Layer, rows: Any, geometry: Any = None, append: bool = False) -> None:
        """Write ``rows`` (a :class:`RowBatch`, or records) to ``layer``, with one polygon (WKB)
        per row in ``geometry`` for a layer that has them."""
        data, nulls = [], []
        for column in layer.columns:
            values, null = column.to_store(column.values(rows, self.run))
            data.append(values)
            nulls.append(null)
        if self._updated and self._sqlite_rows(layer, data, nulls, geometry, append):
            return
        spatial = layer.geometry is not None
        kwargs: dict[str, Any] = (
            {"geometry_type": layer.geometry, "crs": self.crs} if spatial else {}
        )
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
                    layer.names,
                    field_mask=nulls if any(n is not None for n in nulls) else None,
                    layer=layer.name,
                    driver=self.driver,
                    append=append,
                    layer_options=None if append else self._layer_options(spatial),
                    **kwargs,
                )
        except Exception as exc:  # pyogrio raises its own error types and OSError
            raise StatusWriteError(
                f"{self.target}: writing {layer.name} failed: "
                f"{_write_failure(self.temp.parent, exc)}"
            ) from exc

    def _sqlite_rows(
        self, layer: Layer, data: list[Any], nulls: list[Any], geometry: Any, append: bool
    ) -> bool:
        """Write rows into the GeoPackage copy being updated through SQLite, as GDAL writes
        them (:func:`~cachestatus.store.gpkg_rows.write_rows`); whether it did."""
        fields = [(c.dtype, v, n) for c, v, n in zip(layer.columns, data, nulls, strict=True)]
        try:
            return gpkg_rows.write_rows(
                self.temp, layer.name, layer.names, fields, geometry, append
            )
        except sqlite3.Error as exc:
            raise StatusWriteError(
                f"{self.target}: writing {layer.name} failed: "
                f"{_write_failure(self.temp.parent, exc)}"
            ) from exc

    def _flush(self) -> None:
        batches, self._batches, self._queued = self._batches, [], 0
        if not batches and self._created:
            return
        rows = RowBatch.concat(batches) if batches else RowBatch.from_statuses([])
        geometry = rectangles_wkb(*tile_rectangles(self.scheme, rows.level, rows.tiles, self.clip))
        self._write(TASK_STATUS_LAYER, rows, geometry, append=self._created)
        self._created = True
        self.rows_written += len(rows)

    def commit(
        self,
        levels: Sequence[LevelSummary],
        jobs: Sequence[JobRecord],
        missing: Sequence[MissingAreaRecord] = (),
    ) -> None:
        """Write the last rows, ``MissingAreas``, ``LevelStatus`` and ``Jobs``, then swap the
        store into place."""
        self._flush()
        self._write(MISSING_AREAS_LAYER, missing, areas_wkb(missing))
        self._write(LEVEL_STATUS_LAYER, levels)
        if self._updated and jobs:  # the copy holds the history: the new job is added
            self._sqlite(partial.append_job, jobs[-1])
        else:
            self._write(JOBS_LAYER, jobs)
        if self.keep_files:
            self._flush_files()
        self._swap()

    def carry(self, source: Path, levels: Sequence[LevelSummary], job: JobRecord) -> None:
        """Swap in a copy of the store at ``source`` with ``LevelStatus`` written again and
        ``job`` added to its ``Jobs``: what :meth:`commit` writes for a run whose every row,
        level total and missing area is the one ``source`` holds, without writing its rows
        again (they keep the ``jobID`` of the run that wrote them). A GeoPackage is updated
        through SQLite (:func:`~cachestatus.store.partial.carry`), as an unchanged rebuild
        answered without GDAL updates it (:mod:`cachestatus.unchanged`)."""
        try:
            if source.is_dir():
                shutil.copytree(source, self.temp)
            else:
                shutil.copyfile(source, self.temp)
        except OSError as exc:
            raise StatusWriteError(
                f"{self.target}: copying {source} failed: {_write_failure(self.temp.parent, exc)}"
            ) from exc
        if self.driver == "GPKG":  # the same rows and tables, through SQLite
            self._sqlite(partial.carry, job)
        else:
            self._write(LEVEL_STATUS_LAYER, levels)  # a few rows, each naming the job
            self._write(JOBS_LAYER, [job], append=True)
        self._swap()

    def _sqlite(self, update: Any, job: JobRecord) -> None:
        """Record ``job`` in the GeoPackage copy with ``update`` (of :mod:`.partial`)."""
        try:
            update(self.temp, job)
        except sqlite3.Error as exc:
            raise StatusWriteError(
                f"{self.target}: updating {self.temp} failed: "
                f"{_write_failure(self.temp.parent, exc)}"
            ) from exc

    def update(
        self,
        source: Path,
        kept: tuple[npt.NDArray[np.integer[Any]], npt.NDArray[np.integer[Any]]],
        gone: Iterable[tuple[int, int, int]],
    ) -> None:
        """Start from a copy of the GeoPackage store at ``source`` that keeps only the
        ``BundleFiles`` and ``TaskStatus`` rows ``kept`` (their feature ids, pair by pair: a
        previous rebuild's rows reused as they are): the scan does not hand them to
        :meth:`add` and :meth:`add_files` again (:attr:`~cachestatus.scan.ScanBatch.stored`),
        which append the others; :meth:`commit` writes the other tables whole, as it does for
        a new store, but adds the new job to ``Jobs`` (the history is there already).

        The copy loses the rows of the bundles ``gone`` (their levels, rows and columns: those
        of the store's other bundle files) and its ``MISSING`` rows, so that the work follows
        the change, not the cache; should it then hold other rows than those ``kept`` (rows of
        no kind it knows, a second row of a bundle), they are deleted by the ids of ``kept``.

        ``source`` is one :func:`updatable` found so (asked once, when the previous status
        is read: :attr:`~cachestatus.incremental.Previous.in_place`); any other store is
        written whole."""
        assert self.driver == "GPKG" and not self._created, "a GeoPackage, before any row"
        file_fids, row_fids = kept
        tables = [layer.name for layer in _UPDATED]
        kept_ids = {TASK_STATUS_LAYER.name: row_fids, BUNDLE_FILES_LAYER.name: file_fids}
        expected = {table: len(ids) for table, ids in kept_ids.items()}
        absent = {TASK_STATUS_LAYER.name: f"status = '{BundleState.MISSING.value}'"}
        try:
            shutil.copyfile(source, self.temp)
            # Rows left that are not reused (a second row of a bundle...): deleted by their ids.
            if (
                partial.drop_bundles(self.temp, tables, gone, absent) != expected
                and partial.keep_only(self.temp, kept_ids) != expected
            ):
                raise StatusWriteError(
                    f"{self.target}: rows of {source} reused are gone: another program "
                    "changed it meanwhile; run the rebuild again"
                )
        except (OSError, sqlite3.Error) as exc:
            raise StatusWriteError(
                f"{self.target}: updating a copy of {source} failed: "
                f"{_write_failure(self.temp.parent, exc)}"
            ) from exc
        self._created = self._files_created = self._updated = True

    def _swap(self) -> None:
        """Put the written store at the target, while the lock is still held."""
        if self.lock is not None:
            self.lock.check()
        try:
            atomic.replace(self.temp, self.target, self.token)
        except OSError as exc:
            raise StatusWriteError(
                f"{self.target}: could not be replaced ({exc.strerror}); the previous status "
                "is unchanged"
            ) from exc


def areas_wkb(missing: Sequence[MissingAreaRecord]) -> npt.NDArray[np.object_]:
    """The geometries of ``MissingAreas`` rows as written: each a multipolygon, as the layer
    declares (a GeoPackage reader may refuse a geometry of another type than its layer's)."""
    import shapely

    def multi(area: Any) -> Any:
        if area.geom_type != "Polygon":
            return area
        return shapely.MultiPolygon() if area.is_empty else shapely.multipolygons([area])

    areas = [multi(shapely.force_2d(area.geometry)) for area in missing]
    return np.array([shapely.to_wkb(a) for a in areas], dtype=object)


#: The layers whose rows a GeoPackage updated in place keeps (:meth:`StatusWriter.update`).
_UPDATED = (TASK_STATUS_LAYER, BUNDLE_FILES_LAYER)


def updatable(store: Path) -> bool:
    """Whether :meth:`StatusWriter.update` updates the store at ``store`` in place: a
    GeoPackage whose tables have every field this version writes (a store written by an
    earlier version may lack one, and is written whole) into which rows may be written through
    SQLite (:func:`~cachestatus.store.partial.writable`)."""
    if not is_geopackage(store):
        return False
    try:
        fields = {layer.name: layer.names for layer in _UPDATED}
        return partial.has_fields(store, fields) and partial.writable(store)
    except sqlite3.Error:
        return False  # not a store this version can update: written whole


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
    if not crs_known(text):
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
