"""Caches of one file per tile: ArcGIS exploded caches and XYZ/TMS folders.

Every tile file of a level is found by one listing of each row (or column) folder (with a
stat per file for its size only when sizes are asked for); tiles are then grouped into virtual
128 x 128 bundles. The listing holds everything a status needs, so these readers run in the
calling process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from .. import grid
from ..models import BUNDLE_SIZE, BundleKey
from ..parallel import map_in_processes
from .arcgis_folder import ArcGISFolderCache
from .base import BundleFile, StoredTile, open_regular, read_exactly
from .listed import Grouped, ListedTiles
from .mbtiles import web_mercator_scheme

#: A tile number, or an array of them (listings are placed in bulk, single files one by one).
NumberT = TypeVar("NumberT", int, npt.NDArray[np.int64])

#: Tile file extensions (``MIXED`` exploded caches hold both PNG and JPEG).
TILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".pbf", ".mvt", ".lerc")
_EXTENSION = "(?:" + "|".join(s[1:] for s in TILE_SUFFIXES) + ")"
_ROW_DIR = re.compile(r"^R([0-9a-fA-F]{8})$")


def _listing(folder: str, pattern: re.Pattern[str], sizes: bool) -> tuple[list[str], list[int]]:
    """The names in ``folder`` that ``pattern`` matches, and with ``sizes`` their sizes (from
    the listing's stat data); without sizes, one ``listdir``, names filtered in C loops."""
    try:
        if not sizes:
            return os.listdir(folder), []
        with os.scandir(folder) as entries:
            found = [(e.name, e.stat().st_size) for e in entries if pattern.match(e.name)]
    except (NotADirectoryError, FileNotFoundError):
        return [], []
    return [name for name, _ in found], [size for _, size in found]


def names_to_numbers(
    names: list[str], pattern: re.Pattern[str], base: int
) -> npt.NDArray[np.int64]:
    """The number each matching name carries (``pattern``'s one group, in base 10 or 16), in C
    loops: the common folder (every name a number with one tile extension) parsed in bulk,
    any other by one regular-expression pass over all names joined."""
    text = "\n".join(names)
    if text.count("\n") > len(names) - 1:
        # A name holding a line break is never a tile, and would read as two names joined.
        names = [name for name in names if "\n" not in name]
        text = "\n".join(names)
    if not names:
        return np.zeros(0, dtype=np.int64)
    ext = _one_extension(names, text)
    bulk = (
        None
        if ext is None
        else (_bulk_numbers if base == 10 else _bulk_hex_numbers)(len(names), text, ext)
    )
    if bulk is not None:
        return bulk
    found: list[str] = pattern.findall(text)
    if base == 10:
        return np.array(found, dtype=np.int64) if found else np.zeros(0, dtype=np.int64)
    return np.fromiter((int(h, 16) for h in found), dtype=np.int64, count=len(found))


def _one_extension(names: list[str], text: str) -> str | None:
    """The tile extension every name (joined in ``text``) ends with; ``None`` when they differ."""
    ext = names[0][names[0].rfind(".") :]
    if ext.lower() not in TILE_SUFFIXES or text.count(ext) != len(names):
        return None
    return ext


def _bulk_numbers(count: int, text: str, ext: str) -> npt.NDArray[np.int64] | None:
    """``{y}.png`` names parsed by numpy at once; ``None`` unless every name is one."""
    digits = text.replace(ext, "")
    if not digits.replace("\n", "").isdigit():
        return None
    numbers = np.fromstring(digits, dtype=np.int64, sep="\n")
    return numbers if len(numbers) == count else None


_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _HEX[ord(chr(_c).upper())] = _i


def _bulk_hex_numbers(count: int, text: str, ext: str) -> npt.NDArray[np.int64] | None:
    """``C{col:08x}.png`` names parsed by numpy at once; ``None`` unless every name is one."""
    width = 1 + 8 + len(ext)
    if len(text) != count * (width + 1) - 1:
        return None
    try:
        raw = (text + "\n").encode("ascii")
    except UnicodeEncodeError:
        return None
    table = np.frombuffer(raw, dtype=np.uint8).reshape(count, width + 1)
    nibbles = _HEX[table[:, 1:9]]
    valid = (
        np.isin(table[:, 0], (ord("C"), ord("c"))).all()
        and (nibbles < 16).all()
        and (table[:, 9:width] == np.frombuffer(ext.encode("ascii"), dtype=np.uint8)).all()
    )
    if not valid:
        return None
    return nibbles.astype(np.int64) @ (16 ** np.arange(7, -1, -1, dtype=np.int64))


#: Below this many folders to list, processes would cost more than they save.
PARALLEL_FOLDERS = 256
#: One folder's listing: level, folder number, the numbers its tile files carry, their sizes.
Listed = tuple[int, int, npt.NDArray[np.int64], list[int]]


def _read_folders(
    how: tuple[re.Pattern[str], int, bool], jobs: list[tuple[int, int, str]]
) -> list[Listed]:
    """List folders (level, folder number, path): the work a listing process does."""
    pattern, base, sizes = how
    out: list[Listed] = []
    for level, folder, path in jobs:
        names, found = _listing(path, pattern, sizes)
        out.append((level, folder, names_to_numbers(names, pattern, base), found))
    return out


def read_file(path: str) -> bytes:
    """The bytes of one tile file."""
    fd, st = open_regular(path)
    try:
        return read_exactly(fd, 0, st.st_size, st.st_size)
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

    #: A tile's file name (anchored per line); its one group is the number the name carries.
    name_pattern: ClassVar[re.Pattern[str]]
    #: The base of that number.
    name_base: ClassVar[int] = 10

    def _folders(self, level: int) -> dict[int, str]:
        """The level's row (or column) folders by number, listed once."""
        cache: dict[int, dict[int, str]] = self.__dict__.setdefault("_folder_cache", {})
        if level not in cache:
            cache[level] = self._list_folders(level)
        return cache[level]

    def _list_folders(self, level: int) -> dict[int, str]:
        raise NotImplementedError

    def _place(
        self, level: int, folder: int, number: NumberT
    ) -> tuple[NumberT | int, NumberT | int]:
        """(row, col) of the tile whose file carries ``number`` in folder number ``folder``."""
        raise NotImplementedError

    def _folder_span(self, key: BundleKey) -> range:
        """The folder numbers that can hold tiles of a bundle."""
        raise NotImplementedError

    def _level_tiles(self, level: int) -> npt.NDArray[np.int64]:
        jobs = [(level, folder, path) for folder, path in self._folders(level).items()]
        return self._table(level, _read_folders(self._how(), jobs))

    def _how(self) -> tuple[re.Pattern[str], int, bool]:
        return self.name_pattern, self.name_base, self.sizes

    def _table(self, level: int, listed: Iterable[Listed]) -> npt.NDArray[np.int64]:
        """(row, col, size) of every tile from the listings of a level's folders."""
        parts = [np.zeros((0, 3), dtype=np.int64)]
        for _, folder, numbers, sizes in listed:
            rows, cols = self._place(level, folder, numbers)
            part = np.ones((len(numbers), 3), dtype=np.int64)
            part[:, 0], part[:, 1] = rows, cols
            if self.sizes:
                part[:, 2] = sizes
            parts.append(part)
        return np.concatenate(parts)

    def prefetch(self, levels: list[int]) -> None:
        """List the folders of ``levels`` in :attr:`workers` processes, when there are enough
        of them to pay for starting the processes."""
        groups: dict[int, Grouped] = self.__dict__.setdefault("_groups", {})
        jobs = [
            (level, folder, path)
            for level in levels
            if level not in groups
            for folder, path in self._folders(level).items()
        ]
        if self.workers <= 1 or len(jobs) < PARALLEL_FOLDERS:
            return  # each level is listed here when it is first asked for
        size = -(-len(jobs) // (4 * self.workers))
        batches = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        by_level: dict[int, list[Listed]] = {level: [] for level in levels if level not in groups}
        for done in map_in_processes(partial(_read_folders, self._how()), batches, self.workers):
            for item in done:
                by_level[item[0]].append(item)
        for level, listed in by_level.items():
            groups[level] = Grouped(level, self._table(level, listed))

    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tile files, folder by folder, each read whole."""
        key = bundle.key
        folders = self._folders(key.level)
        for folder in self._folder_span(key):
            if folder not in folders:
                continue
            names, _ = _listing(folders[folder], self.name_pattern, False)
            for name in sorted(names):
                match = self.name_pattern.match(name)
                if match is None:
                    continue
                row, col = self._place(key.level, folder, int(match.group(1), self.name_base))
                if key.holds(row, col):
                    yield StoredTile(row, col, read_file(os.path.join(folders[folder], name)))


class ExplodedCache(TileFolders, ArcGISFolderCache):
    """An ArcGIS exploded cache: ``_alllayers/Lnn/Rxxxxxxxx/Cxxxxxxxx.png|jpg``."""

    name = "exploded"
    description = "ArcGIS exploded cache folder (conf.xml, _alllayers/Lnn/Rrrrrrrrr/Ccccccccc.png)"
    storage_formats = ("esriMapCacheStorageModeExploded",)

    def _list_folders(self, level: int) -> dict[int, str]:
        folder = self._level_dirs.get(level)
        return {} if folder is None else _numbered_dirs(folder, _row_number)

    name_pattern = re.compile(rf"^C([0-9a-f]{{8}})\.{_EXTENSION}$", re.MULTILINE | re.IGNORECASE)
    name_base = 16

    def _place(
        self, level: int, folder: int, number: NumberT
    ) -> tuple[NumberT | int, NumberT | int]:
        return folder, number  # a row folder of column files

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
        folders = (f for level in levels for f in self._folders(level).values())
        self._scheme = web_mercator_scheme(levels or [0], tile_format=_tile_format(folders))

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder whose subfolders are numbers (zoom levels) holding numbered folders."""
        if not path.is_dir() or (path / "conf.xml").exists():
            return False
        levels = [e for e in os.scandir(path) if e.name.isdigit() and e.is_dir()]
        return bool(levels) and any(e.name.isdigit() for e in os.scandir(levels[0].path))

    def _list_folders(self, level: int) -> dict[int, str]:
        return _numbered_dirs(self.path / str(level), _decimal)

    name_pattern = re.compile(rf"^(\d+)\.{_EXTENSION}$", re.MULTILINE | re.IGNORECASE)

    def _place(
        self, level: int, folder: int, number: NumberT
    ) -> tuple[NumberT | int, NumberT | int]:
        # A column folder of row files.
        return (grid.tms_row(level, number) if self.tms else number), folder

    def _folder_span(self, key: BundleKey) -> range:
        return range(key.col, key.col + BUNDLE_SIZE)


def _tile_format(folders: Iterable[str]) -> str:
    """The tile format of a folder cache, from the extension of the first tile file found."""
    for folder in folders:
        for name in os.listdir(folder):
            if name.lower().endswith(TILE_SUFFIXES):
                suffix = name.rsplit(".", 1)[-1].upper()
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
