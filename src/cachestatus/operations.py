"""The plain Python API: open a cache, rebuild, read or delete its status.

Each operation takes the request objects of :mod:`cachestatus.request` (``run_rebuild``,
``run_report``...); the keyword functions (``rebuild(cache, status, workers=4)``...) build them
from their arguments. The command line and the arcpy-style tool are thin layers over these
functions.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Unpack
from warnings import catch_warnings, filterwarnings

import numpy as np

from . import __version__
from .errors import OutputExists, UsageError
from .execute import Cluster, Executor, cluster_for
from .formats import CacheReader
from .incremental import bundle_files, previous_status, tiling
from .missing_areas import MissingArea, hole_blocks
from .models import StatusReport
from .parallel import resolve_io_concurrency, resolve_workers
from .plan import LevelPlan, ScanPolicy, plan_levels, plans_extent
from .request import (
    CacheSource,
    Counting,
    CountingKeywords,
    Coverage,
    CoverageKeywords,
    Execution,
    ExecutionKeywords,
    Keywords,
    LayoutKeywords,
    OpeningKeywords,
    ReportStore,
    SourceKeywords,
    StatusStore,
    StoreKeywords,
    request_json,
)
from .scan import Listing, Progress, Reuse, ScanBatch, listed, scan, scan_status
from .selection import Selection
from .storage.retries import requests_retried
from .store import (
    FORMATS,
    JobRecord,
    StatusWriter,
    atomic,
    check_store_path,
    read_jobs,
    read_status,
)
from .store.guard import (
    check_outside_cache,
    check_tile_list,
    check_vector_output,
    claim,
    real,
)
from .store.lock import StoreLock
from .store.schema import MISSING_AREAS_LAYER
from .store.tables import DELETE, REBUILD, REPORT, new_job_id
from .store.writer import store_crs
from .tilecheck import VerifyReport, VerifyTotals, check_chunk, type_warning
from .values import as_count, as_path


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
    if store_format is not None and store_format not in FORMATS:
        raise UsageError(f"store format {store_format!r}: use one of {', '.join(FORMATS)}")
    if status is None:
        return reader.status_dir / f"{reader.status_stem}.{store_format or 'gdb'}"
    path = check_store_path(as_path(status, "status"))
    if store_format is not None and path.suffix.lower() != f".{store_format}":
        raise UsageError(f"{path}: --status ends in {path.suffix} but --format is {store_format}")
    return path


def _default_stores(reader: CacheReader) -> list[Path]:
    """The default status stores of a cache (``Status.gdb`` and ``Status.gpkg``)."""
    return [status_path(reader, None, fmt) for fmt in FORMATS]


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


def store_to_read(reader: CacheReader, status: str | os.PathLike[str] | None) -> Path:
    """The status store a reading command reads: ``status`` (its path as given or made from
    it), else the default store beside the cache that exists (``Status.gdb``, else ``.gpkg``;
    one a killed swap left renamed away is restored first), else where ``Status.gdb`` would
    be. The path may not exist: callers say so as they need (:class:`StatusNotFound`)."""
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


@dataclass(frozen=True)
class _Planned:
    """A run's planned scan: its plans, policy, worker processes, progress, the planning's
    warnings, and the bundle reads each process keeps in flight."""

    plans: list[LevelPlan]
    policy: ScanPolicy
    workers: int
    progress: Progress | None
    warnings: list[str]
    io_concurrency: int = 1
    cluster: Cluster | None = None

    def listed(
        self, reader: CacheReader, reuse: Reuse | None = None
    ) -> AbstractContextManager[tuple[Listing, Executor]]:
        """The run's executor and the listing made on it (:func:`~cachestatus.scan.listed`):
        every process of the run is started inside the block, none outlives it."""
        return listed(
            reader, self.plans, self.policy, self.workers, reuse, self.io_concurrency, self.cluster
        )


def _planned(
    reader: CacheReader, chosen: Selection, execution: Execution, policy: ScanPolicy
) -> _Planned:
    """The scan of ``chosen``'s levels and area under ``policy``, run as ``execution`` says."""
    warnings: list[str] = []
    plans = plan_levels(reader, chosen.levels, chosen.geometry, warnings)
    cluster = cluster_for(execution.scheduler, execution.cluster, execution.workers)
    workers = resolve_workers(execution.workers)
    in_flight = resolve_io_concurrency(execution.io_concurrency, reader)
    return _Planned(plans, policy, workers, execution.progress, warnings, in_flight, cluster)


