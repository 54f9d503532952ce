"""The contract every cache format implements.

A reader opens one cache, tells its tiling scheme and full extent, lists the bundle files of a level
(real bundles, or virtual 128 x 128 blocks for formats without bundles) and decodes the index of one
bundle into per-tile sizes. Readers never write to the cache.

Who owns what: a reader owns its handles (one :class:`~contextlib.ExitStack`, closed by
:meth:`CacheReader.close`) and nothing else; what it is opened with is its
:attr:`~CacheReader.spec`, which is what crosses to other processes. The listing of a level is a
value (:class:`LevelListing`) whose bundles carry what reading them needs
(:attr:`BundleFile.payload`): any reader opened from the same spec reads them. Readers never start
processes: the caller hands :meth:`CacheReader.list_level` a ``run`` (:class:`Run`) to spread
listing work with, :func:`run_here` by default.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, Self, TypeVar

import numpy as np
import numpy.typing as npt

from ..errors import BundleChanging, CorruptBundle, ScaleNotInCache, UnsupportedFormat
from ..grid import bundle_range, bundles_of_range
from ..models import BundleKey, Extent, Problem, Tile, TileRange, TilingScheme
from ..storage.location import Location
from .bytesource import ZIP_LOCAL_HEADER, open_regular, read_exactly
from .spec import CacheSpec
from .tile_index import IndexCache, TileIndex

if TYPE_CHECKING:
    from ..storage import ObjectStorage

#: Tile and bundle rows and columns stay below this: a status stores them as 32-bit integers
#: (``bundleRow``, ``bundleCol``). A name beyond it is reported, never counted.
GRID_LIMIT = 2**31


class StoredTile(NamedTuple):
    """One stored tile and its bytes, read for a deep check (``verify``, ``--blank``)."""

    #: Tile row (counted down from the origin) and column.
    row: int
    col: int
    data: bytes
    #: What is wrong with how the tile is stored (a size prefix that disagrees with the index,
    #: a body running past the end of the file); empty when nothing is.
    damage: str = ""

    @classmethod
    def past_end(cls, row: int, col: int, offset: int, size: int, end: int) -> StoredTile:
        """A tile whose ``size`` bytes at ``offset`` run past byte ``end`` of its file."""
        return cls(
            row,
            col,
            b"",
            f"offset {offset} + size {size} runs past the end of the file ({end:,} bytes)",
        )


class BundleFile(NamedTuple):
    """A bundle found in a cache listing (a tuple: cheap to send to worker processes)."""

    key: BundleKey
    #: Where the bundle's bytes are (a file path for folder caches).
    path: str
    #: A caching job holds a ``.lock`` beside it.
    locked: bool = False
    #: What reading the bundle needs from the listing, for formats without bundle files (the
    #: positions and sizes of the tiles of a virtual bundle), or of the files beside a bundle
    #: in object storage (a ``.bundlx``); ``None`` for local bundle files.
    payload: Any = None
    #: Bytes of the bundle file or object, as listed (``None``: not listed).
    size: int | None = None
    #: What changes when the bundle is rewritten, as listed: ``st_mtime_ns`` for a local file,
    #: the ETag (quotes stripped) for an object; ``None``: not listed.
    stamp: int | str | None = None


class BundleRun(NamedTuple):
    """Bundle files of one level named by their keys alone (``prefix + key.name + suffix``),
    nothing else listed for them: what a task carries instead of their bundle files, a
    few bytes a bundle (:func:`packed`, :func:`unpacked`)."""

    level: int
    prefix: str
    suffix: str
    #: The bundles' top-left tile rows and columns, in the listing's order.
    rows: npt.NDArray[np.int32]
    cols: npt.NDArray[np.int32]
    #: Where a caching job holds a ``.lock`` beside the bundle.
    locked: npt.NDArray[np.bool_]

    def bundles(self) -> list[BundleFile]:
        """The bundle files, as listed."""
        level, prefix, suffix = self.level, self.prefix, self.suffix
        rows, cols = self.rows.tolist(), self.cols.tolist()
        keys = (BundleKey(level, r, c) for r, c in zip(rows, cols, strict=True))
        return [
            BundleFile(key, f"{prefix}{key.name}{suffix}", locked)
            for key, locked in zip(keys, self.locked.tolist(), strict=True)
        ]


def packed(bundles: Sequence[BundleFile]) -> tuple[BundleRun, ...] | None:
    """``bundles`` as runs of one level each, in order, when each is named by its key alone
    (a bundle file in a folder or a zip, as ArcGIS names it); ``None`` when one is not (a
    bundle carrying a payload, a size or a stamp; a name ArcGIS does not write)."""
    runs: list[BundleRun] = []
    start = 0
    while start < len(bundles):
        first = bundles[start]
        level, name = first.key.level, first.key.name
        at = first.path.rfind(name)
        if at < 0:
            return None
        prefix, suffix = first.path[:at], first.path[at + len(name) :]
        end = start
        while end < len(bundles) and bundles[end].key.level == level:
            bundle = bundles[end]
            if (
                bundle.payload is not None
                or bundle.size is not None
                or bundle.stamp is not None
                or bundle.path != f"{prefix}{bundle.key.name}{suffix}"
            ):
                return None
            end += 1
        part = bundles[start:end]
        runs.append(
            BundleRun(
                level,
                prefix,
                suffix,
                np.array([b.key.row for b in part], dtype=np.int32),
                np.array([b.key.col for b in part], dtype=np.int32),
                np.array([b.locked for b in part], dtype=np.bool_),
            )
        )
        start = end
    return tuple(runs)


def unpacked(bundles: list[BundleFile] | tuple[BundleRun, ...]) -> list[BundleFile]:
    """The bundle files of what :func:`packed` made (a list of them is returned as it is)."""
    if isinstance(bundles, tuple):
        return [bundle for run in bundles for bundle in run.bundles()]
    return bundles


class BundleIndex(NamedTuple):
    """What one bundle's index says about its 128 x 128 tiles (a tuple: cheap to build)."""

    #: Tile sizes in bytes, unsigned integer array of shape (128, 128), row-major; 0: no tile.
    #: Readers may reuse this array for the next bundle: use it before reading another.
    sizes: npt.NDArray[np.unsignedinteger[Any]]
    #: Number of stored tiles (sizes > 0).
    tiles: int
    #: Sum of the sizes of all stored tiles.
    tile_bytes: int
    #: Size of the bundle file (0 for formats without files).
    file_bytes: int
    #: Bytes of the file that no tile uses.
    dead_bytes: int
    #: Modification time of the bundle file, seconds since the epoch (UTC), if known.
    modified: float | None
    #: What changes when the bundle file is rewritten, as it was read (the ``stamp`` of its
    #: source's version: ``st_mtime_ns`` for a local file); ``None`` where the codec does not
    #: tell (a bundle is then never reused by an incremental rebuild).
    stamp: int | str | None = None


