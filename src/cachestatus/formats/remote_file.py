"""Single-file caches read where they are published: in object storage or over HTTP(S).

A tile package (``.tpkx``, ``.tpk``) or a PMTiles archive is one object, read by ranges, never
downloaded whole: a zip's end record and central directory, then each bundle member's local
header and index; an archive's header and directories. The object is asked for once, when the
reader opens it (its size and ETag); every read after is pinned to that ETag, so an object
replaced meanwhile makes its bundles ``IN_PROGRESS`` (a zip member) or refuses the archive (a
PMTiles directory), as a local file that changes while it is read does.

Over plain HTTP nothing is listed: the URL names the file, and its suffix says its format.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ..errors import CacheNotFound
from .base import SingleFileCache
from .bytesource import ByteSource, LocalFile, ZipArchive

if TYPE_CHECKING:
    from ..storage import ObjectEntry, ObjectStorage


class RemoteFile(SingleFileCache):
    """A single-file cache that is read from a local path, or from object storage or an HTTP
    server by ranges (:meth:`open_remote`)."""

    #: The object read, as found when the reader opened it; ``None`` for a local file.
    _object: tuple[ObjectStorage, ObjectEntry] | None = None

    @classmethod
    def detect_remote(cls, storage: ObjectStorage) -> bool:
        """A URL naming a file with the format's suffix (nothing is asked of the server)."""
        return storage.location.name.lower().endswith(cls.suffix)

    @classmethod
    def open_remote(cls, storage: ObjectStorage, **options: Any) -> Self:
        """The file at ``storage``'s location, read by ranges.

        Raises:
            CacheNotFound: there is no such object.
            StorageError: the server refused the request or could not be reached.
        """
        location = storage.location
        try:
            entry = storage.head(location.key)
        except FileNotFoundError:
            raise CacheNotFound(
                f"{location.url}: no such object; give the URL of a .tpkx, .tpk or .pmtiles file"
            ) from None
        reader = cls.__new__(cls)
        reader.location, reader._object = location, (storage, entry)
        cls.__init__(reader, Path(location.url), **options)
        return reader

    def _file_source(self) -> ByteSource:
        """The file's bytes, opened for one pass: the local file, or the object as found when
        the reader opened it (its reads pinned to its ETag)."""
        if self._object is None:
            return LocalFile(str(self.path))
        storage, entry = self._object
        return storage.source(entry)

    def _zip_archive(self) -> ZipArchive:
        """The file as a zip, its member list read.

        Raises:
            InvalidCacheConfig: it is not a readable zip.
        """
        if self._object is None:
            return ZipArchive(self.path)
        return ZipArchive(self.where, self._file_source())
