"""What the report page shows, read from a status store: the header, totals, level table,
problems with their places and the tile grid (:func:`page_data`), and one level's
``TaskStatus`` rows in columns with its missing areas (:func:`level_bundles`).

Both return JSON-ready dictionaries (no NaN: a value the store leaves unknown is ``None``), the
documents ``serve`` answers on ``/api/page`` and ``/api/bundles?level=N``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import __version__
from ..errors import CorruptBundle
from ..formats import CacheReader
from ..grid import tile_bounds
from ..models import (
    BAD_NAME,
    BundleKey,
    BundleState,
    Extent,
    LevelSummary,
    Problem,
    percent_complete,
)
from ..store import TASK_STATUS, read_jobs, read_missing_areas, read_rows
from ..store.reader import read_area_counts, read_level_states, read_levels
from ..store.schema import MISSING_AREAS
from ..tilecheck import VerifyReport

#: The status of a row as the page's columns carry it: its index in this tuple.
STATES: tuple[str, ...] = tuple(state.value for state in BundleState)
#: The rows a problem list shows: bundles that could not be read, or were being written.
_PROBLEM_STATES = (BundleState.CORRUPT.value, BundleState.IN_PROGRESS.value)
#: OpenLayers' names of the units a CRS's first axis can have; others draw as metres.
_UNITS = {"metre": "m", "degree": "degrees", "foot": "ft", "US survey foot": "us-ft"}


def finite(value: float | None, digits: int = 6) -> float | None:
    """``value`` rounded, or ``None`` for NaN and infinities (JSON has no NaN)."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _extent(extent: Extent | Sequence[float] | None) -> list[float] | None:
    if extent is None:
        return None
    values = [finite(v, 9) for v in extent]
    return None if None in values else [float(v) for v in values if v is not None]


def _crs(reader: CacheReader | None, stored: str | None) -> dict[str, Any]:
    """The CRS as the page names it: a code (``EPSG:3857``) or ``custom``, and its units."""
    text = stored
    if reader is not None:
        text = reader.scheme.spatial_reference.user_input() or stored
    code, units, label = "custom", "m", text or "unknown"
    if text:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            crs = CRS.from_user_input(text)
        except CRSError:
            crs = None
        if crs is not None:
            authority = crs.to_authority()
            if authority is not None:
                code = label = ":".join(authority)
            else:
                label = f"custom WKT ({crs.name})"
            if crs.axis_info:
                units = _UNITS.get(crs.axis_info[0].unit_name, "m")
    return {"code": code, "units": units, "label": label}


def _grid(reader: CacheReader) -> dict[str, Any]:
    """The cache's tile grid as OpenLayers' ``TileGrid`` takes it."""
    scheme = reader.scheme
    return {
        "origin": [scheme.origin_x, scheme.origin_y],
        "resolutions": [lod.resolution for lod in scheme.lods],
        "scales": [lod.scale for lod in scheme.lods],
        "levels": list(scheme.levels),
        "tileSize": [scheme.tile_cols, scheme.tile_rows],
        "extent": _extent(reader.full_extent),
        "format": scheme.tile_format,
    }


def _level_row(lv: LevelSummary, counts: dict[str, int], rows: int) -> dict[str, Any]:
    return {
        "level": lv.level,
        "scale": finite(lv.scale),
        "resolution": finite(lv.resolution, 9),
        "bundles": lv.bundles,
        "rows": rows,
        "tilesExpected": lv.tiles_expected,
        "tilesPresent": lv.tiles_present,
        "tilesStray": lv.tiles_stray,
        "tileBytes": lv.tile_bytes,
        "tilesBlank": lv.tiles_blank,
        "percentComplete": finite(lv.percent_complete),
        "states": counts,
    }


def _state_counts(path: Path) -> dict[int, dict[str, int]]:
    """Per level, how many ``TaskStatus`` rows have each status: one read of the levels and
    statuses, counted by ``(level, status)`` pairs in one pass (a status other than those of
    :data:`STATES` is not counted)."""
    levels, states = read_level_states(path)
    names, row_name = np.unique(states.astype(str), return_inverse=True)
    known = [STATES.index(n) if n in STATES else -1 for n in names.tolist()]
    codes = np.array(known, dtype=np.int64)[row_name.ravel()]
    kept = codes >= 0
    keys, counts = np.unique(levels[kept] * len(STATES) + codes[kept], return_counts=True)
    found: dict[int, dict[str, int]] = {}
    for key, n in zip(keys.tolist(), counts.tolist(), strict=True):
        level, state = divmod(key, len(STATES))
        found.setdefault(level, {})[STATES[state]] = n
    return found


def _bounds(geometry: npt.NDArray[np.object_]) -> list[list[float] | None]:
    import shapely

    return [_extent(b) for b in shapely.bounds(geometry).tolist()]


