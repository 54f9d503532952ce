"""The format registry: one reader class per cache format, detection, opening.

``names()`` lists the formats (the CLI's ``--format-hint`` choices come from it),
``get(name)`` returns a reader class, ``detect(path)`` finds the one that reads a path, and
``open_cache`` opens it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CacheNotFound, UnsupportedFormat, UsageError
from ..values import as_path
from .base import BundleFile, BundleIndex, CacheReader
from .compact_v1 import CompactV1Cache
from .compact_v2 import CompactV2Cache
from .geopackage import GeoPackageTiles
from .mbtiles import MBTiles
from .pmtiles import PMTilesCache
from .tile_folders import ExplodedCache, TMSFolder, XYZFolder
from .tpk import TpkPackage
from .tpkx import TilePackage, TilePackageFolder

__all__ = [
    "SCHEMES",
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
    from .arcgis_conf import parse_conf_xml, read_config_file
    from .arcgis_folder import find_conf

    conf = find_conf(path)
    if conf is not None:
        # A conf.xml that does not parse is reported as such (InvalidCacheConfig).
        storage = parse_conf_xml(read_config_file(conf), str(conf)).storage_format
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


#: Row orders of ``{z}/{x}/{y}`` folders (``--scheme``), each the name of its reader.
SCHEMES = ("xyz", "tms")


def open_cache(
    path: str | os.PathLike[str],
    format_hint: str | None = None,
    sizes: bool = False,
    *,
    table: str | None = None,
    scheme: str | None = None,
) -> CacheReader:
    """Open the cache at ``path`` with the detected reader, or with ``format_hint``'s.

    Args:
        path: the cache folder or file.
        format_hint: a registered format name, read as that format instead of detecting one.
        sizes: read tile sizes where they cost extra reads (see :attr:`CacheReader.sizes`).
        table: the tile table of a GeoPackage that holds several.
        scheme: row order of a ``{z}/{x}/{y}`` folder, ``xyz`` (rows counted down, the default)
            or ``tms`` (rows counted up).

    Raises:
        CacheNotFound, UnsupportedFormat, InvalidCacheConfig: the path is not a readable cache.
        UsageError: ``table`` or ``scheme`` given for a format that has no such choice.
    """
    where = as_path(path, "cache")
    if not where.exists():
        detect(where)  # raises CacheNotFound with the usual message
    reader_class = get(format_hint) if format_hint is not None else detect(where)
    if scheme is not None:
        reader_class = _with_scheme(where, reader_class, scheme)
    if table is not None:
        if not issubclass(reader_class, GeoPackageTiles):
            raise UsageError(
                f"--table {table}: {where} is read as {reader_class.name}; "
                "only GeoPackages hold several tile tables"
            )
        reader: CacheReader = reader_class(where, table=table)
    else:
        reader = reader_class(where)
    reader.sizes = sizes or type(reader).sizes  # formats whose sizes come free keep them
    return reader


def _with_scheme(where: Path, reader_class: type[CacheReader], scheme: str) -> type[CacheReader]:
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