T = TypeVar("T")
R = TypeVar("R")


class Run(Protocol):
    """How a reader may spread listing work: ``func`` mapped over ``items``, results in order.

    Both must pickle (a module-level function, tuples of plain values): a ``run`` may send
    them to other processes. :func:`run_here` runs them in this process: a reader handed it
    does its listing in one piece, as cutting it up would gain nothing.
    """

    def __call__(self, func: Callable[[T], R], items: Sequence[T], /) -> list[R]:
        """``[func(item) for item in items]``, wherever it runs."""
        ...


def run_here(func: Callable[[T], R], items: Sequence[T], /) -> list[R]:
    """The :class:`Run` of this process: ``func`` on each item, here, in order."""
    return [func(item) for item in items]


class LevelListing(ABC):
    """What the listing of one level found: its bundles, and problems with what is not one.

    Iterating yields them (:class:`BundleFile` or :class:`~cachestatus.models.Problem`) in an
    order that is the same every time; :attr:`count` is the number of bundles (for progress:
    about, for some formats).
    """

    level: int

    @property
    @abstractmethod
    def count(self) -> int:
        """How many bundles iterating yields, or about."""

    @abstractmethod
    def __iter__(self) -> Iterator[BundleFile | Problem]:
        """The level's problems and bundles."""


