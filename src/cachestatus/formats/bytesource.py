"""Where a bundle's bytes come from: a file, or a member of a zip, behind one interface.

A :class:`ByteSource` reads bytes at any offset, knows its size and tells whether it changed while
it was read (its :class:`Version`: size and modification time for a file, size and ETag for an
object). Codecs read bundles
through it and never see the container. What reading a damaged or changing source raises is
turned here, in one place, into :class:`~cachestatus.errors.CorruptBundle` (a ``CORRUPT`` row)
or :class:`~cachestatus.errors.BundleChanging` (an ``IN_PROGRESS`` row); an ``OSError`` stays one
(a file that cannot be read).

The file helpers (:func:`open_regular`, :func:`read_exactly`...) serve every reader that opens a
cache file itself.
"""

from __future__ import annotations

import bisect
import errno
import io
import os
import stat
import struct
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NamedTuple, Self

from ..errors import BundleChanging, CorruptBundle, InvalidCacheConfig

#: ``os.open`` flags for reading a cache file (binary on Windows).
O_RDONLY = os.O_RDONLY | getattr(os, "O_BINARY", 0)
#: Turns the kernel's read-ahead off for a descriptor, where the platform has it (not Windows
#: nor macOS): ``None`` there.
_FADVISE_RANDOM = getattr(os, "POSIX_FADV_RANDOM", None) if hasattr(os, "posix_fadvise") else None
#: Asks the kernel to start reading a range now, without waiting for it, where the platform has
#: it: ``None`` elsewhere.
FADVISE_WILLNEED = (
    getattr(os, "POSIX_FADV_WILLNEED", None) if hasattr(os, "posix_fadvise") else None
)
#: Makes a read fail rather than wait for the disk (``preadv2``), where the platform has it.
_READ_NOWAIT = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None
#: Most bytes deflate can make of one compressed byte (1032:1), with room to spare.
MAX_RATIO = 1100
#: Bytes a zip read from a :class:`ByteSource` reads at once: a member's local header (30 bytes,
#: its name and extra field, less than 4 KiB) and a Compact V2 bundle's header and index
#: (131,136 bytes) in one read.
ZIP_BUFFER = 131_136 + 4096
#: What reading a damaged zip member raises: a bad header or CRC, a broken deflate stream, data
#: that ends early; RuntimeError for an encrypted member, NotImplementedError (a RuntimeError)
#: for an unknown compression method.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, ValueError)
#: A zip's local file header: 30 bytes, the lengths of the name and the extra field (u16) at 26.
_ZIP_LOCAL_HEADER_SIZE = 30
_ZIP_LOCAL_LENGTHS = struct.Struct("<HH")
#: The signature a zip (its first local file header) starts with.
ZIP_LOCAL_HEADER = b"PK\x03\x04"
#: The general purpose flag of an encrypted member.
_ZIP_ENCRYPTED = 0x1


def not_a_file(mode: int, directory: str = "a directory") -> str:
    """What a path that is not a regular file is, from its ``st_mode``: ``directory`` (the word
    the message uses for one), or a special file."""
    return directory if stat.S_ISDIR(mode) else "a special file (FIFO, device, socket)"


def named_like(mode: int, what: str) -> str:
    """Why a path named like a ``what`` (``bundle``, ``tile``) is not read, from its
    ``st_mode``: ``not a file: a directory named like a tile``."""
    return f"not a file: {not_a_file(mode)} named like a {what}"


def open_regular(path: str, what: str = "bundle") -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file at ``path``, and its stat as opened.

    Opened without blocking, so that a FIFO named like a bundle cannot hang a scan.

    Raises:
        CorruptBundle: the path is a directory, a FIFO or a device, not a file (the message
            calls it named like a ``what``).
        OSError: it cannot be opened.
    """
    fd = os.open(path, O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CorruptBundle(named_like(st.st_mode, what))
    return fd, st


def read_at(fd: int, view: memoryview, offset: int) -> int:
    """Read into ``view`` from byte ``offset`` of ``fd`` (one call, maybe short); bytes read.

    ``os.preadv`` reads without a copy where it exists; Windows has neither it nor ``pread``,
    there the file position is moved and ``os.read`` used (readers hold their own descriptors).
    """
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    os.lseek(fd, offset, os.SEEK_SET)
    chunk = os.read(fd, len(view))
    view[: len(chunk)] = chunk
    return len(chunk)


def read_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from byte ``offset`` of ``fd``, looping over short reads (network shares);
    bytes read, fewer only where the file ends."""
    got = read_at(fd, view, offset)
    while 0 < got < len(view):
        n = read_at(fd, view[got:], offset + got)
        if n == 0:
            break
        got += n
    return got


