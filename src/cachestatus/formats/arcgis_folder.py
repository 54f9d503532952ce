"""What every ArcGIS folder cache shares: finding ``conf.xml``, the tiling scheme, level folders.

A folder cache is ``conf.xml`` (sometimes ``Conf.xml``), ``conf.cdi`` (the full extent, optional)
and ``_alllayers/Lnn/``. Users may name the cache folder, a service folder holding ``Layers/``, or
the ``conf.xml`` file itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import ClassVar

from ..errors import InvalidCacheConfig
from ..models import BUNDLE_SIZE, BundleKey, Extent, Problem
from .arcgis_conf import parse_conf_cdi, parse_conf_xml
from .base import BundleFile, CacheReader

CONF_NAMES = ("conf.xml", "Conf.xml")
CDI_NAMES = ("conf.cdi", "Conf.cdi")
LAYERS_DIR = "_alllayers"
#: Bundle file names: ``R{row:04x}C{col:04x}.bundle`` with four or more hex digits.
BUNDLE_NAME = re.compile(r"^R([0-9a-fA-F]{4,})C([0-9a-fA-F]{4,})$")
LEVEL_NAME = re.compile(r"^L(\d+)$", re.IGNORECASE)


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


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidCacheConfig(f"{path}: cannot be read ({exc.strerror})") from None


def parse_bundle_name(
    level: int, name: str, path: str, suffix: str = ".bundle", locked: bool = False
) -> BundleFile | Problem:
    """The bundle a file name ``R{row:04x}C{col:04x}.bundle`` stands for, or why it stands for
    none (a name that does not parse, or a row or column off a 128-tile boundary).

    Anything named like a bundle is one: a directory or an unreadable file then fails to read
    and becomes a ``CORRUPT`` row, rather than vanishing from the status.
    """
    match = BUNDLE_NAME.match(name[: -len(suffix)] if name.endswith(suffix) else name)
    if match is None:
        return Problem(
            f"{level_folder_name(level)}/{name}",
            "bad-name",
            f"{path}: not a bundle name (R<row hex>C<col hex>{suffix})",
        )
    row, col = int(match.group(1), 16), int(match.group(2), 16)
    if row % BUNDLE_SIZE or col % BUNDLE_SIZE:
        return Problem(
            f"{level_folder_name(level)}/{name}",
            "bad-name",
            f"{path}: row {row} / col {col} is not on a {BUNDLE_SIZE}-tile bundle boundary",
        )
    return BundleFile(BundleKey(level, row, col), path, locked)


def level_folder_name(level: int) -> str:
    """``L05``: the folder of a level under ``_alllayers``."""
    return f"L{level:02d}"


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
        self._scheme = parse_conf_xml(_read_bytes(conf), str(conf))
        self._extent: Extent | None = None
        for name in CDI_NAMES:
            cdi = self.cache_dir / name
            if cdi.is_file():
                self._extent = parse_conf_cdi(_read_bytes(cdi), str(cdi))
                break

    @classmethod
    def detect(cls, path: Path) -> bool:
        """True for a folder cache whose ``conf.xml`` declares one of :attr:`storage_formats`."""
        conf = find_conf(path)
        if conf is None:
            return False
        try:
            scheme = parse_conf_xml(conf.read_bytes(), str(conf))
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

    @cached_property
    def _level_dirs(self) -> dict[int, str]:
        found: dict[int, str] = {}
        try:
            with os.scandir(self.layers_dir) as entries:
                for entry in entries:
                    match = LEVEL_NAME.match(entry.name)
                    if match and entry.is_dir():
                        found.setdefault(int(match.group(1)), entry.path)
        except FileNotFoundError:
            pass
        return found

    def unknown_levels(self) -> list[str]:
        """Level folders under ``_alllayers`` that are not LODs of ``conf.xml``."""
        levels = set(self._scheme.levels)
        return sorted(os.path.basename(p) for lv, p in self._level_dirs.items() if lv not in levels)

    def count_bundles(self, level: int) -> int:
        """Files named ``*.bundle`` in the level folder: one listing, no parsing."""
        folder = self._level_dirs.get(level)
        if folder is None:
            return 0
        suffix = self.bundle_suffix
        with os.scandir(folder) as it:
            return sum(1 for e in it if e.name.endswith(suffix))

    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """Bundle files of a level folder; badly named or misplaced ones as problems."""
        folder = self._level_dirs.get(level)
        if folder is None:
            return
        suffix = self.bundle_suffix
        names = os.listdir(folder)
        locks = {name[: -len(".lock")] for name in names if name.endswith(".lock")}
        prefix = os.path.join(folder, "")
        for name in names:
            if name.endswith(suffix):
                locked = bool(locks) and name[: -len(suffix)] in locks
                yield parse_bundle_name(level, name, prefix + name, suffix, locked)