class StreamedListing(LevelListing):
    """The listing of a reader that lists bundle files as it goes (:meth:`CacheReader.list_bundles`
    and :meth:`CacheReader.count_bundles`): each iteration lists the level again, and memory does
    not grow with its bundles."""

    def __init__(self, reader: CacheReader, level: int) -> None:
        self.reader, self.level = reader, level
        self._count: int | None = None

    @property
    def count(self) -> int:
        """The reader's count (counted once)."""
        if self._count is None:
            self._count = self.reader.count_bundles(self.level)
        return self._count

    def __iter__(self) -> Iterator[BundleFile | Problem]:
        """The reader's listing of the level."""
        return self.reader.list_bundles(self.level)


class Part(NamedTuple):
    """One part of the listing of a level folder in object storage: the names from ``start``
    (from the folder's first when ``None``) to ``stop`` (up to the folder's end when ``None``),
    ``stop`` excluded, in the storage's order. A level's parts, in order, cover every name of
    the folder once, whatever it is."""

    level: int
    start: str | None
    stop: str | None


class Unsettled(Protocol):
    """What the parts of a level's listing leave to be decided once every part is listed (two
    names of one bundle in two parts): each part's, added up in order, then resolved."""

    def add(self, other: Self, /) -> None:
        """What the next part found."""
        ...

    def resolved(self) -> Iterator[BundleFile | Problem]:
        """The bundles and problems that come after every part's."""
        ...


class PartListing(NamedTuple):
    """What the listing of one :class:`Part` found: its bundles and problems, in the listing's
    order, what is left to decide after the level's last part, and how many names were
    listed."""

    found: list[BundleFile | Problem]
    unsettled: Unsettled
    names: int


def not_remote(url: str, format_name: str) -> UnsupportedFormat:
    """The refusal of a cache of a format not read from object storage."""
    return UnsupportedFormat(
        f"{url}: {format_name} caches are not read from object storage or over HTTP; copy the "
        "cache locally first"
    )


