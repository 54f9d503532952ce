"""MBTiles: an SQLite file of tiles on the Web Mercator (GoogleMapsCompatible) grid.

Tiles are in ``tiles(zoom_level, tile_column, tile_row, tile_data)`` (a table, or a view over
``map`` and ``images``), rows counted up from the bottom (TMS). Found by its content
(:meth:`MBTiles.recognise`), whatever its name: BKG distributes MBTiles as ``.mbtile``.

What the ``metadata`` table declares (TileJSON-style, every value text; see
:mod:`.tilejson`): ``bounds`` (WGS 84) is the full extent, put into Web Mercator; a point or a
line makes the tiles holding it expected. ``minzoom``..``maxzoom`` are the levels: each is
expected, built or not (0 % where no tile is), and tiles at other zooms are not scanned (a
warning names the zooms). Without them, the levels are those holding tiles (0 to 30).
``tileSize`` is the tile size in pixels (256 when absent), ``format`` the tile format. Every
value is checked where it enters: one that cannot be used is ignored, or kept to what the grid
holds, with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import InvalidCacheConfig
from ..grid import web_mercator_scheme
from .base import FileHead
from .sqlite_db import MBTILES_COLUMNS, quote_name, sqlite_content
from .sqlite_tiles import MAX_LEVEL, SQLiteTileCache
from .tilejson import (
    declared_bounds,
    declared_format,
    declared_zooms,
    tile_size,
    web_mercator_extent,
    zoom_levels,
)

log = logging.getLogger(__name__)

#: The ``metadata`` rows read.
METADATA_NAMES = ("minzoom", "maxzoom", "format", "bounds", "tileSize", "tilesize", "tile_size")


class MBTiles(SQLiteTileCache):
    """An ``.mbtiles`` file, read-only."""

    name = "mbtiles"
    description = "MBTiles (SQLite: tiles(zoom_level, tile_column, tile_row, tile_data), TMS rows)"
    suffix = ".mbtiles"
    table = "tiles"
    tms_rows = True
    grid_name = f"the Web Mercator grid (levels 0 to {MAX_LEVEL}, 2**level tiles a side)"

    def _open(self) -> None:
        """Read the file's levels and ``metadata``.

        Raises:
            InvalidCacheConfig: no ``tiles`` table or view with MBTiles' columns, a table that
                cannot be read or never ends, a ``tileSize`` that is not a tile size.
        """
        path = self.path
        names = {
            str(n).lower()
            for (n,) in self._query(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            )
        }
        if "tiles" not in names:
            more = (
                " (it holds 'map' and 'images' but not the 'tiles' view over them)"
                if {"map", "images"} <= names
                else ""
            )
            raise InvalidCacheConfig(
                f"{path}: an SQLite file without a 'tiles' table or view{more}; is it an "
                "MBTiles file?"
            )
        columns = {str(row[1]).lower() for row in self._query('PRAGMA table_info("tiles")')}
        if not columns >= MBTILES_COLUMNS:
            raise InvalidCacheConfig(
                f"{path}: its 'tiles' has no column {', '.join(sorted(MBTILES_COLUMNS - columns))}"
                "; MBTiles tiles are (zoom_level, tile_column, tile_row, tile_data)"
            )
        stored, bad = self._level_values(MAX_LEVEL, self._zoom_indexed)
        self._bad_levels = bad.listed()
        metadata = self._metadata() if "metadata" in names else {}
        source = f"{path} metadata"
        levels = zoom_levels(stored, declared_zooms(metadata, source, MAX_LEVEL))
        #: Zoom levels holding tiles outside the declared ``minzoom``..``maxzoom``: not scanned.
        self._outside = [level for level in stored if level not in levels]
        self._scheme = web_mercator_scheme(
            levels,
            tile_size=tile_size(metadata, source) or 256,
            tile_format=declared_format(metadata, source) or "ANY",
        )
        bounds = declared_bounds(metadata.get("bounds"), source)
        self._extent = None if bounds is None else web_mercator_extent(bounds)

    def _metadata(self) -> dict[str, object]:
        """The ``metadata`` rows read (:data:`METADATA_NAMES`), by name."""
        marks = ", ".join("?" * len(METADATA_NAMES))
        return {
            str(k): v
            for k, v in self._query(
                f"SELECT name, value FROM {quote_name('metadata')} WHERE name IN ({marks})",
                METADATA_NAMES,
                what="its metadata table",
            )
        }

    def unknown_levels(self) -> list[str]:
        """Zooms holding tiles outside the declared ``minzoom``..``maxzoom`` (not scanned: the
        metadata declares the levels)."""
        return [f"z{level}" for level in self._outside]

    @classmethod
    def recognise(cls, path: Path, found: FileHead) -> bool:
        """An SQLite file with a ``tiles`` table or view of MBTiles' columns (or the ``map``
        and ``images`` tables it is a view over), that is not a GeoPackage."""
        content = sqlite_content(path, found)
        return content is not None and content.mbtiles
