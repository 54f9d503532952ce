"""Objects in a bucket (or on an HTTP server) listed and read by ranges, through obstore.

An :class:`ObjectStorage` holds only its :class:`~.location.Location`: it pickles to worker
processes without a client or a secret, and builds its client from the environment on first use
in each process. Listings give every object's size and ETag in pages of 1,000 keys, so a cache is
listed without a request per tile or bundle. Reads are pinned to the listed ETag (``If-Match``):
an object replaced since it was listed raises :class:`~cachestatus.errors.BundleChanging`, the
remote form of a local file whose size or modification time moved.

Throttling and server errors (429, 5xx, dropped connections) are retried here with exponential
backoff and jitter, not inside obstore, so that the run can say how many requests were retried.
"""

from __future__ import annotations

import builtins
import contextlib
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import format_datetime, parsedate_to_datetime
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, TypeVar, cast

from ..errors import BundleChanging, StorageError
from .clients import build_store, require_cloud
from .location import Location
from .retries import count_retry, share_counter

if TYPE_CHECKING:
    from obstore.store import ObjectStore

    from ..formats.bytesource import ByteSource

T = TypeVar("T")

#: Storage whose listings start at a key (S3's ``start-after``, GCS's ``startOffset``): a folder
#: is listed in parts there; elsewhere (Azure, with obstore's listing) a listing that starts at
#: a key still lists from the folder's first.
STARTS_AT_A_KEY = frozenset({"s3", "gs"})
#: Keys a listing request returns at most (S3's page; Azure and GCS take the hint).
LIST_PAGE = 1000
#: Reads in flight per worker process by default: object storage, and plain HTTP servers.
CLOUD_CONCURRENCY, HTTP_CONCURRENCY = 64, 16
#: Retries of one request after a throttling or server error, and the first and longest wait.
MAX_RETRIES, FIRST_BACKOFF, MAX_BACKOFF = 10, 0.1, 10.0
#: HTTP statuses that ask to retry later: too many requests, server errors, S3's SlowDown (503).
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_STATUS = re.compile(r"status(?: code)?: (\d{3})")
#: What obstore says when a request never got an answer.
_CONNECTION = re.compile(r"error sending request|connection|timed out|broken pipe", re.IGNORECASE)
#: An ``HTTP-date`` (RFC 9110): the stamp of an object served without an ETag.
_HTTP_DATE = re.compile(r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")


class ObjectEntry(NamedTuple):
    """One object as listed."""

    #: Its full key in the bucket (the path on an HTTP server).
    key: str
    #: Size in bytes.
    size: int
    #: What changes when it is rewritten: the ETag without quotes, or (an HTTP server that
    #: sends none) the ``Last-Modified`` text.
    stamp: str
    #: Modification time, seconds since the epoch (UTC), if known.
    modified: float | None


class ObjectStorage:
    """A bucket (or an HTTP server) under one location, listed and read by ranges."""

    def __init__(self, location: Location) -> None:
        require_cloud()
        #: Where the objects are: every key listed lies under ``location.key``.
        self.location = location
        #: Reads in flight per worker process by default.
        self.io_concurrency = HTTP_CONCURRENCY if location.is_http else CLOUD_CONCURRENCY
        #: Requests retried after a throttling or server error, in this process.
        self.retries = 0
        self._store: ObjectStore | None = None
        self._lock = threading.Lock()
        #: Within :meth:`listings_kept`, the answers of :meth:`list_dir` by prefix.
        self._kept: dict[str, tuple[builtins.list[str], builtins.list[ObjectEntry]]] | None = None
        #: Within :meth:`listings_kept`, what :meth:`found_once` found, by name.
        self._found: dict[str, Any] | None = None
        share_counter()

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ObjectStorage({self.location.url!r})"

    def full_key(self, name: str = "") -> str:
        """The full key of ``name``, a path relative to the location."""
        return self.location.child(name).key

    def list(self, prefix: str = "", after: str | None = None) -> Iterator[ObjectEntry]:
        """Every object under ``prefix`` (relative to the location), at any depth, in pages, in
        the order of their keys; only those whose full key comes after ``after``, when given
        (where the storage starts a listing at a key: S3's ``start-after``).

        Raises:
            StorageError: the listing was refused or failed after its retries.
        """
        import obstore

        full = self.full_key(prefix)
        last = after
        attempt = 0
        while True:
            pages = obstore.list(
                self._client(), prefix=full or None, offset=last, chunk_size=LIST_PAGE
            )
            try:
                for page in pages:
                    for meta in page:
                        last = meta["path"]
                        yield _entry(meta)
                return
            except Exception as exc:
                attempt = self._retry_or_raise(exc, attempt, f"listing {self._url(full)}")

    @contextlib.contextmanager
    def listings_kept(self) -> Iterator[None]:
        """Within it, each folder is listed once (:meth:`list_dir`) and its listing kept for
        whoever asks next: opening a cache, the detection of every format, then the reader's
        start, list the location once. Listings after it see the bucket as it is then."""
        self._kept, self._found = {}, {}
        try:
            yield
        finally:
            self._kept = self._found = None

    def found_once(self, name: str, find: Callable[[], T]) -> T:
        """``find()``, called once within :meth:`listings_kept` (its value kept under ``name``
        for whoever asks next: what every format's detection asks of the location, such as a
        cache's layout and configuration, is read once) and on every call outside it."""
        if self._found is None:
            return find()
        if name not in self._found:
            self._found[name] = find()
        return cast(T, self._found[name])

    def list_between(
        self, prefix: str, start: str | None, stop: str | None
    ) -> Iterator[ObjectEntry]:
        """The objects directly in the folder ``prefix`` (relative to the location) whose names
        are from ``start`` (the first when ``None``) up to ``stop`` excluded (the last when
        ``None``), in their order: one listing that starts at ``start`` where the storage can
        (:data:`STARTS_AT_A_KEY`) and stops at ``stop``.

        Raises:
            StorageError: the listing was refused or failed after its retries.
        """
        folder = self.full_key(prefix) + "/"
        # Keys come after ``after``, which is below every name from ``start`` on: the few names
        # between the two (``R008.bundle`` before ``R0080C``) are left out here.
        after = None if not start else folder + start[:-1]
        for entry in self.list(prefix, after):
            name = entry.key[len(folder) :]
            if stop is not None and name >= stop:
                return
            if (start is None or name >= start) and "/" not in name:
                yield entry

    def list_dir(self, prefix: str = "") -> tuple[builtins.list[str], builtins.list[ObjectEntry]]:
        """One level under ``prefix``: the names of the folders in it, and its objects.

        Raises:
            StorageError: the listing was refused or failed after its retries.
        """
        import obstore

        full = self.full_key(prefix)
        if self._kept is not None and full in self._kept:
            folders, objects = self._kept[full]
            return list(folders), list(objects)
        found = self._call(
            lambda: obstore.list_with_delimiter(self._client(), prefix=full or None),
            f"listing {self._url(full)}",
        )
        names = [path.rstrip("/").rsplit("/", 1)[-1] for path in found["common_prefixes"]]
        entries = [_entry(meta) for meta in found["objects"]]
        if self._kept is not None:
            self._kept[full] = (list(names), list(entries))
        return names, entries

    def head(self, key: str) -> ObjectEntry:
        """The object at the full ``key``.

        Raises:
            FileNotFoundError: nothing is there.
            StorageError: the request was refused or failed after its retries.
        """
        import obstore

        return _entry(self._call(lambda: obstore.head(self._client(), key), self._url(key)))

    def read(self, key: str, start: int, length: int, stamp: str | None = None) -> bytes:
        """``length`` bytes from byte ``start`` of the object at the full ``key``, fewer only
        where it ends; pinned to ``stamp`` (an ETag, or a ``Last-Modified`` text) when given.

        Raises:
            BundleChanging: the object no longer has that stamp (it was replaced since listed).
            FileNotFoundError: nothing is there.
            StorageError: the request was refused or failed after its retries.
        """
        return self.read_timed(key, start, length, stamp)[0]

    def read_timed(
        self, key: str, start: int, length: int, stamp: str | None = None
    ) -> tuple[bytes, float | None]:
        """:meth:`read`, and the object's modification time as the answer gives it (``None``
        when nothing was asked: ``length`` 0)."""
        if length <= 0:
            return b"", None
        import obstore
        from obstore.exceptions import PreconditionError

        options: Any = {"range": (start, start + length)}
        if stamp is not None:
            if _HTTP_DATE.match(stamp):
                options["if_unmodified_since"] = parsedate_to_datetime(stamp)
            elif not stamp.startswith("W/"):  # a weak ETag never matches If-Match
                options["if_match"] = f'"{stamp}"'

        def get() -> tuple[bytes, float | None]:
            answer = obstore.get(self._client(), key, options=options)
            return bytes(answer.bytes()), answer.meta["last_modified"].timestamp()

        try:
            return self._call(get, self._url(key))
        except PreconditionError:
            raise BundleChanging(
                f"replaced since it was listed (its ETag is no longer {stamp}); "
                "a caching job is writing it"
            ) from None
        except StorageError as exc:
            if _status(exc.__cause__) == 416:  # the range starts where the object has ended
                return b"", None
            raise

    def source(self, entry: ObjectEntry) -> ByteSource:
        """The object ``entry`` as a byte source, every read pinned to its listed ETag."""
        from .sources import ObjectSource

        return ObjectSource(self, entry)

    def file(self, entry: ObjectEntry) -> BinaryIO:
        """The object ``entry`` as a read-only, seekable, buffered file (for :mod:`zipfile`),
        every read pinned to its listed ETag."""
        from .sources import object_file

        return object_file(self, entry)

    def _client(self) -> ObjectStore:
        if self._store is None:
            self._store = build_store(self.location)
        return self._store

    def _url(self, key: str) -> str:
        return Location(self.location.scheme, self.location.bucket, key, self.location.account).url

    def _call(self, request: Callable[[], T], what: str) -> T:
        """``request()``, retried after throttling and server errors."""
        attempt = 0
        while True:
            try:
                return request()
            except Exception as exc:
                attempt = self._retry_or_raise(exc, attempt, what)

    def _retry_or_raise(self, exc: Exception, attempt: int, what: str) -> int:
        """Wait before retrying the request that raised ``exc`` and return the attempt's
        number; raise what it means instead when it is not worth retrying."""
        from obstore.exceptions import BaseError, PreconditionError

        if isinstance(exc, FileNotFoundError | PreconditionError) or not isinstance(
            exc, BaseError | OSError
        ):
            raise exc
        if attempt >= MAX_RETRIES or not _retriable(exc):
            raise StorageError(f"{what}: {_first_line(exc)}") from exc
        with self._lock:
            self.retries += 1
        count_retry()
        time.sleep(random.uniform(0, min(MAX_BACKOFF, FIRST_BACKOFF * 2**attempt)))
        return attempt + 1


def _entry(meta: Any) -> ObjectEntry:
    """An :class:`ObjectEntry` from obstore's ``ObjectMeta``."""
    modified = meta["last_modified"]
    e_tag = meta.get("e_tag")
    stamp = e_tag.strip('"') if e_tag else format_datetime(modified, usegmt=True)
    return ObjectEntry(meta["path"], meta["size"], stamp, modified.timestamp())


def _status(exc: BaseException | None) -> int | None:
    """The HTTP status an obstore error reports, if any."""
    match = _STATUS.search(str(exc)) if exc is not None else None
    return int(match[1]) if match else None


def _retriable(exc: Exception) -> bool:
    """A throttling or server error, or a request that got no answer: worth another try."""
    status = _status(exc)
    if status is not None:
        return status in _RETRY_STATUSES
    return bool(_CONNECTION.search(str(exc)))


def _first_line(exc: Exception) -> str:
    """obstore's message without its debug dump: its first line, shortened."""
    line = str(exc).strip().split("\n", 1)[0]
    return line if len(line) <= 300 else line[:297] + "..."
