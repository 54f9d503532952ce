"""The one error hierarchy of cachestatus.

Every error the package raises on purpose derives from :class:`CacheStatusError`. Errors that mean
"the input is wrong" also derive from :class:`UsageError`, which the command line turns into exit
code 2 with a one-line message; they inherit a builtin (``ValueError``, ``FileNotFoundError``)
where callers would expect one.
"""

from __future__ import annotations


class CacheStatusError(Exception):
    """Root of every error raised by cachestatus."""


class UsageError(CacheStatusError):
    """The input or the request is wrong: the command line exits with code 2."""


class CacheNotFound(UsageError, FileNotFoundError):
    """The cache path does not exist."""


class UnsupportedFormat(UsageError, ValueError):
    """The path exists but is not a tile cache of a format cachestatus reads."""


class InvalidCacheConfig(UsageError, ValueError):
    """The cache's tiling scheme (``conf.xml``, ``conf.cdi``) cannot be read."""


class ScaleNotInCache(UsageError, ValueError):
    """A requested scale or level does not exist in the cache's tiling scheme."""


class InvalidAOI(UsageError, ValueError):
    """An area of interest or extent cannot be used."""


class StatusNotFound(UsageError, FileNotFoundError):
    """No status store exists where one was expected."""


class OutputExists(UsageError, FileExistsError):
    """An output exists and ``overwrite`` was not asked for."""


class MissingExtra(UsageError, ImportError):
    """An optional dependency the request needs is not installed; the message names the extra
    (``pip install 'cachestatus[cloud]'``)."""


class StorageError(CacheStatusError, OSError):
    """Object storage or an HTTP server refused a request, or could not be reached, after the
    retries a throttling or server error earns."""


class CorruptBundle(CacheStatusError):
    """A bundle file cannot be decoded; the scanner records it as a ``CORRUPT`` row."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BundleChanging(CorruptBundle):
    """A bundle changed while it was read (a caching job writing it): an ``IN_PROGRESS`` row."""


class StatusWriteError(CacheStatusError, OSError):
    """The status store could not be written; the previous status is left in place."""


class StoreLocked(UsageError):
    """Another run is writing the same status store (its lock file names it)."""


class NotOurs(UsageError, FileExistsError):
    """A path to be written or deleted holds something cachestatus did not write (a cache, a
    user's geodatabase...), or lies inside the cache: it is left alone."""


class LimitExceeded(UsageError, ValueError):
    """The request is larger than cachestatus can count, store or draw (a level of more tiles
    than a 64-bit count holds, an area of interest of too many tile rows or vertices...)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised by the command line's handler so that cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int = 15) -> None:
        super().__init__(signum)
        self.signum = signum