def read_exactly(fd: int, offset: int, length: int, end: int) -> bytes:
    """``length`` bytes from byte ``offset`` of ``fd``, fewer only where the file ends (at
    ``end``, its size, or sooner)."""
    view = memoryview(bytearray(max(0, min(length, end - offset))))  # never more than there is
    return bytes(view[: read_into(fd, view, offset)])


class Version(NamedTuple):
    """What tells one state of a source from another: equal versions, the same bytes."""

    #: Size in bytes of what the version is of (a file; for a zip member, its package).
    size: int
    #: What else changes when it is written: the modification time in nanoseconds (a file), the
    #: ETag (an object in a bucket).
    stamp: int | str


def stat_version(st: os.stat_result) -> Version:
    """The version of a file as ``os.stat`` tells it: its size and modification time."""
    return Version(st.st_size, st.st_mtime_ns)


class ByteSource(ABC):
    """The bytes of one bundle file, read at any offset; a context manager that closes it.

    Sources are made per read of a bundle, so they are small: what they were opened with, no
    buffers.
    """

    __slots__ = ("modified", "size", "version")

    #: Size in bytes, as opened.
    size: int
    #: The source's version as opened (see :meth:`check_unchanged`).
    version: Version
    #: Modification time, seconds since the epoch (UTC), if known.
    modified: float | None

    @abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from byte ``offset``, fewer only where the source ends.

        Raises:
            CorruptBundle: the bytes cannot be read as stored (a damaged zip member).
            OSError: the source cannot be read.
        """

    def readinto(self, offset: int, view: memoryview) -> int:
        """:meth:`read` into ``view`` (its length); the bytes read. Sources that can read
        without a copy (a file) override it."""
        data = self.read(offset, len(view))
        view[: len(data)] = data
        return len(data)

    def read_words(self, offsets: Sequence[int], size: int) -> bytes:
        """``size`` bytes at each of ``offsets`` (in increasing order), joined; shorter only
        where the source ends inside a word (the words before it, and what there is of it).
        One :meth:`readinto` per word; sources that can read many words in fewer requests
        (an object) override it."""
        buf = bytearray(size * len(offsets))
        view = memoryview(buf)
        for i, offset in enumerate(offsets):
            got = self.readinto(offset, view[size * i : size * (i + 1)])
            if got != size:
                return bytes(view[: size * i + got])
        return bytes(buf)

    @abstractmethod
    def current_version(self) -> Version:
        """The source's version now (a file's: one ``fstat``)."""

    @abstractmethod
    def close(self) -> None:
        """Release what the source holds open."""

    def advise_random(self) -> None:  # noqa: B027 - most sources have nothing to advise
        """Say that the reads to come are few and scattered (one index): a file turns the
        kernel's read-ahead off, which would otherwise bring a megabyte into memory behind
        every read. Sources with nothing to advise ignore it."""

    def check_unchanged(self) -> None:
        """Raise :class:`BundleChanging` when the source's version moved since it was opened.

        Called once its bytes are read: a caching job writing the bundle meanwhile would
        otherwise make a count that mixes two states of it.
        """
        after = self.current_version()
        if after != self.version:
            raise _changed(self.version, after)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _changed(before: Version, after: Version) -> BundleChanging:
    return BundleChanging(
        f"changed while being read ({before.size:,} -> {after.size:,} "
        "bytes); a caching job is writing it"
    )


#: Opens the source of a bundle (or of a file beside it, a ``.bundlx``) named by its path.
Opener = Callable[[str], ByteSource]


class LocalFile(ByteSource):
    """A regular file, read with ``preadv`` (no copy) through a descriptor of its own.

    Raises:
        CorruptBundle: the path is not a regular file (a directory, a FIFO, a device).
        OSError: it cannot be opened (``FileNotFoundError`` when nothing is there).
    """

    __slots__ = ("_fd", "_random")

    def __init__(self, path: str) -> None:
        self._fd, st = open_regular(path)
        self._random = False
        self.size, self.modified = st.st_size, st.st_mtime
        self.version = Version(st.st_size, st.st_mtime_ns)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (never more than the file held when opened)."""
        return read_exactly(self._fd, offset, length, self.size)

    def readinto(self, offset: int, view: memoryview) -> int:
        """Fill ``view`` from ``offset``, looping over short reads."""
        return read_into(self._fd, view, offset)

    def current_version(self) -> Version:
        """The file's size and modification time now."""
        return stat_version(os.fstat(self._fd))

    def advise_random(self) -> None:
        """``posix_fadvise(POSIX_FADV_RANDOM)`` where the platform has it: a cold read of an
        index then costs the index's bytes, not the kernel's read-ahead window (1 MiB or more,
        zero-filled on sparse bundles, read from the disk on dense ones)."""
        if _FADVISE_RANDOM is not None and not self._random:
            os.posix_fadvise(self._fd, 0, 0, _FADVISE_RANDOM)
            self._random = True

    def advise_needed(self, length: int) -> None:
        """``posix_fadvise(POSIX_FADV_WILLNEED)`` of the first ``length`` bytes, where the
        platform has it: the kernel starts reading them from the disk and returns at once, so
        that many such reads are in flight while earlier bundles are decoded."""
        if FADVISE_WILLNEED is not None:
            os.posix_fadvise(self._fd, 0, length, FADVISE_WILLNEED)

    def in_memory(self) -> bool:
        """Whether the file's first byte can be had without waiting for the disk: a read of
        it that may not wait (``preadv2`` with ``RWF_NOWAIT``) gets it. False where that
        cannot be told.

        A read that misses starts reading the page it missed (and the kernel's read-ahead
        window, unless :meth:`advise_random` was called first), so the page is usually in
        memory after a False; on storage quick enough to finish that read within the call,
        the answer is True, which is right for the read-ahead choice it serves."""
        if _READ_NOWAIT is None:
            return False
        try:
            os.preadv(self._fd, [bytearray(1)], 0, _READ_NOWAIT)
        except OSError:  # BlockingIOError: on the disk; EOPNOTSUPP: a file system that cannot tell
            return False
        return True

    def check_unchanged(self) -> None:
        """See :meth:`ByteSource.check_unchanged`: one ``fstat``, compared as it comes."""
        st = os.fstat(self._fd)
        if (st.st_size, st.st_mtime_ns) != self.version:
            raise _changed(self.version, stat_version(st))

    def close(self) -> None:
        """Close the descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class SourceFile(io.RawIOBase):
    """A :class:`ByteSource` as a read-only, seekable binary file, for :mod:`zipfile`.

    Wrapped in an :class:`io.BufferedReader` of :data:`ZIP_BUFFER` bytes by :class:`ZipArchive`,
    so that opening a member and reading a bundle's index is one read of the source (one
    request, for an object read by ranges).
    """

    def __init__(self, source: ByteSource) -> None:
        super().__init__()
        self._source, self._pos = source, 0

    def readable(self) -> bool:
        """Always."""
        return True

    def seekable(self) -> bool:
        """Always."""
        return True

    def tell(self) -> int:
        """The position."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position (past the end is allowed; reads there give nothing; before the
        start is an ``OSError``, as for a file: :mod:`zipfile` expects one)."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._source.size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the position; the bytes read (0 at the end)."""
        got = self._source.readinto(self._pos, memoryview(buffer).cast("B"))
        self._pos += got
        return got


