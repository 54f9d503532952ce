"""The format registry: one reader class per cache format, detection, opening.

``names()`` lists the formats (the CLI's ``--format-hint`` choices come from it),
``get(name)`` returns a reader class, ``detect(path)`` finds the one that reads a path, and
``open_cache`` opens it.

Detection goes by content, never by name alone. A folder by what it holds (``conf.xml``,
``root.json``, numbered zoom folders). A file by its first bytes (:func:`~.base.read_head`, a
few KB, opened without blocking: a FIFO never hangs it): the SQLite header, then its tables
(an MBTiles ``tiles`` table or view, or ``map`` and ``images``; a GeoPackage's
``gpkg_contents`` naming tile tables), read read-only under the readers' hardening; the
``PMTiles`` magic and version 3; a zip's signature and its members (``root.json``: a ``.tpkx``;
``conf.xml``: a ``.tpk``). So ``02.mbtile``, ``tiles.sqlite`` or a file without a suffix is read
as what it is. The suffix only breaks ties (content of two formats), and decides for a file
whose content no format recognises (a damaged ``.pmtiles``): its format's reader then says what
is wrong with it. A file named like one format whose content is another is read as its content
says, with a warning naming both.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CacheNotFound, UnsupportedFormat, UsageError
from ..storage.location import parse_location
from ..values import as_path
from .arcgis_cache import CompactV1Cache, CompactV2Cache
from .base import (
    BundleFile,
    BundleIndex,
    CacheReader,
    LevelListing,
    Run,
    SingleFileCache,
    read_head,
    run_here,
)
from .bytesource import ZIP_LOCAL_HEADER
from .geopackage import GeoPackageTiles
from .mbtiles import MBTiles
from .pmtiles import PMTilesCache
from .spec import CacheSpec
from .sqlite_db import SQLITE_HEADER
from .sqlite_tiles import remote_sqlite
from .tile_folders import ExplodedCache, TMSFolder, XYZFolder
from .tpk import TpkPackage
from .tpkx import TilePackage, TilePackageFolder

if TYPE_CHECKING:
    from ..storage import ObjectStorage

__all__ = [
    "SCHEMES",
    "BundleFile",
    "BundleIndex",
    "CacheReader",
    "CacheSpec",
    "LevelListing",
    "Run",
    "detect",
    "detect_remote",
    "get",
    "names",
    "open_cache",
    "register",
    "run_here",
]

log = logging.getLogger(__name__)

_REGISTRY: dict[str, type[CacheReader]] = {}


def register(reader: type[CacheReader]) -> type[CacheReader]:
    """Add a reader class to the registry under its ``name`` (usable as a decorator)."""
    if reader.name in _REGISTRY and _REGISTRY[reader.name] is not reader:
        raise ValueError(f"a reader named {reader.name!r} is already registered")
    _REGISTRY[reader.name] = reader
    return reader


def names() -> list[str]:
    """The registered format names, in registration order."""
    return list(_REGISTRY)


def get(name: str) -> type[CacheReader]:
    """The reader class registered as ``name``.

    Raises:
        UnsupportedFormat: no reader has that name (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnsupportedFormat(
            f"unknown format {name!r}; known formats: {', '.join(names())}"
        ) from None


def _describe_unknown(path: Path) -> str:
    from .arcgis_conf import parse_conf_xml, read_config_file
    from .arcgis_folder import find_conf

    conf = find_conf(path)
    if conf is not None:
        # A conf.xml that does not parse is reported as such (InvalidCacheConfig).
        storage = parse_conf_xml(read_config_file(conf), str(conf)).storage_format
        return f"{conf} declares {storage}, which this version does not read"
    if path.is_dir():
        return "it holds no conf.xml (nor Layers/conf.xml)"
    return _describe_file(path)


def _describe_file(path: Path) -> str:
    """What a file that no format reads is, from its first bytes."""
    from .pmtiles import MAGIC, VERSION
    from .sqlite_db import sqlite_content

    found = read_head(path)
    if found is None:
        return "not a regular file (a FIFO, a device or a socket?) or not readable"
    content = sqlite_content(path, found)
    if content is not None:
        return content.describe()
    if found.head.startswith(ZIP_LOCAL_HEADER):
        among = "" if found.zip_complete else f" among its first {len(found.zip_names):,} members"
        return f"a zip holding no root.json (.tpkx) nor conf.xml (.tpk){among}"
    if found.head.startswith(MAGIC) and len(found.head) > VERSION:
        return f"a PMTiles archive of version {found.head[VERSION]}; this version reads v3"
    return "it is not a cache file this version reads"


def detect(path: Path) -> type[CacheReader]:
    """The reader class for the cache at ``path``.

    Raises:
        CacheNotFound: the path does not exist.
        UnsupportedFormat: no registered format recognises it.
    """
    if not os.path.exists(path):
        raise CacheNotFound(
            f"{path}: no such file or folder; give the cache folder (holding "
            "conf.xml) or a cache file"
        )
    files: list[type[SingleFileCache]] = []
    for reader in _REGISTRY.values():
        if not reader.detect(path):
            continue
        if not issubclass(reader, SingleFileCache):
            return reader  # a folder: what it holds says which format
        files.append(reader)
    if not files:  # no content of a known format: a damaged file of its suffix's format
        files = [
            reader
            for reader in _REGISTRY.values()
            if issubclass(reader, SingleFileCache) and reader.claims_by_name(path)
        ]
    if not files:
        raise UnsupportedFormat(
            f"{path}: not a tile cache cachestatus can read ({_describe_unknown(path)}); "
            f"known formats: {', '.join(names())}"
        )
    suffix = path.suffix.lower()
    chosen = next((r for r in files if r.suffix == suffix), files[0])  # the suffix breaks ties
    named = [r for r in _REGISTRY.values() if issubclass(r, SingleFileCache) and r.suffix == suffix]
    if named and chosen not in named:
        log.warning(
            "%s: named like %s (%s) but its content is %s; read as %s",
            path,
            named[0].name,
            suffix,
            chosen.name,
            chosen.name,
        )
    return chosen


def detect_remote(storage: ObjectStorage) -> type[CacheReader]:
    """The reader class for the cache at ``storage``'s location (object storage, HTTP).

    Raises:
        UsageError: an SQLite cache (MBTiles, GeoPackage), which needs a local file.
        UnsupportedFormat: no format read from object storage recognises it; over HTTP, a
            folder cache (nothing can be listed there).
        CacheNotFound: nothing is at the location.
    """
    for reader in _REGISTRY.values():
        if reader.detect_remote(storage):
            return reader
    location = storage.location
    if location.is_http:
        raise UnsupportedFormat(
            f"{location.url}: not a cache file read over {location.scheme} (.tpkx, .tpk, "
            ".pmtiles); a folder cache cannot be read over HTTP, where nothing can be listed: "
            "give its s3://, az:// or gs:// URL, or copy it locally"
        )
    folders, objects = storage.list_dir()
    if not folders and not objects:
        try:
            head = storage.read(storage.head(location.key).key, 0, len(SQLITE_HEADER))
        except FileNotFoundError:
            raise CacheNotFound(
                f"{location.url}: no such object or folder; give the cache folder (holding "
                "conf.xml) or a cache file"
            ) from None
        if head == SQLITE_HEADER:
            raise remote_sqlite(location.url, "the object")
    raise UnsupportedFormat(
        f"{location.url}: not a tile cache cachestatus reads from object storage "
        f"(formats: {', '.join(names())})"
    )


#: Row orders of ``{z}/{x}/{y}`` folders (``--scheme``), each the name of its reader.
SCHEMES = ("xyz", "tms")


def open_cache(
    path: str | os.PathLike[str],
    format_hint: str | None = None,
    sizes: bool = False,
    *,
    table: str | None = None,
    scheme: str | None = None,
    anon: bool = False,
) -> CacheReader:
    """Open the cache at ``path`` with the detected reader, or with ``format_hint``'s: through
    its :class:`CacheSpec` (``reader.spec``), which opens it again in other processes.

    Args:
        path: the cache folder or file.
        format_hint: a registered format name, read as that format instead of detecting one.
        sizes: read tile sizes where they cost extra reads (SQLite blobs, a stat per tile
            file); the formats whose sizes come free ignore it.
        table: the tile table of a GeoPackage that holds several.
        scheme: row order of a ``{z}/{x}/{y}`` folder, ``xyz`` (rows counted down, the default)
            or ``tms`` (rows counted up).
        anon: unsigned requests, for a cache in a public bucket (``path`` a URL).

    Raises:
        CacheNotFound, UnsupportedFormat, InvalidCacheConfig: the path is not a readable cache
            (a FIFO, a device or a folder given as a single-file format's cache included).
        UsageError: ``table`` or ``scheme`` given for a format that has no such choice; an
            SQLite cache given by URL.
        MissingExtra: a URL, without the ``cloud`` extra.
    """
    location = parse_location(path, anon=anon) if isinstance(path, str) else None
    if location is not None:
        from ..storage import ObjectStorage

        storage = ObjectStorage(location)
        with storage.listings_kept():  # detection's listings are the reader's
            found = get(format_hint) if format_hint is not None else detect_remote(storage)
            if scheme is not None:
                found = _with_scheme(location.url, found, scheme)
            _check_table(location.url, found, table)
            return CacheSpec(found.name, location.url, sizes, table, anon).open(storage)
    where = as_path(path, "cache")
    if not where.exists():
        detect(where)  # raises CacheNotFound with the usual message
    reader_class = get(format_hint) if format_hint is not None else detect(where)
    if scheme is not None:
        reader_class = _with_scheme(where, reader_class, scheme)
    _check_table(where, reader_class, table)
    return CacheSpec(reader_class.name, str(where), sizes, table).open()


def _check_table(where: object, reader_class: type[CacheReader], table: str | None) -> None:
    """Refuse ``--table`` for a format without tables."""
    if table is not None and "table" not in reader_class.options:
        raise UsageError(
            f"--table {table}: {where} is read as {reader_class.name}; "
            "only GeoPackages hold several tile tables"
        )


def _with_scheme(where: object, reader_class: type[CacheReader], scheme: str) -> type[CacheReader]:
    """The folder reader for ``scheme``; an error for a format whose row order is fixed."""
    if scheme not in SCHEMES:
        raise UsageError(f"--scheme {scheme}: unknown row order; use one of {', '.join(SCHEMES)}")
    if reader_class.name not in SCHEMES:
        raise UsageError(
            f"--scheme {scheme}: {where} is read as {reader_class.name}, whose row order is "
            "fixed; --scheme applies to {z}/{x}/{y} tile folders"
        )
    return get(scheme)


register(CompactV2Cache)
register(CompactV1Cache)
register(TilePackage)
register(TpkPackage)
register(MBTiles)
register(GeoPackageTiles)
register(ExplodedCache)
register(XYZFolder)
register(TMSFolder)
register(PMTilesCache)
register(TilePackageFolder)
