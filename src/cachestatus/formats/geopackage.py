"""GeoPackage tiles: any tile matrix set and CRS, rows counted down from the top.

``gpkg_contents`` names the tile table (``data_type = 'tiles'``) and its bounds (the full
extent); ``gpkg_tile_matrix_set`` the CRS and the matrix set's bounds (its top-left corner is the
origin); ``gpkg_tile_matrix`` one row per level with its size in tiles, its tile size and pixel
size (the resolution). Levels may be missing. A GeoPackage without tiles (a status store, a
vector layer) is not a tile cache.

Every value of these tables is checked where it enters (:func:`finite_number`,
:func:`count_number`, :func:`level_number`): a definition that cannot be used (no origin, no
usable level) is an :class:`InvalidCacheConfig` before any scan; a bad level row, bounds or CRS
beside usable ones is left out with a warning.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from pathlib import Path
from typing import Any

from ..errors import InvalidCacheConfig
from ..models import LOD, Extent, SpatialReference, TilingScheme
from .sqlite_tiles import (
    GRID_LIMIT,
    MAX_LEVEL,
    SQLiteTileCache,
    TileDatabase,
    WorkLimitExceeded,
    grid_number,
    level_number,
    open_read_only,
    quote_name,
    shown_value,
    unreadable,
)

log = logging.getLogger(__name__)

#: The widest tile read, in pixels (GeoPackage tiles are commonly 256 or 512).
MAX_TILE_PIXELS = 1 << 16
#: The longest CRS definition (WKT) read; real ones are a few kilobytes.
MAX_WKT = 1 << 16
#: Level rows that cannot be used, named one by one in the warning.
MAX_NAMED = 5


def finite_number(value: object) -> float | None:
    """A coordinate or pixel size read from the file, or ``None`` when it is not a finite
    number (text, a blob, NULL, NaN, infinity). Never raises."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def count_number(value: object, limit: int) -> int | None:
    """A count read from the file (a matrix's width in tiles, a tile's width in pixels): an
    integer from 1 to ``limit``, else ``None``. Never raises."""
    found = grid_number(value, limit + 1)
    return found if found else None


def _bounds(values: tuple[Any, ...]) -> Extent | None:
    """Four values ``min_x, min_y, max_x, max_y`` as an extent with area, or ``None``."""
    numbers = [finite_number(v) for v in values]
    if None in numbers or len(numbers) != 4:
        return None
    extent = Extent(*(float(v) for v in numbers if v is not None))
    return None if extent.is_empty else extent


def _tile_tables(db: TileDatabase) -> list[str]:
    """The tile tables ``gpkg_contents`` names (none when it cannot be read).

    Raises:
        WorkLimitExceeded: ``gpkg_contents`` never ends.
    """
    try:
        found = db.rows(
            "SELECT table_name FROM gpkg_contents WHERE data_type = 'tiles' ORDER BY table_name"
        )
    except WorkLimitExceeded:
        raise
    except sqlite3.DatabaseError:
        return []
    return [name for (name,) in found if isinstance(name, str)]


