"""Caches of one file per tile: ArcGIS exploded caches and XYZ/TMS folders.

Every tile file of a level is found by one listing of each row (or column) folder (with a
stat per file for its size only when sizes are asked for); tiles are then grouped into virtual
128 x 128 bundles. The listing holds everything a status needs (the folders of a large level
are listed in several processes); no tile file is opened but to read its tiles (``verify``,
``--blank``), in whichever process reads the bundle (a worker, in a parallel run).

What a listing does with each name (the folder caches' one rule, for hostile names too):

- a name that parses (ASCII digits, or the exploded cache's 8 hex digits, one tile extension)
  and lies on the level's grid is a tile; without ``sizes`` nothing more is asked of it (a link
  is not followed), with ``sizes`` it must stat as a regular file, or it is a ``corrupt``
  problem for that tile, which is not counted;
- a name that ends like a tile (``.png``...) but does not parse (``².png``, `` 5.png``, a line
  break, bytes that are not UTF-8), or that lies off the grid (``9.png`` at zoom 3,
  ``99999999999999999999999.png``), is a ``bad-name`` problem, never counted;
- anything else (``.DS_Store``, ``Thumbs.db``, ``metadata.json``, macOS's ``._5.png``) is plainly
  not a tile, and is ignored;
- folders the same way: a row or column folder that cannot be listed (a link loop, a file named
  like a folder) is a problem; a zoom folder that cannot hold a level (``40``, ``-1``, ``٣``) a
  warning. A problem never stops the scan, and nothing off the grid is ever materialised.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self, TypeVar

import numpy as np
import numpy.typing as npt

from .. import grid
from ..errors import CorruptBundle, InvalidCacheConfig, UnsupportedFormat
from ..grid import web_mercator_scheme
from ..models import BAD_NAME, CORRUPT, BundleKey, Problem, Tile
from ..storage import RACY_NS
from .arcgis_cache import ArcGISFolderCache
from .arcgis_folder import (
    LAYERS_DIR,
    hex_number,
    is_folder,
    looks_numbered,
    shown,
    why_not_a_folder,
)
from .arcgis_layout import Layout, ObjectLayout
from .base import GRID_LIMIT, BundleFile, LevelListing, Run, StoredTile, run_here
from .bytesource import LocalFile, Opener, named_like, open_regular, read_exactly
from .listed import Grouped, ListedTiles, VirtualListing, tile_sizes
from .tile_index import IndexCache
from .tilejson import (
    DETECT_METADATA_BYTES,
    FOLDER_METADATA,
    declared_bounds,
    declared_format,
    declared_row_order,
    declared_zooms,
    folder_metadata,
    tile_size,
    web_mercator_extent,
    zoom_levels,
)

if TYPE_CHECKING:
    from ..storage import ObjectStorage

log = logging.getLogger(__name__)

#: A tile number, or an array of them (listings are placed in bulk, single files one by one).
NumberT = TypeVar("NumberT", int, npt.NDArray[np.int64])

#: Names of folder listings kept for tile reads, in all (each a tile file's path, or a row or
#: column folder's: tens of megabytes): a screen of tiles at any zoom spans a few dozen row or
#: column folders.
KEPT_NAMES = 200_000

#: Tile file extensions (``MIXED`` exploded caches hold both PNG and JPEG).
TILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".pbf", ".mvt", ".lerc")
_EXTENSION = "(?:" + "|".join(s[1:] for s in TILE_SUFFIXES) + ")"
_ROW_DIR = re.compile(r"^R([0-9a-fA-F]{8})$")
#: A name that ends like a tile file and is not hidden: reported when it does not parse as a
#: tile. (``re.ASCII``: only ASCII letters fold case, as in every name pattern here.)
_TILE_LIKE = re.compile(rf"^[^.\n][^\n]*\.{_EXTENSION}$", re.MULTILINE | re.IGNORECASE | re.ASCII)
#: The deepest zoom of an XYZ/TMS folder (as in PMTiles).
MAX_ZOOM = grid.MAX_ZOOM
#: The largest tile file read whole (``verify``, ``--blank``); a larger one is damage, not read.
MAX_TILE_BYTES = 64 * 2**20
#: A number parsed from a name that does not fit in 64 bits: off every grid.
_HUGE = np.iinfo(np.int64).max


def names_to_numbers(
    names: list[str], pattern: re.Pattern[str], base: int
) -> npt.NDArray[np.int64]:
    """The number each matching name carries (``pattern``'s one group, in base 10 or 16), in C
    loops: the common folder (every name a number with one tile extension) parsed in bulk,
    any other by one regular-expression pass over all names joined. A number too large for
    64 bits reads as the largest one (off every grid)."""
    return _parse(names, pattern, base)[0]


def _parse(
    names: list[str], pattern: re.Pattern[str], base: int
) -> tuple[npt.NDArray[np.int64], list[str]]:
    """:func:`names_to_numbers`, and the names that end like tiles but do not parse as tiles
    (looked for only where the bulk parse fails: the common folder costs nothing more)."""
    text = "\n".join(names)
    odd: list[str] = []
    if text.count("\n") > len(names) - 1:
        # A name holding a line break is never a tile, and would read as two names joined.
        odd = [name for name in names if "\n" in name and _tile_like(name)]
        names = [name for name in names if "\n" not in name]
        text = "\n".join(names)
    if not names:
        return np.zeros(0, dtype=np.int64), odd
    ext = _one_extension(names, text)
    bulk = (
        None
        if ext is None
        else (_bulk_numbers if base == 10 else _bulk_hex_numbers)(len(names), text, ext)
    )
    if bulk is not None:
        return bulk, odd
    found: list[str] = pattern.findall(text)
    if len(_TILE_LIKE.findall(text)) > len(found):  # every tile name is tile-like
        odd += [n for n in names if _TILE_LIKE.match(n) and not pattern.match(n)]
    if base == 16:
        numbers = np.fromiter((int(h, 16) for h in found), dtype=np.int64, count=len(found))
    elif found and max(map(len, found)) > 18:
        numbers = np.fromiter((_decimal_number(d) for d in found), np.int64, count=len(found))
    else:
        numbers = np.array(found, dtype=np.int64) if found else np.zeros(0, dtype=np.int64)
    return numbers, odd


def _tile_like(name: str) -> bool:
    """Whether ``name`` ends like a tile file (a line of it, for a name with line breaks) and
    is not hidden (``.DS_Store``, macOS's ``._5.png``)."""
    return name[:1] != "." and _TILE_LIKE.search(name) is not None


def _decimal_number(digits: str) -> int:
    """The value of ASCII ``digits``; at most :data:`_HUGE` (never an int() of a long name)."""
    digits = digits.lstrip("0")
    return _HUGE if len(digits) > 19 else min(int(digits or "0"), _HUGE)


def _one_extension(names: list[str], text: str) -> str | None:
    """The tile extension every name (joined in ``text``) ends with; ``None`` when they differ."""
    ext = names[0][names[0].rfind(".") :]
    if ext.lower() not in TILE_SUFFIXES or text.count(ext) != len(names):
        return None
    return ext


def _bulk_numbers(count: int, text: str, ext: str) -> npt.NDArray[np.int64] | None:
    """``{y}.png`` names parsed by numpy at once; ``None`` unless every name is one.

    ASCII digits only: ``str.isdigit`` alone takes ``²`` or ``٣``. A number too large for 64
    bits comes out as the largest one (numpy saturates), as the one-by-one path gives it."""
    digits = text.replace(ext, "")
    if not digits.isascii() or not digits.replace("\n", "").isdigit():
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
        and (table[:, width] == ord("\n")).all()
    )
    if not valid:
        return None
    return nibbles.astype(np.int64) @ (16 ** np.arange(7, -1, -1, dtype=np.int64))


class Listing(NamedTuple):
    """What the listing of one row (or column) folder found."""

    #: The numbers the tile files carry, each on the level's grid.
    numbers: npt.NDArray[np.int64]
    #: Their sizes in bytes (with sizes only).
    sizes: list[int]
    #: Names that end like tiles and are none: ``(name, None)`` for a name that does not parse,
    #: ``(name, number)`` for one off the grid.
    odd: list[tuple[str, int | None]]
    #: Tile files that cannot be counted (with sizes): ``(name, number, why)``.
    unreadable: list[tuple[str, int, str]]
    #: Why the folder could not be listed; empty when it was.
    error: str = ""


#: How a folder's names are read: the tile name pattern, its number's base, sizes or not.
How = tuple[re.Pattern[str], int, bool]
#: A folder to list: its number, its path, the numbers its tiles may carry (below).
Job = tuple[int, str, int]
#: One folder's listing: its number, its path, what it holds.
Listed = tuple[int, str, Listing]


def list_tile_folder(path: str, how: How, limit: int) -> Listing:
    """The tiles (numbers below ``limit``) of the row (or column) folder at ``path``, and what
    in it is not one. Never raises: a folder that cannot be listed says why."""
    pattern, base, sizes = how
    found: list[int] = []
    try:
        if sizes:
            names, found, unreadable, others = _stat_listing(path, pattern, base)
            numbers = names_to_numbers(names, pattern, base)
            odd: list[tuple[str, int | None]] = [(n, None) for n in others if _tile_like(n)]
        else:
            names, directories = _names(path)
            unreadable = []
            if directories:
                tiles = {n for n in directories if "\n" not in n and pattern.match(n)}
                names = [n for n in names if n not in tiles]
                unreadable = _folders_named_like_tiles(tiles, pattern, base)
            numbers, odd_names = _parse(names, pattern, base)
            odd = [(name, None) for name in odd_names]
    except OSError as exc:
        return Listing(np.zeros(0, dtype=np.int64), [], [], [], f"cannot list: {_why(exc)}")
    return _on_grid(Listing(numbers, found, odd, unreadable), names, how, limit)


def list_tile_objects(
    names: list[str], sizes: list[int], folders: Iterable[str], how: How, limit: int
) -> Listing:
    """What :func:`list_tile_folder` finds in a row (or column) folder, from the listing of its
    objects in object storage: their ``names`` and ``sizes``, and the ``folders`` below it. An
    object is always a regular file, and its size comes with the listing."""
    pattern, base, _ = how
    tiles: list[str] = []
    found: list[int] = []
    for name, size in zip(names, sizes, strict=True):
        if "\n" in name or pattern.match(name) is None:
            continue
        tiles.append(name)
        found.append(size)
    folders = list(folders)
    odd: list[tuple[str, int | None]] = [
        (n, None)
        for n in (*names, *folders)
        if _tile_like(n) and ("\n" in n or pattern.match(n) is None)
    ]
    unreadable = _folders_named_like_tiles(
        {n for n in folders if "\n" not in n and pattern.match(n)}, pattern, base
    )
    numbers = names_to_numbers(tiles, pattern, base)
    return _on_grid(Listing(numbers, found, odd, unreadable), tiles, how, limit)


def _folders_named_like_tiles(
    tiles: set[str], pattern: re.Pattern[str], base: int
) -> list[tuple[str, int, str]]:
    """The ``unreadable`` entries of :class:`Listing` for folders named like tiles."""
    why = named_like(stat.S_IFDIR, "tile")
    return [(n, _number(pattern, base, n), why) for n in sorted(tiles)]


def _on_grid(found: Listing, names: list[str], how: How, limit: int) -> Listing:
    """``found`` without the tiles off the grid (numbers at or beyond ``limit``), which become
    ``odd`` names. ``names`` are the names ``found.numbers`` were parsed from (any others too,
    where no size is kept)."""
    pattern, base, _ = how
    numbers, kept, odd, unreadable = found.numbers, found.sizes, found.odd, found.unreadable
    if numbers.max(initial=0) >= limit:  # rare: the names off the grid, one by one
        inside = numbers < limit
        odd += [
            (name, number)
            for name in names
            if "\n" not in name
            and pattern.match(name)
            and (number := _number(pattern, base, name)) >= limit
        ]
        numbers = numbers[inside]
        if kept:  # sizes were kept, one a number
            kept = [size for size, keep in zip(kept, inside.tolist(), strict=True) if keep]
    odd += [(name, number) for name, number, _ in unreadable if number >= limit]
    unreadable = [item for item in unreadable if item[1] < limit]
    return Listing(numbers, kept, odd, unreadable)


def _names(folder: str) -> tuple[list[str], list[str]]:
    """The names in ``folder``, and those of its subfolders (no stat per name).

    A folder's link count is 2 plus its subfolders on the usual file systems (ext4, XFS, tmpfs,
    NTFS through ntfs-3g): at 2, one ``listdir`` tells all. Otherwise (a subfolder named like a
    tile; btrfs, which always says 1) the listing's own file types tell, without a stat each.
    """
    if os.stat(folder).st_nlink == 2:
        return os.listdir(folder), []
    names: list[str] = []
    directories: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            names.append(entry.name)
            if entry.is_dir(follow_symlinks=False):
                directories.append(entry.name)
    return names, directories


def _stat_listing(
    folder: str, pattern: re.Pattern[str], base: int
) -> tuple[list[str], list[int], list[tuple[str, int, str]], list[str]]:
    """With sizes: the names of the tile files of ``folder`` and their sizes (a stat each,
    links followed), the tile names that are not regular files with why, and the other names."""
    names: list[str] = []
    sizes: list[int] = []
    unreadable: list[tuple[str, str]] = []
    others: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if "\n" in name or pattern.match(name) is None:
                others.append(name)
                continue
            try:
                st = entry.stat()
            except OSError as exc:  # a dangling link, a link loop, a file gone meanwhile
                unreadable.append((name, f"cannot read: {_why(exc)}"))
                continue
            if not stat.S_ISREG(st.st_mode):
                unreadable.append((name, named_like(st.st_mode, "tile")))
                continue
            names.append(name)
            sizes.append(st.st_size)
    found = [(n, _number(pattern, base, n), why) for n, why in unreadable]
    return names, sizes, found, others


def _number(pattern: re.Pattern[str], base: int, name: str) -> int:
    """The number of one name ``pattern`` matches (as :func:`names_to_numbers` reads it)."""
    match = pattern.match(name)
    assert match is not None
    digits = match.group(1)
    return int(digits, 16) if base == 16 else _decimal_number(digits)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


#: Below this many folders in a level, listing them in other processes costs more than it saves.
PARALLEL_FOLDERS = 256
#: Folders one task lists, where a level's folders are spread over processes.
FOLDERS_PER_TASK = 32


def _read_folders(how: How, jobs: list[Job]) -> list[Listed]:
    """List folders: the work a listing process does."""
    return [(folder, path, list_tile_folder(path, how, limit)) for folder, path, limit in jobs]


def check_tile_size(size: int) -> None:
    """Refuse to read a tile file of ``size`` bytes larger than any tile.

    Raises:
        CorruptBundle: it is larger than :data:`MAX_TILE_BYTES`.
    """
    if size > MAX_TILE_BYTES:
        raise CorruptBundle(
            f"{size:,} bytes: larger than any tile (at most {MAX_TILE_BYTES:,} read)"
        )


def read_file(path: str) -> bytes:
    """The bytes of one tile file, opened without blocking (a FIFO named like a tile cannot
    hang a read).

    Raises:
        CorruptBundle: the path is not a regular file, or is larger than any tile.
        OSError: it cannot be opened or read.
    """
    fd, st = open_regular(path, "tile")
    try:
        check_tile_size(st.st_size)
        return read_exactly(fd, 0, st.st_size, st.st_size)
    finally:
        os.close(fd)


#: An entry of a folder: its name, its path (a full key in object storage), and whether it is
#: a folder (links followed).
Entry = tuple[str, str, bool]
#: What lists a level's row (or column) folders: ``(how, jobs, run)`` to each one's listing.
TileLister = Callable[[How, list[Job], Run], list[Listed]]


class FolderTree(ABC):
    """Where the files of a tile folder cache are: local folders (:class:`LocalTree`), or
    objects in a bucket (:class:`~.tile_objects.ObjectTree`), named by paths (full keys in
    object storage). Only the listing differs: which names are tiles is decided once
    (:func:`list_tile_folder`, :func:`list_tile_objects`), whatever listed them."""

    @abstractmethod
    def entries(self, folder: str) -> list[Entry]:
        """What ``folder`` holds, one level, sorted by name.

        Raises:
            OSError: it cannot be listed.
        """

    @abstractmethod
    def level(self, folder: str) -> tuple[list[Entry], TileLister]:
        """The entries of a level folder, and what lists the tiles of its row (or column)
        folders.

        Raises:
            OSError: it cannot be listed.
        """

    @abstractmethod
    def why_not_a_folder(self, path: str) -> str:
        """Why the entry at ``path``, listed as no folder, is not gone into."""

    @abstractmethod
    def files(self, folder: str) -> list[tuple[str, Any]]:
        """The names in ``folder`` (one level), each with what :meth:`read` reads it by.

        Raises:
            OSError: it cannot be listed.
        """

    @abstractmethod
    def read(self, file: Any) -> bytes:
        """The bytes of a tile file :meth:`files` listed.

        Raises:
            CorruptBundle: it is not a regular file, or is larger than any tile.
            OSError: it cannot be read.
        """

    @abstractmethod
    def opener(self, path: str) -> Opener | None:
        """What opens the file at ``path`` (``metadata.json``); ``None`` when there is none."""

    @abstractmethod
    def join(self, folder: str, name: str) -> str:
        """The path of ``name`` in ``folder``."""

    @abstractmethod
    def relative(self, path: str, folder: str) -> str:
        """``path`` relative to ``folder``, which holds it."""


class LocalTree(FolderTree):
    """Tile folders on a file system: each row (or column) folder listed once, in worker
    processes for a large level."""

    def entries(self, folder: str) -> list[Entry]:
        """One ``scandir`` (links followed to tell folders)."""
        with os.scandir(folder) as found:
            return [(e.name, e.path, is_folder(e)) for e in sorted(found, key=lambda e: e.name)]

    def level(self, folder: str) -> tuple[list[Entry], TileLister]:
        """The level folder's entries; its folders listed by :func:`list_local_folders`."""
        return self.entries(folder), list_local_folders

    def why_not_a_folder(self, path: str) -> str:
        """What the file at ``path`` is, or why it cannot be opened."""
        return why_not_a_folder(path)

    def files(self, folder: str) -> list[tuple[str, Any]]:
        """Each name with its path."""
        return [(name, os.path.join(folder, name)) for name in os.listdir(folder)]

    def read(self, file: Any) -> bytes:
        """The file at the path ``file`` (:func:`read_file`)."""
        return read_file(file)

    def opener(self, path: str) -> Opener | None:
        """A local file opener, when anything is at ``path`` (a link too)."""
        return LocalFile if os.path.lexists(path) else None

    def join(self, folder: str, name: str) -> str:
        """``os.path.join``."""
        return os.path.join(folder, name)

    def relative(self, path: str, folder: str) -> str:
        """``os.path.relpath``."""
        return os.path.relpath(path, folder)


#: The tree of every local tile folder cache (it holds nothing).
LOCAL = LocalTree()


def not_listable(url: str, format_name: str) -> UnsupportedFormat:
    """The refusal of a folder cache over HTTP, where nothing can be listed."""
    return UnsupportedFormat(
        f"{url}: {format_name} caches are folders, and nothing can be listed over HTTP: give "
        "its s3://, az:// or gs:// URL, or copy it locally"
    )


def list_local_folders(how: How, jobs: list[Job], run: Run) -> list[Listed]:
    """Each folder of ``jobs`` listed (:func:`list_tile_folder`): in ``run``'s processes when
    there are enough to pay for them (:data:`PARALLEL_FOLDERS`)."""
    work = partial(_read_folders, how)
    if len(jobs) < PARALLEL_FOLDERS:
        return work(jobs)
    tasks = [jobs[i : i + FOLDERS_PER_TASK] for i in range(0, len(jobs), FOLDERS_PER_TASK)]
    return [item for done in run(work, tasks) for item in done]


class Folders(NamedTuple):
    """The numbered subfolders of a folder, and what is named like one and is not."""

    #: Path by number.
    found: dict[int, str]
    #: ``(name, kind, why)`` of the entries named like subfolders that are not read: a
    #: ``bad-name``, or ``corrupt`` for one that cannot be gone into.
    ignored: list[tuple[str, str, str]]
    #: Why the folder could not be listed; empty when it was.
    error: str = ""


def numbered_folders(
    entries: Iterable[Entry],
    parse: Callable[[str], int | None],
    looks: Callable[[str], bool],
    limit: tuple[int, str],
    canonical: Callable[[int], str],
    why_not: Callable[[str], str] = why_not_a_folder,
) -> Folders:
    """The subfolders among the ``entries`` of a folder (sorted by name) whose names ``parse``
    turns into numbers below ``limit`` (a number, and what being beyond it means, for messages).

    A name that ``looks`` numbered and does not parse, a number at or beyond the limit, an entry
    that is not a folder (``why_not`` its path says why) and a second name of one number
    (``03`` beside ``3``: the ``canonical`` name is read, else the first in sort order) are
    listed in ``ignored``.
    """
    found: dict[int, str] = {}
    names: dict[int, str] = {}
    ignored: list[tuple[str, str, str]] = []
    for name, path, folder in entries:
        number = parse(name)
        if number is None:
            if looks(name):
                ignored.append((name, BAD_NAME, "not a number in ASCII digits"))
            continue
        if number >= limit[0]:
            ignored.append((name, BAD_NAME, limit[1]))
            continue
        if not folder:
            ignored.append((name, CORRUPT, why_not(path)))
            continue
        previous = names.get(number)
        if previous is not None:
            kept, dropped = previous, name
            if name == canonical(number):
                kept, dropped = dropped, kept
                found[number], names[number] = path, name
            ignored.append((dropped, BAD_NAME, f"the same number as {shown(kept)}"))
            continue
        found[number], names[number] = path, name
    return Folders(found, ignored)


def _row_number(name: str) -> int | None:
    match = _ROW_DIR.match(name)
    return None if match is None else hex_number(match.group(1))


def _looks_like_row(name: str) -> bool:
    rest = name[1:].strip()
    return name[:1] in "Rr" and rest.isalnum() and any(c.isdigit() for c in rest)


def _decimal(name: str) -> int | None:
    return _decimal_number(name) if name.isascii() and name.isdigit() else None


class FolderBundle(NamedTuple):
    """The payload of a virtual bundle of a tile folder cache."""

    #: Its tiles: (row, col, size in bytes; 1 without sizes).
    tiles: npt.NDArray[np.int64]
    #: The row (or column) folders holding them, by number.
    folders: dict[int, str]


class FolderLevel:
    """A level's tiles grouped into virtual bundles, each with the folders holding its tiles
    (the :class:`~.listed.BundleSource` of a tile folder cache's listing).

    Args:
        grouped: the level's tiles.
        folders: the level's row (or column) folders, by number.
        axis: where a tile's folder number is: 0 for row folders, 1 for column folders.
    """

    def __init__(self, grouped: Grouped, folders: dict[int, str], axis: int) -> None:
        self.grouped, self.folders, self.axis = grouped, folders, axis

    def count(self) -> int:
        """The bundles holding tiles."""
        return self.grouped.count()

    def parts(self) -> Iterator[tuple[BundleKey, FolderBundle]]:
        """Each bundle holding tiles, with its tiles and their folders."""
        numbers = self.grouped.distinct(self.axis)
        for (key, tiles), held in zip(self.grouped.parts(), numbers, strict=True):
            yield key, FolderBundle(tiles, {n: self.folders[n] for n in held})


class TileFolders(ListedTiles):
    """A cache of one file per tile in one folder per row (or column)."""

    #: A tile's file name (anchored per line); its one group is the number the name carries.
    name_pattern: ClassVar[re.Pattern[str]]
    #: The base of that number.
    name_base: ClassVar[int] = 10
    #: Which of a tile's (row, col) its folder's number is: 0 for row folders of column files,
    #: 1 for column folders of row files.
    folder_axis: ClassVar[int]
    #: Where the cache's files are: on a file system, unless opened from object storage.
    _tree: FolderTree = LOCAL

    def __init__(self, path: Path, *, sizes: bool = False) -> None:
        #: The tile files of the local folders tiles were read from, and the row (or column)
        #: folders of the levels where a folder is not named as writers name it, by path and
        #: time.
        self._folders_kept: IndexCache[tuple[str, int], dict[int, Any]] = IndexCache(
            KEPT_NAMES, len
        )
        super().__init__(path, sizes=sizes)

    def _list_folders(self, level: int) -> tuple[Folders, TileLister]:
        """The level's row (or column) folders by number, and what lists their tiles."""
        raise NotImplementedError

    def _numbered_level(
        self,
        folder: str | None,
        parse: Callable[[str], int | None],
        looks: Callable[[str], bool],
        limit: tuple[int, str],
        canonical: Callable[[int], str],
    ) -> tuple[Folders, TileLister]:
        """The numbered subfolders of the level folder ``folder`` (see
        :func:`numbered_folders`), and what lists their tiles."""
        if folder is None:
            return Folders({}, []), list_local_folders
        try:
            entries, lister = self._tree.level(folder)
        except OSError as exc:
            return Folders({}, [], _why(exc)), list_local_folders
        why_not = self._tree.why_not_a_folder
        return numbered_folders(entries, parse, looks, limit, canonical, why_not), lister

    def _level_folder(self, level: int) -> str | None:
        """The folder of a level's row (or column) folders."""
        raise NotImplementedError

    def _label(self, path: str) -> str:
        """``path`` as problems name it: from the level folder down, printable."""
        raise NotImplementedError

    def _limit(self, level: int) -> int:
        """Row and column numbers of ``level`` are below this."""
        return GRID_LIMIT

    def _place(
        self, level: int, folder: int, number: NumberT
    ) -> tuple[NumberT | int, NumberT | int]:
        """(row, col) of the tile whose file carries ``number`` in folder number ``folder``."""
        raise NotImplementedError

    def list_level(self, level: int, run: Run = run_here) -> LevelListing:
        """Every tile file of ``level``, one listing of each row (or column) folder: in
        ``run``'s processes when the level has enough folders to pay for them
        (:data:`PARALLEL_FOLDERS`)."""
        folders, lister = self._list_folders(level)
        limit = self._limit(level)
        jobs = [(number, path, limit) for number, path in folders.found.items()]
        listed = lister((self.name_pattern, self.name_base, self.sizes), jobs, run)
        problems = self._folder_problems(level, folders)
        table = self._table(level, listed, problems)
        source = FolderLevel(Grouped(level, table), folders.found, self.folder_axis)
        return VirtualListing(level, self.where, problems, source)

    def _table(
        self, level: int, listed: Iterable[Listed], problems: list[Problem]
    ) -> npt.NDArray[np.int64]:
        """(row, col, size) of every tile from the listings of a level's folders; what is not a
        tile goes to ``problems``."""
        parts = [np.zeros((0, 3), dtype=np.int64)]
        for folder, path, found in sorted(listed, key=lambda item: item[0]):
            problems += self._listing_problems_of(level, folder, path, found)
            rows, cols = self._place(level, folder, found.numbers)
            part = np.ones((len(found.numbers), 3), dtype=np.int64)
            part[:, 0], part[:, 1] = rows, cols
            if self.sizes:
                part[:, 2] = found.sizes
            parts.append(part)
        return np.concatenate(parts)

    def _folder_problems(self, level: int, listed: Folders) -> list[Problem]:
        """What the listing of the level's folder found that is not a row (or column) folder."""
        where = self._level_folder(level) or ""
        if listed.error:
            return [
                Problem(self._label(where), CORRUPT, f"{shown(where)}: cannot list: {listed.error}")
            ]
        join = self._tree.join
        return [
            Problem(
                self._label(join(where, name)), kind, f"{shown(join(where, name))}: {why}; not read"
            )
            for name, kind, why in listed.ignored
        ]

    def _listing_problems_of(
        self, level: int, folder: int, path: str, found: Listing
    ) -> list[Problem]:
        problems = []
        if found.error:
            problems.append(Problem(self._label(path), CORRUPT, f"{shown(path)}: {found.error}"))
        for name, number in found.odd:
            file = self._tree.join(path, name)
            why = (
                "not a tile name"
                if number is None
                else f"off the grid: tile numbers of level {level} are below {self._limit(level):,}"
            )
            problems.append(Problem(self._label(file), BAD_NAME, f"{shown(file)}: {why}"))
        for name, number, why in found.unreadable:
            at = Tile(level, *self._place(level, folder, number))
            file = self._tree.join(path, name)
            problems.append(
                Problem(BundleKey.of_tile(at).label, CORRUPT, f"{shown(file)}: {why}", at)
            )
        return problems

    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tile files, folder by folder, each read whole: those the listing
        counted (with sizes, a dangling link is not one). A tile file that cannot be read is
        damage on that tile; the others are read."""
        key = bundle.key
        payload: FolderBundle = bundle.payload
        counted = tile_sizes(key, payload.tiles)
        limit = self._limit(key.level)
        for folder, path in sorted(payload.folders.items()):
            try:
                files = self._tree.files(path)
            except OSError:
                continue  # the listing reported it
            for number, file in self._tile_files(files, limit):
                row, col = self._place(key.level, folder, number)
                if key.holds(row, col) and counted[row - key.row, col - key.col]:
                    yield _stored_tile(row, col, self._tree, file)

    def _tile_files(self, files: list[tuple[str, Any]], limit: int) -> Iterator[tuple[int, Any]]:
        """The tile files among the ``files`` of a row (or column) folder, in name order, each
        with the number its name carries (below ``limit``)."""
        pattern, base = self.name_pattern, self.name_base
        for name, file in sorted(files):
            if "\n" in name or pattern.match(name) is None:
                continue
            number = _number(pattern, base, name)
            if number < limit:
                yield number, file

    def grid_size(self, level: int) -> tuple[int, int]:
        """Rows and columns below the level's limit (:meth:`_limit`)."""
        return self._limit(level), self._limit(level)

    def _folder_name(self, number: int) -> str:
        """The name writers give row (or column) folder ``number``."""
        raise NotImplementedError

    def _address(self, level: int, row: int, col: int) -> tuple[int, int]:
        """The folder number and the file number of tile (``row``, ``col``): the inverse of
        :meth:`_place`."""
        raise NotImplementedError

    def _folder_tiles(self, level: int, folder: int) -> dict[int, Any]:
        """The tile files of row (or column) folder ``folder`` of ``level`` by the number their
        names carry (the first name of a number, in name order), as a listing counts them.
        A folder named otherwise than writers name it (``R0000000A``, ``01``) is found in the
        level's listing, as a scan finds it.

        Local listings are kept while the folder's ``st_mtime_ns`` stays (adding, removing or
        renaming a file moves it; see :data:`RACY_NS`); a folder in object storage is listed
        each time.

        Raises:
            OSError: the folder cannot be listed (one that does not exist holds nothing).
        """
        level_folder = self._level_folder(level)
        if level_folder is None:
            return {}
        canonical = self._tree.join(level_folder, self._folder_name(folder))
        limit = self._limit(level)

        def listed(path: str) -> dict[int, Any]:
            found: dict[int, Any] = {}
            for number, file in self._tile_files(self._tree.files(path), limit):
                found.setdefault(number, file)
            return found

        if self.location is not None:
            return listed(canonical)
        path: str | None = canonical
        if not os.path.isdir(canonical):
            path = self._kept(level_folder, lambda: self._list_folders(level)[0].found).get(folder)
        return {} if path is None else self._kept(path, partial(listed, path))

    def _kept(self, path: str, listed: Callable[[], dict[int, Any]]) -> dict[int, Any]:
        """``listed()``, the listing of the local folder ``path``, kept while the folder's
        ``st_mtime_ns`` stays; not kept when that time is within :data:`RACY_NS` of now."""
        try:
            stamp = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            return {}
        if time.time_ns() - stamp < RACY_NS:
            return listed()
        return self._folders_kept.get((path, stamp), listed)

    def read_tile(self, level: int, row: int, col: int) -> bytes | None:
        """The tile's file, found in its folder's listing (:meth:`_folder_tiles`) and read
        whole: a file that is not a regular file, or larger than any tile, is
        :class:`CorruptBundle`."""
        if not self.holds_tile(level, row, col):
            return None
        folder, number = self._address(level, row, col)
        file = self._folder_tiles(level, folder).get(number)
        if file is None:
            return None
        try:
            return self._tree.read(file) or None
        except FileNotFoundError:  # removed since its folder was listed
            return None
        except CorruptBundle as exc:
            raise CorruptBundle(f"tile {Tile(level, row, col)}: {exc.reason}") from None

    def presence(
        self, level: int, row: int, col: int, height: int, width: int
    ) -> npt.NDArray[np.bool_]:
        """From the listings of the row (or column) folders crossing the window (every tile
        file counts, whatever its size: files are not opened)."""
        found, window = self.empty_window(level, row, col, height, width)
        if window.is_empty:
            return found
        span = (window.row0, window.row1) if self.folder_axis == 0 else (window.col0, window.col1)
        for folder in range(*span):
            numbers = np.fromiter(self._folder_tiles(level, folder), dtype=np.int64)
            rows, cols = np.broadcast_arrays(*self._place(level, folder, numbers))
            inside = (
                (rows >= window.row0) & (rows < window.row1)
                & (cols >= window.col0) & (cols < window.col1)
            )  # fmt: skip
            found[rows[inside] - row, cols[inside] - col] = True
        return found


def _stored_tile(row: int, col: int, tree: FolderTree, file: Any) -> StoredTile:
    try:
        return StoredTile(row, col, tree.read(file))
    except CorruptBundle as exc:
        return StoredTile(row, col, b"", exc.reason)
    except OSError as exc:
        return StoredTile(row, col, b"", f"cannot read: {_why(exc)}")


class ExplodedCache(TileFolders, ArcGISFolderCache):
    """An ArcGIS exploded cache: ``_alllayers/Lnn/Rxxxxxxxx/Cxxxxxxxx.png|jpg``."""

    name = "exploded"
    description = "ArcGIS exploded cache folder (conf.xml, _alllayers/Lnn/Rrrrrrrrr/Ccccccccc.png)"
    storage_formats = ("esriMapCacheStorageModeExploded",)

    @classmethod
    def open_remote(cls, storage: ObjectStorage, **options: Any) -> Self:
        """The exploded cache at ``storage``'s location (see
        :meth:`ArcGISFolderCache.open_remote`): its tiles from one listing per level.

        Raises:
            UnsupportedFormat: over HTTP, where nothing can be listed.
            InvalidCacheConfig: no ``conf.xml`` there, or it cannot be read.
        """
        if storage.location.is_http:
            raise not_listable(storage.location.url, cls.name)
        return super().open_remote(storage, **options)

    def _open_layout(self, path: Path) -> Layout:
        layout = super()._open_layout(path)
        if isinstance(layout, ObjectLayout):
            from .tile_objects import ObjectTree

            self._tree = ObjectTree(layout.storage)
            self._layers = layout.key(LAYERS_DIR)
        else:
            self._layers = str(self.layers_dir)
        return layout

    def _level_folder(self, level: int) -> str | None:
        return self._level_dirs.get(level)

    def _list_folders(self, level: int) -> tuple[Folders, TileLister]:
        folder = self._level_dirs.get(level)
        return self._numbered_level(folder, _row_number, _looks_like_row, _ROWS, self._folder_name)

    def _folder_name(self, number: int) -> str:
        return f"R{number:08x}"

    def _address(self, level: int, row: int, col: int) -> tuple[int, int]:
        return row, col

    def _label(self, path: str) -> str:
        return shown(self._tree.relative(path, self._layers))

    name_pattern = re.compile(
        rf"^C([0-9a-f]{{8}})\.{_EXTENSION}$", re.MULTILINE | re.IGNORECASE | re.ASCII
    )
    name_base = 16

    folder_axis = 0  # row folders of column files

    def _place(
        self, level: int, folder: int, number: NumberT
    ) -> tuple[NumberT | int, NumberT | int]:
        return folder, number


#: Rows of an exploded cache, and what a row folder beyond them is.
_ROWS = (GRID_LIMIT, "off the grid a status holds (rows below 2**31)")
_ZOOMS = (MAX_ZOOM + 1, f"deeper than zoom {MAX_ZOOM}, the deepest a status holds")


def _zoom_folders(tree: FolderTree, root: str) -> Folders:
    """The zoom folders of an XYZ/TMS folder (at most :data:`MAX_ZOOM`).

    Raises:
        InvalidCacheConfig: the folder cannot be listed.
    """
    try:
        entries = tree.entries(root)
    except OSError as exc:
        raise InvalidCacheConfig(f"{shown(root)}: cannot be listed ({_why(exc)})") from None
    return numbered_folders(entries, _decimal, looks_numbered, _ZOOMS, str, tree.why_not_a_folder)


class XYZFolder(TileFolders):
    """A ``{z}/{x}/{y}.png`` folder on the Web Mercator grid, rows counted down (XYZ).

    In object storage, the same folder is found by listings and each level is listed once,
    recursively (names and sizes of every tile object, no request per tile).
    """

    name = "xyz"
    description = "XYZ tile folder ({z}/{x}/{y}.png, Web Mercator, rows downward)"
    #: Rows counted up from the bottom (TMS).
    tms = False

    def __init__(self, path: Path, *, sizes: bool = False) -> None:
        """List the zoom folders and read ``metadata.json`` (mb-util's, tippecanoe's) when the
        folder has one: its ``minzoom``..``maxzoom`` are the levels (each expected, built or
        not; zoom folders outside are not scanned), its ``bounds`` (WGS 84) the full extent,
        its ``tileSize`` and ``format`` the tile size and format.

        Raises:
            InvalidCacheConfig: the folder cannot be listed; ``tileSize`` is not a tile size.
        """
        super().__init__(path, sizes=sizes)
        #: The folder holding the zoom folders: its path, or its full key in object storage.
        self._root = str(path) if self.location is None else self.location.key
        self._zooms = _zoom_folders(self._tree, self._root)
        metadata_path = self._tree.join(self._root, FOLDER_METADATA)
        source = (
            metadata_path if self.location is None else self.location.child(FOLDER_METADATA).url
        )
        metadata = folder_metadata(self._tree.opener(metadata_path), source)
        found = sorted(self._zooms.found)
        levels = zoom_levels(found, declared_zooms(metadata, source, MAX_ZOOM))
        #: Zoom folders outside the declared ``minzoom``..``maxzoom``: not scanned.
        self._outside = [level for level in found if level not in levels]
        order = declared_row_order(metadata, source)
        if order is not None and (order == "tms") != self.tms:
            log.warning(
                "%s: scheme %r, but the folder is read with rows %s (--scheme %s)",
                source,
                order,
                "upward" if self.tms else "downward",
                self.name,
            )
        zooms = [self._zooms.found[level] for level in found if level in levels]
        self._scheme = web_mercator_scheme(
            levels,
            tile_size=tile_size(metadata, source) or 256,
            tile_format=declared_format(metadata, source) or _tile_format(self._tree, zooms),
        )
        bounds = declared_bounds(metadata.get("bounds"), source)
        self._extent = None if bounds is None else web_mercator_extent(bounds)

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder whose subfolders are numbers (zoom levels) holding numbered folders, and
        whose ``metadata.json`` (if any) does not say its rows count upward (``"scheme":
        "tms"``: then it is a TMS folder)."""
        tree = LOCAL
        return _zxy_layout(tree, str(path)) and _metadata_says_tms(tree, str(path)) == cls.tms

    @classmethod
    def detect_remote(cls, storage: ObjectStorage) -> bool:
        """:meth:`detect` from listings of the location (never over HTTP, where nothing can be
        listed)."""
        if storage.location.is_http:
            return False
        from .tile_objects import ObjectTree

        tree, root = ObjectTree(storage), storage.location.key
        return _zxy_layout(tree, root) and _metadata_says_tms(tree, root) == cls.tms

    @classmethod
    def open_remote(cls, storage: ObjectStorage, **options: Any) -> Self:
        """The folder at ``storage``'s location, its tiles from one listing per level.

        Raises:
            UnsupportedFormat: over HTTP, where nothing can be listed.
            InvalidCacheConfig: the folder cannot be listed.
        """
        if storage.location.is_http:
            raise not_listable(storage.location.url, cls.name)
        from .tile_objects import ObjectTree

        reader = cls.__new__(cls)
        reader.location, reader._tree = storage.location, ObjectTree(storage)
        cls.__init__(reader, Path(storage.location.url), **options)
        return reader

    def unknown_levels(self) -> list[str]:
        """Entries of the folder named like zoom folders that are not read (``name (why)``),
        and zoom folders outside ``metadata.json``'s ``minzoom``..``maxzoom``."""
        outside = [
            f"{level} (outside metadata.json's minzoom..maxzoom, "
            f"{self.scheme.levels[0]}..{self.scheme.levels[-1]})"
            for level in self._outside
        ]
        return [f"{shown(name)} ({why})" for name, _, why in self._zooms.ignored] + outside

    def _level_folder(self, level: int) -> str | None:
        return self._zooms.found.get(level)

    def _list_folders(self, level: int) -> tuple[Folders, TileLister]:
        limit = self._limit(level)
        beyond = f"off the grid: level {level} has {limit:,} columns"
        folder = self._zooms.found.get(level)
        return self._numbered_level(
            folder, _decimal, looks_numbered, (limit, beyond), self._folder_name
        )

    def _folder_name(self, number: int) -> str:
        return str(number)

    def _address(self, level: int, row: int, col: int) -> tuple[int, int]:
        return col, (grid.tms_row(level, row) if self.tms else row)

    def _label(self, path: str) -> str:
        return shown(self._tree.relative(path, self._root))

    def _limit(self, level: int) -> int:
        return 1 << level

    name_pattern = re.compile(rf"^([0-9]+)\.{_EXTENSION}$", re.MULTILINE | re.IGNORECASE | re.ASCII)

    folder_axis = 1  # column folders of row files

    def _place(
        self, level: int, folder: int, number: NumberT
    ) -> tuple[NumberT | int, NumberT | int]:
        return (grid.tms_row(level, number) if self.tms else number), folder


def _zxy_layout(tree: FolderTree, root: str) -> bool:
    """Whether ``root`` is a folder whose subfolders are numbers (zoom levels) holding numbered
    folders, and not an ArcGIS cache."""
    try:
        entries = tree.entries(root)
        if any(name == "conf.xml" for name, _, _ in entries):
            return False
        levels = _decimal_folders(entries)
        return bool(levels) and any(_decimal(n) is not None for n, _, _ in tree.entries(levels[0]))
    except OSError:
        return False


def _decimal_folders(entries: list[Entry]) -> list[str]:
    """The paths of the folders among ``entries`` named by a number."""
    return [path for name, path, folder in entries if folder and _decimal(name) is not None]


def _metadata_says_tms(tree: FolderTree, root: str) -> bool:
    """Whether the folder's ``metadata.json`` says ``"scheme": "tms"`` (read up to
    :data:`~.tilejson.DETECT_METADATA_BYTES`: detection stays cheap)."""
    path = tree.join(root, FOLDER_METADATA)
    metadata = folder_metadata(tree.opener(path), path, cap=DETECT_METADATA_BYTES)
    return declared_row_order(metadata, root, warn=False) == "tms"


def _tile_format(tree: FolderTree, zooms: Iterable[str]) -> str:
    """The tile format of a folder cache, from the extension of the first tile file found in
    the column folders of the zoom folders ``zooms``."""
    for zoom in zooms:
        try:
            columns = _decimal_folders(tree.entries(zoom))
        except OSError:
            continue  # the listing reports it
        for column in columns:
            try:
                files = tree.files(column)
            except OSError:
                continue
            for name, _ in files:
                if name.lower().endswith(TILE_SUFFIXES) and _TILE_LIKE.fullmatch(name):
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
        """A folder of the XYZ layout whose ``metadata.json`` says ``"scheme": "tms"``; any
        other is chosen with ``--scheme tms`` (the layouts are the same)."""
        return super().detect(path)
