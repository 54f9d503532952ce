"""Caches of one file per tile: ArcGIS exploded caches and XYZ/TMS folders.

Every tile file of a level is found by one listing of each row (or column) folder (with a
stat per file for its size only when sizes are asked for); tiles are then grouped into virtual
128 x 128 bundles. The listing holds everything a status needs, so these readers run in the
calling process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from .. import grid
from .arcgis_folder import ArcGISFolderCache
from .listed import ListedTiles
from .mbtiles import web_mercator_scheme

#: Tile file extensions (``MIXED`` exploded caches hold both PNG and JPEG).
TILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".pbf", ".mvt", ".lerc")
_ROW_DIR = re.compile(r"^R([0-9a-fA-F]{8})$")
_COL_FILE = re.compile(r"^C([0-9a-fA-F]{8})\.", re.IGNORECASE)


def _files(folder: str) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            yield from (e for e in entries if e.name.lower().endswith(TILE_SUFFIXES))
    except (NotADirectoryError, FileNotFoundError):
        return


class ExplodedCache(ListedTiles, ArcGISFolderCache):
    """An ArcGIS exploded cache: ``_alllayers/Lnn/Rxxxxxxxx/Cxxxxxxxx.png|jpg``."""

    name = "exploded"
    description = "ArcGIS exploded cache folder (conf.xml, _alllayers/Lnn/Rrrrrrrrr/Ccccccccc.png)"
    storage_formats = ("esriMapCacheStorageModeExploded",)

    def _level_tiles(self, level: int) -> list[tuple[int, int, int]]:
        folder = self._level_dirs.get(level)
        tiles: list[tuple[int, int, int]] = []
        if folder is None:
            return tiles
        with os.scandir(folder) as rows:
            row_dirs = [
                (int(m.group(1), 16), e.path)
                for e in rows
                if (m := _ROW_DIR.match(e.name)) and e.is_dir()
            ]
        for row, path in row_dirs:  # one listing per row folder
            for entry in _files(path):
                match = _COL_FILE.match(entry.name)
                if match:
                    size = entry.stat().st_size if self.sizes else 1
                    tiles.append((row, int(match.group(1), 16), size))
        return tiles


class XYZFolder(ListedTiles):
    """A ``{z}/{x}/{y}.png`` folder on the Web Mercator grid, rows counted down (XYZ)."""

    name = "xyz"
    description = "XYZ tile folder ({z}/{x}/{y}.png, Web Mercator, rows downward)"
    #: Rows counted up from the bottom (TMS).
    tms = False

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        levels = sorted(int(e.name) for e in os.scandir(path) if e.name.isdigit() and e.is_dir())
        self._scheme = web_mercator_scheme(levels or [0])

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder whose subfolders are numbers (zoom levels) holding numbered folders."""
        if not path.is_dir() or (path / "conf.xml").exists():
            return False
        levels = [e for e in os.scandir(path) if e.name.isdigit() and e.is_dir()]
        return bool(levels) and any(e.name.isdigit() for e in os.scandir(levels[0].path))

    def _level_tiles(self, level: int) -> list[tuple[int, int, int]]:
        tiles: list[tuple[int, int, int]] = []
        level_dir = self.path / str(level)
        if not level_dir.is_dir():
            return tiles
        with os.scandir(level_dir) as cols:
            col_dirs = [(int(e.name), e.path) for e in cols if e.name.isdigit() and e.is_dir()]
        for col, path in col_dirs:  # one listing per column folder
            for entry in _files(path):
                stem = entry.name.split(".", 1)[0]
                if stem.isdigit():
                    row = int(stem)
                    size = entry.stat().st_size if self.sizes else 1
                    tiles.append((grid.tms_row(level, row) if self.tms else row, col, size))
        return tiles


class TMSFolder(XYZFolder):
    """A ``{z}/{x}/{y}.png`` folder with rows counted up from the bottom (TMS)."""

    name = "tms"
    description = "TMS tile folder ({z}/{x}/{y}.png, Web Mercator, rows upward)"
    tms = True

    @classmethod
    def detect(cls, path: Path) -> bool:
        """Never detected: the same layout as XYZ; chosen with ``--format-hint tms``."""
        return False
