"""Caches in object storage (S3, Azure Blob, Google Cloud Storage) and on HTTP(S) servers.

Remote bytes are read through obstore (the ``cloud`` extra): one API for S3, Azure, GCS and
HTTP, ranged reads with ``If-Match`` preconditions, and clients built per process from the
environment. A URL is parsed into a :class:`Location`; an :class:`ObjectStorage` lists it
(names, sizes, ETags) and reads its objects by ranges, as byte sources the codecs read like
files.
"""

from __future__ import annotations

from ..errors import MissingExtra, StorageError
from .clients import CLOUD_EXTRA, require_cloud
from .location import Location, is_url, parse_location
from .objects import ObjectEntry, ObjectStorage

__all__ = [
    "CLOUD_EXTRA",
    "Location",
    "MissingExtra",
    "ObjectEntry",
    "ObjectStorage",
    "StorageError",
    "is_url",
    "parse_location",
    "require_cloud",
]
