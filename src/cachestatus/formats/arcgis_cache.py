"""ArcGIS caches: one reader over a layout (a folder, a zip) and the codec of its bundles.

Every ArcGIS format is the same reader; formats differ only in where their files are
(:mod:`.arcgis_layout`) and where their tiling scheme is (``conf.xml`` and ``conf.cdi``, or a
package's ``root.json``). The bundles are read by the codec of the storage format the scheme
declares (Compact V1 or V2), from whatever source the layout gives: a damaged bundle reads the
same in a folder and in a package.
"""

from __future__ import annotations

import functools
import itertools
import os
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

from ..arcgis_names import config_digest
from ..errors import CorruptBundle, InvalidCacheConfig
from ..models import BundleKey, Extent, Problem, TileRange, TilingScheme
from .arcgis_conf import parse_conf_cdi, parse_conf_xml, read_config_file
from .arcgis_folder import (
    CDI_NAMES,
    LAYERS_DIR,
    OddNames,
    find_conf,
    row_boundaries,
    shown,
)
from .arcgis_layout import FolderLayout, Layout, ObjectLayout
from .base import BundleFile, BundleIndex, CacheReader, Part, PartListing, StoredTile
from .bytesource import Opener
from .compact_v1 import STORAGE_FORMAT as COMPACT_V1
from .compact_v1 import CompactV1
from .compact_v2 import STORAGE_FORMAT as COMPACT_V2
from .compact_v2 import CompactV2
from .tile_index import TileIndex

if TYPE_CHECKING:
    from ..storage import ObjectStorage


class Codec(Protocol):
    """Reads the bundles of one storage format from the sources a layout opens."""

    #: Bytes at the start of a bundle file that reading its index reads first, which a layout
    #: may read ahead (0: none, its index is elsewhere).
    leading_bytes: int

    def read_index(self, open_source: Opener, bundle: BundleFile) -> BundleIndex:
        """Decode one bundle's index (see :meth:`CacheReader.read_bundle`)."""
        ...

    def read_tiles(self, open_source: Opener, bundle: BundleFile) -> Iterator[StoredTile]:
        """Every stored tile of one bundle (see :meth:`CacheReader.read_tiles`)."""
        ...

    def tile_index(self, open_source: Opener, bundle: BundleFile) -> TileIndex:
        """Where each tile's bytes are in the bundle (see :meth:`CacheReader.tile_index`)."""
        ...

    @property
    def beside(self) -> bool:
        """Whether a bundle is read with a file beside it (the ``.bundlx`` of Compact V1)."""
        ...


#: The codec of each storage format, made per reader (it may hold decoding buffers).
CODECS: dict[str, Callable[[], Codec]] = {COMPACT_V2: CompactV2, COMPACT_V1: CompactV1}

#: The configuration of an ArcGIS cache: its tiling scheme, its full extent, and the folder of
#: its level folders (relative to the layout's root).
Configuration = tuple[TilingScheme, Extent | None, str]


def read_conf(layout: Layout, name: str) -> tuple[TilingScheme, Extent | None]:
    """The tiling scheme of the ``conf.xml`` named ``name`` and the full extent of the
    ``conf.cdi`` beside it (``None`` without one).

    Raises:
        InvalidCacheConfig: either cannot be read or parsed.
    """
    data = layout.config(name)
    if data is None:
        raise InvalidCacheConfig(f"{layout.source(name)}: no such file")
    scheme = parse_conf_xml(data, layout.source(name))
    for cdi in CDI_NAMES:
        data = layout.config(cdi)
        if data is not None:
            return scheme, parse_conf_cdi(data, layout.source(cdi))
    return scheme, None


