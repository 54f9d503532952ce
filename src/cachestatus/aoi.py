"""Areas of interest: polygons from any vector file GDAL reads, or an extent, in the cache's CRS.

All polygons of a file are unioned. An area in another CRS is densified before it is reprojected,
so that its straight edges become the curves they are in the cache's CRS. A file without a CRS is
taken to be in the cache's, with a warning.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidAOI

#: Straight edges are cut into this many pieces of the area's span before reprojection.
DENSIFY_STEPS = 1024
#: Densifying adds at most this many vertices: longer outlines get longer pieces.
MAX_DENSIFIED_VERTICES = 1_000_000
#: An area of interest may have at most this many vertices (and this many bytes of WKB).
MAX_AOI_VERTICES = 2_000_000
MAX_AOI_WKB_BYTES = 16 * MAX_AOI_VERTICES + 64 * 1024 * 1024
#: Geometry collections nested deeper than this are not an area of interest.
MAX_NESTING = 32


@dataclass
class AreaOfInterest:
    """A polygonal area in the cache's CRS, and where it came from."""

    geometry: Any
    source: str
    warnings: list[str] = field(default_factory=list)


def _crs(value: str | None) -> Any:
    from pyproj import CRS

    return None if value is None else CRS.from_user_input(value)


def _same_crs(a: Any, b: Any) -> bool:
    return bool(a == b or a.equals(b, ignore_axis_order=True))


def reproject(geometry: Any, source: str, target: str) -> Any:
    """``geometry`` from CRS ``source`` into ``target``, densified first.

    Raises:
        InvalidAOI: the CRS is unknown, or the area falls outside where the target CRS is defined.
    """
    import shapely
    from pyproj import Transformer
    from pyproj.exceptions import CRSError, ProjError

    try:
        src, dst = _crs(source), _crs(target)
    except (CRSError, ProjError, TypeError, ValueError) as exc:
        raise InvalidAOI(f"unknown CRS ({_first_line(exc)})") from None
    if _same_crs(src, dst):
        return geometry
    cannot = f"the area cannot be reprojected from {src.name} into {dst.name}"
    try:
        transformer = Transformer.from_crs(src, dst, always_xy=True)
    except (CRSError, ProjError) as exc:
        raise InvalidAOI(f"{cannot} ({_first_line(exc)})") from None

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    if src.is_geographic and dst.area_of_use is not None:
        # Web Mercator and friends are not defined towards the poles: keep to the target CRS's
        # area of use (in degrees, as the source).
        a = dst.area_of_use
        geometry = shapely.intersection(geometry, shapely.box(a.west, a.south, a.east, a.north))
    try:
        out = shapely.transform(densified(geometry), project)
    except (ProjError, ValueError) as exc:
        raise InvalidAOI(f"{cannot} ({_first_line(exc)})") from None
    if out.is_empty or not np.isfinite(shapely.get_coordinates(out)).all():
        raise InvalidAOI(f"{cannot}: it lies outside where that CRS is defined")
    return shapely.make_valid(out)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def densified(geometry: Any) -> Any:
    """``geometry`` with its edges cut into pieces of at most 1/:data:`DENSIFY_STEPS` of its
    span, or longer pieces where that would add more than :data:`MAX_DENSIFIED_VERTICES`."""
    import shapely

    if geometry.is_empty:
        return geometry
    xmin, ymin, xmax, ymax = geometry.bounds
    step = max(xmax - xmin, ymax - ymin) / DENSIFY_STEPS
    # The pieces an outline of this length makes: at most the budget.
    step = max(step, geometry.length / MAX_DENSIFIED_VERTICES)
    if not (np.isfinite(step) and step > 0):
        return geometry
    return shapely.segmentize(geometry, step)


def _check_size(geometry: Any, source: str) -> None:
    import shapely

    count = int(shapely.get_num_coordinates(geometry))
    if count > MAX_AOI_VERTICES:
        raise InvalidAOI(
            f"{source}: {count:,} vertices; an area of interest may have at most "
            f"{MAX_AOI_VERTICES:,} (simplify it first)"
        )
    if count and not np.isfinite(shapely.get_coordinates(geometry)).all():
        raise InvalidAOI(f"{source}: has coordinates that are not finite numbers")


def _flatten(geometry: Any, source: str) -> list[Any]:
    """The simple parts of a geometry, collections inside collections opened (to a depth)."""
    import shapely

    parts = [geometry]
    for _ in range(MAX_NESTING):
        if not any(
            p.geom_type == "GeometryCollection" or p.geom_type.startswith("Multi") for p in parts
        ):
            return parts
        parts = list(shapely.get_parts(parts))
    raise InvalidAOI(f"{source}: geometry collections nested more than {MAX_NESTING} deep")


