"""What every ArcGIS cache shares: picking level folders and bundles from what a folder (or a
zip) lists, by the names of :mod:`cachestatus.arcgis_names` (re-exported here).
"""

from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..arcgis_names import (
    BUNDLE_NAME,
    BUNDLE_SUFFIX,
    CANONICAL,
    CDI_NAMES,
    CONF_NAMES,
    LAYERS_DIR,
    LEVEL_NAME,
    find_conf,
    level_folder_name,
)
from ..errors import InvalidCacheConfig
from ..models import BAD_NAME, BUNDLE_SIZE, BundleKey, Problem, TileRange
from .base import GRID_LIMIT, BundleFile
from .bytesource import not_a_file


def shown(name: str) -> str:
    """A file name as messages print it: line breaks, control characters and bytes that are
    not UTF-8 (``os.fsdecode``'s surrogates) escaped, so that a hostile name can neither break a
    line of output nor fail to print."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in name)


def hex_number(digits: str) -> int:
    """The value of hex ``digits`` (ASCII, checked by the caller), at most :data:`GRID_LIMIT`:
    every value at or beyond it means the same, "off the grid", and a long name costs nothing."""
    if len(digits) <= 8:  # the names ArcGIS writes
        return min(int(digits, 16), GRID_LIMIT)
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
    if match is None:
        return Problem(
            f"{level_folder_name(level)}/{shown(name)}",
            BAD_NAME,
            f"{shown(path)}: not a bundle name (R<row hex>C<col hex>{suffix})",
        )
    row, col = hex_number(match.group(1)), hex_number(match.group(2))
    if row % BUNDLE_SIZE == 0 and col % BUNDLE_SIZE == 0 and max(row, col) < GRID_LIMIT:
        return BundleFile(BundleKey(level, row, col), path, locked)
    label = f"{level_folder_name(level)}/{shown(name)}"
    if row >= GRID_LIMIT or col >= GRID_LIMIT:
        return Problem(
            label,
            BAD_NAME,
            f"{shown(path)}: row or column beyond what a status holds (below 2**31)",
        )
    return Problem(
        label,
        BAD_NAME,
        f"{shown(path)}: row {row} / col {col} is not on a {BUNDLE_SIZE}-tile bundle boundary",
    )


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
    """The level folders ``Lnn`` of ``folder`` (none when it does not exist); see
    :func:`pick_level_folders`.

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
    return pick_level_folders((e.name, e.path, is_folder(e)) for e in entries)


def pick_level_folders(entries: Iterable[tuple[str, str, bool]]) -> LevelFolders:
    """The level folders among the ``(name, path, is a folder)`` entries of a folder, sorted by
    name, and what is named like one and is not read.

    Where two names are one level (``L05``, ``L5``), the one ArcGIS writes (``L05``) is read.
    """
    found: dict[int, str] = {}
    ignored: list[str] = []
    for name, path, folder in entries:
        match = LEVEL_NAME.match(name)
        if match is None:
            if looks_numbered(name, "L"):
                ignored.append(
                    f"{shown(name)} (not a level folder name: L and 1 to 9 ASCII digits)"
                )
            continue
        if not folder:
            ignored.append(f"{shown(name)} ({why_not_a_folder(path)})")
            continue
        level = int(match.group(1))
        previous = found.get(level)
        if previous is not None:
            keep_new = name == level_folder_name(level)
            kept, dropped = os.path.basename(previous), name
            if keep_new:
                kept, dropped = dropped, kept
            ignored.append(f"{shown(dropped)} (the same level as {shown(kept)})")
            if not keep_new:
                continue
        found[level] = path
    return LevelFolders(found, ignored)


@dataclass
class OddNames:
    """The bundles a level folder lists under names other than the one ArcGIS writes
    (``R00080C0000.bundle``, ``R00A0C0000.bundle``), which are decided once the whole folder is
    listed (:meth:`resolved`): found by :func:`placed_bundles` in one listing, or in several
    parts of it (:meth:`add`)."""

    level: int
    suffix: str = BUNDLE_SUFFIX
    #: Per bundle, in the order first listed: its bundle files by name.
    files: dict[BundleKey, dict[str, BundleFile]] = field(default_factory=dict)
    #: Those of them whose ArcGIS name (:attr:`~cachestatus.models.BundleKey.name`) is listed
    #: too: that one is read.
    canonical: set[BundleKey] = field(default_factory=set)

    def add(self, other: OddNames) -> None:
        """What a later part of the same folder's listing found."""
        for key, files in other.files.items():
            self.files.setdefault(key, {}).update(files)
        self.canonical |= other.canonical

    def resolved(self) -> Iterator[BundleFile | Problem]:
        """Per bundle, a problem with each name not read, then the bundle file read under its
        other name when its ArcGIS name is not listed (the least of its names)."""
        suffix = self.suffix
        for key, files in self.files.items():
            canonical = key.name + suffix
            kept = canonical if key in self.canonical else min(files)
            shown_kept = shown(kept)
            for name in sorted(files):
                if name != kept:
                    yield Problem(
                        f"{level_folder_name(self.level)}/{shown(name)}",
                        BAD_NAME,
                        f"{shown(files[name].path)}: the same bundle as {shown_kept}; not read",
                    )
            if kept != canonical:
                yield files[kept]


