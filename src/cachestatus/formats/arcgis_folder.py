"""What every ArcGIS folder cache shares: finding ``conf.xml``, the tiling scheme, level folders.

A folder cache is ``conf.xml`` (sometimes ``Conf.xml``), ``conf.cdi`` (the full extent, optional)
and ``_alllayers/Lnn/``. Users may name the cache folder, a service folder holding ``Layers/``, or
the ``conf.xml`` file itself.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, NamedTuple

from ..errors import InvalidCacheConfig
from ..models import BUNDLE_SIZE, BundleKey, Extent, Problem
from .arcgis_conf import parse_conf_cdi, parse_conf_xml, read_config_file
from .base import BundleFile, CacheReader

CONF_NAMES = ("conf.xml", "Conf.xml")
CDI_NAMES = ("conf.cdi", "Conf.cdi")
LAYERS_DIR = "_alllayers"
#: Bundle file names: ``R{row:04x}C{col:04x}.bundle`` with four or more hex digits.
BUNDLE_NAME = re.compile(r"^R([0-9a-fA-F]{4,})C([0-9a-fA-F]{4,})$")
#: Level folders: ``L05``. ASCII digits only (``\d`` and ``int()`` also take Arabic-Indic or
#: full-width digits), at most 9 of them: a level ID is a 32-bit integer.
LEVEL_NAME = re.compile(r"^L([0-9]{1,9})$", re.IGNORECASE | re.ASCII)
#: Tile and bundle rows and columns stay below this: a status stores them as 32-bit integers
#: (``bundleRow``, ``bundleCol``). A name beyond it is reported, never counted.
GRID_LIMIT = 2**31


def find_conf(path: Path) -> Path | None:
    """The ``conf.xml`` of a cache given as its folder, a service folder or the file itself."""
    if path.is_file():
        return path if path.name.lower() == "conf.xml" else None
    for folder in (path, path / "Layers"):
        for name in CONF_NAMES:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def shown(name: str) -> str:
    """A file name as messages print it: line breaks, control characters and bytes that are
    not UTF-8 (``os.fsdecode``'s surrogates) escaped, so that a hostile name can neither break a
    line of output nor fail to print."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in name)


def not_a_file(mode: int) -> str:
    """What a path that is not a regular file is, from its ``st_mode``."""
    return "a directory" if stat.S_ISDIR(mode) else "a special file (FIFO, device, socket)"


def hex_number(digits: str) -> int:
    """The value of hex ``digits`` (ASCII, checked by the caller), at most :data:`GRID_LIMIT`:
    every value at or beyond it means the same, "off the grid", and a long name costs nothing."""
    digits = digits.lstrip("0")
    return GRID_LIMIT if len(digits) > 8 else min(int(digits or "0", 16), GRID_LIMIT)


def parse_bundle_name(
    level: int, name: str, path: str, suffix: str = ".bundle", locked: bool = False
) -> BundleFile | Problem:
    """The bundle a file name ``R{row:04x}C{col:04x}.bundle`` stands for, or why it stands for
    none (a name that does not parse, or a row or column off a 128-tile boundary).

    Anything named like a bundle is one: a directory or an unreadable file then fails to read
    and becomes a ``CORRUPT`` row, rather than vanishing from the status.
    """
    match = BUNDLE_NAME.match(name[: -len(suffix)] if name.endswith(suffix) else name)
    label = f"{level_folder_name(level)}/{shown(name)}"
    if match is None:
        return Problem(
            label, "bad-name", f"{shown(path)}: not a bundle name (R<row hex>C<col hex>{suffix})"
        )
    row, col = hex_number(match.group(1)), hex_number(match.group(2))
    if row >= GRID_LIMIT or col >= GRID_LIMIT:
        return Problem(
            label,
            "bad-name",
            f"{shown(path)}: row or column beyond what a status holds (below 2**31)",
        )
    if row % BUNDLE_SIZE or col % BUNDLE_SIZE:
        return Problem(
            label,
            "bad-name",
            f"{shown(path)}: row {row} / col {col} is not on a {BUNDLE_SIZE}-tile bundle boundary",
        )
    return BundleFile(BundleKey(level, row, col), path, locked)


def level_folder_name(level: int) -> str:
    """``L05``: the folder of a level under ``_alllayers``."""
    return f"L{level:02d}"


def why_not_a_folder(path: str) -> str:
    """Why ``path``, listed in a folder, cannot be gone into: what it is, or the error."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot be opened: {exc.strerror or exc}"
    return f"{'a file' if stat.S_ISREG(mode) else not_a_file(mode)}, not a folder"


def is_folder(entry: os.DirEntry[str]) -> bool:
    """Whether a listed entry is a folder (links followed); false for a link loop too."""
    try:
        return entry.is_dir()
    except OSError:  # a link loop: ELOOP (a missing target is already false)
        return False


def looks_numbered(name: str, prefix: str = "") -> bool:
    """Whether ``name`` reads as a number (after ``prefix``, any case) to a person: digits of
    any script, a sign or spaces around them. Such a name that does not parse is reported;
    anything else in a cache folder (``.DS_Store``, ``Thumbs.db``, ``metadata.json``) is
    plainly not a tile and ignored."""
    if prefix:
        if name[:1].lower() != prefix.lower():
            return False
        name = name[1:]
    return name.strip().lstrip("+-").strip().isnumeric()


class LevelFolders(NamedTuple):
    """The level folders of ``_alllayers`` and what in it is named like one and is not."""

    #: Folder path by level ID.
    found: dict[int, str]
    #: Entries named like level folders that are not read, each ``name (why)``.
    ignored: list[str]


def list_level_folders(folder: Path) -> LevelFolders:
    """The level folders ``Lnn`` of ``folder`` (none when it does not exist).

    Where two names are one level (``L05``, ``L5``), the one ArcGIS writes (``L05``) is read.

    Raises:
        InvalidCacheConfig: ``folder`` exists and cannot be listed.
    """
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return LevelFolders({}, [])
    except OSError as exc:
        raise InvalidCacheConfig(
            f"{shown(str(folder))}: cannot be listed ({exc.strerror or exc})"
        ) from None
    found: dict[int, str] = {}
    ignored: list[str] = []
    for entry in entries:
        match = LEVEL_NAME.match(entry.name)
        if match is None:
            if looks_numbered(entry.name, "L"):
                ignored.append(
                    f"{shown(entry.name)} (not a level folder name: L and 1 to 9 ASCII digits)"
                )
            continue
        if not is_folder(entry):
            ignored.append(f"{shown(entry.name)} ({why_not_a_folder(entry.path)})")
            continue
        level = int(match.group(1))
        previous = found.get(level)
        if previous is not None:
            keep_new = entry.name == level_folder_name(level)
            kept, dropped = os.path.basename(previous), entry.name
            if keep_new:
                kept, dropped = dropped, kept
            ignored.append(f"{shown(dropped)} (the same level as {shown(kept)})")
            if not keep_new:
                continue
        found[level] = entry.path
    return LevelFolders(found, ignored)


class ArcGISFolderCache(CacheReader):
    """Base of the readers of ArcGIS folder caches (Compact V1, V2, exploded)."""

    #: ``StorageFormat`` values of ``conf.xml`` this reader takes.
    storage_formats: ClassVar[tuple[str, ...]] = ()
    #: Extension of bundle files.
    bundle_suffix: ClassVar[str] = ".bundle"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        conf = find_conf(path)
        if conf is None:
            raise InvalidCacheConfig(f"{path}: no conf.xml found in it or in its Layers folder")
        self.conf_path = conf
        self.cache_dir = conf.parent
        self.layers_dir = self.cache_dir / LAYERS_DIR
        self._scheme = parse_conf_xml(read_config_file(conf), str(conf))
        self._extent: Extent | None = None
        for name in CDI_NAMES:
            cdi = self.cache_dir / name
            if cdi.is_file():
                self._extent = parse_conf_cdi(read_config_file(cdi), str(cdi))
                break
        # Listed now: an _alllayers that cannot be listed is told before any work.
        self._levels = list_level_folders(self.layers_dir)

    @classmethod
    def detect(cls, path: Path) -> bool:
        """True for a folder cache whose ``conf.xml`` declares one of :attr:`storage_formats`."""
        conf = find_conf(path)
        if conf is None:
            return False
        try:
            scheme = parse_conf_xml(read_config_file(conf), str(conf))
        except (OSError, InvalidCacheConfig):
            return False
        return scheme.storage_format in cls.storage_formats

    @property
    def root(self) -> Path:
        """The folder holding ``conf.xml`` and the cache's levels."""
        return self.cache_dir

    @property
    def status_dir(self) -> Path:
        """The folder holding ``conf.xml``: ArcGIS keeps ``Status.gdb`` there."""
        return self.cache_dir

    @property
    def _level_dirs(self) -> dict[int, str]:
        return self._levels.found

    def unknown_levels(self) -> list[str]:
        """Level folders under ``_alllayers`` that are not LODs of ``conf.xml``, and entries
        named like level folders that are not read (``name (why)``)."""
        levels = set(self._scheme.levels)
        unknown = [
            shown(os.path.basename(p)) for lv, p in self._level_dirs.items() if lv not in levels
        ]
        return sorted(unknown) + self._levels.ignored

    def count_bundles(self, level: int) -> int:
        """Files named ``*.bundle`` in the level folder: one listing, no parsing."""
        folder = self._level_dirs.get(level)
        if folder is None:
            return 0
        suffix = self.bundle_suffix
        try:
            with os.scandir(folder) as it:
                return sum(1 for e in it if e.name.endswith(suffix))
        except OSError:
            return 0  # list_bundles reports it

    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """Bundle files of a level folder; badly named or misplaced ones as problems, and two
        names of one bundle (``R0080C0000``, ``R00080C0000``): the one ArcGIS writes is read."""
        folder = self._level_dirs.get(level)
        if folder is None:
            return
        suffix = self.bundle_suffix
        try:
            names = os.listdir(folder)
        except OSError as exc:
            yield Problem(
                shown(os.path.basename(folder)),
                "corrupt",
                f"{shown(folder)}: cannot list: {exc.strerror or exc}",
            )
            return
        locks = {name[: -len(".lock")] for name in names if name.endswith(".lock")}
        prefix = os.path.join(folder, "")
        chosen: dict[BundleKey, tuple[str, BundleFile]] = {}
        for name in names:
            if not name.endswith(suffix):
                continue
            locked = bool(locks) and name[: -len(suffix)] in locks
            found = parse_bundle_name(level, name, prefix + name, suffix, locked)
            if isinstance(found, Problem):
                yield found
                continue
            if found.key in chosen:
                other, _ = chosen[found.key]
                canonical = found.key.name + suffix
                if name == canonical or (other != canonical and name < other):
                    chosen[found.key] = (name, found)
                    name, other = other, name
                yield Problem(
                    f"{level_folder_name(level)}/{shown(name)}",
                    "bad-name",
                    f"{shown(prefix + name)}: the same bundle as {shown(other)}; not read",
                )
                continue
            chosen[found.key] = (name, found)
        for _, bundle in chosen.values():
            yield bundle
