"""Caches of one file per tile: ArcGIS exploded caches and XYZ/TMS folders.

Every tile file of a level is found by one listing of each row (or column) folder (with a
stat per file for its size only when sizes are asked for); tiles are then grouped into virtual
128 x 128 bundles. The listing holds everything a status needs, so these readers run in the
calling process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from .. import grid
from ..models import BUNDLE_SIZE, BundleKey
from .arcgis_folder import ArcGISFolderCache
from .base import BundleFile, StoredTile, open_regular, read_exactly
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


def read_file(path: str) -> bytes:
    """The bytes of one tile file."""
    fd = open_regular(path)
    try:
        return read_exactly(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _numbered_dirs(folder: str | Path, parse: Callable[[str], int | None]) -> dict[int, str]:
    """The subfolders of ``folder`` whose names ``parse`` turns into numbers, by number."""
    found: dict[int, str] = {}
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                number = parse(e.name)
                if number is not None and e.is_dir():
                    found[number] = e.path
    except (NotADirectoryError, FileNotFoundError):
        pass
    return found


def _row_number(name: str) -> int | None:
    match = _ROW_DIR.match(name)
    return int(match.group(1), 16) if match else None


def _decimal(name: str) -> int | None:
    return int(name) if name.isdigit() else None


class TileFolders(ListedTiles):
    """A cache of one file per tile in one folder per row (or column)."""

    def _folders(self, level: int) -> dict[int, str]:
        """The level's row (or column) folders by number, listed once."""
        cache: dict[int, dict[int, str]] = self.__dict__.setdefault("_folder_cache", {})
        if level not in cache:
            cache[level] = self._list_folders(level)
        return cache[level]

    def _list_folders(self, level: int) -> dict[int, str]:
        raise NotImplementedError

    def _tile(self, level: int, folder: int, name: str) -> tuple[int, int] | None:
        """(row, col) of the file ``name`` in folder number ``folder``; ``None``: not a tile."""
        raise NotImplementedError

    def _folder_span(self, key: BundleKey) -> range:
        """The folder numbers that can hold tiles of a bundle."""
        raise NotImplementedError

    def _level_tiles(self, level: int) -> list[tuple[int, int, int]]:
        tiles: list[tuple[int, int, int]] = []
        for number, path in self._folders(level).items():  # one listing per folder
            for entry in _files(path):
                tile = self._tile(level, number, entry.name)
                if tile is not None:
                    size = entry.stat().st_size if self.sizes else 1
                    tiles.append((*tile, size))
        return tiles

    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tile files, folder by folder, each read whole."""
        key = bundle.key
        folders = self._folders(key.level)
        for number in self._folder_span(key):
            if number not in folders:
                continue
            for entry in sorted(_files(folders[number]), key=lambda e: e.name):
                tile = self._tile(key.level, number, entry.name)
                if tile is not None and key.holds(*tile):
                    yield StoredTile(*tile, read_file(entry.path))


class ExplodedCache(TileFolders, ArcGISFolderCache):
    """An ArcGIS exploded cache: ``_alllayers/Lnn/Rxxxxxxxx/Cxxxxxxxx.png|jpg``."""

    name = "exploded"
    description = "ArcGIS exploded cache folder (conf.xml, _alllayers/Lnn/Rrrrrrrrr/Ccccccccc.png)"
    storage_formats = ("esriMapCacheStorageModeExploded",)

    def _list_folders(self, level: int) -> dict[int, str]:
        folder = self._level_dirs.get(level)
        return {} if folder is None else _numbered_dirs(folder, _row_number)

    def _tile(self, level: int, folder: int, name: str) -> tuple[int, int] | None:
        match = _COL_FILE.match(name)
        return (folder, int(match.group(1), 16)) if match else None

    def _folder_span(self, key: BundleKey) -> range:
        return range(key.row, key.row + BUNDLE_SIZE)


class XYZFolder(TileFolders):
    """A ``{z}/{x}/{y}.png`` folder on the Web Mercator grid, rows counted down (XYZ)."""

    name = "xyz"
    description = "XYZ tile folder ({z}/{x}/{y}.png, Web Mercator, rows downward)"
    #: Rows counted up from the bottom (TMS).
    tms = False

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        levels = sorted(int(e.name) for e in os.scandir(path) if e.name.isdigit() and e.is_dir())
        self._scheme = web_mercator_scheme(levels or [0], tile_format=_tile_format(path, levels))

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder whose subfolders are numbers (zoom levels) holding numbered folders."""
        if not path.is_dir() or (path / "conf.xml").exists():
            return False
        levels = [e for e in os.scandir(path) if e.name.isdigit() and e.is_dir()]
        return bool(levels) and any(e.name.isdigit() for e in os.scandir(levels[0].path))

    def _list_folders(self, level: int) -> dict[int, str]:
        return _numbered_dirs(self.path / str(level), _decimal)

    def _tile(self, level: int, folder: int, name: str) -> tuple[int, int] | None:
        stem = name.split(".", 1)[0]
        if not stem.isdigit():
            return None
        row = int(stem)
        return (grid.tms_row(level, row) if self.tms else row), folder

    def _folder_span(self, key: BundleKey) -> range:
        return range(key.col, key.col + BUNDLE_SIZE)


def _tile_format(path: Path, levels: list[int]) -> str:
    """The tile format of a folder, from the extension of the first tile file found."""
    for level in levels:
        for folder in _numbered_dirs(path / str(level), _decimal).values():
            for entry in _files(folder):
                suffix = entry.name.rsplit(".", 1)[-1].upper()
                return {"JPG": "JPEG", "MVT": "PBF"}.get(suffix, suffix)
    return "any"


class TMSFolder(XYZFolder):
    """A ``{z}/{x}/{y}.png`` folder with rows counted up from the bottom (TMS)."""

    name = "tms"
    description = "TMS tile folder ({z}/{x}/{y}.png, Web Mercator, rows upward)"
    tms = True

    @classmethod
    def detect(cls, path: Path) -> bool:
        """Never detected: the same layout as XYZ; chosen with ``--format-hint tms``."""
        return False