class ArcGISCache(CacheReader):
    """An ArcGIS cache: its files in a :class:`~.arcgis_layout.Layout`, its bundles read by the
    codec of its storage format.

    Subclasses say where the files are (:meth:`_open_layout`) and where the scheme is
    (:meth:`_configure`).
    """

    #: ``StorageFormat`` values the format reads. A cache that declares another (its format
    #: given by name) is read with the first one's codec.
    storage_formats: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        layout = self._open_layout(path)
        try:
            self._scheme, self._extent, layers = self._configure(layout)
            # Listed now: level folders that cannot be listed are told before any work.
            self._levels = layout.levels(layers)
        except BaseException:
            layout.close()
            raise
        #: Where the cache's files are (closed with the reader's other handles).
        self.layout = layout
        self._handles.callback(layout.close)

    @abstractmethod
    def _open_layout(self, path: Path) -> Layout:
        """Where the files of the cache at ``path`` are.

        Raises:
            InvalidCacheConfig: ``path`` holds no cache of the format.
        """

    @abstractmethod
    def _configure(self, layout: Layout) -> Configuration:
        """The scheme, the extent and the folder of the level folders, read from ``layout``.

        Raises:
            InvalidCacheConfig: the configuration cannot be read, or is of another format.
        """

    @functools.cached_property
    def _codec(self) -> Codec:
        storage = self._scheme.storage_format
        return CODECS[storage if storage in CODECS else self.storage_formats[0]]()

    @property
    def _level_dirs(self) -> dict[int, str]:
        """The level folders by level ID, as the layout names them."""
        return self._levels.found

    def unknown_levels(self) -> list[str]:
        """Level folders that are not LODs of the scheme, and entries named like level folders
        that are not read (``name (why)``)."""
        levels = set(self._scheme.levels)
        unknown = [
            shown(os.path.basename(p)) for lv, p in self._level_dirs.items() if lv not in levels
        ]
        return sorted(unknown) + self._levels.ignored

    def count_bundles(self, level: int) -> int:
        """Files named ``*.bundle`` in the level folder: one listing, no parsing."""
        folder = self._level_dirs.get(level)
        return 0 if folder is None else self.layout.count(folder)

    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """The bundles of a level folder; badly named or misplaced ones as problems (see
        :func:`~.arcgis_folder.level_bundles`)."""
        folder = self._level_dirs.get(level)
        return iter(()) if folder is None else self.layout.bundles(level, folder)

    @property
    def lists_parts(self) -> bool:
        """In object storage that starts a listing at a key
        (:attr:`~.arcgis_layout.ObjectLayout.lists_parts`); a folder on a disk, or a package, is
        listed in one piece."""
        return isinstance(self.layout, ObjectLayout) and self.layout.lists_parts

    def level_parts(self, level: int, bounds: TileRange, size: int) -> list[Part]:
        """The level folder's names cut at the beginnings of bundle rows
        (:func:`~.arcgis_folder.row_boundaries`), about ``size`` expected bundles a part, just
        under a whole number of listing pages (a part's listing asks for one page per
        :data:`~cachestatus.storage.objects.LIST_PAGE` names, and one more that shows where it
        ends: 1,999 names take two requests, 2,048 three); the first part from the folder's
        first name, the last to its end.

        Raises:
            NotImplementedError: the cache is not listed in parts (:attr:`lists_parts`).
        """
        from ..storage.objects import LIST_PAGE

        if not self.lists_parts:
            raise NotImplementedError(f"{self.where}: its levels are listed in one piece")
        if level not in self._level_dirs:
            return []
        if size > LIST_PAGE:
            size = size // LIST_PAGE * LIST_PAGE - 1
        cuts: list[str | None] = [None, *row_boundaries(bounds, size), None]
        return [Part(level, start, stop) for start, stop in itertools.pairwise(cuts)]

    def list_part(self, part: Part) -> PartListing:
        """One part of a level folder's listing (:meth:`~.arcgis_layout.ObjectLayout.part`)."""
        layout = self.layout
        if not isinstance(layout, ObjectLayout) or not layout.lists_parts:
            raise NotImplementedError(f"{self.where}: its levels are listed in one piece")
        folder = self._level_dirs.get(part.level)
        if folder is None:  # gone since the run's reader found it: as an empty folder lists
            return PartListing([], OddNames(part.level), 0)
        return layout.part(part, folder)

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """Read and decode one bundle's index.

        The returned sizes are valid until the next call in the same thread (the codec may
        reuse its arrays).
        """
        return self._codec.read_index(self.layout.opener(bundle), bundle)

    def read_ahead(self, bundles: Sequence[BundleFile]) -> Iterator[BundleFile]:
        """``bundles`` in their order, the indexes of those that follow read meanwhile where
        the layout can (:meth:`~.arcgis_layout.Layout.read_ahead`)."""
        return self.layout.read_ahead(bundles, self._codec.leading_bytes)

    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tiles in file order, each checked against its size word."""
        return self._codec.read_tiles(self.layout.opener(bundle, whole=True), bundle)

    def find_bundle(self, key: BundleKey) -> BundleFile | None:
        """The bundle by the name ArcGIS writes, in its level folder (see
        :meth:`~.arcgis_layout.Layout.find_bundle`): a ``stat``, a zip member, a ``HEAD``."""
        folder = self._level_dirs.get(key.level)
        return None if folder is None else self.layout.find_bundle(folder, key, self._codec.beside)

    def tile_index(self, bundle: BundleFile) -> TileIndex:
        """The bundle's index decoded by its codec: sizes and offsets of its tiles."""
        return self._codec.tile_index(self.layout.opener(bundle), bundle)

    def read_stored(self, bundle: BundleFile, offset: int, size: int) -> bytes:
        """One read of the bundle's bytes (:meth:`~.arcgis_layout.Layout.read_range`)."""
        data = self.layout.read_range(bundle, offset, size)
        if len(data) != size:
            raise CorruptBundle(f"the file ends inside a tile (offset {offset:,}, size {size:,})")
        return data