class ZipArchive:
    """A zip opened for reading its members in place, never extracted: a file, or any
    :class:`ByteSource` (an object in storage, read by ranges).

    Its member list is read once, when it is opened. A member changes only with its package: the
    package's version as opened is every member's. An object's version is its size and ETag,
    its reads failing with :class:`~cachestatus.errors.BundleChanging` once it is replaced.

    Args:
        path: the package's path, or how messages name the source (its URL).
        source: the package's bytes, closed with the archive; ``None`` opens ``path``.

    Raises:
        InvalidCacheConfig: the file is not a readable zip, or changed while its member list
            was read.
    """

    def __init__(self, path: Path | str, source: ByteSource | None = None) -> None:
        self.path = path
        self._source = source
        try:
            if source is None:
                self._zip: zipfile.ZipFile | None = zipfile.ZipFile(path)
            else:
                file = io.BufferedReader(SourceFile(source), buffer_size=ZIP_BUFFER)
                self._zip = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError) as exc:
            self._close_source()
            raise InvalidCacheConfig(f"{path}: not a readable zip ({exc})") from None
        except BundleChanging as exc:
            self._close_source()
            raise InvalidCacheConfig(
                f"{path}: {exc.reason}; its member list was being read: try again"
            ) from None
        #: Where the bytes of each stored member read so far start in the package.
        self._starts: dict[str, int] = {}
        try:
            #: The members by name.
            self.entries = {info.filename: info for info in self._zip.infolist()}
            #: The package's version when opened.
            self.version = self.current_version()
        except BaseException:
            self.close()
            raise

    def zip(self) -> zipfile.ZipFile:
        """The open zip.

        Raises:
            ValueError: the archive is closed.
        """
        if self._zip is None:
            raise ValueError(f"{self.path}: the zip is closed")
        return self._zip

    def current_version(self) -> Version:
        """The package's version now: a file's size and modification time, a source's
        version."""
        fp = self.zip().fp
        assert fp is not None, "the zip is open"
        if self._source is not None:
            return self._source.current_version()
        return stat_version(os.fstat(fp.fileno()))

    def member(self, name: str, whole: bool = False) -> ZipMember:
        """The member ``name`` as a source; ``whole``: to be read from its start to its end,
        through :mod:`zipfile`, which checks its CRC-32 there (see :class:`ZipMember`).

        Raises:
            FileNotFoundError: the zip has no such member.
            CorruptBundle: the member cannot be read (see :class:`ZipMember`).
        """
        info = self.entries.get(name)
        if info is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), f"{self.path}!{name}")
        return ZipMember(self, info, whole)

    def package(self) -> tuple[ByteSource, bool]:
        """The package's own bytes, to read a stored member in place, and whether the caller
        closes them: the source the archive was opened on (shared, its reads pinned to its
        version: not to be closed), or the local file opened anew (a descriptor per reader:
        safe from many threads).

        Raises:
            BundleChanging: the local file changed since the archive was opened.
            OSError: it cannot be opened.
        """
        if self._source is not None:
            return self._source, False
        package = LocalFile(str(self.path))
        if package.version != self.version:
            package.close()
            raise _changed(self.version, package.version)
        return package, True

    def locate(self, info: zipfile.ZipInfo, package: ByteSource) -> tuple[int, bytes]:
        """Where the bytes of the stored member ``info`` start in the package, and its first
        bytes when its local header had to be read for that (then in one read of up to
        :data:`ZIP_BUFFER` bytes, which holds a bundle's index: one request for an object);
        the start is kept, so later opens of the member read nothing first (``b""``).

        Raises:
            CorruptBundle: the member's local header is not where the directory says.
        """
        start = self._starts.get(info.filename)
        if start is not None:
            return start, b""
        # The local header repeats the directory's name, and its extra field is about as long:
        # read no further than the member's end, give or take (a short head costs a read).
        extent = _ZIP_LOCAL_HEADER_SIZE + len(info.orig_filename.encode()) + len(info.extra)
        # As one word: exactly those bytes, never an object's read-ahead block of a small read.
        want = min(ZIP_BUFFER, extent + 64 + info.file_size)
        head = package.read_words([info.header_offset], want)
        if len(head) < _ZIP_LOCAL_HEADER_SIZE or head[:4] != ZIP_LOCAL_HEADER:
            raise CorruptBundle(
                f"the zip entry's local header is not at byte {info.header_offset:,}"
            )
        name_length, extra_length = _ZIP_LOCAL_LENGTHS.unpack_from(head, 26)
        skip = _ZIP_LOCAL_HEADER_SIZE + name_length + extra_length
        start = self._starts[info.filename] = info.header_offset + skip
        return start, head[skip : skip + info.file_size]

    def close(self) -> None:
        """Close the zip (and the source it was read from); the archive then refuses to read."""
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        self._close_source()

    def _close_source(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


class ZipMember(ByteSource):
    """A member of an open zip.

    A stored member (most packages' bundles) is read straight from the package at any offset:
    its local header is read once per archive (with its first :data:`ZIP_BUFFER` bytes), then
    each read asks for the bytes it reads, no more. A compressed one, or one opened ``whole``
    (to be read to its end: its CRC-32 is checked there), is read through :mod:`zipfile`
    from its start, so its reads are to go in increasing offsets (the codecs read so): a read
    before the last one inflates it again from the start. A member that declares more bytes than its
    compressed data can hold is refused before any is inflated.

    Raises:
        CorruptBundle: the member is damaged: impossible sizes, a bad header, a broken deflate
            stream, a bad CRC-32 (found once a compressed member is read to its end),
            encryption.
    """

    __slots__ = ("_archive", "_entry", "_head", "_owned", "_package", "_start")

    def __init__(self, archive: ZipArchive, info: zipfile.ZipInfo, whole: bool = False) -> None:
        stored = info.compress_type == zipfile.ZIP_STORED
        if (stored and info.file_size != info.compress_size) or (
            info.file_size > MAX_RATIO * max(info.compress_size, 1)
        ):
            raise CorruptBundle(
                f"the zip entry declares {info.file_size:,} bytes from {info.compress_size:,} "
                "compressed bytes, more than its compression can hold"
            )
        self._archive = archive
        self.size, self.version = info.file_size, archive.version
        self.modified = _zip_time(info.date_time)
        archive_zip = archive.zip()
        self._entry: IO[bytes] | None = None
        self._package: ByteSource | None = None
        if stored and not whole and not info.flag_bits & _ZIP_ENCRYPTED:
            self._package, self._owned = archive.package()
            try:
                self._start, self._head = archive.locate(info, self._package)
            except BaseException:
                self.close()
                raise
            return
        try:
            self._entry = archive_zip.open(info)
        except _ZIP_ERRORS as exc:
            raise _unreadable(exc) from None

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``: from the package (a stored member), or inflated."""
        if self._package is not None:
            length = min(length, self.size - offset)
            if length <= 0:
                return b""
            if offset + length <= len(self._head):
                return self._head[offset : offset + length]
            return self._package.read(self._start + offset, length)
        assert self._entry is not None, "a compressed member"
        try:
            self._entry.seek(offset)
            return self._entry.read(length)
        except _ZIP_ERRORS as exc:
            raise _unreadable(exc) from None

    def read_words(self, offsets: Sequence[int], size: int) -> bytes:
        """See :meth:`ByteSource.read_words`: a stored member's from its first bytes where
        they hold them, the others from the package in as few reads as it takes them."""
        if self._package is None:
            return super().read_words(offsets, size)
        held = bisect.bisect_right(offsets, len(self._head) - size)
        inside = bisect.bisect_right(offsets, self.size - size)
        found = b"".join(self._head[offset : offset + size] for offset in offsets[:held])
        found += self._package.read_words([self._start + o for o in offsets[held:inside]], size)
        if len(found) == size * inside and inside < len(offsets):
            found += self.read(offsets[inside], size)  # the member ends inside it
        return found

    def current_version(self) -> Version:
        """The package's version now."""
        return self._archive.current_version()

    def close(self) -> None:
        """Close the member (the zip stays open)."""
        if self._entry is not None:
            self._entry.close()
        if self._package is not None and self._owned:
            self._package.close()
        self._package = None


def _zip_time(date_time: tuple[int, int, int, int, int, int]) -> float | None:
    """A zip entry's modification time (local time, as zip stores it), seconds since the
    epoch; ``None`` for an impossible date (some zip writers store zeros)."""
    try:
        return datetime(*date_time).timestamp()
    except ValueError:
        return None


def _unreadable(exc: Exception) -> CorruptBundle:
    return CorruptBundle(f"the zip entry cannot be read ({type(exc).__name__}: {exc})")
