"""GeoPackage tiles: any tile matrix set and CRS, rows counted down from the top.

``gpkg_contents`` names the tile table (``data_type = 'tiles'``) and its bounds (the full
extent); ``gpkg_tile_matrix_set`` the CRS and the matrix set's bounds (its top-left corner is the
origin); ``gpkg_tile_matrix`` one row per level with its tile size and pixel size (the
resolution). Levels may be missing. A GeoPackage without tiles (a status store, a vector layer)
is not a tile cache.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import InvalidCacheConfig
from ..models import LOD, Extent, SpatialReference, TilingScheme
from .sqlite_tiles import SQLiteTileCache, open_read_only


def _tile_tables(db: sqlite3.Connection) -> list[str]:
    try:
        return [
            str(name)
            for (name,) in db.execute(
                "SELECT table_name FROM gpkg_contents WHERE data_type = 'tiles' ORDER BY table_name"
            )
        ]
    except sqlite3.DatabaseError:
        return []


class GeoPackageTiles(SQLiteTileCache):
    """The tile table of a GeoPackage, read-only."""

    name = "geopackage"
    description = "GeoPackage tiles (gpkg_tile_matrix_set, gpkg_tile_matrix, rows downward)"
    suffix = ".gpkg"
    tms_rows = False

    def __init__(self, path: Path, table: str | None = None) -> None:
        """Open the GeoPackage's tile table: ``table``, or the only one it holds.

        Raises:
            InvalidCacheConfig: no tile table; several and none chosen; ``table`` not among them.
        """
        super().__init__(path)
        tables = _tile_tables(self._connect())
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
        #: The file holds several tile tables: each has its own default status store.
        self.shared = len(tables) > 1
        matrix_set = self._query(
            "SELECT srs_id, min_x, min_y, max_x, max_y FROM gpkg_tile_matrix_set "
            "WHERE table_name = ?",
            (self.table,),
        )
        if not matrix_set:
            raise InvalidCacheConfig(f"{path}: no gpkg_tile_matrix_set row for {self.table!r}")
        srs_id, min_x, _min_y, _max_x, max_y = matrix_set[0]
        matrices = self._query(
            "SELECT zoom_level, tile_width, tile_height, pixel_x_size FROM gpkg_tile_matrix "
            "WHERE table_name = ? ORDER BY zoom_level",
            (self.table,),
        )
        if not matrices:
            raise InvalidCacheConfig(f"{path}: no gpkg_tile_matrix rows for {self.table!r}")
        sizes = {(int(w), int(h)) for _, w, h, _ in matrices}
        if len(sizes) > 1:
            raise InvalidCacheConfig(
                f"{path}: tiles of several pixel sizes {sorted(sizes)}; "
                "this version reads one tile size per GeoPackage"
            )
        ((tile_w, tile_h),) = sizes
        lods = tuple(LOD(int(z), float(res) * 96 / 0.0254, float(res)) for z, _, _, res in matrices)
        self._scheme = TilingScheme(
            spatial_reference=self._srs(int(srs_id)),
            origin_x=float(min_x),
            origin_y=float(max_y),
            tile_cols=tile_w,
            tile_rows=tile_h,
            dpi=96.0,
            lods=lods,
            tile_format="MIXED",  # each tile PNG or JPEG (WebP with the extension)
            storage_format="GeoPackage",
        )
        bounds = self._query(
            "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?",
            (self.table,),
        )
        self._extent = None
        if bounds and None not in bounds[0]:
            extent = Extent(*(float(v) for v in bounds[0]))
            self._extent = None if extent.is_empty else extent

    @property
    def status_stem(self) -> str:
        """``world.Status``, or ``world.roads.Status`` for table ``roads`` of a shared file."""
        return f"{self.path.stem}.{self.table}.Status" if self.shared else super().status_stem

    def _srs(self, srs_id: int) -> SpatialReference:
        found = self._query(
            "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys "
            "WHERE srs_id = ?",
            (srs_id,),
        )
        if not found:
            return SpatialReference(wkid=srs_id if srs_id > 0 else None)
        org, code, definition = found[0]
        wkt = (
            definition.strip()
            if isinstance(definition, str) and definition.strip() not in ("", "undefined")
            else None
        )
        wkid = int(code) if str(org).lower() == "epsg" and int(code) > 0 else None
        return SpatialReference(wkid=wkid, latest_wkid=wkid, wkt=wkt)

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A ``.gpkg`` file holding a tile table."""
        if not super().detect(path):
            return False
        db = open_read_only(path)
        try:
            return bool(_tile_tables(db))
        finally:
            db.close()
