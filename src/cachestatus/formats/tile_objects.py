"""Tile folder caches in object storage: ArcGIS exploded caches and XYZ/TMS folders, read from
object listings.

A listing gives every object's name, size and ETag, a thousand keys a request: each level is
listed once, recursively (every tile of every row or column folder, with its size), and no tile
object is asked for to make a status. Which names are tiles, and what is reported about the
others, is decided as for a local folder (:func:`~.tile_folders.list_tile_objects`). Tiles are
read (``verify``, ``--blank``) one request each, pinned to the ETag their folder's listing gave.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Run
from .bytesource import ByteSource, Opener
from .tile_folders import (
    Entry,
    FolderTree,
    How,
    Job,
    Listed,
    TileLister,
    check_tile_size,
    list_tile_objects,
)

if TYPE_CHECKING:
    from ..storage import ObjectEntry, ObjectStorage

#: Why an object named like a folder is not gone into.
_AN_OBJECT = "an object, not a folder"


class ObjectTree(FolderTree):
    """The files of a tile folder cache in object storage, named by full keys."""

    def __init__(self, storage: ObjectStorage) -> None:
        self.storage = storage

    def _prefix(self, folder: str) -> str:
        """``folder`` (a full key) relative to the storage's location."""
        return folder[len(self.storage.location.key) :].strip("/")

    def entries(self, folder: str) -> list[Entry]:
        """One listing of the folder's level (``list_dir``); a name that is both an object and
        a folder is the folder."""
        folders, objects = self.storage.list_dir(self._prefix(folder))
        found = {entry.key.rsplit("/", 1)[-1]: (entry.key, False) for entry in objects}
        found.update({name: (self.join(folder, name), True) for name in folders})
        return sorted((name, path, is_dir) for name, (path, is_dir) in found.items() if name)

    def level(self, folder: str) -> tuple[list[Entry], TileLister]:
        """One recursive listing of the level folder: its entries (the row or column folders
        are the first component of the keys below it), and the names and sizes of the objects
        of each, listed from it."""
        prefix = self.join(folder, "")
        direct: dict[str, bool] = {}
        files: dict[str, tuple[list[str], list[int]]] = {}
        below: dict[str, set[str]] = {}
        for entry in self.storage.list(self._prefix(folder)):
            if not entry.key.startswith(prefix):
                continue
            head, sep, rest = entry.key[len(prefix) :].partition("/")
            if not sep:
                direct.setdefault(head, False)
                continue
            direct[head] = True
            name, deeper, _ = rest.partition("/")
            if deeper:
                below.setdefault(head, set()).add(name)
            else:
                names, sizes = files.setdefault(head, ([], []))
                names.append(name)
                sizes.append(entry.size)
        entries = sorted(
            (name, self.join(folder, name), is_dir) for name, is_dir in direct.items() if name
        )

        def list_folders(how: How, jobs: list[Job], run: Run) -> list[Listed]:
            listed: list[Listed] = []
            for number, path, limit in jobs:
                name = path.rsplit("/", 1)[-1]
                names, sizes = files.get(name, ([], []))
                found = list_tile_objects(names, sizes, below.get(name, ()), how, limit)
                listed.append((number, path, found))
            return listed

        return entries, list_folders

    def why_not_a_folder(self, path: str) -> str:
        """An object, whatever it holds."""
        return _AN_OBJECT

    def files(self, folder: str) -> list[tuple[str, Any]]:
        """The objects of the folder (one ``list_dir``), each with its listing entry."""
        _, objects = self.storage.list_dir(self._prefix(folder))
        return [(entry.key.rsplit("/", 1)[-1], entry) for entry in objects]

    def read(self, file: Any) -> bytes:
        """The listed object ``file`` (an :class:`~cachestatus.storage.ObjectEntry`), whole, in
        one request pinned to its ETag."""
        entry: ObjectEntry = file
        check_tile_size(entry.size)
        return self.storage.read(entry.key, 0, entry.size, entry.stamp)

    def opener(self, path: str) -> Opener | None:
        """The object at the full key ``path`` as found now (one ``HEAD``), if there is one."""
        try:
            entry = self.storage.head(path)
        except FileNotFoundError:
            return None

        def open_object(_: str) -> ByteSource:
            return self.storage.source(entry)

        return open_object

    def join(self, folder: str, name: str) -> str:
        """``folder/name``."""
        return f"{folder}/{name}" if folder else name

    def relative(self, path: str, folder: str) -> str:
        """The keys below ``folder``; ``.`` for the folder itself (as ``os.path.relpath``)."""
        if path == folder:
            return "."
        prefix = self.join(folder, "")
        return path[len(prefix) :] if path.startswith(prefix) else path
