"""MBTiles: an SQLite file of tiles on the Web Mercator (GoogleMapsCompatible) grid.

Tiles are in ``tiles(zoom_level, tile_column, tile_row, tile_data)`` (a table, or a view over
``map`` and ``images``), rows counted up from the bottom (TMS). ``metadata`` ``bounds``
(WGS 84) is the full extent; the levels are those holding tiles (0 to 30). Every value read
from ``metadata`` is checked where it enters: one that cannot be used is ignored, or kept to
what the grid holds, with a warning.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from ..errors import InvalidCacheConfig
from ..models import LOD, Extent, SpatialReference, TilingScheme
from .sqlite_tiles import MAX_LEVEL, SQLiteTileCache, shown_value

log = logging.getLogger(__name__)

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
    grid_name = f"the Web Mercator grid (levels 0 to {MAX_LEVEL}, 2**level tiles a side)"

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
        levels, bad = self._level_values(MAX_LEVEL, self._zoom_indexed)
        self._bad_levels = bad.listed()
        metadata = (
            {
                str(k): v
                for k, v in self._query(
                    "SELECT name, value FROM metadata WHERE name IN (?, ?, ?, ?)",
                    ("minzoom", "maxzoom", "format", "bounds"),
                    what="its metadata table",
                )
            }
            if ("metadata" in names)
            else {}
        )
        if not levels:
            levels = _metadata_levels(path, metadata.get("minzoom"), metadata.get("maxzoom"))
        self._scheme = web_mercator_scheme(levels, tile_format=_tile_format(path, metadata))
        self._extent = _bounds(path, metadata.get("bounds"))


def _warn(path: Path, message: str) -> None:
    log.warning("%s: %s", path, message)


def metadata_int(value: object) -> int | None:
    """An integer of the ``metadata`` table (``minzoom``, ``maxzoom``), or ``None`` when the value
    is not one: text of ASCII digits (at most 12, with a sign), an integer, a float without a
    fraction. Never raises."""
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if digits.isascii() and digits.isdigit() and len(digits) <= 12:
            return int(text)
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _metadata_levels(path: Path, low: object, high: object) -> list[int]:
    """The levels of a file without tiles, from ``minzoom`` and ``maxzoom``, kept to the levels
    of the grid (0 to :data:`MAX_LEVEL`); ``[0]`` without them."""
    if low is None or high is None:
        return [0]
    first, last = metadata_int(low), metadata_int(high)
    if first is None or last is None:
        _warn(
            path,
            f"metadata minzoom {shown_value(low)} / maxzoom {shown_value(high)} are not "
            "zoom levels; level 0 is used",
        )
        return [0]
    kept = max(0, min(first, MAX_LEVEL)), max(0, min(last, MAX_LEVEL))
    if kept != (first, last):
        _warn(
            path,
            f"metadata minzoom {first} / maxzoom {last} kept to {kept[0]} / {kept[1]}: the "
            f"grid's levels are 0 to {MAX_LEVEL}",
        )
    if kept[0] > kept[1]:
        _warn(path, f"metadata minzoom {first} is above maxzoom {last}; level 0 is used")
        return [0]
    return list(range(kept[0], kept[1] + 1))


def _tile_format(path: Path, metadata: dict[str, object]) -> str:
    """``metadata`` ``format``: png, jpg, webp or pbf; where it is absent (or not a short word),
    any image is fine."""
    value = metadata.get("format")
    if value is None or value == "":
        return "ANY"
    if isinstance(value, str) and value.isascii() and value.isprintable() and len(value) <= 16:
        return value.upper()
    _warn(path, f"metadata format {shown_value(value)} is not a tile format; any image is fine")
    return "ANY"


def _bounds(path: Path, text: object) -> Extent | None:
    """``metadata`` ``bounds`` (``west,south,east,north`` in WGS 84) in Web Mercator: ``None``
    (the whole grid) when absent or unusable (not four finite numbers, west not below east...),
    kept to the world (longitudes to +-180, latitudes to Web Mercator's +-85.05) when beyond."""
    if text is None:
        return None
    try:
        if not isinstance(text, str):
            raise ValueError
        west, south, east, north = (float(v) for v in text.split(",", 4))
    except ValueError:
        _warn(path, f"metadata bounds {shown_value(text)} are not four numbers; ignored")
        return None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        _warn(path, f"metadata bounds {shown_value(text)} are not finite; ignored")
        return None
    if not (west < east and south < north):
        _warn(
            path,
            f"metadata bounds {shown_value(text)}: west is not below east or south not below "
            "north; ignored, the whole grid is expected",
        )
        return None
    if max(abs(west), abs(east)) > 180 or max(abs(south), abs(north)) > 90:
        _warn(
            path,
            f"metadata bounds {shown_value(text)} reach beyond the world; kept to it "
            "(longitudes -180 to 180, latitudes -90 to 90)",
        )
    west, east = max(-180.0, min(west, 180.0)), max(-180.0, min(east, 180.0))
    xmin, ymin = web_mercator(west, south)
    xmax, ymax = web_mercator(east, north)
    extent = Extent(xmin, ymin, xmax, ymax)
    return None if extent.is_empty else extent