def level_bundles(
    level: int, names: Callable[[], Iterable[str]], prefix: str, suffix: str = BUNDLE_SUFFIX
) -> Iterator[BundleFile | Problem]:
    """The bundles among the file names of a level folder (each at ``prefix + name``), as they
    are listed; badly named ones as problems, and two names of one bundle (``R0080C0000``,
    ``R00080C0000``): the one ArcGIS writes is read. A ``.lock`` beside a bundle marks it
    locked.

    ``names`` lists the folder's file names; it is called twice, and neither listing is kept:
    the first finds what is rare (``.lock`` files, names other than the ones ArcGIS writes),
    the second yields the bundles as it goes, so memory does not grow with the folder.
    """
    odd = OddNames(level, suffix)
    yield from placed_bundles(level, names, prefix, odd)
    yield from odd.resolved()


@functools.lru_cache(maxsize=8)
def _name_patterns(suffix: str) -> tuple[Callable[[str], Any], Callable[[str], Any]]:
    """For the bundle files named ``*suffix``: what matches the names ArcGIS writes
    (``R0080C0100.bundle``: :data:`CANONICAL`, the row and column in groups 1 and 2), and what
    matches every other name the first listing of :func:`placed_bundles` looks at (``.lock``
    files, other names ending with ``suffix``)."""
    written = CANONICAL.pattern.removesuffix(r"\Z") + re.escape(suffix) + r"\Z"
    rare = rf"(?!{written}).*(?:{re.escape(suffix)}|\.lock)\Z"
    return re.compile(written).match, re.compile(rare, re.DOTALL).match


def placed_bundles(
    level: int, names: Callable[[], Iterable[str]], prefix: str, odd: OddNames
) -> Iterator[BundleFile | Problem]:
    """What :func:`level_bundles` yields in the listing's order: every name but those of
    bundles named otherwise than ArcGIS names them, which go to ``odd`` (with whether their
    ArcGIS name is listed too). The names of one bundle file (``.bundle``, ``.lock``,
    ``.bundlx``) begin alike, so any part of a folder's listing cut between two names with
    different beginnings holds them all: each part is read so, its ``odd`` added up after."""
    suffix = odd.suffix
    locks: set[str] = set()
    #: The bundles named otherwise than ArcGIS names them, by bundle: their names.
    found_odd: dict[BundleKey, list[str]] = {}
    written, rare = _name_patterns(suffix)
    for name in filter(rare, names()):  # the loop in C: most names are bundles ArcGIS named
        if name.endswith(".lock"):
            locks.add(name[: -len(".lock")])
        elif name.endswith(suffix) and not CANONICAL.match(name[: -len(suffix)]):
            found = parse_bundle_name(level, name, prefix + name, suffix)
            if isinstance(found, BundleFile):
                found_odd.setdefault(found.key, []).append(name)
    for key, listed in found_odd.items():
        odd.files[key] = {
            name: BundleFile(key, prefix + name, bool(locks) and name[: -len(suffix)] in locks)
            for name in listed
        }
    # The loop runs once a bundle (tens of thousands a level): the names ArcGIS writes are
    # matched whole, once, and their tuples made by ``_make`` (the tuple built in C and its
    # length checked: half the time of the constructors' Python frames).
    cut, locked = -len(suffix), False
    for name in names():
        match = None if found_odd else written(name)
        if match is None and not name.endswith(suffix):
            continue
        if locks:
            locked = name[:cut] in locks
        if match is not None:
            row, col = int(match[1], 16), int(match[2], 16)
            if row % BUNDLE_SIZE == 0 and col % BUNDLE_SIZE == 0 and max(row, col) < GRID_LIMIT:
                key = BundleKey._make((level, row, col))
                yield BundleFile._make((key, prefix + name, locked, None, None, None))
                continue
        found = parse_bundle_name(level, name, prefix + name, suffix, locked)
        if isinstance(found, Problem) or found.key not in found_odd:
            yield found
        elif name == found.key.name + suffix:
            odd.canonical.add(found.key)
            yield found


def row_boundaries(bounds: TileRange, size: int) -> list[str]:
    """Where to cut the names of a level folder so that each part holds about ``size`` of the
    bundles of the block ``bounds``: the beginnings (``R0080C``) of the bundle rows that start
    a part but the first, in the folders' order (that of the names: ``R10000C`` comes before
    ``R1000C``). A bundle row's names all begin so, and no other row's: each row is in one
    part, with its ``.lock`` and ``.bundlx`` files."""
    if bounds.is_empty:
        return []
    grid = bounds.bundles
    rows = max(1, size // (grid.col1 - grid.col0))
    if grid.row1 - grid.row0 <= rows:
        return []
    names = sorted(f"R{row * BUNDLE_SIZE:04x}C" for row in range(grid.row0, grid.row1))
    return names[rows::rows]


__all__ = [
    "BUNDLE_NAME",
    "BUNDLE_SUFFIX",
    "CDI_NAMES",
    "CONF_NAMES",
    "LAYERS_DIR",
    "LEVEL_NAME",
    "LevelFolders",
    "OddNames",
    "find_conf",
    "hex_number",
    "level_bundles",
    "level_folder_name",
    "list_level_folders",
    "parse_bundle_name",
    "pick_level_folders",
    "placed_bundles",
    "row_boundaries",
    "shown",
]
