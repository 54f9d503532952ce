"""What opens a cache, as a value: the format, the path and the reading options.

A :class:`CacheSpec` is what crosses process boundaries: a worker process receives the spec,
never a reader, and opens its own reader from it (:meth:`CacheSpec.open`); its handles are
closed by the operating system when the worker is stopped. Every opened reader tells its spec
(:attr:`~.base.CacheReader.spec`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidCacheConfig
from ..storage.location import parse_location
from .bytesource import not_a_file

if TYPE_CHECKING:
    from ..storage import ObjectStorage
    from .base import CacheReader


@dataclass(frozen=True)
class CacheSpec:
    """A cache to open: frozen, picklable, cheap to send to another process."""

    #: The registry name of the format (``mbtiles``, ``compact-v2``...): opened as that format,
    #: without detection.
    format: str
    #: The cache folder or file, as given (messages name it so).
    path: str
    #: Read tile sizes where they cost extra reads (SQLite blobs, a stat per tile file); the
    #: formats whose sizes come free ignore it.
    sizes: bool = False
    #: The tile table of a GeoPackage (the formats without tables ignore it).
    table: str | None = None
    #: Unsigned requests to object storage (public buckets); local paths ignore it.
    anon: bool = False

    def open(self, storage: ObjectStorage | None = None) -> CacheReader:
        """A fresh reader of this cache, with the options its format takes.

        A URL (``s3://``, ``/vsis3/``...) is read from object storage, by the formats that can
        be (:meth:`~.base.CacheReader.open_remote`): through ``storage`` when given (the one
        detection listed the location with, so that the reader reads what it found, without
        listing it again), else a new one.

        Raises:
            UnsupportedFormat: no format of that name is registered, or the format cannot be
                read from where the URL points.
            MissingExtra: a URL, without the ``cloud`` extra.
            CacheNotFound, InvalidCacheConfig: the cache cannot be opened as that format (a
                folder, a FIFO or a device given as a single-file format's cache included).
        """
        from . import get
        from .base import SingleFileCache

        reader_class = get(self.format)
        options = {name: getattr(self, name) for name in reader_class.options}
        location = parse_location(self.path, anon=self.anon)
        if location is not None:
            if storage is None or storage.location != location:
                from ..storage import ObjectStorage

                storage = ObjectStorage(location)
            reader = reader_class.open_remote(storage, **options)
            reader.io_concurrency = storage.io_concurrency  # reads wait on the network
            return reader
        path = Path(self.path)
        if issubclass(reader_class, SingleFileCache):
            _check_regular_file(path, reader_class.name)
        return reader_class(path, **options)


def _check_regular_file(path: Path, format_name: str) -> None:
    """Refuse a path given as a single-file cache that is a folder, a FIFO or a device: its
    reader would open it, and a FIFO would block it for ever.

    Raises:
        InvalidCacheConfig: the path is not a regular file.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # the reader says why it cannot be opened
    if not stat.S_ISREG(mode):
        kind = not_a_file(mode, directory="a folder")
        raise InvalidCacheConfig(
            f"{path}: not a file but {kind}; a {format_name} cache is one file"
        )
