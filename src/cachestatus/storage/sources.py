"""An object read by ranges, as the codecs read bytes: a byte source, or a seekable file.

Every read is pinned to the ETag the listing gave (``If-Match``), so the bytes of one source all
come from one version of the object: a replaced object raises
:class:`~cachestatus.errors.BundleChanging` on the read that sees it. Sizes come from the
listing too: nothing is asked past the listed end, so a 0-byte object reads as empty bytes (a
``CORRUPT`` bundle, as the codecs decide from them), never as a failed request.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO

from ..formats.bytesource import ByteSource, SourceFile, Version

if TYPE_CHECKING:
    from .objects import ObjectEntry, ObjectStorage

#: Bytes a seekable object file reads at once (a zip's central directory, its members).
FILE_BUFFER = 256 * 1024
#: Reads shorter than this are served from a block of :data:`READ_AHEAD` bytes read at once
#: (and words closer than this share a request: :meth:`ObjectSource.read_words`). Longer reads
#: (a V2 header and index) are asked for as they are.
SMALL_READ, READ_AHEAD = 64 * 1024, 1024 * 1024


class ObjectSource(ByteSource):
    """An object of a bucket, read by ranges pinned to its listed ETag."""

    __slots__ = ("_block", "_entry", "_storage")

    def __init__(self, storage: ObjectStorage, entry: ObjectEntry) -> None:
        self._storage, self._entry = storage, entry
        self.size, self.modified = entry.size, entry.modified
        self.version = Version(entry.size, entry.stamp)
        #: The last block read ahead: its offset and bytes.
        self._block: tuple[int, bytes] = (0, b"")

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (never past the listed size); short reads through a
        block read ahead."""
        length = min(length, self.size - offset)
        if length <= 0:
            return b""
        if length >= SMALL_READ:
            return self._fetch(offset, length)
        start, block = self._block
        if not start <= offset or offset + length > start + len(block):
            block = self._fetch(offset, max(length, min(READ_AHEAD, self.size - offset)))
            start, self._block = offset, (offset, block)
        return block[offset - start : offset - start + length]

    def read_words(self, offsets: Sequence[int], size: int) -> bytes:
        """See :meth:`ByteSource.read_words`: words less than :data:`SMALL_READ` apart share
        one request, with the bytes between them, up to :data:`READ_AHEAD` bytes; a word
        farther from the last is asked for alone. The size words of a Compact V1 bundle of
        small tiles cost a request per block, and those of large tiles never fetch their
        bodies."""
        found = bytearray()
        first = 0
        while first < len(offsets):
            start, last = offsets[first], first
            while (
                last + 1 < len(offsets)
                and offsets[last + 1] - offsets[last] - size <= SMALL_READ
                and offsets[last + 1] + size - start <= READ_AHEAD
            ):
                last += 1
            length = min(offsets[last] + size, self.size) - start
            block = self._fetch(start, length) if length > 0 else b""
            for offset in offsets[first : last + 1]:
                word = block[offset - start : offset - start + size]
                found += word
                if len(word) != size:
                    return bytes(found)
            first = last + 1
        return bytes(found)

    def _fetch(self, offset: int, length: int) -> bytes:
        data, modified = self._storage.read_timed(
            self._entry.key, offset, length, self._entry.stamp
        )
        if modified is not None:
            self.modified = modified
        return data

    def current_version(self) -> Version:
        """The version as listed: a read of another version raises instead (``If-Match``)."""
        return self.version

    def close(self) -> None:
        """Nothing is held open between reads."""


def object_file(storage: ObjectStorage, entry: ObjectEntry) -> BinaryIO:
    """``entry`` as a read-only, seekable, buffered file; reads pinned to its listed ETag."""
    return io.BufferedReader(SourceFile(ObjectSource(storage, entry)), buffer_size=FILE_BUFFER)