class CacheReader(ABC):
    """Read-only access to one tile cache.

    Subclasses set :attr:`name` (the registry key) and implement :meth:`detect`, the scheme and
    extent properties, one of :meth:`list_level` and :meth:`list_bundles`, and
    :meth:`read_bundle` and :meth:`read_tiles`. The handles a reader opens go into its one
    :class:`~contextlib.ExitStack`, closed by :meth:`close`.
    """

    #: Registry name, e.g. ``compact-v2``.
    name: ClassVar[str]
    #: One line for ``cachestatus info`` and error messages.
    description: ClassVar[str]
    #: Whether reading bundles is worth worker processes (false where the listing already holds
    #: everything, as for folders of tile files).
    parallel: ClassVar[bool] = True
    #: The options of :class:`~.spec.CacheSpec` the constructor takes besides the path
    #: (``sizes``, ``table``), kept as attributes of the same names.
    options: ClassVar[tuple[str, ...]] = ()
    #: Where a cache read from object storage is (its URL); ``None`` for a local cache.
    location: Location | None = None
    #: Bundle reads a worker process keeps in flight when the run does not say: 1 for local
    #: files (more only help where a read waits on a network); storage behind a network sets
    #: more.
    io_concurrency: int = 1
    #: Whether :meth:`read_bundle` may be called from several threads at once; a reader that
    #: says not reads one bundle at a time, whatever the run asks.
    thread_safe: ClassVar[bool] = True
    #: A digest of the configuration files the scheme and extent were read from, taken before
    #: they were parsed (:func:`~cachestatus.arcgis_names.config_digest`); ``None`` where the
    #: format has none to take. A rebuild records it with its request.
    config_digest: str | None = None

    def __init__(self, path: Path) -> None:
        self.path = path
        # The handles the reader opens (connections, open files), closed by close().
        self._handles = contextlib.ExitStack()
        # Bundle indexes decoded for tile reads, by (path, size, stamp) of the bundle.
        self._tile_indexes: IndexCache[tuple[str, int | None, int | str | None], TileIndex] = (
            IndexCache()
        )

    @classmethod
    @abstractmethod
    def detect(cls, path: Path) -> bool:
        """True when ``path`` looks like a cache of this format (cheap: no full parse)."""

    @classmethod
    def detect_remote(cls, storage: ObjectStorage) -> bool:
        """True when ``storage``'s location looks like a cache of this format (a listing or
        two, no full parse); false for the formats not read from object storage."""
        return False

    @classmethod
    def open_remote(cls, storage: ObjectStorage, **options: Any) -> Self:
        """A reader of the cache at ``storage``'s location, with the spec's ``options``.

        Raises:
            UnsupportedFormat: the format is not read from object storage.
        """
        raise not_remote(storage.location.url, cls.name)

    # Readers set these two while they open the cache.
    _scheme: TilingScheme
    _extent: Extent | None = None

    @property
    def scheme(self) -> TilingScheme:
        """The cache's tiling scheme."""
        return self._scheme

    @property
    def full_extent(self) -> Extent | None:
        """The cache's declared data extent, or ``None`` when the cache declares none."""
        return self._extent

    @property
    def root(self) -> Path:
        """The cache's own files: its folder, or its file. Nothing is ever written inside it
        but the default status store."""
        return self.path

    @property
    def status_dir(self) -> Path:
        """The folder where the default status store goes: the cache folder itself; the
        working folder for a cache in object storage."""
        return Path.cwd() if self.location is not None else self.path

    @property
    def status_stem(self) -> str:
        """The default status store's name without extension: ``Status``; for a cache in
        object storage, ``<name>.Status``, named after it (:attr:`Location.cache_name`)."""
        return "Status" if self.location is None else f"{self.location.cache_name}.Status"

    @property
    def where(self) -> str:
        """The cache as messages name it: its path, or its URL."""
        return str(self.path) if self.location is None else self.location.url

    @property
    def spec(self) -> CacheSpec:
        """What opens this cache again, in this process or another: the format, the path (or
        URL) and the options the reader was opened with."""
        options = {name: getattr(self, name) for name in self.options}
        anon = self.location is not None and self.location.anon
        return CacheSpec(self.name, self.where, **options, anon=anon)

    def list_level(self, level: int, run: Run = run_here) -> LevelListing:
        """The bundles of ``level`` found in the cache, and problems with what is not a bundle.

        Args:
            level: the level to list.
            run: how listing work may be spread (over processes); readers whose listing is
                cheap list in this process.

        The default lists through :meth:`list_bundles` as the listing is iterated.
        """
        if type(self).list_bundles is CacheReader.list_bundles:
            raise NotImplementedError(f"{type(self).__name__} implements neither listing method")
        return StreamedListing(self, level)

    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """The bundles of ``level`` found in the cache, and problems with what is not a bundle:
        what iterating :meth:`list_level` yields."""
        return iter(self.list_level(level))

    @property
    def lists_parts(self) -> bool:
        """Whether a level's listing is cut into parts (:meth:`level_parts`); false (the
        default) where a level is listed in one piece only (a folder on a disk, a package)."""
        return False

    def level_parts(self, level: int, bounds: TileRange, size: int) -> list[Part]:
        """The parts the listing of ``level`` is cut into where :attr:`lists_parts`, each read
        by :meth:`list_part` in any process, so that each holds about ``size`` of the bundles of
        the block ``bounds`` (those expected).

        Raises:
            NotImplementedError: the reader does not list levels in parts.
        """
        raise NotImplementedError(f"{type(self).__name__} does not list levels in parts")

    def list_part(self, part: Part) -> PartListing:
        """The listing of one of :meth:`level_parts`: the same bundles and problems, named and
        decided the same, as :meth:`list_level` gives in that part of the level.

        Raises:
            NotImplementedError: the reader does not list levels in parts.
        """
        raise NotImplementedError(f"{type(self).__name__} does not list levels in parts")

    def count_bundles(self, level: int) -> int:
        """How many bundles :meth:`list_bundles` would yield, or about (it sizes progress bars).

        Readers override it with something cheaper than a full listing.
        """
        return sum(1 for found in self.list_bundles(level) if isinstance(found, BundleFile))

    @abstractmethod
    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """Decode one bundle's index.

        Raises:
            CorruptBundle: the bundle cannot be decoded (the reason says why).
            OSError: the bundle cannot be read.
        """

    def read_ahead(self, bundles: Sequence[BundleFile]) -> Iterator[BundleFile]:
        """``bundles`` in their order, for :meth:`read_bundle` to read one after the other
        as they come: readers whose storage can start a read without waiting for it (a local
        folder) read those that follow meanwhile. The default gives them as they are."""
        return iter(bundles)

    @abstractmethod
    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """Every stored tile of one bundle with its bytes, in the order they lie in the file.

        Damage to one tile (its size prefix, its bounds) is reported on that tile; damage to
        the bundle (its header, its index) raises.

        Raises:
            CorruptBundle: the bundle cannot be decoded (the reason says why).
            OSError: the bundle cannot be read.
        """

    def grid_size(self, level: int) -> tuple[int, int]:
        """Rows and columns of ``level``'s grid: no tile lies outside ``0 <= row < rows``,
        ``0 <= col < cols``.

        The default, for grids that go on beyond any extent (ArcGIS): what a status holds,
        rows and columns below 2**31. Readers of fixed grids (Web Mercator zooms, GeoPackage
        tile matrices) override it.
        """
        return GRID_LIMIT, GRID_LIMIT

    def find_bundle(self, key: BundleKey) -> BundleFile | None:
        """The bundle ``key`` as a listing of its level gives it (its size and stamp where the
        listing has them), or ``None`` when the cache has no such bundle.

        The default looks through the level's listing; readers override it with a direct
        lookup (a ``stat`` of the bundle's file name, a ``HEAD`` of its object).

        Raises:
            OSError: the bundle cannot be looked for.
        """
        for found in self.list_level(key.level):
            if isinstance(found, BundleFile) and found.key == key:
                return found
        return None

    def tile_index(self, bundle: BundleFile) -> TileIndex:
        """Where the tiles of ``bundle`` are: its decoded index, in arrays of its own.

        The default keeps :meth:`read_bundle`'s sizes and no offsets (tiles are then read by
        :meth:`read_tiles`); readers whose indexes say where each tile's bytes are override it.

        Raises:
            CorruptBundle: the bundle cannot be decoded.
            OSError: the bundle cannot be read.
        """
        return TileIndex(self.read_bundle(bundle).sizes.copy())

    def read_stored(self, bundle: BundleFile, offset: int, size: int) -> bytes:
        """The ``size`` bytes at ``offset`` of ``bundle``'s source, as :meth:`tile_index` gave
        them: one tile, as stored.

        Raises:
            CorruptBundle: the source ends inside the tile.
            BundleChanging: the bundle is no longer the one :meth:`find_bundle` found.
            OSError: the bundle cannot be read.
        """
        raise NotImplementedError(f"{type(self).__name__} gives no tile offsets")

    def _bundle_index(self, bundle: BundleFile) -> TileIndex:
        """:meth:`tile_index` of ``bundle``, decoded once while it stays the same (its path,
        size and stamp) and is among the last ones asked for."""
        return self._tile_indexes.get(
            (bundle.path, bundle.size, bundle.stamp), lambda: self.tile_index(bundle)
        )

    @functools.cached_property
    def _lod_levels(self) -> frozenset[int]:
        """The level numbers of the scheme's LODs, for lookups."""
        return frozenset(self.scheme.levels)

    def _check_level(self, level: int) -> None:
        """Raise :class:`ScaleNotInCache` unless ``level`` is a LOD of the scheme."""
        if level not in self._lod_levels:
            raise ScaleNotInCache(
                f"level {level} is not a level of {self.where} (its levels: "
                f"{', '.join(map(str, self.scheme.levels))})"
            )

    def read_tile(self, level: int, row: int, col: int) -> bytes | None:
        """The stored bytes of one tile, exactly as stored (never decoded or decompressed).

        Args:
            level: the LOD level number (``scheme.lods[i].level``).
            row: the tile row, counted down from the origin (MBTiles and TMS rows are flipped
                inside the reader).
            col: the tile column.

        Returns:
            The tile's bytes; ``None`` when no tile is stored there (or an empty one), when
            ``level`` is not a LOD, or when (``row``, ``col``) lies outside the grid.

        Safe to call from many threads at once on one reader.

        Raises:
            CorruptBundle: the bundle (or database) holding the tile cannot be decoded, or the
                tile's bytes cannot be read as its index says.
            OSError: the bundle cannot be read.
        """
        if not self.holds_tile(level, row, col):
            return None
        try:
            return self._read_tile(Tile(level, row, col))
        except BundleChanging:  # rewritten while the tile was read: found and decoded again
            return self._read_tile(Tile(level, row, col))

    def _read_tile(self, tile: Tile) -> bytes | None:
        """:meth:`read_tile` of a tile on the grid: its bundle found, its index decoded (or
        kept), its bytes read."""
        key = BundleKey.of_tile(tile)
        bundle = self.find_bundle(key)
        if bundle is None:
            return None
        index = self._bundle_index(bundle)
        r, c = tile.row - key.row, tile.col - key.col
        size = int(index.sizes[r, c])
        if not size:
            return None
        if index.offsets is None:
            return self._tile_of_bundle(bundle, tile)
        offset = int(index.offsets[r, c])
        if offset < 0:
            raise CorruptBundle(f"tile {tile}: its offset lies inside the bundle's header")
        return self.read_stored(bundle, offset, size)

    def holds_tile(self, level: int, row: int, col: int) -> bool:
        """Whether ``level`` is a LOD of the cache and (``row``, ``col``) lies on its grid."""
        rows, cols = self.grid_size(level) if level in self._lod_levels else (0, 0)
        return 0 <= row < rows and 0 <= col < cols

    def _tile_of_bundle(self, bundle: BundleFile, tile: Tile) -> bytes | None:
        """``tile`` of ``bundle`` found among :meth:`read_tiles`' (for readers whose indexes
        give no offsets)."""
        for stored in self.read_tiles(bundle):
            if (stored.row, stored.col) == (tile.row, tile.col):
                if stored.damage:
                    raise CorruptBundle(f"tile {tile}: {stored.damage}")
                return stored.data or None
        return None

    def window_on_grid(self, level: int, row: int, col: int, height: int, width: int) -> TileRange:
        """The tiles of the window whose top-left tile is (``row``, ``col``) that lie on
        ``level``'s grid (:meth:`grid_size`); possibly none."""
        rows, cols = self.grid_size(level)
        return TileRange(row, row + max(height, 0), col, col + max(width, 0)).intersect(
            TileRange(0, rows, 0, cols)
        )

    def empty_window(
        self, level: int, row: int, col: int, height: int, width: int
    ) -> tuple[npt.NDArray[np.bool_], TileRange]:
        """The window of :meth:`presence` with no tile marked, and its part on the grid.

        Raises:
            ScaleNotInCache: ``level`` is not a LOD of the cache.
        """
        self._check_level(level)
        found = np.zeros((max(height, 0), max(width, 0)), dtype=np.bool_)
        return found, self.window_on_grid(level, row, col, height, width)

    def presence(
        self, level: int, row: int, col: int, height: int, width: int
    ) -> npt.NDArray[np.bool_]:
        """Where tiles are stored in a window of ``level``: what ArcGIS's ``tilemap`` answers.

        Args:
            level: the LOD level number.
            row: the window's top row (counted down from the origin).
            col: the window's left column.
            height: rows of the window.
            width: columns of the window.

        Returns:
            A (``height``, ``width``) bool array, row-major: True where a tile is stored (its
            size above 0). The window may cross bundle edges and the grid's edge: cells
            outside the grid, or in bundles the cache does not have, are False.

        Safe to call from many threads at once on one reader.

        Raises:
            ScaleNotInCache: ``level`` is not a LOD of the cache.
            CorruptBundle: a bundle (or the database) in the window cannot be decoded.
            OSError: a bundle cannot be read.
        """
        found, window = self.empty_window(level, row, col, height, width)
        for key in bundles_of_range(level, window):
            bundle = self.find_bundle(key)
            if bundle is None:
                continue
            sizes = self._bundle_index(bundle).sizes
            part = window.intersect(bundle_range(key))
            found[part.row0 - row : part.row1 - row, part.col0 - col : part.col1 - col] = (
                sizes[
                    part.row0 - key.row : part.row1 - key.row,
                    part.col0 - key.col : part.col1 - key.col,
                ]
                > 0
            )
        return found

    @property
    def tile_kinds(self) -> frozenset[str] | None:
        """The tile kinds (``png``, ``jpeg``...) the cache's declared tile format allows;
        ``None`` when any image is fine (see :mod:`cachestatus.content`)."""
        from ..content import kinds_for

        return kinds_for(self.scheme.tile_format)

    def unknown_levels(self) -> list[str]:
        """Names of level folders that are not LODs of the scheme (reported as warnings)."""
        return []

    def close(self) -> None:
        """Release the reader's handles (folder readers hold none between calls)."""
        self._handles.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Bytes read from the head of a file to tell its format: every signature lies in them.
