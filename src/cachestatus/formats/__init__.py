"""The format registry: one reader class per cache format, detection, opening.

``names()`` lists the formats (the CLI's ``--format-hint`` choices come from it),
``get(name)`` returns a reader class, ``detect(path)`` finds the one that reads a path, and
``open_cache`` opens it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CacheNotFound, UnsupportedFormat
from .base import BundleFile, BundleIndex, CacheReader
from .compact_v1 import CompactV1Cache
from .compact_v2 import CompactV2Cache
from .geopackage import GeoPackageTiles
from .mbtiles import MBTiles
from .pmtiles import PMTilesCache
from .tile_folders import ExplodedCache, TMSFolder, XYZFolder
from .tpk import TpkPackage
from .tpkx import TilePackage

__all__ = [
    "BundleFile",
    "BundleIndex",
    "CacheReader",
    "detect",
    "get",
    "names",
    "open_cache",
    "register",
]

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
    from .arcgis_conf import parse_conf_xml
    from .arcgis_folder import find_conf

    conf = find_conf(path)
    if conf is not None:
        # A conf.xml that does not parse is reported as such (InvalidCacheConfig).
        storage = parse_conf_xml(conf.read_bytes(), str(conf)).storage_format
        return f"{conf} declares {storage}, which this version does not read"
    if path.is_dir():
        return "it holds no conf.xml (nor Layers/conf.xml)"
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
    for reader in _REGISTRY.values():
        if reader.detect(path):
            return reader
    raise UnsupportedFormat(
        f"{path}: not a tile cache cachestatus can read ({_describe_unknown(path)}); "
        f"known formats: {', '.join(names())}"
    )


def open_cache(
    path: str | os.PathLike[str], format_hint: str | None = None, sizes: bool = False
) -> CacheReader:
    """Open the cache at ``path`` with the detected reader, or with ``format_hint``'s.

    ``sizes`` asks readers for tile sizes where they cost extra reads (see
    :attr:`CacheReader.sizes`).

    Raises:
        CacheNotFound, UnsupportedFormat, InvalidCacheConfig: the path is not a readable cache.
    """
    where = Path(path)
    if format_hint is not None:
        if not where.exists():
            detect(where)  # raises CacheNotFound with the usual message
        reader = get(format_hint)(where)
    else:
        reader = detect(where)(where)
    reader.sizes = sizes or type(reader).sizes  # formats whose sizes come free keep them
    return reader


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