def run_rebuild(
    source: CacheSource,
    store: StatusStore = StatusStore(),
    *,
    levels: Iterable[int] | None = None,
    counting: Counting = Counting(),
    execution: Execution = Execution(),
) -> StatusReport:
    """REBUILD_CACHE_STATUS: scan the cache and replace its status store atomically.

    Args:
        source: the cache.
        store: where its status store goes (default: ``Status.gdb`` beside ``conf.xml``).
        levels: level IDs to scan (default: every LOD).
        counting: what is counted (blank tiles) and the cap on ``MISSING`` rows.
        execution: workers, progress and reads in flight.

    Returns:
        The level totals, problems and warnings of the run.
    """
    started = datetime.now(UTC)
    clock, retried = time.perf_counter(), requests_retried()
    with source.open() as reader:
        target = status_path(reader, store.path, store.store_format)
        policy = ScanPolicy.rebuild(
            as_count(counting.max_missing_rows, "max_missing_rows"), counting.blank
        )
        planned = _planned(reader, Selection(levels), execution, policy)
        scanned = None if levels is None else [p.lod.level for p in planned.plans]
        parameters = request_json(
            source,
            store,
            counting,
            execution,
            levels=scanned,
            tiling=tiling(reader),
            config=reader.config_digest,
        )
        # Claimed once every argument is known to be good: a refused run leaves no folder.
        with _claim(reader, target, "rebuild") as lock:
            return _scan_to_store(
                source.path,
                reader,
                planned,
                lock,
                REBUILD,
                parameters,
                (started, clock, retried),
                keep_history=True,
                big_integer=store.big_integer,
                reuse=execution.reuse,
            )


class RebuildOptions(
    SourceKeywords, StoreKeywords, CountingKeywords, ExecutionKeywords, total=False
):
    """The keyword arguments of :func:`rebuild`."""

    levels: Iterable[int] | None


def rebuild(
    cache: str | os.PathLike[str],
    status: str | os.PathLike[str] | None = None,
    **options: Unpack[RebuildOptions],
) -> StatusReport:
    """REBUILD_CACHE_STATUS: scan the cache and replace its status store atomically.

    The keyword form of :func:`run_rebuild`: ``cache`` and the fields of
    :class:`~cachestatus.request.CacheSource` make its source, ``status`` and those of
    :class:`~cachestatus.request.StatusStore` its store, and so on.

    Args:
        cache: the cache folder, service folder or ``conf.xml`` path.
        status: where to write the store (default: ``Status.gdb`` beside ``conf.xml``).
        **options: ``levels``; ``format_hint``, ``table``, ``scheme``, ``sizes``
            (:class:`~cachestatus.request.CacheSource`); ``store_format``, ``big_integer``
            (:class:`~cachestatus.request.StatusStore`); ``blank``, ``max_missing_rows``
            (:class:`~cachestatus.request.Counting`); ``workers``, ``progress``,
            ``io_concurrency`` (:class:`~cachestatus.request.Execution`).
    """
    given = Keywords("rebuild", options, RebuildOptions.__optional_keys__)
    return run_rebuild(
        given.make(CacheSource, cache),
        given.make(StatusStore, status),
        levels=options.get("levels"),
        counting=given.make(Counting),
        execution=given.make(Execution),
    )


@dataclass
class MissingReport:
    """What :func:`missing` found: one area per level with missing tiles, and warnings."""

    areas: list[MissingArea]
    warnings: list[str]
    #: Bundles read (``missing`` reuses none).
    bundles_read: int = 0


