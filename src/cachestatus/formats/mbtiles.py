"""MBTiles: an SQLite file of tiles on the Web Mercator (GoogleMapsCompatible) grid.

Tiles are in ``tiles(zoom_level, tile_column, tile_row, tile_data)`` (a table, or a view over
``map`` and ``images``), rows counted up from the bottom (TMS). The file is opened read-only
(an SQLite ``mode=ro`` URI): nothing is ever written to it. The status is reported in virtual
128 x 128 bundles of the grid, like a Compact cache. ``metadata`` ``bounds`` (WGS 84) is the
full extent; the levels are those holding tiles.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .. import grid
from ..errors import InvalidCacheConfig
from ..models import BUNDLE_SIZE, LOD, BundleKey, Extent, Problem, SpatialReference, TilingScheme
from .base import BundleFile, BundleIndex, CacheReader

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


def web_mercator_scheme(levels: list[int], tile_size: int = 256) -> TilingScheme:
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
        tile_format="PNG",
        storage_format="MBTiles",
    )


class MBTiles(CacheReader):
    """An ``.mbtiles`` file, read-only."""

    name = "mbtiles"
    description = "MBTiles (SQLite: tiles(zoom_level, tile_column, tile_row, tile_data), TMS rows)"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._db: sqlite3.Connection | None = None
        db = self._connect()
        try:
            names = {
                name
                for (name,) in db.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
                )
            }
            if "tiles" not in names:
                raise InvalidCacheConfig(
                    f"{path}: an SQLite file without a 'tiles' table or "
                    "view; is it an MBTiles file?"
                )
            levels = [
                z
                for (z,) in db.execute("SELECT DISTINCT zoom_level FROM tiles ORDER BY zoom_level")
            ]
            metadata = (
                dict(db.execute("SELECT name, value FROM metadata"))
                if ("metadata" in names)
                else {}
            )
        except sqlite3.DatabaseError as exc:
            raise InvalidCacheConfig(f"{path}: not a readable SQLite file ({exc})") from None
        if not levels:
            lo, hi = metadata.get("minzoom"), metadata.get("maxzoom")
            levels = list(range(int(lo), int(hi) + 1)) if lo and hi else [0]
        self._scheme = web_mercator_scheme(levels)
        self._extent = self._bounds(metadata.get("bounds"))

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            uri = f"file:{quote(os.path.abspath(self.path))}?mode=ro"
            try:
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            except sqlite3.Error as exc:
                raise InvalidCacheConfig(f"{self.path}: cannot be opened ({exc})") from None
        return self._db

    def _bounds(self, text: object) -> Extent | None:
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

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_db": None}

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A file ending in ``.mbtiles``."""
        return path.is_file() and path.suffix.lower() == ".mbtiles"

    @property
    def scheme(self) -> TilingScheme:
        """GoogleMapsCompatible, with the levels that hold tiles."""
        return self._scheme

    @property
    def full_extent(self) -> Extent | None:
        """``metadata`` ``bounds``, in Web Mercator."""
        return self._extent

    @property
    def status_dir(self) -> Path:
        """The folder holding the file."""
        return self.path.parent

    @property
    def status_stem(self) -> str:
        """``world.Status`` for ``world.mbtiles``."""
        return f"{self.path.stem}.Status"

    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """The virtual bundles holding tiles: one grouped query on the level."""
        rows = (
            self._connect()
            .execute(
                "SELECT DISTINCT tile_column >> 7, tile_row >> 7 FROM tiles WHERE zoom_level = ?",
                (level,),
            )
            .fetchall()
        )
        top = max(0, (1 << level) // BUNDLE_SIZE - 1)  # TMS bundle rows count up too
        for bcol, brow in sorted((c, top - r) for c, r in rows):
            key = BundleKey(level, brow * BUNDLE_SIZE, bcol * BUNDLE_SIZE)
            yield BundleFile(key, f"{self.path}#{key.label}")

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """The tiles of one bundle and their sizes: one indexed range query."""
        key = bundle.key
        low = grid.tms_row(key.level, min(key.row + BUNDLE_SIZE, 1 << key.level) - 1)
        high = grid.tms_row(key.level, key.row)
        found = (
            self._connect()
            .execute(
                "SELECT tile_column, tile_row, length(tile_data) FROM tiles WHERE zoom_level = ? "
                "AND tile_column BETWEEN ? AND ? AND tile_row BETWEEN ? AND ?",
                (key.level, key.col, key.col + BUNDLE_SIZE - 1, low, high),
            )
            .fetchall()
        )
        sizes = np.zeros((BUNDLE_SIZE, BUNDLE_SIZE), dtype=np.uint64)
        if found:
            table = np.array([(c, r, s or 0) for c, r, s in found], dtype=np.int64)
            rows = grid.tms_row(key.level, table[:, 1]) - key.row
            sizes[rows, table[:, 0] - key.col] = table[:, 2]
        tiles = int(np.count_nonzero(sizes))
        return BundleIndex(sizes, tiles, int(sizes.sum()), 0, 0, None)

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None