class ArcGISFolderCache(ArcGISCache):
    """An ArcGIS cache folder: ``conf.xml``, ``conf.cdi`` (optional) and ``_alllayers/Lnn/``.

    The path may be the cache folder, a service folder holding ``Layers/``, or the ``conf.xml``
    file itself; the status goes beside ``conf.xml``, where ArcGIS keeps ``Status.gdb``.

    In object storage, the same folder is found by listings (``conf.xml`` in any case, never
    asked for by a guessed name) and read by ranges; its status goes to the working folder.
    """

    #: The layout of a cache in object storage and the name of its ``conf.xml``, found before
    #: the reader is made.
    _remote: tuple[ObjectLayout, str] | None = None

    @classmethod
    def detect_remote(cls, storage: ObjectStorage) -> bool:
        """True for a folder in object storage whose ``conf.xml`` declares one of
        :attr:`storage_formats`."""
        if storage.location.is_http:
            return False  # nothing can be listed there
        found = _remote_conf(storage)
        return found is not None and found[2] in cls.storage_formats

    @classmethod
    def open_remote(cls, storage: ObjectStorage, **options: Any) -> Self:
        """The cache folder at ``storage``'s location (or its ``Layers`` folder, or its
        ``conf.xml``), read by ranges.

        Raises:
            InvalidCacheConfig: no ``conf.xml`` there, or it cannot be read.
        """
        found = _remote_layout(storage)
        if found is None:
            raise InvalidCacheConfig(
                f"{storage.location.url}: no conf.xml found in it or in its Layers folder"
            )
        reader = cls.__new__(cls)
        reader._remote = found
        reader.location = found[0].storage.location
        cls.__init__(reader, Path(reader.location.url), **options)
        return reader

    def _open_layout(self, path: Path) -> Layout:
        if self._remote is not None:
            layout, name = self._remote
            self.conf_path, self.cache_dir = path / name, path
            self.layers_dir = path / LAYERS_DIR
            return layout
        conf = find_conf(path)
        if conf is None:
            raise InvalidCacheConfig(f"{path}: no conf.xml found in it or in its Layers folder")
        self.conf_path = conf
        self.cache_dir = conf.parent
        self.layers_dir = self.cache_dir / LAYERS_DIR
        return FolderLayout(self.cache_dir)

    def _configure(self, layout: Layout) -> Configuration:
        if self._remote is None:  # before the parse: see config_digest()
            self.config_digest = config_digest(self.conf_path)
        return (*read_conf(layout, self.conf_path.name), LAYERS_DIR)

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
        """The folder holding the configuration and the cache's levels."""
        return self.cache_dir

    @property
    def status_dir(self) -> Path:
        """The folder holding the configuration: ArcGIS keeps ``Status.gdb`` there (the
        working folder for a cache in object storage)."""
        return self.cache_dir if self.location is None else super().status_dir


def _remote_layout(storage: ObjectStorage) -> tuple[ObjectLayout, str] | None:
    """:meth:`ObjectLayout.find` of ``storage``, once while a cache is opened: every format's
    detection asks, then the reader opened through the same storage reads the layout found (its
    listing, and its configuration files as read)."""
    return storage.found_once("arcgis layout", lambda: ObjectLayout.find(storage))


def _remote_conf(storage: ObjectStorage) -> tuple[ObjectLayout, str, str] | None:
    """The layout of the cache at ``storage``'s location, the name of its ``conf.xml`` and the
    storage format it declares: found once while every format's detection asks."""
    return storage.found_once("arcgis conf", lambda: _declared_format(storage))


def _declared_format(storage: ObjectStorage) -> tuple[ObjectLayout, str, str] | None:
    found = _remote_layout(storage)
    if found is None:
        return None
    layout, name = found
    try:
        scheme = read_conf(layout, name)[0]
    except InvalidCacheConfig:
        return None
    return layout, name, scheme.storage_format


class CompactV2Cache(ArcGISFolderCache):
    """An ArcGIS Compact V2 folder cache: ``conf.xml``, ``conf.cdi``, ``_alllayers/Lnn/``."""

    name = "compact-v2"
    description = "ArcGIS Compact Cache V2 folder (conf.xml, _alllayers/Lnn/R....C....bundle)"
    storage_formats = (COMPACT_V2,)


class CompactV1Cache(ArcGISFolderCache):
    """An ArcGIS Compact V1 folder cache: ``conf.xml``, ``.bundle`` + ``.bundlx`` files."""

    name = "compact-v1"
    description = "ArcGIS Compact Cache V1 folder (conf.xml, _alllayers/Lnn/*.bundle + .bundlx)"
    storage_formats = (COMPACT_V1,)