def run_report(
    source: CacheSource,
    store: ReportStore,
    *,
    coverage: Coverage = Coverage(),
    counting: Counting = Counting(),
    execution: Execution = Execution(),
) -> StatusReport:
    """REPORT_BUNDLE_STATUS: the status of chosen levels over an area, as a new store.

    Writes ``store.folder/Status.gdb`` (or ``.gpkg``) with a row for every bundle of the chosen
    levels that holds expected tiles (a file's row, or ``MISSING``). The cache and its own
    status are not touched.

    Raises:
        OutputExists: the report store exists and ``store.overwrite`` is false.
        ScaleNotInCache, InvalidAOI, UsageError: bad selection or area.
    """
    started = datetime.now(UTC)
    clock, retried = time.perf_counter(), requests_retried()
    with ExitStack() as stack:
        reader = stack.enter_context(source.open())
        folder = store.folder
        target = check_store_path(as_path(folder, "out_folder") / f"Status.{store.store_format}")
        if real(target) in {real(p) for p in _default_stores(reader)}:
            raise UsageError(
                f"{folder}: is the cache's own status folder; a report goes to "
                "another folder (--out)"
            )
        check_outside_cache(target, reader.root)
        if os.path.lexists(target) and not store.overwrite:
            raise OutputExists(
                f"{target}: exists; add --overwrite to replace it, or choose another --out folder"
            )
        chosen = coverage.resolve(reader)
        max_missing_rows = counting.max_missing_rows
        policy = ScanPolicy.report(
            None if max_missing_rows is None else as_count(max_missing_rows, "max_missing_rows"),
            counting.blank,
        )
        planned = _planned(reader, chosen, execution, policy)
        parameters = request_json(
            source,
            store,
            coverage.as_selected(chosen),
            counting,
            execution,
            area_of_interest=None if chosen.area is None else chosen.area.source,
        )
        # Claimed once every argument is known to be good: a refused run leaves no folder.
        lock = stack.enter_context(_claim(reader, target, "report"))
        result = _scan_to_store(
            source.path,
            reader,
            planned,
            lock,
            REPORT,
            parameters,
            (started, clock, retried),
            big_integer=store.big_integer,
        )
        result.warnings[:0] = chosen.warnings
        return result


class ReportOptions(
    SourceKeywords,
    CoverageKeywords,
    StoreKeywords,
    CountingKeywords,
    ExecutionKeywords,
    total=False,
):
    """The keyword arguments of :func:`report`."""

    overwrite: bool


def report(
    cache: str | os.PathLike[str],
    out_folder: str | os.PathLike[str],
    **options: Unpack[ReportOptions],
) -> StatusReport:
    """REPORT_BUNDLE_STATUS: the status of chosen levels over an area, as a new store.

    The keyword form of :func:`run_report`, built as :func:`rebuild` builds its objects.

    Args:
        cache: the cache folder, service folder or ``conf.xml`` path.
        out_folder: the folder of the report's store (created if needed).
        **options: ``scales``, ``levels``, ``aoi``, ``aoi_layer``, ``extent``, ``extent_crs``
            (:class:`~cachestatus.request.Coverage`); ``store_format`` (default ``gdb``),
            ``overwrite``, ``big_integer`` (:class:`~cachestatus.request.ReportStore`); and the
            source, counting and execution arguments of :func:`rebuild` (``max_missing_rows``
            may be ``None``: no cap).
    """
    given = Keywords("report", options, ReportOptions.__optional_keys__)
    return run_report(
        given.make(CacheSource, cache),
        given.make(ReportStore, out_folder),
        coverage=given.make(Coverage),
        counting=given.make(Counting),
        execution=given.make(Execution),
    )


#: Vector formats ``missing --out`` writes, by suffix.
MISSING_DRIVERS = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".gpkg": "GPKG",
    ".shp": "ESRI Shapefile",
}
#: ``missing --tiles`` lists at most this many tiles: beyond, the polygons are the tool.
MAX_TILE_LIST = 1_000_000


