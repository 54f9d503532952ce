"""Where a remote cache lives: a URL parsed into a :class:`Location`.

The spellings accepted are each cloud's own URLs (``s3://``, ``az://``, ``abfs://``, ``gs://``,
``http(s)://``) and GDAL's virtual file system prefixes (``/vsis3/``, ``/vsiaz/``, ``/vsigs/``,
``/vsicurl/``), so that a path that works in ``gdalinfo`` works here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import UsageError

#: URL schemes, and the scheme of the :class:`Location` each one gives.
_SCHEMES = {
    "s3": "s3",
    "s3a": "s3",
    "az": "az",
    "azure": "az",
    "abfs": "az",
    "abfss": "az",
    "gs": "gs",
    "gcs": "gs",
    "http": "http",
    "https": "https",
}
#: GDAL's virtual file system prefixes, and the URL scheme each stands for.
_GDAL_PREFIXES = {"/vsis3/": "s3", "/vsiaz/": "az", "/vsigs/": "gs"}
_VSICURL = "/vsicurl/"
#: ``scheme://rest``: at least two letters, so that ``C:\\`` stays a Windows drive.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://(?P<rest>.*)$", re.DOTALL)
#: ``container@account.dfs.core.windows.net`` (or ``.blob.``) in an ``abfs://`` URL.
_ABFS_HOST = re.compile(
    r"^(?P<container>[^@/]+)@(?P<account>[^./]+)\.(?:dfs|blob)\.core\.windows\.net$"
)


@dataclass(frozen=True)
class Location:
    """A folder or an object in object storage, or a path on an HTTP(S) server."""

    #: ``s3``, ``az``, ``gs``, ``http`` or ``https``.
    scheme: str
    #: The bucket (S3, GCS) or container (Azure); ``host[:port]`` for HTTP(S).
    bucket: str
    #: The path inside, without a leading or trailing ``/`` (``""``: the bucket itself).
    key: str
    #: The Azure storage account an ``abfs://`` URL names.
    account: str | None = None
    #: Unsigned requests (public buckets): ``--anon``.
    anon: bool = False

    @property
    def url(self) -> str:
        """The canonical spelling, as messages print it."""
        if self.account is not None:
            base = f"abfs://{self.bucket}@{self.account}.dfs.core.windows.net"
        else:
            base = f"{self.scheme}://{self.bucket}"
        return f"{base}/{self.key}" if self.key else base

    @property
    def name(self) -> str:
        """The last path component (the bucket's name for a bucket): what a local status
        store is named after."""
        return self.key.rsplit("/", 1)[-1] if self.key else self.bucket

    @property
    def cache_name(self) -> str:
        """What a cache at this location is called: its last path component, or the one before
        when that is ArcGIS's ``Layers`` folder or a ``conf.xml``."""
        parts = [self.bucket, *self.key.split("/")] if self.key else [self.bucket]
        while len(parts) > 1 and parts[-1].lower() in ("layers", "conf.xml"):
            parts.pop()
        return parts[-1]

    @property
    def is_http(self) -> bool:
        """A path on an HTTP(S) server, where nothing can be listed."""
        return self.scheme in ("http", "https")

    def child(self, name: str) -> Location:
        """The location of ``name`` (one or more path components) inside this one."""
        name = name.strip("/")
        return replace(self, key=f"{self.key}/{name}" if self.key else name) if name else self

    def __str__(self) -> str:
        return self.url


def is_url(text: str) -> bool:
    """Whether ``text`` is spelt as a URL or a GDAL network path (not whether it is valid)."""
    return _URL.match(text) is not None or text.startswith((*_GDAL_PREFIXES, _VSICURL))


def parse_location(text: str, *, anon: bool = False) -> Location | None:
    """The remote location ``text`` names; ``None`` for a local path.

    Raises:
        UsageError: ``text`` is a URL, but not one cachestatus can read (an unknown scheme, no
            bucket or host).
    """
    for prefix, scheme in _GDAL_PREFIXES.items():
        if text.startswith(prefix):
            return _location(text, scheme, text[len(prefix) :], anon)
    if text.startswith(_VSICURL):
        url = text[len(_VSICURL) :]
        match = _URL.match(url)
        if match is None or match["scheme"].lower() not in ("http", "https"):
            raise UsageError(f"{text}: /vsicurl/ takes an http:// or https:// URL")
        return _location(text, match["scheme"].lower(), match["rest"], anon)
    match = _URL.match(text)
    if match is None:
        return None
    known_scheme = _SCHEMES.get(match["scheme"].lower())
    if known_scheme is None:
        known = ", ".join(f"{name}://" for name in ("s3", "az", "abfs", "gs", "https", "http"))
        raise UsageError(f"{text}: unknown URL scheme {match['scheme']}:// (known: {known})")
    return _location(text, known_scheme, match["rest"], anon)


def _location(text: str, scheme: str, rest: str, anon: bool) -> Location:
    bucket, _, key = rest.partition("/")
    account = None
    if scheme == "az":
        abfs = _ABFS_HOST.match(bucket)
        if abfs is not None:
            bucket, account = abfs["container"], abfs["account"]
        elif "@" in bucket:
            raise UsageError(f"{text}: an abfs:// URL names container@account.dfs.core.windows.net")
    if not bucket or any(c.isspace() for c in bucket):
        what = "a host" if scheme in ("http", "https") else "a bucket or container"
        raise UsageError(f"{text}: the URL names no {what}")
    return Location(scheme, bucket, key.strip("/"), account, anon)
