"""GeoPackage tiles: any tile matrix set and CRS, rows counted down from the top.

``gpkg_contents`` names the tile table (``data_type = 'tiles'``) and its bounds (the full
extent); ``gpkg_tile_matrix_set`` the CRS and the matrix set's bounds (its top-left corner is the
origin); ``gpkg_tile_matrix`` one row per level with its size in tiles, its tile size and pixel
size (the resolution). Levels may be missing. A GeoPackage without tiles (a status store, a
vector layer) is not a tile cache.

What the file declares: the ``gpkg_tile_matrix`` levels are the levels, each expected whether
built or not. The ``gpkg_contents`` bounds are the full extent, in the CRS of the contents'
``srs_id``: bounds in another CRS than the matrix set's (NGA's libraries write WGS 84 bounds for
a Web Mercator pyramid) are put into the matrix set's CRS first (densified, so that curved
edges stay covered). Bounds that are a point or a line make the tiles holding it expected.

A CRS is resolved from what the file says of it (:func:`resolve_srs`), in this order: the
``organization`` and ``organization_coordsys_id`` (``EPSG 3857``, ``ESRI 54030``), with the
codes that are Web Mercator by another number (900913, 3785, 102100, 102113) read as EPSG:3857;
the ``definition`` when it is WKT pyproj reads (MapProxy writes the text "Added via Mapproxy."
there); the ``srs_id`` itself when it is such a code. When nothing resolves, the status has no
CRS, with a warning.

The file is found by its content (:meth:`GeoPackageTiles.recognise`): an SQLite file whose
``gpkg_contents`` names a tile table it holds, whatever its name. Rows of ``gpkg_contents`` that
name tables the file does not hold are left out with a warning.

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
from ..models import LOD, Extent, SpatialReference, TilingScheme, crs_known
from .base import GRID_LIMIT, FileHead, read_head
from .sqlite_db import (
    TileDatabase,
    WorkLimitExceeded,
    geopackage_tile_tables,
    quote_name,
    shown_value,
    sqlite_content,
    unreadable,
)
from .sqlite_tiles import MAX_LEVEL, SQLiteTileCache, grid_number, level_number

log = logging.getLogger(__name__)

#: The widest tile read, in pixels (GeoPackage tiles are commonly 256 or 512).
MAX_TILE_PIXELS = 1 << 16
#: The longest CRS definition (WKT) read; real ones are a few kilobytes.
MAX_WKT = 1 << 16
#: Level rows that cannot be used, named one by one in the warning.
MAX_NAMED = 5
#: Codes that are Web Mercator (EPSG:3857) by another number: 900913 (OpenLayers' and
#: MapProxy's "google"), 3785 (EPSG's withdrawn code for it), 102100 and 102113 (Esri's).
WEB_MERCATOR_ALIASES = frozenset({900913, 3785, 102100, 102113})
#: Codes of EPSG below this are written as EPSG codes (``SpatialReference.user_input``); others
#: that pyproj knows (EPSG:900913 in its "other" list) as the WKT pyproj makes of them.
_EPSG_CODES = 100_000
#: Points along each edge of bounds put into another CRS (pyproj's ``transform_bounds``).
DENSIFY_POINTS = 21


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


def _bounds(values: tuple[Any, ...], degenerate: bool = False) -> Extent | None:
    """Four values ``min_x, min_y, max_x, max_y`` as an extent with area, or ``None``. With
    ``degenerate``, a point or a line (min = max) is an extent too; min above max never is."""
    numbers = [finite_number(v) for v in values]
    if None in numbers or len(numbers) != 4:
        return None
    extent = Extent(*(float(v) for v in numbers if v is not None))
    if degenerate:
        return extent if extent.xmin <= extent.xmax and extent.ymin <= extent.ymax else None
    return None if extent.is_empty else extent


def _tile_tables(db: TileDatabase) -> list[str]:
    """The tile tables ``gpkg_contents`` names that the file holds (none when it cannot be
    read).

    Raises:
        WorkLimitExceeded: ``gpkg_contents`` never ends.
    """
    return geopackage_tile_tables(db)


class GeoPackageTiles(SQLiteTileCache):
    """The tile table of a GeoPackage, read-only."""

    name = "geopackage"
    description = "GeoPackage tiles (gpkg_tile_matrix_set, gpkg_tile_matrix, rows downward)"
    suffix = ".gpkg"
    tms_rows = False

    options = ("sizes", "table")

    def __init__(self, path: Path, *, sizes: bool = False, table: str | None = None) -> None:
        """Open the GeoPackage's tile table: ``table``, or the only one it holds.

        Raises:
            InvalidCacheConfig: no tile table; several and none chosen; ``table`` not among them;
                a tile matrix set without finite bounds; no usable level; levels of several
                tile sizes.
        """
        self._asked = table
        super().__init__(path, sizes=sizes)

    def _open(self) -> None:
        path, table = self.path, self._asked
        self._query("SELECT count(*) FROM sqlite_master")  # not SQLite: says so
        try:
            tables = _tile_tables(self._connect())
        except WorkLimitExceeded as exc:
            raise unreadable(path, exc, "gpkg_contents") from None
        if not tables:
            raise InvalidCacheConfig(f"{path}: a GeoPackage without tile tables")
        self._warn_missing_tables(tables)
        if table is not None and table not in tables:
            raise InvalidCacheConfig(
                f"{path}: no tile table {table!r}; its tile tables: {', '.join(tables)}"
            )
        if table is None and len(tables) > 1:
            raise InvalidCacheConfig(
                f"{path}: holds several tile tables ({', '.join(tables)}); "
                "choose one with --table NAME"
            )
        #: The tile table read (a spec of this reader names it).
        self.table = table or tables[0]
        self.grid_name = f"the tile matrix of {self.table!r} (gpkg_tile_matrix)"
        #: The file holds several tile tables: each has its own default status store.
        self.shared = len(tables) > 1
        matrix_set = self._about_table("gpkg_tile_matrix_set", "srs_id, min_x, min_y, max_x, max_y")
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
        self._srs_id = srs_id
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
        matrices = self._about_table(
            "gpkg_tile_matrix",
            "zoom_level, matrix_width, matrix_height, tile_width, tile_height, pixel_x_size, "
            "pixel_y_size",
            "ORDER BY zoom_level",
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

    def _about_table(self, source: str, columns: str, order: str = "") -> list[tuple[Any, ...]]:
        """``columns`` of the rows of the GeoPackage table ``source`` (``gpkg_contents``,
        ``gpkg_tile_matrix``...) about the tile table read, in ``order``.

        Raises:
            InvalidCacheConfig: ``source`` cannot be read, or never ends.
        """
        return self._query(
            f"SELECT {columns} FROM {source} WHERE table_name = ? {order}",
            (self.table,),
            what=source,
        )

    def level_size(self, level: int) -> tuple[int, int]:
        """Columns and rows a tile of ``level`` may have: what a status holds. A tile beyond
        its level's ``matrix_width`` or ``matrix_height`` (but on the grid) is counted as stray,
        as any tile outside the expected ones."""
        return GRID_LIMIT, GRID_LIMIT

    def _warn_missing_tables(self, tables: list[str]) -> None:
        """Warn of the tile rows of ``gpkg_contents`` that name tables the file does not hold
        (MapProxy's test file has one): they are left out."""
        try:
            named = self._connect().rows(
                "SELECT table_name FROM gpkg_contents WHERE data_type = 'tiles' LIMIT ?",
                (MAX_NAMED + len(tables) + 1,),
            )
        except sqlite3.DatabaseError:
            return
        missing = [shown_value(n) for (n,) in named if n not in tables]
        if missing:
            log.warning(
                "%s: gpkg_contents names tile tables the file does not hold (%s); left out",
                self.path,
                ", ".join(missing[:MAX_NAMED]),
            )

    def _full_extent(self, box: Extent) -> Extent | None:
        """``gpkg_contents`` bounds in the matrix set's CRS, kept within the matrix set's
        bounds; ``None`` when absent or unusable (with a warning). A point or a line stays one.
        """
        found = self._about_table("gpkg_contents", "min_x, min_y, max_x, max_y, srs_id")
        if not found or all(v is None for v in found[0][:4]):
            return None
        *corners, srs_id = found[0]
        extent = _bounds(tuple(corners), degenerate=True)
        if extent is None:
            log.warning(
                "%s: gpkg_contents bounds of %r (%s) are not finite numbers with min not above "
                "max; ignored, the whole grid is expected",
                self.path,
                self.table,
                ", ".join(shown_value(v) for v in corners),
            )
            return None
        clamped = False
        if srs_id is not None and srs_id != self._srs_id:
            moved = self._into_grid_crs(extent, srs_id)
            if moved is None:
                return None
            extent, clamped = moved
        kept = Extent(
            max(extent.xmin, box.xmin),
            max(extent.ymin, box.ymin),
            min(extent.xmax, box.xmax),
            min(extent.ymax, box.ymax),
        )
        if kept.xmin > kept.xmax or kept.ymin > kept.ymax:
            log.warning(
                "%s: gpkg_contents bounds of %r lie outside its tile matrix set; ignored, the "
                "whole grid is expected",
                self.path,
                self.table,
            )
            return None
        slack = 1e-9 * max(box.xmax - box.xmin, box.ymax - box.ymin)
        if not clamped and any(abs(a - b) > slack for a, b in zip(kept, extent, strict=True)):
            log.warning(
                "%s: gpkg_contents bounds of %r reach beyond its tile matrix set; kept to it",
                self.path,
                self.table,
            )
        return kept

    def _into_grid_crs(self, extent: Extent, srs_id: object) -> tuple[Extent, bool] | None:
        """Contents bounds in the CRS of ``srs_id`` put into the matrix set's CRS (densified
        along the edges), and whether they were kept to that CRS's area of use first (WGS 84
        bounds reaching the poles, for Web Mercator). ``None`` (with a warning) when either CRS
        is unknown or the bounds do not transform."""
        from pyproj import CRS
        from pyproj.exceptions import ProjError

        target_input = self._scheme.spatial_reference.user_input()
        source_input = self._srs(srs_id, warn=False).user_input()
        why = ""
        if target_input is None or source_input is None:
            why = "one of the two CRSs is not known"
        else:
            try:
                source, target = (
                    CRS.from_user_input(source_input),
                    CRS.from_user_input(target_input),
                )
                if source.equals(target, ignore_axis_order=True):
                    return extent, False
                moved = transform_bounds(extent, source, target)
                if moved is not None:
                    return moved
                why = "they do not transform into finite coordinates"
            except (ProjError, ValueError) as exc:
                why = f"pyproj cannot transform them ({exc})"
        log.warning(
            "%s: gpkg_contents bounds of %r are in srs_id %s, the tile matrix set in srs_id %s, "
            "and %s; ignored, the whole grid is expected",
            self.path,
            self.table,
            shown_value(srs_id),
            shown_value(self._srs_id),
            why,
        )
        return None

    @property
    def status_stem(self) -> str:
        """``world.Status``, or ``world.roads.Status`` for table ``roads`` of a shared file."""
        return f"{self.path.stem}.{self.table}.Status" if self.shared else super().status_stem

    def _srs(self, srs_id: object, warn: bool = True) -> SpatialReference:
        """The CRS of ``srs_id``, resolved from what ``gpkg_spatial_ref_sys`` says of it
        (:func:`resolve_srs`). Nothing resolves: none, with a warning (unless ``warn`` is
        false)."""
        if isinstance(srs_id, bool) or not isinstance(srs_id, int):
            if warn:
                log.warning(
                    "%s: srs_id %s is not an integer; no CRS", self.path, shown_value(srs_id)
                )
            return SpatialReference()
        found = self._query(
            "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys "
            "WHERE srs_id = ?",
            (srs_id,),
            what="gpkg_spatial_ref_sys",
        )
        org, code, definition = found[0] if found else (None, None, None)
        resolved = resolve_srs(srs_id, org, code, definition)
        if resolved is None:
            if warn and srs_id > 0:  # -1 and 0: undefined by the standard, no CRS meant
                log.warning(
                    "%s: the CRS of srs_id %s (%s %s, definition %s) is not one pyproj knows; "
                    "the status has none",
                    self.path,
                    srs_id,
                    shown_value(org),
                    shown_value(code),
                    shown_value(definition.strip() if isinstance(definition, str) else definition),
                )
            return SpatialReference()
        return resolved

    @classmethod
    def recognise(cls, path: Path, found: FileHead) -> bool:
        """An SQLite file whose ``gpkg_contents`` names a tile table the file holds."""
        content = sqlite_content(path, found)
        return content is not None and bool(content.geopackage_tiles)

    @classmethod
    def claims_by_name(cls, path: Path) -> bool:
        """A ``.gpkg`` that no format recognises is opened as a GeoPackage (whose reader says
        what is wrong with it) unless it is a readable SQLite file without tile tables: a
        vector GeoPackage or a status store is not a tile cache."""
        if not super().claims_by_name(path):
            return False
        found = read_head(path)
        content = None if found is None else sqlite_content(path, found)
        return content is None or bool(content.error)


def resolve_srs(
    srs_id: int, org: object, code: object, definition: object
) -> SpatialReference | None:
    """The CRS a ``gpkg_spatial_ref_sys`` row describes, from what it says, in this order:

    1. ``organization`` and ``organization_coordsys_id``: EPSG codes (a Web Mercator alias,
       :data:`WEB_MERCATOR_ALIASES`, read as EPSG:3857), or another authority pyproj knows;
    2. ``srs_id`` when it is a Web Mercator alias (a row that names no organization);
    3. the ``definition``, when it is WKT pyproj reads (not MapProxy's "Added via Mapproxy.");
    4. ``srs_id`` as an EPSG code (older writers meant it as one, and wrote no row).

    ``None`` when nothing resolves. Never raises.
    """
    number = grid_number(code, GRID_LIMIT)
    authority = org.strip() if isinstance(org, str) and org.strip().isascii() else None
    if authority is not None and number is not None:
        if authority.lower() in ("epsg", "esri") and number in WEB_MERCATOR_ALIASES:
            return _epsg(3857)
        if authority.lower() == "epsg":
            found = _epsg(number)
            if found is not None:
                return found
        elif authority.isalnum() and crs_known(f"{authority}:{number}"):
            return SpatialReference(wkt=_wkt_of(f"{authority}:{number}"))
    if srs_id in WEB_MERCATOR_ALIASES:
        return _epsg(3857)
    if isinstance(definition, str) and len(definition) <= MAX_WKT:
        text = definition.strip()
        if text.lower() not in ("", "undefined") and crs_known(text):
            return SpatialReference(wkt=text)
    return _epsg(srs_id) if srs_id > 0 else None


def _epsg(code: int) -> SpatialReference | None:
    """EPSG:``code`` when pyproj knows it: as the code, or as its WKT for codes the status
    would not write as EPSG (900913 and others of pyproj's "other" list)."""
    if code in WEB_MERCATOR_ALIASES:
        code = 3857
    if not (0 < code < GRID_LIMIT) or not crs_known(f"EPSG:{code}"):
        return None
    if code < _EPSG_CODES:
        return SpatialReference(wkid=code, latest_wkid=code)
    return SpatialReference(wkt=_wkt_of(f"EPSG:{code}"))


def _wkt_of(text: str) -> str:
    from pyproj import CRS

    return str(CRS.from_user_input(text).to_wkt())


def transform_bounds(extent: Extent, source: Any, target: Any) -> tuple[Extent, bool] | None:
    """``extent`` in pyproj CRS ``source`` put into ``target`` (x = easting or longitude, as
    GeoPackage bounds are written), each edge densified with :data:`DENSIFY_POINTS` points. A
    geographic extent is first kept to ``target``'s area of use (Web Mercator ends at 85.06
    degrees): the second value says whether that cut it. ``None`` when the result is not finite.
    A point or a line stays one.

    Raises:
        ProjError: pyproj cannot transform between them.
    """
    from pyproj import Transformer

    west, south, east, north = extent
    clamped = False
    area = target.area_of_use
    if source.is_geographic and area is not None and area.west <= area.east:
        kept = (
            min(max(west, area.west), area.east),
            min(max(south, area.south), area.north),
            max(min(east, area.east), area.west),
            max(min(north, area.north), area.south),
        )
        clamped = kept != (west, south, east, north)
        west, south, east, north = kept
    to_target = Transformer.from_crs(source, target, always_xy=True)
    xmin, ymin, xmax, ymax = to_target.transform_bounds(
        west, south, east, north, densify_pts=DENSIFY_POINTS
    )
    moved = Extent(xmin, ymin, xmax, ymax)
    if not all(math.isfinite(v) for v in moved) or xmin > xmax or ymin > ymax:
        return None
    return moved, clamped
