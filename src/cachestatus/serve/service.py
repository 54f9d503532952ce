"""What a served cache is, as its documents need it: the name, the tiling scheme, the extent, the
CRS's units and code, and the Web Mercator zooms of its levels.

Worked out once when the server starts (pyproj reads the CRS); the ArcGIS REST and WMTS
documents (:mod:`.arcgis`, :mod:`.wmts`) are pure functions of it.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..grid import EARTH_RADIUS, HALF_WORLD, tile_bounds
from ..models import Extent, SpatialReference, Tile, TilingScheme
from ..plan import expected_extent

if TYPE_CHECKING:
    from ..formats.base import CacheReader

#: Metres in one degree along the equator of WGS 84 (the WMTS standard's figure, 6378137 m).
METRES_PER_DEGREE = 2 * math.pi * EARTH_RADIUS / 360
#: ArcGIS and Web Mercator codes of the same CRS.
_WEB_MERCATOR_CODES = frozenset({3857, 102100, 102113, 900913})
#: How far (relative) a resolution may be from a Web Mercator zoom's and still be that zoom.
_ZOOM_TOLERANCE = 1e-3
#: What a service name may hold: ArcGIS service names are letters, digits and underscores.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,119}$")
#: Folder names that say nothing of the cache (``Roads_Roads/Layers``, ``.../_alllayers``).
_ANONYMOUS_FOLDERS = frozenset({"layers", "_alllayers", "allayers"})


@dataclass(frozen=True)
class Service:
    """One served cache, described for its documents.

    Attributes:
        name: the service name in URLs (``.../services/NAME/MapServer``).
        scheme: the cache's tiling scheme.
        extent: the full extent (declared, else the grid's, else the coarsest level's tile at
            the origin: some extent is needed by every client).
        metres_per_unit: metres in one map unit of the CRS (1 for metres; degrees along the
            equator).
        geographic: the CRS is in degrees.
        northing_first: the CRS's first axis points north (EPSG:4326): WMTS corners are
            written in that order.
        epsg: the EPSG code of the CRS, where it has one.
        lon_lat: the extent in longitude and latitude (WGS 84), where pyproj can tell it.
        zooms: the Web Mercator zoom of each LOD level, for the standard 256-pixel Web
            Mercator grid (empty for every other scheme).
    """

    name: str
    scheme: TilingScheme
    extent: Extent
    metres_per_unit: float = 1.0
    geographic: bool = False
    northing_first: bool = False
    epsg: int | None = None
    lon_lat: Extent | None = None
    zooms: dict[int, int] = field(default_factory=dict)

    @functools.cached_property
    def level_of_zoom(self) -> dict[int, int]:
        """The LOD level of each Web Mercator zoom of :attr:`zooms`."""
        return {zoom: level for level, zoom in self.zooms.items()}

    @property
    def crs_urn(self) -> str:
        """The CRS as WMTS names it (``urn:ogc:def:crs:EPSG::25832``); the WKT when it has no
        EPSG code."""
        if self.epsg is not None:
            return f"urn:ogc:def:crs:EPSG::{self.epsg}"
        return self.scheme.spatial_reference.wkt or ""


def describe(reader: CacheReader, name: str | None = None) -> Service:
    """The :class:`Service` of the cache ``reader`` reads, named ``name`` (else after the cache).

    Raises:
        UsageError: ``name`` is not a valid service name.
    """
    if name is not None and not _NAME.match(name):
        raise UsageError(
            f"--name {name!r}: a service name is letters, digits and underscores (also . and -, "
            "not first), at most 120 characters"
        )
    scheme = reader.scheme
    extent = expected_extent(reader) or _origin_tile(scheme)
    return Service(
        name or default_name(reader),
        scheme,
        extent,
        *_units(scheme.spatial_reference),
        lon_lat=_lon_lat(scheme.spatial_reference, extent),
        zooms=web_mercator_zooms(scheme),
    )


def default_name(reader: CacheReader) -> str:
    """The cache's folder or file name (the service folder above ``Layers``), made a service
    name: characters other than letters, digits, ``_``, ``.`` and ``-`` become ``_``."""
    if reader.location is not None:
        raw = reader.location.cache_name
    else:
        path = reader.root
        while path.name.lower() in _ANONYMOUS_FOLDERS and path.parent != path:
            path = path.parent
        raw = path.stem if path.is_file() else path.name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", raw).lstrip(".-")[:120]
    return cleaned or "cache"


def _origin_tile(scheme: TilingScheme) -> Extent:
    """The coarsest level's tile at the origin: the extent GDAL assumes without one."""
    coarsest = max(scheme.lods, key=lambda lod: lod.resolution)
    return tile_bounds(scheme, Tile(coarsest.level, 0, 0))


def _units(sr: SpatialReference) -> tuple[float, bool, bool, int | None]:
    """(metres per unit, geographic, northing first, EPSG code) of a spatial reference, from
    pyproj; metres and no code when pyproj does not know it."""
    crs_input = sr.user_input()
    if crs_input is None:
        return 1.0, False, False, None
    try:
        from pyproj import CRS

        crs = CRS.from_user_input(crs_input)
        axis = crs.axis_info[0]
        code = crs.to_epsg(min_confidence=70)
    except Exception:  # pyproj raises several types for unknown or odd CRSs
        return 1.0, False, False, None
    if sr.latest_wkid is not None and sr.latest_wkid < 100000:
        code = sr.latest_wkid
    northing = axis.direction.lower() == "north"
    if crs.is_geographic:
        return METRES_PER_DEGREE, True, northing, code
    return float(axis.unit_conversion_factor or 1.0), False, northing, code


def _lon_lat(sr: SpatialReference, extent: Extent) -> Extent | None:
    """``extent`` in longitude and latitude (WGS 84); ``None`` when pyproj cannot tell."""
    crs_input = sr.user_input()
    if crs_input is None:
        return None
    try:
        from pyproj import Transformer

        to_lon_lat = Transformer.from_crs(crs_input, "EPSG:4326", always_xy=True)
        found = Extent(*to_lon_lat.transform_bounds(*extent, densify_pts=21))
    except Exception:  # pyproj raises several types for unknown or odd CRSs
        return None
    return found if all(math.isfinite(v) for v in found) else None


def web_mercator_zooms(scheme: TilingScheme) -> dict[int, int]:
    """The Web Mercator zoom of each LOD level whose resolution is one, when the scheme is the
    standard grid (a Web Mercator code, 256-pixel tiles, the origin at the square's top-left);
    empty otherwise."""
    sr = scheme.spatial_reference
    codes = {sr.wkid, sr.latest_wkid}
    standard = (
        bool(codes & _WEB_MERCATOR_CODES)
        and scheme.tile_cols == scheme.tile_rows == 256
        and math.isclose(scheme.origin_x, -HALF_WORLD, abs_tol=1.0)
        and math.isclose(scheme.origin_y, HALF_WORLD, abs_tol=1.0)
    )
    if not standard:
        return {}
    zooms = {}
    for lod in scheme.lods:
        zoom = round(math.log2(2 * HALF_WORLD / 256 / lod.resolution)) if lod.resolution > 0 else -1
        exact = 2 * HALF_WORLD / 256 / 2**zoom if zoom >= 0 else 0.0
        if 0 <= zoom <= 30 and math.isclose(lod.resolution, exact, rel_tol=_ZOOM_TOLERANCE):
            zooms[lod.level] = zoom
    return zooms