def _row_problems(path: Path, chosen: Sequence[int] | None) -> list[dict[str, Any]]:
    """CORRUPT and IN_PROGRESS rows, with the extent of their bundles."""
    states = ", ".join(f"'{s}'" for s in _PROBLEM_STATES)
    stored = read_rows(path, where=f"status IN ({states})")
    rows = stored.rows
    labels = BundleKey.labels(rows.level, rows.row, rows.col)
    found = []
    for i, extent in enumerate(_bounds(stored.geometry)):
        level = int(rows.level[i])
        if chosen is not None and level not in chosen:
            continue
        found.append(
            {
                "kind": str(rows.state[i]),
                "bundle": labels[i],
                "level": level,
                "row": int(rows.row[i]),
                "col": int(rows.col[i]),
                "detail": str(rows.detail[i]),
                "extent": extent,
                "tile": None,
            }
        )
    return found


def _listing_problems(reader: CacheReader, levels: Sequence[int]) -> list[Problem]:
    """What listing the cache's levels finds that is not a bundle (bad names), read now."""
    found: list[Problem] = []
    for level in levels:
        try:
            listing = reader.list_level(level)
            found.extend(item for item in listing if isinstance(item, Problem))
        except (CorruptBundle, OSError) as exc:
            found.append(Problem(f"L{level:02d}", BAD_NAME, f"the level cannot be listed: {exc}"))
    return found


def _verify_problems(
    verified: VerifyReport, reader: CacheReader | None, listed: set[str]
) -> list[dict[str, Any]]:
    """The deep check's findings: each bad tile with its square from the tile grid (with a
    reader), and each bundle or name it could not read that the page does not list yet."""
    found = []
    for problem in verified.problems:
        tile = problem.at
        if tile is None and problem.bundle in listed:
            continue
        extent = None
        if tile is not None and reader is not None:
            extent = _extent(tile_bounds(reader.scheme, tile))
        found.append(
            {
                "kind": problem.kind,
                "bundle": problem.bundle,
                "level": None if tile is None else tile.level,
                "detail": problem.detail,
                "extent": extent,
                "tile": problem.tile or None,
            }
        )
    return found


def _layer_info(path: Path) -> tuple[dict[str, Any] | None, set[int]]:
    """What GDAL says of the ``TaskStatus`` layer (``None`` without one), and the levels that
    have ``MissingAreas`` rows."""
    from pyogrio import list_layers, read_info

    layers = {str(name) for name, _ in list_layers(str(path))}
    areas = {level for level, _, _ in read_area_counts(path)} if MISSING_AREAS in layers else set()
    if TASK_STATUS not in layers:
        return None, areas
    info: dict[str, Any] = read_info(str(path), layer=TASK_STATUS)
    return info, areas


def page_data(
    status: Path,
    reader: CacheReader | None = None,
    *,
    levels: Sequence[int] | None = None,
    list_names: bool = True,
    verified: VerifyReport | None = None,
    cache: str | None = None,
    stored_levels: Sequence[LevelSummary] | None = None,
) -> dict[str, Any]:
    """Everything the report page shows but the bundles: the header (cache, format, CRS, tile
    size, last job, versions), totals, the per-level table, problems (each with the extent of
    its bundle), the tile grid and the levels that have ``TaskStatus`` rows.

    Args:
        status: the status store (``Status.gdb`` or ``.gpkg``).
        reader: the cache, open: gives the tile grid (origin, resolutions, tile size, extent)
            and the names its listing finds that are not bundles. Without it the page has no
            tile grid (no background) and draws the stored polygons alone.
        levels: only these levels (default: every level of the store).
        list_names: with a reader, list each level of the cache for the names that are not
            bundles (about 0.2 s per 20,000 bundle files on a local disk); ``False`` skips it.
        verified: what the deep check (:func:`~cachestatus.operations.run_verify`) found:
            each bad tile is listed with its square (``tile``: ``L05/R1234/C5678``), each
            bundle it could not read unless the store lists it already.
        stored_levels: the store's ``LevelStatus`` rows, when the caller has read them
            (default: read here).
        cache: the cache as the user named it, for the header (default: the path the store's
            last job recorded, absolute; the job keeps it as ``cachePath``).

    Raises:
        StatusNotFound: there is no status store at ``status``.
    """
    path = Path(status)
    jobs = read_jobs(path)  # first: it raises StatusNotFound
    last = jobs[-1] if jobs else None
    if stored_levels is None:
        stored_levels = read_levels(path)
    chosen = levels
    info, area_levels = _layer_info(path)
    counts = _state_counts(path) if info is not None else {}
    table = [
        _level_row(lv, counts.get(lv.level, {}), sum(counts.get(lv.level, {}).values()))
        for lv in stored_levels
        if chosen is None or lv.level in chosen
    ]
    problems = _row_problems(path, chosen) if info is not None else []
    grid = None
    if reader is not None:
        grid = _grid(reader)
        listed = [row["level"] for row in table] if list_names else []
        problems += [
            {
                "kind": p.kind,
                "bundle": p.bundle,
                "level": None,
                "detail": p.detail,
                "extent": None,
                "tile": None,
            }
            for p in _listing_problems(reader, listed)
        ]
    if verified is not None:
        checked = _verify_problems(verified, reader, {p["bundle"] for p in problems})
        problems += [p for p in checked if chosen is None or p["level"] in (None, *chosen)]
    stored_bounds = None if info is None else _extent(info.get("total_bounds"))
    return {
        "header": {
            "cache": (last.cache_path if last else "") if cache is None else cache,
            "format": last.format if last else "",
            "status": str(path),
            "crs": _crs(reader, None if info is None else info.get("crs")),
            "tileSize": None if grid is None else grid["tileSize"],
            "tileFormat": None if grid is None else grid["format"],
            "lods": len(stored_levels) if grid is None else len(grid["levels"]),
            "job": None
            if last is None
            else {
                "id": last.job_id,
                "mode": last.mode,
                "started": last.started.isoformat(),
                "finished": None if last.finished is None else last.finished.isoformat(),
                "outcome": last.outcome,
                "toolVersion": last.tool_version,
                "cachePath": last.cache_path,
            },
            "version": __version__,
        },
        "totals": _totals(table),
        "levels": table,
        "problems": problems,
        "grid": grid,
        "extent": (grid or {}).get("extent") or stored_bounds,
        "bundleLevels": [row["level"] for row in table if row["rows"]],
        "areaLevels": [row["level"] for row in table if row["level"] in area_levels],
        "states": list(STATES),
    }


