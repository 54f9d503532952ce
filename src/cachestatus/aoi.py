"""Areas of interest: polygons from any vector file GDAL reads, or an extent, in the cache's CRS.

All polygons of a file are unioned. An area in another CRS is densified before it is reprojected,
so that its straight edges become the curves they are in the cache's CRS. A file without a CRS is
taken to be in the cache's, with a warning.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidAOI

#: Straight edges are cut into this many pieces of the area's span before reprojection.
DENSIFY_STEPS = 1024


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
    from pyproj.exceptions import CRSError

    try:
        src, dst = _crs(source), _crs(target)
    except CRSError as exc:
        raise InvalidAOI(f"unknown CRS ({exc})") from None
    if _same_crs(src, dst):
        return geometry
    transformer = Transformer.from_crs(src, dst, always_xy=True)

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    def densified(g: Any) -> Any:
        xmin, ymin, xmax, ymax = g.bounds
        step = max(xmax - xmin, ymax - ymin) / DENSIFY_STEPS
        return shapely.segmentize(g, step) if step > 0 else g

    if src.is_geographic and dst.area_of_use is not None:
        # Web Mercator and friends are not defined towards the poles: keep to the target CRS's
        # area of use (in degrees, as the source).
        a = dst.area_of_use
        geometry = shapely.intersection(geometry, shapely.box(a.west, a.south, a.east, a.north))
    out = shapely.transform(densified(geometry), project)
    if out.is_empty or not np.isfinite(shapely.get_coordinates(out)).all():
        raise InvalidAOI(
            f"the area cannot be reprojected into {dst.name}: it lies outside "
            "where that CRS is defined"
        )
    return shapely.make_valid(out)


def _polygons(geometry: Any, source: str) -> Any:
    import shapely

    if geometry is None or geometry.is_empty:
        raise InvalidAOI(f"{source}: the geometry is empty")
    parts = shapely.get_parts(shapely.make_valid(geometry))
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
    geometry = shapely.union_all(shapely.from_wkb(geometries))
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
    parts = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    try:
        numbers = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        raise InvalidAOI(f"extent {value!r}: give four numbers XMIN,YMIN,XMAX,YMAX") from None
    if len(numbers) != 4 or not all(np.isfinite(numbers)):
        raise InvalidAOI(f"extent {value!r}: give four numbers XMIN,YMIN,XMAX,YMAX")
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
    label = f"extent {', '.join(f'{v:g}' for v in box.bounds)}" + (f" ({crs})" if crs else "")
    if crs is not None and cache_crs is not None:
        box = reproject(box, crs, cache_crs)
    return AreaOfInterest(box, label)


def geometry_aoi(geometry: Any) -> AreaOfInterest:
    """A shapely geometry in the cache's CRS (the Python API's ``area_of_interest``)."""
    return AreaOfInterest(_polygons(geometry, "area_of_interest"), "a shapely geometry")
