"""Where the files of an ArcGIS cache are: a folder, or a zip (a tile package).

A layout answers the same questions whatever holds the files: its configuration files
(:meth:`~Layout.config`), its level folders (:meth:`~Layout.levels`), the bundles of a level
(:meth:`~Layout.bundles`) and the bytes of one (:meth:`~Layout.open`, a
:class:`~.bytesource.ByteSource`). Which names are level folders and bundles is decided once
(:mod:`.arcgis_folder`), so a cache reads the same in a folder and in a package.
"""

from __future__ import annotations

import contextlib
import errno
import operator
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BundleChanging, CorruptBundle
from ..models import CORRUPT, BundleKey, Problem
from .arcgis_conf import read_config, read_config_file
from .arcgis_folder import (
    BUNDLE_SUFFIX,
    LevelFolders,
    OddNames,
    level_bundles,
    list_level_folders,
    pick_level_folders,
    placed_bundles,
    shown,
)
from .base import BundleFile, Part, PartListing
from .bytesource import FADVISE_WILLNEED, ByteSource, LocalFile, Opener, ZipArchive

if TYPE_CHECKING:
    from ..storage import ObjectEntry, ObjectStorage

#: A listed directory entry's name.
_NAME = operator.attrgetter("name")
#: The suffix of a Compact V1 bundle's index, beside it.
_BUNDLX_SUFFIX = ".bundlx"
#: Bundles a folder layout reads ahead of the one being decoded (:meth:`FolderLayout.read_ahead`):
#: with one worker process per core, as many reads in flight as the best concurrent reader of a
#: cold disk keeps (32), and no wait on a local SSD or disk array.
READ_AHEAD = 32