def _polygons(geometry: Any, source: str) -> Any:
    import shapely

    if geometry is None:
        raise InvalidAOI(f"{source}: the geometry is empty")
    if not isinstance(geometry, shapely.Geometry):
        raise InvalidAOI(
            f"{source}: {type(geometry).__name__} is not a geometry (give a shapely polygon)"
        )
    if geometry.is_empty:
        raise InvalidAOI(f"{source}: the geometry is empty")
    _check_size(geometry, source)
    parts = [q for p in _flatten(geometry, source) for q in _flatten(shapely.make_valid(p), source)]
    polygons = [p for p in parts if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    if not polygons:
        kinds = sorted({p.geom_type for p in parts}) or ["nothing"]
        raise InvalidAOI(
            f"{source}: holds {', '.join(kinds)}, not polygons; an area of interest "
            "must be a polygon layer"
        )
    area = shapely.union_all(polygons)
    if area.is_empty or area.area <= 0:
        raise InvalidAOI(f"{source}: the polygons are empty (no area)")
    return area


def _split_layer(path: str, layer: str | None) -> tuple[str, str | None]:
    """``data.gdb/roads`` names a FileGDB feature class: split it into dataset and layer."""
    if layer is None and not os.path.exists(path):
        parent, name = os.path.split(path.rstrip("/\\"))
        if parent.lower().endswith(".gdb") and os.path.isdir(parent):
            return parent, name
    return path, layer


def read_aoi(
    path: str | os.PathLike[str], cache_crs: str | None, layer: str | None = None
) -> AreaOfInterest:
    """All polygons of a vector file (first layer, or ``layer``), unioned, in the cache's CRS.

    Raises:
        InvalidAOI: unreadable file or layer, no polygons, empty geometry, unknown CRS.
    """
    import pyogrio
    import shapely
    from pyogrio.raw import read

    dataset, layer = _split_layer(str(path), layer)
    if not os.path.exists(dataset):
        raise InvalidAOI(
            f"{path}: no such file; give a vector file GDAL reads (GeoJSON, "
            "Shapefile, GeoPackage, a FileGDB feature class as data.gdb/layer)"
        )
    try:
        info = pyogrio.read_info(dataset, layer=layer)
        _, _, wkb, _ = read(dataset, layer=layer, columns=[])
    except Exception as exc:  # pyogrio's DataSourceError, DataLayerError...
        raise InvalidAOI(f"{path}: cannot be read as a vector layer ({exc})") from None
    label = f"{dataset}" + (f" (layer {layer})" if layer else "")
    if wkb is None or len(wkb) == 0:
        raise InvalidAOI(f"{label}: holds no features")
    geometries = [g for g in wkb if g is not None]
    if not geometries:
        raise InvalidAOI(f"{label}: its features have no geometry (empty)")
    size = sum(len(g) for g in geometries)
    if size > MAX_AOI_WKB_BYTES:
        raise InvalidAOI(
            f"{label}: {size:,} bytes of geometry; an area of interest may have at most "
            f"{MAX_AOI_VERTICES:,} vertices (simplify it first)"
        )
    try:
        shapes = shapely.from_wkb(geometries)
    except Exception as exc:  # shapely's GEOSException on damaged WKB
        raise InvalidAOI(f"{label}: a geometry cannot be read ({_first_line(exc)})") from None
    shapes = shapes[~shapely.is_missing(shapes)]
    for shape in shapes:
        _check_size(shape, label)
    parts = [q for g in shapes for q in _flatten(g, label)]
    polygons = [p for p in parts if p.geom_type in ("Polygon", "MultiPolygon")]
    try:
        geometry = shapely.union_all([shapely.make_valid(p) for p in polygons] or parts)
    except Exception as exc:  # GEOS topology errors on degenerate input
        raise InvalidAOI(f"{label}: the polygons cannot be unioned ({_first_line(exc)})") from None
    area = _polygons(geometry, label)
    warnings = []
    if info.get("crs") is None:
        warnings.append(f"{label} has no CRS; it is taken to be the cache's")
    elif cache_crs is not None:
        area = reproject(area, info["crs"], cache_crs)
    return AreaOfInterest(area, label, warnings)


def parse_extent(value: str | Sequence[float]) -> tuple[float, float, float, float]:
    """``xmin,ymin,xmax,ymax``, arcpy's ``"xmin ymin xmax ymax"`` or a 4-tuple, as floats.

    Raises:
        InvalidAOI: not four numbers, or no area (min >= max).
    """
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    usage = f"extent {shown}: give four numbers XMIN,YMIN,XMAX,YMAX (finite)"
    if isinstance(value, str):
        parts: list[Any] = value.replace(",", " ").split()[:5]
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray, dict)):
        parts = list(itertools.islice(value, 5))
    else:
        raise InvalidAOI(usage)
    try:
        if any(
            isinstance(v, bool) or not isinstance(v, (str, int, float, np.number)) for v in parts
        ):
            raise TypeError
        numbers = tuple(float(v) for v in parts)
    except (TypeError, ValueError, OverflowError):
        raise InvalidAOI(usage) from None
    if len(numbers) != 4 or not all(np.isfinite(numbers)):
        raise InvalidAOI(usage)
    xmin, ymin, xmax, ymax = numbers
    if not (xmax > xmin and ymax > ymin):
        raise InvalidAOI(f"extent {value!r} has no area: XMIN < XMAX and YMIN < YMAX are needed")
    return xmin, ymin, xmax, ymax


def extent_aoi(
    value: str | Sequence[float], cache_crs: str | None, crs: str | None = None
) -> AreaOfInterest:
    """A rectangle, in ``crs`` (default: the cache's), as an area in the cache's CRS."""
    import shapely

    box = shapely.box(*parse_extent(value))
    if crs is not None and not isinstance(crs, str):
        raise InvalidAOI(f"extent_crs={crs!r}: give a CRS as text, e.g. EPSG:4326")
    label = f"extent {', '.join(f'{v:g}' for v in box.bounds)}" + (f" ({crs})" if crs else "")
    if crs is not None and cache_crs is not None:
        box = reproject(box, crs, cache_crs)
    return AreaOfInterest(box, label)


def geometry_aoi(geometry: Any) -> AreaOfInterest:
    """A shapely geometry in the cache's CRS (the Python API's ``area_of_interest``)."""
    return AreaOfInterest(_polygons(geometry, "area_of_interest"), "a shapely geometry")
