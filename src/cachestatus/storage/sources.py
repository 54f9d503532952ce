"""An object read by ranges, as the codecs read bytes: a byte source, or a seekable file.

Every read is pinned to the ETag the listing gave (``If-Match``), so the bytes of one source all
come from one version of the object: a replaced object raises
:class:`~cachestatus.errors.BundleChanging` on the read that sees it. Sizes come from the
listing too: nothing is asked past the listed end, so a 0-byte object reads as empty bytes (a
``CORRUPT`` bundle, as the codecs decide from them), never as a failed request.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, BinaryIO

from ..formats.bytesource import ByteSource, Version

if TYPE_CHECKING:
    from .objects import ObjectEntry, ObjectStorage

#: Bytes a seekable object file reads at once (a zip's central directory, its members).
FILE_BUFFER = 256 * 1024


class ObjectSource(ByteSource):
    """An object of a bucket, read by ranges pinned to its listed ETag."""

    __slots__ = ("_entry", "_storage")

    def __init__(self, storage: ObjectStorage, entry: ObjectEntry) -> None:
        self._storage, self._entry = storage, entry
        self.size, self.modified = entry.size, entry.modified
        self.version = Version(entry.size, entry.stamp)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (never past the listed size)."""
        length = min(length, self.size - offset)
        return self._storage.read(self._entry.key, offset, length, self._entry.stamp)

    def readinto(self, offset: int, view: memoryview) -> int:
        """:meth:`read` into ``view``."""
        data = self.read(offset, len(view))
        view[: len(data)] = data
        return len(data)

    def current_version(self) -> Version:
        """The version as listed: a read of another version raises instead (``If-Match``)."""
        return self.version

    def close(self) -> None:
        """Nothing is held open between reads."""


class _ObjectRaw(io.RawIOBase):
    """The unbuffered file under :func:`object_file`."""

    def __init__(self, source: ObjectSource) -> None:
        self._source, self._pos = source, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._source.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        got = self._source.readinto(self._pos, memoryview(buffer).cast("B"))
        self._pos += got
        return got


def object_file(storage: ObjectStorage, entry: ObjectEntry) -> BinaryIO:
    """``entry`` as a read-only, seekable, buffered file; reads pinned to its listed ETag."""
    raw = _ObjectRaw(ObjectSource(storage, entry))
    return io.BufferedReader(raw, buffer_size=FILE_BUFFER)