HEAD_BYTES = 4096
#: Bytes read from a zip's end to find its end-of-central-directory record: the record (22) and
#: the longest comment it may carry (65,535), plus the ZIP64 locator before it (20).
_ZIP_TAIL = 22 + 65_535 + 20
#: At most this many bytes of a zip's central directory are read to learn its members' names.
ZIP_NAMES_BYTES = 64 * 1024
_ZIP_END = b"PK\x05\x06"  # end of central directory: u16 at 10 entries, u32 at 12 size, 16 offset
_ZIP64_LOCATOR = b"PK\x06\x07"  # u64 at 8: offset of the ZIP64 end record
_ZIP64_END = b"PK\x06\x06"  # u64 at 40: size of the central directory, at 48: its offset
_ZIP_ENTRY = b"PK\x01\x02"  # central directory entry: u16 at 28, 30, 32: name, extra, comment
_ZIP_ENTRY_SIZE = 46
_ZIP_END_SIZE = 22
_ZIP64_LOCATOR_SIZE = 20


class FileHead(NamedTuple):
    """What detection reads of a file: its first bytes, and for a zip its members' names."""

    #: The first :data:`HEAD_BYTES` bytes (fewer for a shorter file).
    head: bytes
    #: The file's size in bytes.
    size: int
    #: The names of a zip's members, as far as :data:`ZIP_NAMES_BYTES` of its central
    #: directory hold them (empty for a file that is not a zip).
    zip_names: tuple[str, ...] = ()
    #: Whether :attr:`zip_names` holds every member (a huge central directory is cut short).
    zip_complete: bool = True