class Layout(ABC):
    """The files of one ArcGIS cache, named by paths relative to its root (``conf.xml``,
    ``_alllayers``); bundles are named by the paths :meth:`bundles` gives them."""

    @abstractmethod
    def config(self, name: str) -> bytes | None:
        """The configuration file ``name`` (``conf.xml``, ``root.json``), read up to
        :data:`~.arcgis_conf.CONFIG_CAP` + 1 bytes (the parsers refuse more); ``None`` when
        there is none.

        Raises:
            InvalidCacheConfig: it is there but cannot be read (not a file, damaged).
        """

    @abstractmethod
    def source(self, name: str) -> str:
        """How messages name the file ``name``."""

    @abstractmethod
    def levels(self, layers: str) -> LevelFolders:
        """The level folders in the folder ``layers`` (each named by what :meth:`names` and
        :meth:`bundles` take), and what is named like one and is not read.

        Raises:
            InvalidCacheConfig: the folder cannot be listed.
        """

    @abstractmethod
    def names(self, folder: str) -> Iterable[str]:
        """The names of the files in a level folder, in the same order each time.

        Raises:
            OSError: the folder cannot be listed (now, or while the names are iterated).
        """

    @abstractmethod
    def bundle_path(self, folder: str, name: str) -> str:
        """The path of the file ``name`` of a level folder, as bundles are named."""

    @abstractmethod
    def open(self, path: str) -> ByteSource:
        """The bytes of the bundle (or the ``.bundlx``) at ``path``.

        Raises:
            FileNotFoundError: there is no such file.
            CorruptBundle: it cannot be read as a file (a directory, a damaged zip member).
            OSError: it cannot be opened.
        """

    def opener(self, bundle: BundleFile, whole: bool = False) -> Opener:
        """What opens the files of ``bundle`` (itself, its ``.bundlx``) in any process:
        :meth:`open`, for the layouts whose paths say all. ``whole``: they are to be read to
        their ends (every tile), where a layout can check more then (a zip member's CRC-32)."""
        return self.open

    def read_range(self, bundle: BundleFile, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of ``bundle`` (one tile), fewer only where it ends.

        Raises:
            BundleChanging: the bundle is no longer the one :meth:`find_bundle` found.
            CorruptBundle: it cannot be read as stored.
            OSError: it cannot be read.
        """
        with self.opener(bundle)(bundle.path) as src:
            if bundle.stamp is not None and src.version.stamp != bundle.stamp:
                raise BundleChanging("rewritten since its index was read")
            return src.read(offset, size)

    @abstractmethod
    def find_bundle(self, folder: str, key: BundleKey, beside: bool) -> BundleFile | None:
        """Bundle ``key`` of the level folder ``folder``, by the name ArcGIS writes
        (``R0080C0100.bundle``), with its size and stamp; ``None`` when there is none.
        ``beside``: the ``.bundlx`` beside it is read too (Compact V1).

        Raises:
            OSError: it cannot be looked for.
        """

    def read_ahead(self, bundles: Iterable[BundleFile], length: int) -> Iterator[BundleFile]:
        """``bundles`` in their order, the first ``length`` bytes of those that follow being
        read meanwhile, where the layout can start a read without waiting for it; as they are
        here."""
        return iter(bundles)

    def bundles(self, level: int, folder: str) -> Iterator[BundleFile | Problem]:
        """The bundles of a level folder, and problems with what is not a bundle (see
        :func:`~.arcgis_folder.level_bundles`)."""
        try:
            yield from level_bundles(
                level, lambda: self.names(folder), self.bundle_path(folder, "")
            )
        except OSError as exc:
            yield Problem(
                shown(os.path.basename(folder)),
                CORRUPT,
                f"{shown(folder)}: cannot list: {exc.strerror or exc}",
            )

    def count(self, folder: str) -> int:
        """How many files of a level folder are named ``*.bundle``: one listing, no parsing."""
        try:
            return sum(1 for name in self.names(folder) if name.endswith(BUNDLE_SUFFIX))
        except OSError:
            return 0  # bundles() reports it

    def close(self) -> None:  # noqa: B027 - a folder holds nothing open
        """Release what the layout holds open."""


def _entry_names(entries: Iterator[os.DirEntry[str]]) -> Iterator[str]:
    """The names of an open directory listing, which is closed at its end."""
    with entries:  # type: ignore[attr-defined]
        yield from map(_NAME, entries)  # the loop in C: a level folder holds many names


class FolderLayout(Layout):
    """The files of a cache in a folder: ``root`` holds the configuration files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Bundle files opened by read_ahead(), their reads started, until open() takes them.
        self._ahead: dict[str, LocalFile] = {}
        # Whether read_ahead() starts reads: the bundle files are on the disk, not in memory, as
        # the first file it opens tells, then every READ_AHEAD-th.
        self._on_disk = True
        self._opened = 0

    def config(self, name: str) -> bytes | None:
        """The file ``name`` in the root folder, if there is one."""
        path = self.root / name
        return read_config_file(path) if path.exists() else None

    def source(self, name: str) -> str:
        """The file's path."""
        return str(self.root / name)

    def levels(self, layers: str) -> LevelFolders:
        """The level folders in ``root/layers``, each named by its path."""
        return list_level_folders(self.root / layers)

    def names(self, folder: str) -> Iterator[str]:
        """The names in the folder, as the file system lists them (one at a time)."""
        return _entry_names(os.scandir(folder))

    def bundle_path(self, folder: str, name: str) -> str:
        """The file's path."""
        return os.path.join(folder, name)

    def open(self, path: str) -> ByteSource:
        """The file at ``path`` (opened by :meth:`read_ahead`, if it was)."""
        source = self._ahead.pop(path, None)
        return LocalFile(path) if source is None else source

    def read_ahead(self, bundles: Iterable[BundleFile], length: int) -> Iterator[BundleFile]:
        """``bundles`` in their order, each given once the next :data:`READ_AHEAD` are open
        and their first ``length`` bytes asked of the kernel (``POSIX_FADV_WILLNEED``, which
        does not wait): a cold disk then has that many reads in flight while this process
        decodes. Files found in memory (the first opened, then every :data:`READ_AHEAD`-th,
        is asked) are not read ahead: that would cost a system call each, for nothing.
        :meth:`open` takes the opened files; those not taken are closed when the iteration
        ends. A file that cannot be opened now is opened by :meth:`open`, which says why."""
        if FADVISE_WILLNEED is None or not length:
            return iter(bundles)
        return self._read_ahead(bundles, length)

    def _read_ahead(self, bundles: Iterable[BundleFile], length: int) -> Iterator[BundleFile]:
        waiting: deque[BundleFile] = deque()
        started: list[str] = []
        try:
            for bundle in bundles:
                self._start(bundle.path, length)
                started.append(bundle.path)
                waiting.append(bundle)
                if len(waiting) > READ_AHEAD:
                    yield waiting.popleft()
            while waiting:
                yield waiting.popleft()
        finally:
            for path in started:
                source = self._ahead.pop(path, None)
                if source is not None:
                    source.close()

    def _start(self, path: str, length: int) -> None:
        """Open the file at ``path`` and start reading its first ``length`` bytes."""
        try:
            source = LocalFile(path)
        except (OSError, CorruptBundle):
            return
        try:
            source.advise_random()
            if self._opened % READ_AHEAD == 0:
                self._on_disk = not source.in_memory()
            self._opened += 1
            if self._on_disk:
                source.advise_needed(length)
        except OSError:
            source.close()
            return
        self._ahead[path] = source

    def find_bundle(self, folder: str, key: BundleKey, beside: bool) -> BundleFile | None:
        """One ``stat`` of the bundle's file: its size and ``st_mtime_ns``."""
        path = os.path.join(folder, key.name + BUNDLE_SUFFIX)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return BundleFile(key, path, size=st.st_size, stamp=st.st_mtime_ns)


class ZipLayout(Layout):
    """The files of a cache inside a zip, under ``prefix`` (``v101/Roads/``, or empty).

    Bundles are named ``<zip path>!<member name>``.
    """

    def __init__(self, archive: ZipArchive, prefix: str = "") -> None:
        self.archive = archive
        self.prefix = prefix
        #: The file names in each folder of the zip, and the folders in each folder.
        self._files: dict[str, list[str]] = {}
        self._folders: dict[str, set[str]] = {}
        for member in sorted(archive.entries):
            parts = member.split("/")
            for depth in range(1, len(parts)):
                self._folders.setdefault("/".join(parts[: depth - 1]), set()).add(parts[depth - 1])
            if parts[-1]:  # not a folder entry (``tile/L00/``)
                self._files.setdefault("/".join(parts[:-1]), []).append(parts[-1])

    def config(self, name: str) -> bytes | None:
        """The member ``prefix + name``, if there is one."""
        member = self.prefix + name
        if member not in self.archive.entries:
            return None
        return read_config(self.archive.member, member, self.source(name))

    def source(self, name: str) -> str:
        """``<zip path>!<member name>``."""
        return f"{self.archive.path}!{self.prefix}{name}"

    def levels(self, layers: str) -> LevelFolders:
        """The level folders of the zip under ``prefix + layers``, each named by its member
        folder (``tile/L05``)."""
        parent = self.prefix + layers
        return pick_level_folders(
            (name, f"{parent}/{name}", True) for name in sorted(self._folders.get(parent, ()))
        )

    def names(self, folder: str) -> list[str]:
        """The members directly in ``folder``, sorted."""
        return self._files.get(folder, [])

    def bundle_path(self, folder: str, name: str) -> str:
        """``<zip path>!<folder>/<name>``."""
        return f"{self.archive.path}!{folder}/{name}"

    def open(self, path: str) -> ByteSource:
        """The member a ``<zip path>!<member name>`` path names."""
        return self.archive.member(path[len(f"{self.archive.path}!") :])

    def opener(self, bundle: BundleFile, whole: bool = False) -> Opener:
        """:meth:`open`; with ``whole``, members read through :mod:`zipfile` from their starts
        to their ends, which checks their CRC-32 (a damaged stored bundle is then ``CORRUPT``
        in ``verify``, as a deflated one is)."""
        if not whole:
            return self.open
        prefix = len(f"{self.archive.path}!")
        return lambda path: self.archive.member(path[prefix:], whole=True)

    def find_bundle(self, folder: str, key: BundleKey, beside: bool) -> BundleFile | None:
        """From the zip's member list: the member's size, the package's stamp as opened."""
        name = key.name + BUNDLE_SUFFIX
        info = self.archive.entries.get(f"{folder}/{name}")
        if info is None:
            return None
        path = self.bundle_path(folder, name)
        return BundleFile(key, path, size=info.file_size, stamp=self.archive.version.stamp)

    def close(self) -> None:
        """Close the zip."""
        self.archive.close()


class ObjectLayout(Layout):
    """The files of a cache in object storage: ``root`` (a path relative to the storage's
    location) holds the configuration files; folders and bundles are named by full keys.

    Everything comes from listings, which give each object's size and ETag: a bundle carries
    them (:attr:`~.base.BundleFile.size`, :attr:`~.base.BundleFile.stamp`, and its ``.bundlx``
    as its payload), so that any process reads it by ranges pinned to the listed ETag without
    asking anything more.
    """

    def __init__(self, storage: ObjectStorage, root: str, objects: list[ObjectEntry]) -> None:
        self.storage, self.root = storage, root
        #: The objects in the root folder, by name.
        self._files = {entry.key.rsplit("/", 1)[-1]: entry for entry in objects}
        #: The objects of the level folder listed last, by key, and that folder.
        self._listed: dict[str, ObjectEntry] = {}
        self._listed_folder: str | None = None
        #: The configuration files read, by name: read once, whoever asks (detection, then
        #: the reader).
        self._configs: dict[str, bytes | None] = {}

    @classmethod
    def find(cls, storage: ObjectStorage) -> tuple[ObjectLayout, str] | None:
        """The layout of the cache at ``storage``'s location and the name of its ``conf.xml``
        (found in any case, in one listing of the folder, or of its ``Layers`` folder, or of
        the folder of the ``conf.xml`` the location names); ``None`` without one.

        Raises:
            StorageError: the location cannot be listed.
        """
        location = storage.location
        if location.name.lower() == "conf.xml":  # the file itself: its folder is the cache
            parent = location.key.rsplit("/", 1)[0] if "/" in location.key else ""
            storage = type(storage)(replace(location, key=parent))
        roots = ["", "Layers"]
        for root in roots:
            folders, objects = storage.list_dir(root)
            conf = next(
                (e for e in objects if e.key.rsplit("/", 1)[-1].lower() == "conf.xml"), None
            )
            if conf is not None:
                return cls(storage, root, objects), conf.key.rsplit("/", 1)[-1]
            if "Layers" not in folders:
                break
        return None

    def config(self, name: str) -> bytes | None:
        """The object ``name`` of the root folder, if there is one (as first read)."""
        if name not in self._configs:
            entry = self._files.get(name)
            self._configs[name] = (
                None
                if entry is None
                else read_config(lambda _: self.storage.source(entry), name, self.source(name))
            )
        return self._configs[name]

    def source(self, name: str) -> str:
        """The object's URL."""
        return self.storage.location.child(f"{self.root}/{name}").url

    def key(self, name: str) -> str:
        """The full key of ``name``, a path relative to the root."""
        return self.storage.full_key(f"{self.root}/{name}".strip("/"))

    def levels(self, layers: str) -> LevelFolders:
        """The level folders under ``root/layers``, each named by its full key."""
        folders, _ = self.storage.list_dir(f"{self.root}/{layers}".strip("/"))
        base = self.key(layers)
        return pick_level_folders((name, f"{base}/{name}", True) for name in sorted(folders))

    def names(self, folder: str) -> list[str]:
        """The objects directly in the level folder (full key ``folder``): one listing, kept
        until another folder is listed."""
        if folder != self._listed_folder:
            prefix = folder[len(self.storage.location.key) :].strip("/")
            _, objects = self.storage.list_dir(prefix)
            self._listed = {entry.key: entry for entry in objects}
            self._listed_folder = folder
        return [key.rsplit("/", 1)[-1] for key in self._listed]

    def bundle_path(self, folder: str, name: str) -> str:
        """The object's full key."""
        return f"{folder}/{name}"

    def bundles(self, level: int, folder: str) -> Iterator[BundleFile | Problem]:
        """:meth:`Layout.bundles`, each bundle with its listed size and ETag, and its
        ``.bundlx`` (if any) as its payload."""
        try:
            for found in super().bundles(level, folder):
                yield _as_listed(found, self._listed)
        finally:
            self._listed_folder = None  # the next listing of the folder asks again

    @property
    def lists_parts(self) -> bool:
        """Whether a level folder is listed in parts (:meth:`part`): where a listing starts
        at a key (:data:`~cachestatus.storage.objects.STARTS_AT_A_KEY`)."""
        from ..storage.objects import STARTS_AT_A_KEY

        return self.storage.location.scheme in STARTS_AT_A_KEY

    def part(self, part: Part, folder: str) -> PartListing:
        """The bundles of one part of the level folder (full key ``folder``): one listing of
        the part's names, read as :meth:`bundles` reads the folder's
        (:func:`~.arcgis_folder.placed_bundles`); a bundle whose name ArcGIS writes is looked
        for (one ``HEAD``) when another of its names is in the part and that one is not."""
        prefix = folder[len(self.storage.location.key) :].strip("/")
        odd = OddNames(part.level)
        try:
            listed = {e.key: e for e in self.storage.list_between(prefix, part.start, part.stop)}
            names = [key.rsplit("/", 1)[-1] for key in listed]
            found = [
                _as_listed(f, listed)
                for f in placed_bundles(part.level, lambda: names, f"{folder}/", odd)
            ]
        except OSError as exc:  # said as the folder's listing says it (Layout.bundles)
            problem = Problem(
                shown(os.path.basename(folder)),
                CORRUPT,
                f"{shown(folder)}: cannot list: {exc.strerror or exc}",
            )
            return PartListing([problem], OddNames(part.level), 0)
        for key, files in odd.files.items():
            odd.files[key] = {name: _listed_file(f, listed) for name, f in files.items()}
            name = key.name + BUNDLE_SUFFIX
            if (part.start or "") <= name and (part.stop is None or name < part.stop):
                continue  # in the part: listed, or not there
            if self.find_bundle(folder, key, beside=False) is not None:
                odd.canonical.add(key)
        return PartListing(found, odd, len(names))

    def find_bundle(self, folder: str, key: BundleKey, beside: bool) -> BundleFile | None:
        """One ``HEAD`` of the bundle's object (and one of its ``.bundlx``, ``beside``): its
        size and ETag, as a listing gives them."""
        path = self.bundle_path(folder, key.name + BUNDLE_SUFFIX)
        try:
            entry = self.storage.head(path)
        except FileNotFoundError:
            return None
        index = None
        if beside:
            with contextlib.suppress(FileNotFoundError):  # reading it says so
                index = self.storage.head(path[: -len(BUNDLE_SUFFIX)] + _BUNDLX_SUFFIX)
        return BundleFile(key, path, payload=index, size=entry.size, stamp=entry.stamp)

    def open(self, path: str) -> ByteSource:
        """The object at the full key ``path``, as listed (asked for when it was not).

        Raises:
            FileNotFoundError: there is no such object.
        """
        entry = self._listed.get(path)
        return self.storage.source(entry if entry is not None else self.storage.head(path))

    def opener(self, bundle: BundleFile, whole: bool = False) -> Opener:
        """What opens ``bundle`` and its ``.bundlx`` from what the listing gave them."""
        from ..storage import ObjectEntry

        assert bundle.size is not None and isinstance(bundle.stamp, str), "a listed object"
        entries = {bundle.path: ObjectEntry(bundle.path, bundle.size, bundle.stamp, None)}
        if bundle.payload is not None:
            entries[bundle.payload.key] = bundle.payload

        def open_listed(path: str) -> ByteSource:
            entry = entries.get(path)
            if entry is None:
                raise FileNotFoundError(errno.ENOENT, "not in the listing", path)
            return self.storage.source(entry)

        return open_listed


def _as_listed(found: BundleFile | Problem, listed: dict[str, ObjectEntry]) -> BundleFile | Problem:
    """What a level folder's listing found, a bundle with what was listed for it
    (:func:`_listed_file`)."""
    return _listed_file(found, listed) if isinstance(found, BundleFile) else found


def _listed_file(bundle: BundleFile, listed: dict[str, ObjectEntry]) -> BundleFile:
    """A bundle of a level folder's listing with its listed size and ETag, and its ``.bundlx``
    (if listed) as its payload."""
    entry = listed[bundle.path]
    index = listed.get(bundle.path[: -len(BUNDLE_SUFFIX)] + _BUNDLX_SUFFIX)
    return bundle._replace(payload=index, size=entry.size, stamp=entry.stamp)