def _totals(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The sums of the level table's counts, and the rows of each status."""
    sums = {
        name: sum(row[name] for row in table)
        for name in ("bundles", "rows", "tilesExpected", "tilesPresent", "tilesStray", "tileBytes")
    }
    states: dict[str, int] = {}
    for row in table:
        for state, n in row["states"].items():
            states[state] = states.get(state, 0) + n
    percent = float(percent_complete(sums["tilesPresent"], sums["tilesExpected"]))
    return {**sums, "percentComplete": finite(percent), "states": states}


def _pixels(values: npt.NDArray[np.float64], origin: float, unit: float) -> list[int]:
    return [int(v) for v in np.rint((values - origin) / unit).tolist()]


def level_bundles(status: Path, level: int, resolution: float | None = None) -> dict[str, Any]:
    """The ``TaskStatus`` rows of one level in columns, and its ``MissingAreas`` as GeoJSON.

    Each row's rectangle travels as whole pixels of its level: ``xmin = x0 + unit * xmin[i]``
    (``unit`` is the level's resolution; stored polygons lie on tile edges, so nothing is lost
    that the map could show). ``status`` holds indexes into ``states``; ``detail`` only the
    rows that have one, by index. ``resolution``: the level's, when the caller has read the
    store's ``LevelStatus`` (default: read here).

    Raises:
        StatusNotFound: there is no status store at ``status``.
    """
    import shapely

    path = Path(status)
    stored = read_rows(path, where=f"levelID = {int(level)}")
    rows = stored.rows
    bounds = shapely.bounds(stored.geometry) if len(rows) else np.zeros((0, 4))
    if resolution is None:
        resolution = next((lv.resolution for lv in read_levels(path) if lv.level == level), 1.0)
    unit = resolution if resolution > 0 else 1.0
    x0 = float(bounds[:, 0].min()) if len(rows) else 0.0
    y0 = float(bounds[:, 1].min()) if len(rows) else 0.0
    code = {state: i for i, state in enumerate(STATES)}
    with warnings.catch_warnings():  # GDAL's note on polygons of many parts, read as stored
        warnings.filterwarnings("ignore", message="organizePolygons", category=RuntimeWarning)
        areas = read_missing_areas(path, level)
    # Tile edges lie on the level's grid: coordinates to a tenth of a pixel say all of it.
    digits = max(0, 1 - math.floor(math.log10(unit)))
    return {
        "level": int(level),
        "count": len(rows),
        "x0": x0,
        "y0": y0,
        "unit": unit,
        "row": rows.row.tolist(),
        "col": rows.col.tolist(),
        "status": [code[str(s)] for s in rows.state],
        "tilesExpected": rows.tiles_expected.tolist(),
        "tilesPresent": rows.tiles_present.tolist(),
        "tileBytes": rows.tile_bytes.tolist(),
        "fileBytes": rows.file_bytes.tolist(),
        "xmin": _pixels(bounds[:, 0], x0, unit),
        "ymin": _pixels(bounds[:, 1], y0, unit),
        "xmax": _pixels(bounds[:, 2], x0, unit),
        "ymax": _pixels(bounds[:, 3], y0, unit),
        "detail": {str(i): str(d) for i, d in enumerate(rows.detail) if d},
        "states": list(STATES),
        "missing": {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {
                        "level": area.level,
                        "tilesMissing": area.tiles_missing,
                        "exact": bool(area.exact),
                    },
                    "geometry": shapely.geometry.mapping(
                        shapely.transform(area.geometry, lambda xy: np.round(xy, digits))
                    ),
                }
                for area in areas
                if area.geometry is not None
            ],
        },
    }