def read_head(path: Path) -> FileHead | None:
    """The first bytes of the regular file at ``path`` (and a zip's member names), or ``None``
    for anything else: a folder, a FIFO, a device, a file that cannot be read.

    Cheap whatever the file: opened without blocking (a FIFO cannot hang it), at most
    :data:`HEAD_BYTES` from its start, and for a zip its end record and at most
    :data:`ZIP_NAMES_BYTES` of its central directory.
    """
    try:
        st = os.stat(path)  # never blocks, whatever the path is
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _read_head(str(path), st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_head(path: str, inode: int, size: int, mtime_ns: int) -> FileHead | None:
    """:func:`read_head` of one state of a file (its inode, size and time): read once, however
    many formats ask while one path is detected."""
    try:
        fd, st = open_regular(path)
    except (OSError, CorruptBundle):
        return None
    try:
        head = read_exactly(fd, 0, HEAD_BYTES, st.st_size)
        if not head.startswith(ZIP_LOCAL_HEADER):
            return FileHead(head, st.st_size)
        names, complete = zip_member_names(fd, st.st_size)
        return FileHead(head, st.st_size, names, complete)
    except OSError:
        return None
    finally:
        os.close(fd)


def zip_member_names(fd: int, size: int) -> tuple[tuple[str, ...], bool]:
    """The member names of the zip open as ``fd`` (``size`` bytes), read from its central
    directory without reading all of it: at most :data:`ZIP_NAMES_BYTES`. Also whether that was
    every member. A zip whose end record cannot be found gives no names."""
    # Most zips end with the 22-byte end record (no comment), the ZIP64 locator before it.
    tail_start = max(0, size - _ZIP_END_SIZE - _ZIP64_LOCATOR_SIZE)
    tail = read_exactly(fd, tail_start, size - tail_start, size)
    at = len(tail) - _ZIP_END_SIZE
    if at < 0 or tail[at : at + 4] != _ZIP_END:  # a comment follows it: look further back
        tail_start = max(0, size - _ZIP_TAIL)
        tail = read_exactly(fd, tail_start, size - tail_start, size)
        at = _end_record(tail)
    if at < 0:
        return (), False
    entries = int.from_bytes(tail[at + 10 : at + 12], "little")
    directory_size = int.from_bytes(tail[at + 12 : at + 16], "little")
    offset = int.from_bytes(tail[at + 16 : at + 20], "little")
    locator = at - _ZIP64_LOCATOR_SIZE
    if locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR:
        end64 = int.from_bytes(tail[locator + 8 : locator + 16], "little")
        record = read_exactly(fd, end64, 56, size)
        if record[:4] == _ZIP64_END and len(record) == 56:
            entries = int.from_bytes(record[32:40], "little")
            directory_size = int.from_bytes(record[40:48], "little")
            offset = int.from_bytes(record[48:56], "little")
    data = read_exactly(fd, offset, min(directory_size, ZIP_NAMES_BYTES), size)
    names = parse_zip_directory(data)
    return names, len(names) >= entries


def _end_record(tail: bytes) -> int:
    """Where the end record is in the tail of a zip that ends with a comment: the last
    signature whose comment length (u16 at 20) reaches exactly to the end (the comment itself
    may hold the signature's bytes). -1 when there is none."""
    at = tail.rfind(_ZIP_END)
    while at >= 0:
        comment = int.from_bytes(tail[at + 20 : at + 22], "little")
        if at + _ZIP_END_SIZE + comment == len(tail):
            return at
        at = tail.rfind(_ZIP_END, 0, at)
    return -1


def parse_zip_directory(data: bytes) -> tuple[str, ...]:
    """The member names in (the start of) a zip's central directory: the entries ``data`` holds
    whole, up to the first that is not an entry."""
    names: list[str] = []
    at = 0
    while at + _ZIP_ENTRY_SIZE <= len(data) and data[at : at + 4] == _ZIP_ENTRY:
        lengths = [int.from_bytes(data[at + i : at + i + 2], "little") for i in (28, 30, 32)]
        end = at + _ZIP_ENTRY_SIZE + lengths[0]
        if end > len(data):
            break
        flags = int.from_bytes(data[at + 8 : at + 10], "little")
        raw = data[at + _ZIP_ENTRY_SIZE : end]
        names.append(raw.decode("utf-8" if flags & 0x800 else "cp437", "replace"))
        at = end + lengths[1] + lengths[2]
    return tuple(names)


class SingleFileCache(CacheReader):
    """A cache that is one file (a package, an SQLite database, an archive), found by its
    content: its first bytes (:func:`read_head`), and what they say it holds. The suffix only
    breaks ties (:func:`~cachestatus.formats.detect`).

    Its status goes beside it, named after it: ``world.Status.gdb`` for ``world.mbtiles``.
    """

    #: The file suffix the format is usually named with (lower case, with the dot).
    suffix: ClassVar[str]

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A regular file whose content is of this format (:meth:`recognise`), whatever its
        name."""
        found = read_head(path)
        return found is not None and cls.recognise(path, found)

    @classmethod
    def recognise(cls, path: Path, found: FileHead) -> bool:
        """Whether the file at ``path``, whose head is ``found``, holds a cache of this
        format. Reads nothing more than a few pages (SQLite) beyond ``found``."""
        return False

    @classmethod
    def claims_by_name(cls, path: Path) -> bool:
        """Whether a file that no format recognises by its content is to be opened as this
        format for its suffix: a damaged file of the format, whose reader then says what is
        wrong with it. A regular file with :attr:`suffix`."""
        return path.suffix.lower() == cls.suffix and read_head(path) is not None

    @property
    def status_dir(self) -> Path:
        """The folder holding the file (the working folder for a file in object storage)."""
        return self.path.parent if self.location is None else Path.cwd()

    @property
    def status_stem(self) -> str:
        """``world.Status`` for ``world.mbtiles``."""
        return f"{self.path.stem}.Status"
