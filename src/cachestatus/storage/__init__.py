"""Caches in object storage (S3, Azure Blob, Google Cloud Storage) and on HTTP(S) servers.

Remote bytes are read through obstore (the ``cloud`` extra): one API for S3, Azure, GCS and
HTTP, ranged reads with ``If-Match`` preconditions, and clients built per process from the
environment. A URL is parsed into a :class:`Location`; an :class:`ObjectStorage` lists it
(names, sizes, ETags) and reads its objects by ranges, as byte sources the codecs read like
files.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import MissingExtra, StorageError
from .location import Location, is_url, parse_location

#: A file (or folder) whose mtime lies less than this before a moment it was seen at (its
#: listing, the start of the run that read it), or after it, may change again without moving
#: its mtime: a write in the same tick of the clock leaves the time as it was (git's rule for
#: racily clean files). Nanoseconds.
RACY_NS = 2_000_000_000

if TYPE_CHECKING:
    from .clients import CLOUD_EXTRA, require_cloud
    from .objects import ObjectEntry, ObjectStorage

# The client side is imported on first use: a run over local files parses its path as a
# location and never needs it.
_LAZY = {
    "CLOUD_EXTRA": "clients",
    "require_cloud": "clients",
    "ObjectEntry": "objects",
    "ObjectStorage": "objects",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLOUD_EXTRA",
    "RACY_NS",
    "Location",
    "MissingExtra",
    "ObjectEntry",
    "ObjectStorage",
    "StorageError",
    "is_url",
    "parse_location",
    "require_cloud",
]
