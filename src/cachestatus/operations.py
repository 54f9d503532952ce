"""The plain Python API: open a cache, rebuild, read or delete its status.

The command line and the arcpy-style tool are thin layers over these functions.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from warnings import catch_warnings, filterwarnings

import numpy as np

from . import __version__, grid
from .errors import InvalidAOI, OutputExists, UsageError
from .formats import CacheReader, open_cache
from .missing_areas import MissingArea, hole_blocks
from .models import Extent, LevelSummary, RowBatch, StatusReport
from .scan import Progress, Scanner, plan_levels
from .selection import parse_scales, select_levels
from .store import JobRecord, StatusWriter, atomic, check_store_path, read_jobs, read_status
from .store.guard import (
    check_outside_cache,
    check_tile_list,
    check_vector_output,
    claim,
    real,
)
from .store.lock import StoreLock
from .store.writer import store_crs
from .tilecheck import LevelCheck, VerifyReport, check_chunk, type_warning
from .values import as_count, as_path

if TYPE_CHECKING:
    from .aoi import AreaOfInterest

REBUILD = "REBUILD_CACHE_STATUS"
DELETE = "DELETE_CACHE_STATUS"
REPORT = "REPORT_BUNDLE_STATUS"
STORE_FORMATS = ("gdb", "gpkg")


def new_job_id() -> tuple[str, str]:
    """A job ID (``20261124T021530Z-3fa94c``) and its random part, used in temporary names."""
    token = secrets.token_hex(3)
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{token}", token


def status_path(
    reader: CacheReader,
    status: str | os.PathLike[str] | None = None,
    store_format: str | None = None,
) -> Path:
    """Where the status store of ``reader``'s cache is: ``--status``, else the default location.

    The default is ``Status.gdb`` (or ``.gpkg``) beside ``conf.xml`` for folder caches.

    Raises:
        UsageError: the path's suffix is not ``.gdb``/``.gpkg`` or contradicts ``store_format``.
    """
    if store_format is not None and store_format not in STORE_FORMATS:
        raise UsageError(f"store format {store_format!r}: use one of {', '.join(STORE_FORMATS)}")
    if status is None:
        return reader.status_dir / f"{reader.status_stem}.{store_format or 'gdb'}"
    path = check_store_path(as_path(status, "status"))
    if store_format is not None and path.suffix.lower() != f".{store_format}":
        raise UsageError(f"{path}: --status ends in {path.suffix} but --format is {store_format}")
    return path


def _default_stores(reader: CacheReader) -> list[Path]:
    """The default status stores of a cache (``Status.gdb`` and ``Status.gpkg``)."""
    return [status_path(reader, None, fmt) for fmt in STORE_FORMATS]


def _claim(reader: CacheReader, target: Path, command: str) -> AbstractContextManager[StoreLock]:
    """The store at ``target``, checked and locked for writing or deleting (see
    :func:`cachestatus.store.guard.claim`)."""
    from .formats.arcgis_cache import ArcGISFolderCache

    return claim(
        target,
        reader.root,
        defaults=_default_stores(reader),
        command=command,
        arcgis_defaults=isinstance(reader, ArcGISFolderCache),  # ArcGIS writes Status.gdb there
    )


def _recovered(target: Path) -> None:
    """Restore a store a killed swap left renamed away, when no run holds its lock (a reader
    that cannot take the lock, on a read-only share, leaves things as they are)."""
    try:
        with StoreLock(target, "summary"):
            atomic.recover(target)
    except UsageError:
        pass


def _existing_store(reader: CacheReader, status: str | os.PathLike[str] | None) -> Path:
    if status is not None:
        return status_path(reader, status)
    for candidate in _default_stores(reader):
        if not candidate.exists() and candidate.parent.is_dir():
            _recovered(candidate)
        if candidate.exists():
            return candidate
    return status_path(reader, None, "gdb")


@dataclass(frozen=True)
class LevelInfo:
    """One LOD of a cache as ``cachestatus info`` shows it."""

    level: int
    scale: float
    resolution: float
    tiles_expected: int
    bundle_files: int


def level_infos(reader: CacheReader) -> list[LevelInfo]:
    """Each LOD with its expected tiles and the number of bundle files found (one listing)."""
    infos = []
    for plan in plan_levels(reader):
        files = reader.count_bundles(plan.lod.level)
        infos.append(
            LevelInfo(
                plan.lod.level, plan.lod.scale, plan.lod.resolution, plan.expected.total(), files
            )
        )
    return infos


def rebuild(
    cache: str | os.PathLike[str],
    status: str | os.PathLike[str] | None = None,
    *,
    store_format: str | None = None,
    workers: int | None = None,
    levels: Iterable[int] | None = None,
    max_missing_rows: int = 100_000,
    progress: Progress | None = None,
    format_hint: str | None = None,
    sizes: bool = False,
    blank: bool = False,
    table: str | None = None,
    scheme: str | None = None,
    big_integer: bool = False,
) -> StatusReport:
    """REBUILD_CACHE_STATUS: scan the cache and replace its status store atomically.

    Args:
        cache: the cache folder, service folder or ``conf.xml`` path.
        status: where to write the store (default: ``Status.gdb`` beside ``conf.xml``).
        store_format: ``gdb`` or ``gpkg`` for the default location.
        workers: worker processes (default: all cores).
        levels: level IDs to scan (default: every LOD).
        max_missing_rows: cap on ``MISSING`` rows in ``TaskStatus``.
        progress: receives scan progress.
        format_hint: force a reader from the registry instead of detecting one.
        sizes: read tile sizes where they cost extra (SQLite blobs, a stat per tile file).
        blank: also read every stored tile and count those without content (``tilesBlank``).
        table: the tile table of a GeoPackage holding several.
        scheme: ``xyz`` or ``tms``, the row order of a ``{z}/{x}/{y}`` folder.
        big_integer: write a FileGDB's 64-bit counts as Big Integer fields, which only ArcGIS
            Pro 3.2+ and GDAL 3.9+ read (default: Double, which every reader opens).

    Returns:
        The level totals, problems and warnings of the run.
    """
    started = datetime.now(UTC)
    clock = time.perf_counter()
    with open_cache(cache, format_hint, sizes, table=table, scheme=scheme) as reader:
        target = status_path(reader, status, store_format)
        scanner = Scanner(
            reader,
            levels=levels,
            workers=workers,
            max_missing_rows=as_count(max_missing_rows, "max_missing_rows"),
            progress=progress,
            blank=blank,
        )
        parameters = {
            "levels": None if levels is None else [p.lod.level for p in scanner.plans],
            "max_missing_rows": max_missing_rows,
            "blank": blank,
        }
        # Claimed once every argument is known to be good: a refused run leaves no folder.
        with _claim(reader, target, "rebuild") as lock:
            return _scan_to_store(
                cache,
                reader,
                scanner,
                lock,
                REBUILD,
                parameters,
                (started, clock),
                keep_history=True,
                big_integer=big_integer,
            )


def _resolve_area(
    reader: CacheReader,
    aoi: str | os.PathLike[str] | Any | None,
    aoi_layer: str | None,
    extent: str | Sequence[float] | None,
    extent_crs: str | None,
    warnings: list[str],
) -> AreaOfInterest | None:
    """The report's area in the cache's CRS, clipped to the tiling grid; ``None`` for none."""
    import shapely

    from .aoi import extent_aoi, geometry_aoi, read_aoi

    cache_crs, _ = store_crs(reader.scheme.spatial_reference)
    area: AreaOfInterest | None = None
    if aoi is not None:
        if extent is not None:
            warnings.append(
                "both an area of interest and an extent were given: the area of "
                "interest is used, the extent ignored"
            )
        if isinstance(aoi, (str, os.PathLike)):
            area = read_aoi(aoi, cache_crs, aoi_layer)
        elif isinstance(aoi, shapely.Geometry):
            area = geometry_aoi(aoi)
        else:
            raise InvalidAOI(
                f"aoi={aoi!r}: give a vector file's path or a shapely geometry in the cache's CRS"
            )
    elif extent is not None:
        area = extent_aoi(extent, cache_crs, extent_crs)
    if area is None:
        return None
    warnings.extend(area.warnings)
    world = grid.grid_extent(reader.scheme)
    if world is not None:
        clipped = shapely.intersection(area.geometry, shapely.box(*world))
        if clipped.is_empty or clipped.area <= 0:
            raise InvalidAOI(
                f"{area.source}: the area of interest {_bounds(area.geometry)} misses the cache's "
                f"tiling grid {_bounds(shapely.box(*world))} entirely; is it in the cache's CRS "
                f"({reader.scheme.spatial_reference})?"
            )
        area.geometry = clipped
    return area


@dataclass
class _Selection:
    """The levels and area a report or a missing-areas run covers."""

    levels: tuple[int, ...]
    scales: list[float] | None
    area: AreaOfInterest | None
    warnings: list[str]


def _select(
    reader: CacheReader,
    scales: Sequence[float] | str | None,
    levels: Sequence[int] | None,
    aoi: str | os.PathLike[str] | Any | None,
    aoi_layer: str | None,
    extent: str | Sequence[float] | None,
    extent_crs: str | None,
) -> _Selection:
    scale_list = parse_scales(scales) if scales is not None else None
    selected = select_levels(reader.scheme, scale_list, levels)
    warnings: list[str] = []
    area = _resolve_area(reader, aoi, aoi_layer, extent, extent_crs, warnings)
    return _Selection(selected, scale_list, area, warnings)


@dataclass
class MissingReport:
    """What :func:`missing` found: one area per level with missing tiles, and warnings."""

    areas: list[MissingArea]
    warnings: list[str]


def _bounds(geometry: Any) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in geometry.bounds) + ")"


def report(
    cache: str | os.PathLike[str],
    out_folder: str | os.PathLike[str],
    *,
    scales: Sequence[float] | str | None = None,
    levels: Sequence[int] | None = None,
    aoi: str | os.PathLike[str] | Any | None = None,
    aoi_layer: str | None = None,
    extent: str | Sequence[float] | None = None,
    extent_crs: str | None = None,
    store_format: str = "gdb",
    overwrite: bool = False,
    workers: int | None = None,
    max_missing_rows: int | None = 100_000,
    progress: Progress | None = None,
    format_hint: str | None = None,
    sizes: bool = False,
    blank: bool = False,
    table: str | None = None,
    scheme: str | None = None,
    big_integer: bool = False,
) -> StatusReport:
    """REPORT_BUNDLE_STATUS: the status of chosen levels over an area, as a new store.

    Writes ``out_folder/Status.gdb`` (or ``.gpkg``) with a row for every bundle of the selected
    levels that holds expected tiles (a file's row, or ``MISSING``). The cache and its own status
    are not touched.

    Args:
        cache: the cache folder, service folder or ``conf.xml`` path.
        out_folder: the folder of the report's store (created if needed).
        scales: scale denominators (a list or ``"s1;s2"``), each matched to a LOD within 1 %.
        levels: level IDs. Without scales nor levels: every LOD.
        aoi: an area of interest: a vector file GDAL reads (all polygons unioned) or a shapely
            geometry in the cache's CRS. It wins over ``extent``.
        aoi_layer: the layer of a multi-layer AOI file.
        extent: ``(xmin, ymin, xmax, ymax)`` or ``"xmin ymin xmax ymax"``.
        extent_crs: the extent's CRS (default: the cache's).
        store_format: ``gdb`` or ``gpkg``.
        overwrite: replace an existing report store.
        workers: worker processes (default: all cores).
        max_missing_rows: cap on ``MISSING`` rows (``None``: no cap).
        progress: receives scan progress.
        format_hint: force a reader from the registry.
        sizes: read tile sizes where they cost extra (SQLite blobs, a stat per tile file).
        blank: also read every stored tile and count those without content (``tilesBlank``).
        table: the tile table of a GeoPackage holding several.
        scheme: ``xyz`` or ``tms``, the row order of a ``{z}/{x}/{y}`` folder.
        big_integer: Big Integer fields in a FileGDB (see :func:`rebuild`).

    Raises:
        OutputExists: the report store exists and ``overwrite`` is false.
        ScaleNotInCache, InvalidAOI, UsageError: bad selection or area.
    """
    started = datetime.now(UTC)
    clock = time.perf_counter()
    with ExitStack() as stack:
        reader = stack.enter_context(
            open_cache(cache, format_hint, sizes, table=table, scheme=scheme)
        )
        target = check_store_path(as_path(out_folder, "out_folder") / f"Status.{store_format}")
        if real(target) in {real(p) for p in _default_stores(reader)}:
            raise UsageError(
                f"{out_folder}: is the cache's own status folder; a report goes to "
                "another folder (--out)"
            )
        check_outside_cache(target, reader.root)
        if os.path.lexists(target) and not overwrite:
            raise OutputExists(
                f"{target}: exists; add --overwrite to replace it, or choose another --out folder"
            )
        chosen = _select(reader, scales, levels, aoi, aoi_layer, extent, extent_crs)
        scanner = Scanner(
            reader,
            levels=chosen.levels,
            workers=workers,
            max_missing_rows=None
            if max_missing_rows is None
            else as_count(max_missing_rows, "max_missing_rows"),
            progress=progress,
            area=None if chosen.area is None else chosen.area.geometry,
            missing_on_unbuilt_levels=True,
            only_expected=True,
            blank=blank,
        )
        parameters = {
            "levels": list(chosen.levels),
            "scales": chosen.scales,
            "area_of_interest": None if chosen.area is None else chosen.area.source,
            "max_missing_rows": max_missing_rows,
            "blank": blank,
        }
        # Claimed once every argument is known to be good: a refused run leaves no folder.
        lock = stack.enter_context(_claim(reader, target, "report"))
        result = _scan_to_store(
            cache,
            reader,
            scanner,
            lock,
            REPORT,
            parameters,
            (started, clock),
            big_integer=big_integer,
        )
        result.warnings[:0] = chosen.warnings
        return result


#: Vector formats ``missing --out`` writes, by suffix.
MISSING_DRIVERS = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".gpkg": "GPKG",
    ".shp": "ESRI Shapefile",
}
#: ``missing --tiles`` lists at most this many tiles: beyond, the polygons are the tool.
MAX_TILE_LIST = 1_000_000


def missing(
    cache: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    tiles: str | os.PathLike[str] | None = None,
    scales: Sequence[float] | str | None = None,
    levels: Sequence[int] | None = None,
    aoi: str | os.PathLike[str] | Any | None = None,
    aoi_layer: str | None = None,
    extent: str | Sequence[float] | None = None,
    extent_crs: str | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
    format_hint: str | None = None,
    table: str | None = None,
    scheme: str | None = None,
) -> MissingReport:
    """The areas still to seed: per level, the expected tiles that are not present, as polygons.

    Scans like :func:`report` (levels, area or extent; the full extent by default) and writes the
    ``MissingAreas`` polygons to ``out`` (GeoJSON, GeoPackage or Shapefile, by suffix), ready to
    be the area of interest of the next caching job; with ``tiles``, also the missing tiles, one
    ``z/x/y`` a line (x the column, y the row counted down from the origin).

    Raises:
        UsageError: unknown output suffix, existing output without ``overwrite``, too many
            tiles to list.
    """
    import shapely
    from pyogrio.raw import write

    out_path = as_path(out, "out")
    tiles_path = as_path(tiles, "tiles") if tiles is not None else None
    driver = MISSING_DRIVERS.get(out_path.suffix.lower())
    if driver is None:
        raise UsageError(f"{out}: write missing areas to .geojson, .gpkg or .shp")
    if tiles_path is not None and real(tiles_path) == real(out_path):
        raise UsageError(f"{tiles}: --tiles and --out name the same file")
    with ExitStack() as stack:
        reader = stack.enter_context(open_cache(cache, format_hint, table=table, scheme=scheme))
        outputs = [(out_path, check_vector_output)]
        if tiles_path is not None:
            outputs.append((tiles_path, check_tile_list))
        for path, ours in outputs:
            check_outside_cache(path, reader.root)
            if not path.parent.is_dir():
                raise UsageError(f"{path}: its folder {path.parent} does not exist")
            if ours(path) and not overwrite:
                raise OutputExists(f"{path}: exists; add --overwrite to replace it")
        chosen = _select(reader, scales, levels, aoi, aoi_layer, extent, extent_crs)
        scanner = Scanner(
            reader,
            levels=chosen.levels,
            workers=workers,
            max_missing_rows=0,
            progress=progress,
            area=None if chosen.area is None else chosen.area.geometry,
            only_expected=chosen.area is not None,
        )
        if tiles_path is None:
            outcome = scanner.run(lambda batch: None)
        else:
            tile_list = stack.enter_context(_TileList(tiles_path, reader))
            outcome = scanner.run(tile_list.add_holes)
        areas = outcome.missing_areas
        if tiles_path is not None:
            count = sum(a.tiles_missing for a in areas)
            if count > MAX_TILE_LIST:
                raise UsageError(
                    f"{count:,} missing tiles are too many to list (at most "
                    f"{MAX_TILE_LIST:,}); use the polygons of {out}, or fewer "
                    "levels or a smaller area"
                )
            tile_list.finish(areas)
        temp = out_path.with_name(f".{out_path.stem}.{secrets.token_hex(4)}.tmp{out_path.suffix}")
        geometry = np.array([shapely.to_wkb(a.geometry) for a in areas], dtype=object)
        with _removed_on_failure(temp), catch_warnings():
            # Shapefiles cut field names to 10 characters: tilesMissing becomes tilesMissi.
            filterwarnings("ignore", message="Normalized/laundered field name")
            filterwarnings("ignore", message="'crs' was not provided")  # store_crs() warned
            write(
                str(temp),
                geometry,
                [
                    np.array([a.level for a in areas], dtype=np.int32),
                    np.array([a.scale for a in areas], dtype=np.float64),
                    np.array([a.tiles_missing for a in areas], dtype=np.int64),
                    np.array([a.exact for a in areas], dtype=np.int16),
                ],
                ["levelID", "scale", "tilesMissing", "exact"],
                layer="MissingAreas",
                driver=driver,
                geometry_type="MultiPolygon",
                crs=store_crs(reader.scheme.spatial_reference)[0],
                promote_to_multi=True,
            )
        _replace_dataset(temp, out_path)
        crs_warning = store_crs(reader.scheme.spatial_reference)[1]
        return MissingReport(
            areas, [*([crs_warning] if crs_warning else []), *chosen.warnings, *outcome.warnings]
        )


#: ``verify`` lists at most this many problems; beyond, it counts them.
MAX_PROBLEMS = 100_000


def verify(
    cache: str | os.PathLike[str],
    *,
    scales: Sequence[float] | str | None = None,
    levels: Sequence[int] | None = None,
    aoi: str | os.PathLike[str] | Any | None = None,
    aoi_layer: str | None = None,
    extent: str | Sequence[float] | None = None,
    extent_crs: str | None = None,
    decode: bool = False,
    blank: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
    max_problems: int = MAX_PROBLEMS,
    format_hint: str | None = None,
    table: str | None = None,
    scheme: str | None = None,
) -> VerifyReport:
    """The deep check: every stored tile of the chosen levels (and area) read and judged.

    A tile is bad when its storage is damaged, when it is empty, when its bytes are not an image
    of the cache's tile format, or (``decode``) when it does not decode. The cache is only read.
    Levels and area are chosen as for :func:`report`; without an area every stored tile is
    checked, with one only the tiles it holds. ``blank`` also counts tiles without content.

    Returns:
        Per-level totals and one problem per bad tile (``tile`` names it) or unreadable bundle,
        at most ``max_problems`` of them (the others counted in ``problems_omitted``).
    """
    clock = time.perf_counter()
    as_count(max_problems, "max_problems")
    with open_cache(cache, format_hint, table=table, scheme=scheme) as reader:
        chosen = _select(reader, scales, levels, aoi, aoi_layer, extent, extent_crs)
        area = None if chosen.area is None else chosen.area.geometry
        scanner = Scanner(
            reader,
            levels=chosen.levels,
            workers=workers,
            progress=progress,
            area=area,
            only_expected=area is not None,
            heavy=True,
        )
        totals = {
            p.lod.level: LevelCheck(p.lod.level, p.lod.scale, blank=0 if blank else None)
            for p in scanner.plans
        }
        report = VerifyReport(str(cache), reader.name, 0.0, list(totals.values()))
        report.warnings.extend([*chosen.warnings, *scanner.warnings])
        work = partial(check_chunk, decode=decode, blank=blank, only_expected=area is not None)
        try:
            scanner.prepare()
            if progress:
                progress.start(scanner.total or 0)
            for checks in scanner.each(work):
                for found in checks:
                    level = totals[found.key.level]
                    level.bundles += 1
                    level.tiles += found.tiles
                    level.bad += sum(1 for p in found.problems if p.tile)
                    report.tiles_unjudged += found.unjudged
                    if found.blank is not None and level.blank is not None:
                        level.blank += found.blank
                    room = max(0, max_problems - len(report.problems))
                    report.problems.extend(found.problems[:room])
                    report.problems_omitted += len(found.problems[room:])
        finally:
            scanner.close()
        report.problems[:0] = scanner.listing_problems
        report.warnings.extend(type_warning(reader, report.tiles_unjudged))
        if report.problems_omitted:
            report.warnings.append(
                f"{report.problems_omitted:,} more problems were found and not listed "
                f"(at most {max_problems:,} are)"
            )
        report.elapsed_s = time.perf_counter() - clock
        return report


@contextmanager
def _removed_on_failure(temp: Path) -> Iterator[None]:
    """Remove ``temp`` (and a Shapefile's sidecars) when the block fails: no half-written
    output stays behind."""
    try:
        yield
    except BaseException:
        for leftover in temp.parent.glob(f"{glob.escape(temp.stem)}.*"):
            atomic.remove(leftover)
        raise


class _TileList:
    """The ``z/x/y`` list of ``missing --tiles``, written to a temporary file renamed into place
    by :meth:`finish` (removed if anything fails before). Exact whatever the polygons are: the
    files' holes are written as the scan sends them (:meth:`add_holes`, never all held at once),
    the tiles of the bundles without a file at the end, from their exact area."""

    def __init__(self, path: Path, reader: CacheReader) -> None:
        self.path = path
        self.scheme = reader.scheme
        self.temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        self.written = 0
        self._file: Any = None

    def __enter__(self) -> _TileList:
        self._file = open(self.temp, "w", encoding="ascii")
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()
        atomic.remove(self.temp)  # renamed away by finish(), else left over

    def _write(self, level: int, blocks: Any) -> None:
        for row0, row1, col0, col1 in blocks.tolist():
            if self.written > MAX_TILE_LIST:
                return  # too many to list: the count says so once the scan is over
            for row in range(row0, row1):
                self._file.writelines(f"{level}/{col}/{row}\n" for col in range(col0, col1))
            self.written += (row1 - row0) * (col1 - col0)

    def add_holes(self, batch: RowBatch) -> None:
        """Write the tiles a batch's bundle files miss."""
        levels, blocks = hole_blocks(batch.holes)
        for level in np.unique(levels).tolist():
            self._write(level, blocks[levels == level])

    def finish(self, areas: Sequence[MissingArea]) -> None:
        """Write the tiles of the bundles without a file, and put the list in place."""
        from .expected import AreaExpectation

        for area in areas:
            outside = area.outside_files
            if outside is not None and not outside.is_empty:
                self._write(area.level, AreaExpectation(area.level, self.scheme, outside).blocks())
        self._file.close()
        os.replace(self.temp, self.path)


def _replace_dataset(temp: Path, target: Path) -> None:
    """Move a written vector file (and a Shapefile's sidecar files) onto ``target``."""
    if target.suffix.lower() == ".shp":
        for sidecar in temp.parent.glob(f"{glob.escape(temp.stem)}.*"):
            os.replace(sidecar, target.with_suffix(sidecar.suffix))
    else:
        os.replace(temp, target)


def _scan_to_store(
    cache: str | os.PathLike[str],
    reader: CacheReader,
    scanner: Scanner,
    lock: StoreLock,
    mode: str,
    parameters: dict[str, Any],
    started: tuple[datetime, float],
    keep_history: bool = False,
    big_integer: bool = False,
) -> StatusReport:
    """Run ``scanner`` into a new store at the locked target, swapped in when complete.

    ``started`` is when the run began (UTC, and ``time.perf_counter``); ``keep_history`` carries
    the ``Jobs`` rows of the store being replaced over.
    """
    target = lock.target
    job_id, token = new_job_id()
    _, crs_warning = store_crs(reader.scheme.spatial_reference)
    with ExitStack() as workers:
        workers.callback(scanner.close)  # the workers are gone before any error goes up
        scanner.prepare()
        lock.keep_fresh()  # a thread: only once the worker processes are forked
        writer = workers.enter_context(
            StatusWriter(target, reader.scheme, scanner.domain, job_id, token, lock, big_integer)
        )
        outcome = scanner.run(writer.add)
        # The old store is untouched until the swap: its history is read now.
        history = _previous_jobs(target) if keep_history else []
        job = JobRecord(
            job_id=job_id,
            mode=mode,
            started=started[0],
            finished=datetime.now(UTC),
            cache_path=str(Path(cache).resolve()),
            format=reader.name,
            parameters=json.dumps(
                {**parameters, "workers": scanner.workers, "status": str(target)}
            ),
            tool_version=__version__,
            outcome="succeeded with warnings" if outcome.problems else "succeeded",
        )
        writer.commit(outcome.levels, [*history, job], outcome.missing_areas)
    return StatusReport(
        cache=str(cache),
        format=reader.name,
        status_path=str(target),
        job_id=job_id,
        mode=mode,
        elapsed_s=time.perf_counter() - started[1],
        levels=outcome.levels,
        problems=outcome.problems,
        warnings=[crs_warning, *outcome.warnings] if crs_warning else outcome.warnings,
    )


def _previous_jobs(target: Path) -> list[JobRecord]:
    """The ``Jobs`` history of the store being replaced, so that it survives the rebuild."""
    if not target.exists():
        return []
    try:
        return read_jobs(target)
    except Exception:  # an unreadable old store is replaced, its history is lost
        return []


def delete(
    cache: str | os.PathLike[str],
    status: str | os.PathLike[str] | None = None,
    format_hint: str | None = None,
    *,
    table: str | None = None,
    scheme: str | None = None,
) -> list[Path]:
    """DELETE_CACHE_STATUS: remove the status store(s); returns what was removed (maybe none)."""
    with open_cache(cache, format_hint, table=table, scheme=scheme) as reader:
        if status is not None:
            targets = [status_path(reader, status)]
        else:
            targets = [p for p in _default_stores(reader) if os.path.lexists(p)]
        removed = []
        for target in targets:
            with _claim(reader, target, "delete"):
                if atomic.delete(target, secrets.token_hex(3)):
                    removed.append(target)
        return removed


def summary(
    cache: str | os.PathLike[str],
    status: str | os.PathLike[str] | None = None,
    format_hint: str | None = None,
    *,
    table: str | None = None,
    scheme: str | None = None,
) -> StatusReport:
    """Read the stored status back (no rescan): level totals, corrupt bundles, last job.

    Raises:
        StatusNotFound: there is no store (run :func:`rebuild` first).
    """
    with open_cache(cache, format_hint, table=table, scheme=scheme) as reader:
        target = _existing_store(reader, status)
        report = read_status(target)
        report.cache = str(cache)
        return report


def expected_extent(reader: CacheReader) -> Extent | None:
    """The extent expected tiles are counted against: the full extent, else the whole grid."""
    return reader.full_extent or grid.grid_extent(reader.scheme)


__all__ = [
    "DELETE",
    "REBUILD",
    "REPORT",
    "LevelInfo",
    "LevelSummary",
    "delete",
    "expected_extent",
    "level_infos",
    "missing",
    "open_cache",
    "rebuild",
    "report",
    "status_path",
    "summary",
]
