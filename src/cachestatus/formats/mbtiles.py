"""MBTiles: an SQLite file of tiles on the Web Mercator (GoogleMapsCompatible) grid.

Tiles are in ``tiles(zoom_level, tile_column, tile_row, tile_data)`` (a table, or a view over
``map`` and ``images``), rows counted up from the bottom (TMS). ``metadata`` ``bounds``
(WGS 84) is the full extent; the levels are those holding tiles.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import InvalidCacheConfig
from ..models import LOD, Extent, SpatialReference, TilingScheme
from .sqlite_tiles import SQLiteTileCache

#: Half the side of the Web Mercator square, in metres.
HALF_WORLD = 20037508.342789244
EARTH_RADIUS = 6378137.0
#: Latitude where Web Mercator's square ends.
MAX_LATITUDE = 85.0511287798066


def web_mercator(lon: float, lat: float) -> tuple[float, float]:
    """Spherical Mercator coordinates of a WGS 84 point (latitude clamped to the square)."""
    lat = max(-MAX_LATITUDE, min(MAX_LATITUDE, lat))
    x = math.radians(lon) * EARTH_RADIUS
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * EARTH_RADIUS
    return x, y


def web_mercator_scheme(
    levels: list[int], tile_size: int = 256, tile_format: str = "PNG"
) -> TilingScheme:
    """The GoogleMapsCompatible tiling scheme for ``levels`` (96 DPI scales)."""
    lods = []
    for level in levels:
        res = 2 * HALF_WORLD / tile_size / 2**level
        lods.append(LOD(level, res * 96 / 0.0254, res))
    return TilingScheme(
        SpatialReference(3857, 3857),
        -HALF_WORLD,
        HALF_WORLD,
        tile_size,
        tile_size,
        96.0,
        tuple(lods),
        tile_format=tile_format,
        storage_format="MBTiles",
    )


class MBTiles(SQLiteTileCache):
    """An ``.mbtiles`` file, read-only."""

    name = "mbtiles"
    description = "MBTiles (SQLite: tiles(zoom_level, tile_column, tile_row, tile_data), TMS rows)"
    suffix = ".mbtiles"
    table = "tiles"
    tms_rows = True

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        names = {
            str(n)
            for (n,) in self._query(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            )
        }
        if "tiles" not in names:
            raise InvalidCacheConfig(
                f"{path}: an SQLite file without a 'tiles' table or view; is it an MBTiles file?"
            )
        levels = [
            int(z)
            for (z,) in self._query("SELECT DISTINCT zoom_level FROM tiles ORDER BY zoom_level")
        ]
        metadata = (
            {str(k): v for k, v in self._query("SELECT name, value FROM metadata")}
            if ("metadata" in names)
            else {}
        )
        if not levels:
            lo, hi = metadata.get("minzoom"), metadata.get("maxzoom")
            levels = list(range(int(lo), int(hi) + 1)) if lo and hi else [0]
        # metadata format: png, jpg, webp or pbf; where it is absent, any image is fine.
        tile_format = str(metadata.get("format") or "any").upper()
        self._scheme = web_mercator_scheme(levels, tile_format=tile_format)
        self._extent = _bounds(metadata.get("bounds"))


def _bounds(text: object) -> Extent | None:
    """``metadata`` ``bounds`` (``west,south,east,north`` in WGS 84) in Web Mercator."""
    if not isinstance(text, str):
        return None
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        return None
    xmin, ymin = web_mercator(west, south)
    xmax, ymax = web_mercator(east, north)
    extent = Extent(xmin, ymin, xmax, ymax)
    return None if extent.is_empty else extent