def run_missing(
    source: CacheSource,
    out: str | os.PathLike[str],
    *,
    tiles: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    coverage: Coverage = Coverage(),
    execution: Execution = Execution(),
) -> MissingReport:
    """The areas still to seed: per level, the expected tiles that are not present, as polygons.

    Scans like :func:`run_report` (levels, area or extent; the full extent by default) and
    writes the ``MissingAreas`` polygons to ``out`` (GeoJSON, GeoPackage or Shapefile, by
    suffix), ready to be the area of interest of the next caching job; with ``tiles``, also the
    missing tiles, one ``z/x/y`` a line (x the column, y the row counted down from the origin).
    ``overwrite`` replaces earlier outputs of this function.

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
        reader = stack.enter_context(source.open())
        outputs = [(out_path, check_vector_output)]
        if tiles_path is not None:
            outputs.append((tiles_path, check_tile_list))
        for path, ours in outputs:
            check_outside_cache(path, reader.root)
            if not path.parent.is_dir():
                raise UsageError(f"{path}: its folder {path.parent} does not exist")
            if ours(path) and not overwrite:
                raise OutputExists(f"{path}: exists; add --overwrite to replace it")
        chosen = coverage.resolve(reader)
        planned = _planned(reader, chosen, execution, ScanPolicy.missing(chosen.area is not None))
        tile_list = (
            None if tiles_path is None else stack.enter_context(_TileList(tiles_path, reader))
        )
        with planned.listed(reader) as (listing, executor):
            outcome = scan_status(
                listing,
                executor,
                folds=[] if tile_list is None else [tile_list.add_holes],
                progress=planned.progress,
                warnings=planned.warnings,
            )
        areas = outcome.missing_areas
        if tile_list is not None:
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
                MISSING_AREAS_LAYER.record_fields(areas),
                MISSING_AREAS_LAYER.names,
                layer=MISSING_AREAS_LAYER.name,
                driver=driver,
                geometry_type="MultiPolygon",
                crs=store_crs(reader.scheme.spatial_reference)[0],
                promote_to_multi=True,
            )
        _replace_dataset(temp, out_path)
        crs_warning = store_crs(reader.scheme.spatial_reference)[1]
        return MissingReport(
            areas,
            [*([crs_warning] if crs_warning else []), *chosen.warnings, *outcome.warnings],
            outcome.bundles_read,
        )


class MissingOptions(OpeningKeywords, CoverageKeywords, ExecutionKeywords, total=False):
    """The keyword arguments of :func:`missing`."""

    tiles: str | os.PathLike[str] | None
    overwrite: bool


def missing(
    cache: str | os.PathLike[str],
    out: str | os.PathLike[str],
    **options: Unpack[MissingOptions],
) -> MissingReport:
    """The areas still to seed: per level, the expected tiles that are not present, as polygons.

    The keyword form of :func:`run_missing`: ``tiles`` and ``overwrite`` as there, the other
    arguments as for :func:`report` (without ``sizes``, the counts and the store).
    """
    given = Keywords("missing", options, MissingOptions.__optional_keys__)
    return run_missing(
        given.make(CacheSource, cache),
        out,
        tiles=options.get("tiles"),
        overwrite=options.get("overwrite", False),
        coverage=given.make(Coverage),
        execution=given.make(Execution),
    )


#: ``verify`` lists at most this many problems; beyond, it counts them.
MAX_PROBLEMS = 100_000


def run_verify(
    source: CacheSource,
    *,
    coverage: Coverage = Coverage(),
    execution: Execution = Execution(),
    decode: bool = False,
    blank: bool = False,
    max_problems: int = MAX_PROBLEMS,
) -> VerifyReport:
    """The deep check: every stored tile of the chosen levels (and area) read and judged.

    A tile is bad when its storage is damaged, when it is empty, when its bytes are not an image
    of the cache's tile format, or (``decode``) when it does not decode. The cache is only read.
    Levels and area are chosen as for :func:`run_report`; without an area every stored tile is
    checked, with one only the tiles it holds. ``blank`` also counts tiles without content.

    Returns:
        Per-level totals and one problem per bad tile (``tile`` names it) or unreadable bundle,
        at most ``max_problems`` of them (the others counted in ``problems_omitted``).
    """
    clock = time.perf_counter()
    as_count(max_problems, "max_problems")
    with source.open() as reader:
        chosen = coverage.resolve(reader)
        planned = _planned(reader, chosen, execution, ScanPolicy.verify(chosen.area is not None))
        totals = VerifyTotals(planned.plans, blank, max_problems)
        only_expected = planned.policy.expected_only
        work = partial(check_chunk, decode=decode, blank=blank, only_expected=only_expected)
        with planned.listed(reader) as (listing, executor):
            scan(listing, executor, work, [totals.add], planned.progress)
        report = VerifyReport(
            str(source.path),
            reader.name,
            0.0,
            totals.levels,
            problems=[*listing.problems, *totals.problems],
            warnings=[*chosen.warnings, *planned.warnings],
            problems_omitted=totals.problems_omitted,
            tiles_unjudged=totals.tiles_unjudged,
        )
        report.warnings.extend(type_warning(reader, report.tiles_unjudged))
        if report.problems_omitted:
            report.warnings.append(
                f"{report.problems_omitted:,} more problems were found and not listed "
                f"(at most {max_problems:,} are)"
            )
        report.elapsed_s = time.perf_counter() - clock
        return report


class VerifyOptions(OpeningKeywords, CoverageKeywords, ExecutionKeywords, total=False):
    """The keyword arguments of :func:`verify`."""

    decode: bool
    blank: bool
    max_problems: int


def verify(cache: str | os.PathLike[str], **options: Unpack[VerifyOptions]) -> VerifyReport:
    """The deep check: every stored tile of the chosen levels (and area) read and judged.

    The keyword form of :func:`run_verify`: ``decode``, ``blank`` and ``max_problems`` as there,
    the other arguments as for :func:`missing`.
    """
    given = Keywords("verify", options, VerifyOptions.__optional_keys__)
    return run_verify(
        given.make(CacheSource, cache),
        coverage=given.make(Coverage),
        execution=given.make(Execution),
        decode=options.get("decode", False),
        blank=options.get("blank", False),
        max_problems=options.get("max_problems", MAX_PROBLEMS),
    )


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

    def add_holes(self, batch: ScanBatch) -> None:
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
    planned: _Planned,
    lock: StoreLock,
    mode: str,
    parameters: dict[str, Any],
    started: tuple[datetime, float, int],
    keep_history: bool = False,
    big_integer: bool = False,
    reuse: bool = False,
) -> StatusReport:
    """Scan into a new store at the locked target, swapped in when complete.

    ``started`` is when the run began (UTC, and ``time.perf_counter``) and the requests retried
    by then (:func:`~cachestatus.storage.retries.requests_retried`); ``keep_history`` carries
    the ``Jobs`` rows of the store being replaced over, and makes a rebuild's store: it keeps
    ``BundleFiles``, and with ``reuse`` the rows of the bundles unchanged since the previous
    rebuild are reused (:mod:`cachestatus.incremental`).
    """
    target = lock.target
    job_id, token = new_job_id()
    _, crs_warning = store_crs(reader.scheme.spatial_reference)
    extent = plans_extent(reader.scheme, planned.plans)
    recorded = {**parameters, "workers": planned.workers, "status": str(target.absolute())}
    # The old store is untouched until the swap (the lock is held): its history is read once.
    history = _previous_jobs(target) if keep_history else []
    previous = previous_status(target, history, recorded, mode) if reuse and history else None
    with StatusWriter(
        target, reader.scheme, extent, job_id, token, lock, big_integer, keep_files=keep_history
    ) as writer:
        files = [partial(_add_files, writer)] if keep_history else []
        split = None if previous is None else previous.split
        with planned.listed(reader, split) as (listing, executor):
            lock.keep_fresh()  # a thread: only once every worker process is forked
            # Nothing changed since the previous rebuild: its store is carried over as it is.
            carried = previous if previous is not None and previous.unchanged else None
            if carried is not None:
                outcome = carried.outcome(listing, planned.warnings, planned.progress)
            else:
                if previous is not None and previous.in_place:
                    # Rows can be deleted from a GeoPackage: the reused ones (read for their
                    # counts only) are not rewritten.
                    reused = previous.reused
                    assert reused is not None, "split first"
                    writer.update(target, (reused.file_fids, reused.row_fids), previous.gone())
                outcome = scan_status(
                    listing, executor, writer.add, files, planned.progress, planned.warnings
                )
        if carried is not None:
            history = []  # carried over with the store
        job = JobRecord(
            job_id=job_id,
            mode=mode,
            started=started[0],
            finished=datetime.now(UTC),
            cache_path=str(Path(cache).resolve()) if reader.location is None else reader.where,
            format=reader.name,
            parameters=json.dumps(recorded),
            tool_version=__version__,
            # Warnings too: an unchanged rebuild answered through SQLite follows only a run
            # that had none to repeat (cachestatus.unchanged).
            outcome="succeeded with warnings"
            if outcome.problems or outcome.warnings or crs_warning
            else "succeeded",
            bundles_read=outcome.bundles_read,
            bundles_reused=outcome.bundles_reused,
        )
        if carried is not None:
            writer.carry(target, outcome.levels, job)
        else:
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
        requests_retried=None if reader.location is None else requests_retried() - started[2],
        bundles_read=outcome.bundles_read,
        bundles_reused=outcome.bundles_reused,
    )


def _add_files(writer: StatusWriter, batch: ScanBatch) -> None:
    """A batch's ``BundleFiles`` rows to ``writer``, but for rows the store has already
    (:attr:`~cachestatus.scan.ScanBatch.stored`)."""
    if not batch.stored:
        writer.add_files(bundle_files(batch))


def _previous_jobs(target: Path) -> list[JobRecord]:
    """The ``Jobs`` history of the store being replaced, so that it survives the rebuild."""
    if not target.exists():
        return []
    try:
        return read_jobs(target)
    except Exception:  # an unreadable old store is replaced, its history is lost
        return []


def run_delete(source: CacheSource, status: str | os.PathLike[str] | None = None) -> list[Path]:
    """DELETE_CACHE_STATUS: remove the status store(s); returns what was removed (maybe none).

    Without ``status``, the default stores beside the cache (``Status.gdb``, ``Status.gpkg``).
    """
    with source.open() as reader:
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


def run_summary(source: CacheSource, status: str | os.PathLike[str] | None = None) -> StatusReport:
    """Read the stored status back (no rescan): level totals, corrupt bundles, last job.

    Without ``status``, the default store beside the cache (``Status.gdb``, else ``.gpkg``).

    Raises:
        StatusNotFound: there is no store (run :func:`rebuild` first).
    """
    with source.open() as reader:
        target = store_to_read(reader, status)
        report = read_status(target)
        report.cache = str(source.path)
        return report


def delete(
    cache: str | os.PathLike[str],
    status: str | os.PathLike[str] | None = None,
    format_hint: str | None = None,
    **options: Unpack[LayoutKeywords],
) -> list[Path]:
    """DELETE_CACHE_STATUS: remove the status store(s); returns what was removed (maybe none).

    The keyword form of :func:`run_delete` (``table``, ``scheme``: see
    :class:`~cachestatus.request.CacheSource`).
    """
    given = Keywords("delete", options, LayoutKeywords.__optional_keys__)
    return run_delete(given.make(CacheSource, cache, format_hint), status)


def summary(
    cache: str | os.PathLike[str],
    status: str | os.PathLike[str] | None = None,
    format_hint: str | None = None,
    **options: Unpack[LayoutKeywords],
) -> StatusReport:
    """Read the stored status back (no rescan): the keyword form of :func:`run_summary`.

    Raises:
        StatusNotFound: there is no store (run :func:`rebuild` first).
    """
    given = Keywords("summary", options, LayoutKeywords.__optional_keys__)
    return run_summary(given.make(CacheSource, cache, format_hint), status)


def replay(
    status: str | os.PathLike[str],
    job_id: str | None = None,
    *,
    execution: Execution | None = None,
) -> StatusReport:
    """Run a rebuild or a report the ``Jobs`` table of the store at ``status`` records, again.

    The job's ``parameters`` hold its whole request (:func:`~cachestatus.request.request_json`):
    the same cache, read the same way, the same levels, area and counts, into the same store.
    A replayed report replaces the report it wrote; a replayed rebuild keeps the history.

    Args:
        status: a status store (``.gdb`` or ``.gpkg``).
        job_id: the job to run again (default: the store's last).
        execution: workers, progress and reads in flight (default: the job's, no progress).

    Raises:
        StatusNotFound: no status store at ``status``.
        UsageError: no such job, or one that cannot be replayed (a job of cachestatus 0.1,
            which did not record its whole request).
    """
    target = check_store_path(as_path(status, "status"))
    jobs = read_jobs(target)
    job = next((j for j in reversed(jobs) if job_id in (None, j.job_id)), None)
    if job is None:
        raise UsageError(f"{target}: no job {job_id} in its Jobs table")
    data = json.loads(job.parameters)
    if job.mode not in (REBUILD, REPORT) or "cache" not in data:
        raise UsageError(
            f"{target}: job {job.job_id} ({job.mode}, cachestatus {job.tool_version}) did not "
            "record its whole request; it cannot be replayed"
        )
    source = CacheSource.from_json(data)
    counting = Counting.from_json(data)
    execution = execution or Execution.from_json(data)
    if job.mode == REBUILD:
        store = StatusStore.from_json(data)
        levels = data.get("levels")
        return run_rebuild(source, store, levels=levels, counting=counting, execution=execution)
    return run_report(
        source,
        replace(ReportStore.from_json(data), overwrite=True),
        coverage=Coverage.from_json(data),
        counting=counting,
        execution=execution,
    )


__all__ = [
    "DELETE",
    "REBUILD",
    "REPORT",
    "LevelInfo",
    "MissingReport",
    "delete",
    "level_infos",
    "missing",
    "rebuild",
    "replay",
    "report",
    "run_delete",
    "run_missing",
    "run_rebuild",
    "run_report",
    "run_summary",
    "run_verify",
    "status_path",
    "summary",
    "verify",
]
