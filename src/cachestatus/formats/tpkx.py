"""ArcGIS tile packages ``.tpkx``: a zip holding ``root.json`` and Compact V2 bundles, or the
same files unpacked into a folder.

``root.json`` carries the tiling scheme as ArcGIS REST JSON (``tileInfo``: ``rows``, ``cols``,
``dpi``, ``origin``, ``spatialReference``, ``lods``), the ``fullExtent``, ``storageInfo`` and
``minLOD``/``maxLOD`` (the levels the package holds). Bundles are ``tile/Lnn/R....C....bundle``
(under ``tileBundlesPath``). In a zip they are read in place, never extracted: only the first
131,136 bytes of each, as for a folder cache. An unpacked package (Esri's tile-package
specification shows one; ArcGIS Pro unpacks them) is read like a Compact V2 folder cache, with
``root.json`` in the role of ``conf.xml``: both are the one ArcGIS reader
(:class:`~.arcgis_cache.ArcGISCache`) over a zip or a folder layout.

What a package declares: ``minLOD``..``maxLOD`` are its levels, each expected whether built or
not; ``fullExtent`` (in the tiling scheme's CRS) is the full extent, and one that is a point or
a line makes the tiles holding it expected (an all-zero one is none: the whole grid).

``root.json`` is read up to 16 MiB and nested at most :data:`~.tilejson.MAX_JSON_DEPTH` deep;
its values are checked by the helpers :mod:`.arcgis_conf` uses for ``conf.xml``. A bundle
member that cannot be inflated, or declares more bytes than its compressed data can hold, is a
``CORRUPT`` bundle (:class:`~.bytesource.ZipMember`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import InvalidCacheConfig
from ..models import Extent, SpatialReference, TilingScheme
from .arcgis_cache import ArcGISCache, ArcGISFolderCache, Configuration
from .arcgis_conf import (
    check_extent,
    check_lods,
    check_scheme,
    check_spatial_reference,
    check_tile_size,
)
from .arcgis_folder import CONF_NAMES
from .arcgis_layout import FolderLayout, Layout, ZipLayout
from .base import FileHead
from .compact_v2 import STORAGE_FORMAT as V2_STORAGE
from .remote_file import RemoteFile
from .tilejson import load_json

ROOT_JSON = "root.json"
#: Where bundles are when ``root.json`` does not say (``tileBundlesPath``).
BUNDLES_DIR = "tile"


def _number(node: dict[str, Any], key: str, source: str) -> float:
    value = node.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidCacheConfig(f"{source}: {key!r} is {value!r}, not a number")
    return float(value)


def _optional(node: dict[str, Any], key: str, default: float, source: str) -> float:
    """A number that may be absent (then ``default``), but not malformed."""
    return default if node.get(key) is None else _number(node, key, source)


def _spatial_reference(node: Any) -> SpatialReference:
    if not isinstance(node, dict):
        return SpatialReference()
    wkid, latest = node.get("wkid"), node.get("latestWkid")
    return SpatialReference(
        wkid=wkid if isinstance(wkid, int) and not isinstance(wkid, bool) else None,
        latest_wkid=latest if isinstance(latest, int) and not isinstance(latest, bool) else None,
        wkt=node.get("wkt") if isinstance(node.get("wkt"), str) else None,
    )


def parse_root_json(data: bytes, source: str = "root.json") -> tuple[TilingScheme, Extent | None]:
    """The tiling scheme and full extent of a tile package's ``root.json``.

    Only the LODs between ``minLOD`` and ``maxLOD`` are the package's levels.

    Raises:
        InvalidCacheConfig: not JSON, too large or too deep, or a required member missing or
            malformed.
    """
    return _scheme_and_extent(load_json(data, source), source)


def _scheme_and_extent(root: Any, source: str) -> tuple[TilingScheme, Extent | None]:
    """:func:`parse_root_json` of the parsed JSON ``root``."""
    if not isinstance(root, dict) or not isinstance(root.get("tileInfo"), dict):
        raise InvalidCacheConfig(f"{source}: no 'tileInfo' object; is this a tile package?")
    info = root["tileInfo"]
    origin = info.get("origin")
    if not isinstance(origin, dict):
        raise InvalidCacheConfig(f"{source}: tileInfo has no 'origin'")
    raw_lods = info.get("lods")
    if not isinstance(raw_lods, list) or not raw_lods:
        raise InvalidCacheConfig(f"{source}: tileInfo has no 'lods'")
    low = _optional(root, "minLOD", -math.inf, source)
    high = _optional(root, "maxLOD", math.inf, source)
    triples = []
    for node in raw_lods:
        if not isinstance(node, dict):
            raise InvalidCacheConfig(f"{source}: a LOD is {node!r:.80}, not an object")
        triples.append(
            (
                _number(node, "level", source),
                _number(node, "scale", source),
                _number(node, "resolution", source),
            )
        )
    lods = [lod for lod in check_lods(triples, source, "tileInfo.lods") if low <= lod.level <= high]
    if not lods:
        raise InvalidCacheConfig(f"{source}: no LOD between minLOD {low} and maxLOD {high}")
    storage: dict[str, Any] = root.get("storageInfo") or {}
    image: dict[str, Any] = root.get("tileImageInfo") or {}
    if not isinstance(storage, dict) or not isinstance(image, dict):
        raise InvalidCacheConfig(f"{source}: 'storageInfo' and 'tileImageInfo' must be objects")
    sr = _spatial_reference(info.get("spatialReference") or root.get("spatialReference"))
    scheme = check_scheme(
        check_spatial_reference(sr, source, "tileInfo.spatialReference"),
        (_number(origin, "x", source), _number(origin, "y", source)),
        check_tile_size(
            _number(info, "cols", source),
            _number(info, "rows", source),
            _optional(info, "dpi", 96.0, source),
            source,
            "tileInfo",
        ),
        lods,
        (
            str(image.get("format", "PNG"))[:40],
            str(storage.get("storageFormat", V2_STORAGE))[:80],
        ),
        (_optional(storage, "packetSize", 128, source), "storageInfo.packetSize"),
        source,
    )
    extent = None
    full = root.get("fullExtent")
    if isinstance(full, dict):
        extent = check_extent(
            [_number(full, key, source) for key in ("xmin", "ymin", "xmax", "ymax")],
            source,
            "fullExtent",
        )
        if not any(extent):  # never set; a point or a line stays one
            extent = None
    return scheme, extent


def read_root_json(layout: Layout, missing: str) -> Configuration:
    """The scheme and extent of a package's ``root.json``, and its ``tileBundlesPath``.

    Raises:
        InvalidCacheConfig: no ``root.json`` (the message is ``missing``), one that does not
            parse, or one that declares bundles other than Compact V2.
    """
    source = layout.source(ROOT_JSON)
    data = layout.config(ROOT_JSON)
    if data is None:
        raise InvalidCacheConfig(missing)
    root = load_json(data, source)
    scheme, extent = _scheme_and_extent(root, source)
    if scheme.storage_format != V2_STORAGE:
        raise InvalidCacheConfig(
            f"{source} declares {scheme.storage_format}; a tile package holds Compact V2 bundles"
        )
    return scheme, extent, _bundles_path(root, source)


class TilePackage(ArcGISCache, RemoteFile):
    """A ``.tpkx`` tile package: Compact V2 bundles read inside the zip (a local file, or an
    object read by ranges)."""

    name = "tpkx"
    description = "ArcGIS tile package (.tpkx: zip of root.json and Compact V2 bundles)"
    suffix = ".tpkx"
    storage_formats = (V2_STORAGE,)

    @classmethod
    def recognise(cls, path: Path, found: FileHead) -> bool:
        """A zip holding ``root.json`` at its top, whatever its name."""
        return ROOT_JSON in found.zip_names

    def _open_layout(self, path: Path) -> Layout:
        return ZipLayout(self._zip_archive())

    def _configure(self, layout: Layout) -> Configuration:
        return read_root_json(
            layout,
            f"{self.where}: a zip without {ROOT_JSON}; a .tpkx tile package holds root.json "
            "(an older .tpk holds conf.xml)",
        )


class TilePackageFolder(ArcGISFolderCache):
    """A ``.tpkx`` unpacked into a folder: ``root.json`` and ``tile/Lnn/R....C....bundle``.

    Read as the Compact V2 folder cache it is, with the scheme and extent from ``root.json``
    (:func:`parse_root_json`). Its default status store goes inside the folder, beside
    ``root.json``, as ArcGIS keeps ``Status.gdb`` beside ``conf.xml``.
    """

    name = "tpkx-folder"
    description = "ArcGIS tile package unpacked to a folder (root.json, tile/Lnn/R....C....bundle)"
    storage_formats = (V2_STORAGE,)

    def _open_layout(self, path: Path) -> Layout:
        folder = path.parent if path.is_file() and path.name == ROOT_JSON else path
        self.conf_path = folder / ROOT_JSON
        self.cache_dir = folder
        return FolderLayout(folder)

    def _configure(self, layout: Layout) -> Configuration:
        scheme, extent, layers = read_root_json(
            layout, f"{self.path}: no {ROOT_JSON} in it; is it an unpacked .tpkx?"
        )
        self.layers_dir = self.cache_dir / layers
        return scheme, extent, layers

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder holding ``root.json`` (or that file itself) and no ``conf.xml``: its
        content, not its name, says it is a package (a folder of another kind is refused with
        what its ``root.json`` lacks)."""
        folder = path.parent if path.is_file() and path.name == ROOT_JSON else path
        if not folder.is_dir() or any((folder / name).exists() for name in CONF_NAMES):
            return False
        return (folder / ROOT_JSON).exists()  # a FIFO or folder so named is refused by name


def _bundles_path(root: Any, source: str) -> str:
    """``tileBundlesPath`` of a ``root.json`` (``./tile``), a relative path inside the package.

    Raises:
        InvalidCacheConfig: it is not text, or leads out of the package.
    """
    value = root.get("tileBundlesPath") if isinstance(root, dict) else None
    if value is None:
        return BUNDLES_DIR
    parts = [p for p in str(value).replace("\\", "/").split("/") if p not in ("", ".")]
    if (
        not isinstance(value, str)
        or value.startswith(("/", "\\"))
        or ".." in parts
        or (parts and ":" in parts[0])  # a drive: C:/tiles
    ):
        raise InvalidCacheConfig(
            f"{source}: tileBundlesPath is {value!r:.80}; it must be a folder inside the "
            "package, such as './tile'"
        )
    return "/".join(parts) or BUNDLES_DIR