class GeoPackageTiles(SQLiteTileCache):
    """The tile table of a GeoPackage, read-only."""

    name = "geopackage"
    description = "GeoPackage tiles (gpkg_tile_matrix_set, gpkg_tile_matrix, rows downward)"
    suffix = ".gpkg"
    tms_rows = False

    def __init__(self, path: Path, table: str | None = None) -> None:
        """Open the GeoPackage's tile table: ``table``, or the only one it holds.

        Raises:
            InvalidCacheConfig: no tile table; several and none chosen; ``table`` not among them;
                a tile matrix set without finite bounds; no usable level; levels of several
                tile sizes.
        """
        super().__init__(path)
        try:
            tables = _tile_tables(self._connect())
        except WorkLimitExceeded as exc:
            raise unreadable(path, exc, "gpkg_contents") from None
        if not tables:
            raise InvalidCacheConfig(f"{path}: a GeoPackage without tile tables")
        if table is not None and table not in tables:
            raise InvalidCacheConfig(
                f"{path}: no tile table {table!r}; its tile tables: {', '.join(tables)}"
            )
        if table is None and len(tables) > 1:
            raise InvalidCacheConfig(
                f"{path}: holds several tile tables ({', '.join(tables)}); "
                "choose one with --table NAME"
            )
        self.table = table or tables[0]
        self.grid_name = f"the tile matrix of {self.table!r} (gpkg_tile_matrix)"
        #: The file holds several tile tables: each has its own default status store.
        self.shared = len(tables) > 1
        matrix_set = self._query(
            "SELECT srs_id, min_x, min_y, max_x, max_y FROM gpkg_tile_matrix_set "
            "WHERE table_name = ?",
            (self.table,),
            what="gpkg_tile_matrix_set",
        )
        if not matrix_set:
            raise InvalidCacheConfig(f"{path}: no gpkg_tile_matrix_set row for {self.table!r}")
        srs_id, *corners = matrix_set[0]
        box = _bounds(tuple(corners))
        if box is None:
            raise InvalidCacheConfig(
                f"{path}: gpkg_tile_matrix_set bounds of {self.table!r} "
                f"({', '.join(shown_value(v) for v in corners)}) are not finite numbers with "
                "min below max; the grid's origin cannot be known"
            )
        lods, sizes = self._levels(box)
        _, _, tile_w, tile_h = next(iter(sizes.values()))
        self._scheme = TilingScheme(
            spatial_reference=self._srs(srs_id),
            origin_x=box.xmin,
            origin_y=box.ymax,
            tile_cols=tile_w,
            tile_rows=tile_h,
            dpi=96.0,
            lods=lods,
            tile_format="MIXED",  # each tile PNG or JPEG (WebP with the extension)
            storage_format="GeoPackage",
        )
        stored, bad = self._level_values(MAX_LEVEL, self._zoom_indexed)
        for level in stored:
            if level not in sizes:
                ((count,),) = self._query(
                    f"SELECT count(*) FROM {quote_name(self.table)} WHERE zoom_level = ?",
                    (level,),
                    what=self._tile_table,
                )
                bad.add(f"zoom_level {level}", count)
        self._bad_levels = bad.listed()
        self._extent = self._full_extent(box)

    def _levels(self, box: Extent) -> tuple[tuple[LOD, ...], dict[int, tuple[int, int, int, int]]]:
        """The usable rows of ``gpkg_tile_matrix``: the LODs, and each level's matrix width and
        height and tile width and height. A row that cannot be used is left out with a warning.

        Raises:
            InvalidCacheConfig: no row can be used, or they have several tile sizes.
        """
        matrices = self._query(
            "SELECT zoom_level, matrix_width, matrix_height, tile_width, tile_height, "
            "pixel_x_size, pixel_y_size FROM gpkg_tile_matrix WHERE table_name = ? "
            "ORDER BY zoom_level",
            (self.table,),
            what="gpkg_tile_matrix",
        )
        if not matrices:
            raise InvalidCacheConfig(f"{self.path}: no gpkg_tile_matrix rows for {self.table!r}")
        lods: list[LOD] = []
        sizes: dict[int, tuple[int, int, int, int]] = {}
        refused: list[str] = []
        for zoom, *values in matrices:
            why, level = self._matrix_problem(box, zoom, values), level_number(zoom)
            if why is None and level is not None and level in sizes:
                why = "a second row for this level"
            if why is not None or level is None:
                refused.append(f"zoom_level {shown_value(zoom)}: {why}")
                continue
            width, height, tile_w, tile_h, res = (
                values[0],
                values[1],
                values[2],
                values[3],
                values[4],
            )
            sizes[level] = (int(width), int(height), int(tile_w), int(tile_h))
            lods.append(LOD(level, float(res) * 96 / 0.0254, float(res)))
        if not lods:
            raise InvalidCacheConfig(
                f"{self.path}: no usable gpkg_tile_matrix row for {self.table!r} "
                f"({'; '.join(refused[:MAX_NAMED])})"
            )
        if refused:
            more = f" and {len(refused) - MAX_NAMED:,} more" if len(refused) > MAX_NAMED else ""
            log.warning(
                "%s: gpkg_tile_matrix rows left out, their tiles not scanned: %s%s",
                self.path,
                "; ".join(refused[:MAX_NAMED]),
                more,
            )
        tile_sizes = {(w, h) for _, _, w, h in sizes.values()}
        if len(tile_sizes) > 1:
            raise InvalidCacheConfig(
                f"{self.path}: tiles of several pixel sizes {sorted(tile_sizes)}; "
                "this version reads one tile size per GeoPackage"
            )
        return tuple(lods), sizes

    @staticmethod
    def _matrix_problem(box: Extent, zoom: object, values: list[Any]) -> str | None:
        """Why a ``gpkg_tile_matrix`` row cannot be used, or ``None`` when it can."""
        if level_number(zoom) is None:
            return f"not a zoom level from 0 to {MAX_LEVEL}"
        width, height = (
            count_number(values[0], GRID_LIMIT - 1),
            count_number(values[1], GRID_LIMIT - 1),
        )
        if width is None or height is None:
            return (
                f"matrix_width {shown_value(values[0])} / matrix_height {shown_value(values[1])} "
                f"are not numbers of tiles from 1 to {GRID_LIMIT - 1:,}"
            )
        tile_w = count_number(values[2], MAX_TILE_PIXELS)
        tile_h = count_number(values[3], MAX_TILE_PIXELS)
        if tile_w is None or tile_h is None:
            return (
                f"tile_width {shown_value(values[2])} / tile_height {shown_value(values[3])} are "
                f"not sizes from 1 to {MAX_TILE_PIXELS:,} pixels"
            )
        res_x, res_y = finite_number(values[4]), finite_number(values[5])
        if res_x is None or res_y is None or res_x <= 0 or res_y <= 0:
            return (
                f"pixel_x_size {shown_value(values[4])} / pixel_y_size {shown_value(values[5])} "
                "are not positive finite numbers"
            )
        # The matrix set's bounds in tiles of this level: a status holds 2**31 a side.
        across = (box.xmax - box.xmin) / (tile_w * res_x)
        down = (box.ymax - box.ymin) / (tile_h * res_x)
        if not max(across, down) < GRID_LIMIT:
            return (
                f"pixel_x_size {res_x!r} makes the matrix set {across:.3g} x {down:.3g} tiles, "
                f"more than {GRID_LIMIT:,} a side"
            )
        return None

    def level_size(self, level: int) -> tuple[int, int]:
        """Columns and rows a tile of ``level`` may have: what a status holds. A tile beyond
        its level's ``matrix_width`` or ``matrix_height`` (but on the grid) is counted as stray,
        as any tile outside the expected ones."""
        return GRID_LIMIT, GRID_LIMIT

    def _full_extent(self, box: Extent) -> Extent | None:
        """``gpkg_contents`` bounds, kept within the matrix set's; ``None`` when absent or
        unusable (with a warning)."""
        found = self._query(
            "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?",
            (self.table,),
            what="gpkg_contents",
        )
        if not found or all(v is None for v in found[0]):
            return None
        extent = _bounds(found[0])
        if extent is None:
            log.warning(
                "%s: gpkg_contents bounds of %r (%s) are not finite numbers with min below max; "
                "ignored, the whole grid is expected",
                self.path,
                self.table,
                ", ".join(shown_value(v) for v in found[0]),
            )
            return None
        kept = Extent(
            max(extent.xmin, box.xmin),
            max(extent.ymin, box.ymin),
            min(extent.xmax, box.xmax),
            min(extent.ymax, box.ymax),
        )
        slack = 1e-9 * max(box.xmax - box.xmin, box.ymax - box.ymin)
        if any(abs(a - b) > slack for a, b in zip(kept, extent, strict=True)):
            log.warning(
                "%s: gpkg_contents bounds of %r reach beyond its tile matrix set; kept to it",
                self.path,
                self.table,
            )
        return None if kept.is_empty else kept

    @property
    def status_stem(self) -> str:
        """``world.Status``, or ``world.roads.Status`` for table ``roads`` of a shared file."""
        return f"{self.path.stem}.{self.table}.Status" if self.shared else super().status_stem

    def _srs(self, srs_id: object) -> SpatialReference:
        """The CRS of ``srs_id``: its EPSG code, or its WKT definition, whichever pyproj knows
        (the status store and areas of interest need one it knows). Neither: none, with a
        warning."""
        if isinstance(srs_id, bool) or not isinstance(srs_id, int):
            log.warning("%s: srs_id %s is not an integer; no CRS", self.path, shown_value(srs_id))
            return SpatialReference()
        found = self._query(
            "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys "
            "WHERE srs_id = ?",
            (srs_id,),
            what="gpkg_spatial_ref_sys",
        )
        if found:
            org, code, definition = found[0]
        else:  # no row: the srs_id taken as an EPSG code, as older writers meant it
            org, code, definition = "EPSG", srs_id, None
        wkt = (
            definition.strip()
            if isinstance(definition, str)
            and definition.strip() not in ("", "undefined")
            and len(definition) <= MAX_WKT
            else None
        )
        epsg = code if isinstance(org, str) and org.lower() == "epsg" else None
        wkid = grid_number(epsg, GRID_LIMIT) if epsg is not None else None
        if wkid and _crs_known(f"EPSG:{wkid}"):
            return SpatialReference(wkid=wkid, latest_wkid=wkid, wkt=wkt)
        if wkt is not None and _crs_known(wkt):
            return SpatialReference(wkt=wkt)
        if srs_id > 0:  # -1 and 0: undefined by the standard, no CRS meant
            log.warning(
                "%s: the CRS of srs_id %s (%s %s) is not one pyproj knows; the status has none",
                self.path,
                srs_id,
                shown_value(org),
                shown_value(code),
            )
        return SpatialReference()

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A ``.gpkg`` file holding a tile table."""
        if not super().detect(path):
            return False
        db = open_read_only(path)
        try:
            return bool(_tile_tables(db))
        except WorkLimitExceeded:
            return True  # a GeoPackage whose gpkg_contents never ends: opening it says so
        finally:
            db.close()


def _crs_known(text: str) -> bool:
    """Whether pyproj makes a CRS of ``text`` (``EPSG:n`` or WKT)."""
    from pyproj import CRS
    from pyproj.exceptions import ProjError

    try:
        CRS.from_user_input(text)
    except (ProjError, ValueError):
        return False
    return True
