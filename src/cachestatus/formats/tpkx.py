"""ArcGIS tile packages ``.tpkx``: a zip holding ``root.json`` and Compact V2 bundles.

``root.json`` carries the tiling scheme as ArcGIS REST JSON (``tileInfo``: ``rows``, ``cols``,
``dpi``, ``origin``, ``spatialReference``, ``lods``), the ``fullExtent``, ``storageInfo`` and
``minLOD``/``maxLOD`` (the levels the package holds). Bundles are ``tile/Lnn/R....C....bundle``
(under ``tileBundlesPath``). They are read inside the zip, never extracted: only the first
131,136 bytes of each, as for a folder cache.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InvalidCacheConfig
from ..models import LOD, Extent, Problem, SpatialReference, TilingScheme
from .arcgis_folder import LEVEL_NAME, parse_bundle_name
from .base import BundleFile, BundleIndex, StoredTile, ZipPackage
from .compact_v2 import HEADER_INDEX_SIZE, Scratch, summarize_index, v2_tiles

ROOT_JSON = "root.json"


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
        wkid=wkid if isinstance(wkid, int) else None,
        latest_wkid=latest if isinstance(latest, int) else None,
        wkt=node.get("wkt") if isinstance(node.get("wkt"), str) else None,
    )


def parse_root_json(data: bytes, source: str = "root.json") -> tuple[TilingScheme, Extent | None]:
    """The tiling scheme and full extent of a tile package's ``root.json``.

    Only the LODs between ``minLOD`` and ``maxLOD`` are the package's levels.

    Raises:
        InvalidCacheConfig: not JSON, or a required member missing or malformed.
    """
    try:
        root = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCacheConfig(f"{source}: not valid JSON ({exc})") from None
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
    lods = []
    for node in raw_lods:
        if not isinstance(node, dict):
            raise InvalidCacheConfig(f"{source}: a LOD is {node!r}, not an object")
        lod = LOD(
            int(_number(node, "level", source)),
            _number(node, "scale", source),
            _number(node, "resolution", source),
        )
        if lod.scale <= 0 or lod.resolution <= 0:
            raise InvalidCacheConfig(f"{source}: level {lod.level} has a scale or resolution <= 0")
        if low <= lod.level <= high:
            lods.append(lod)
    if not lods:
        raise InvalidCacheConfig(f"{source}: no LOD between minLOD {low} and maxLOD {high}")
    storage: dict[str, Any] = root.get("storageInfo") or {}
    image: dict[str, Any] = root.get("tileImageInfo") or {}
    if not isinstance(storage, dict) or not isinstance(image, dict):
        raise InvalidCacheConfig(f"{source}: 'storageInfo' and 'tileImageInfo' must be objects")
    sizes = [int(_number(info, key, source)) for key in ("cols", "rows")]
    dpi = _optional(info, "dpi", 96.0, source)
    packet = int(_optional(storage, "packetSize", 128, source))
    if min(sizes) <= 0 or dpi <= 0 or packet <= 0:
        raise InvalidCacheConfig(
            f"{source}: tile size {sizes}, dpi {dpi} and packetSize {packet} must be above 0"
        )
    scheme = TilingScheme(
        spatial_reference=_spatial_reference(
            info.get("spatialReference") or root.get("spatialReference")
        ),
        origin_x=_number(origin, "x", source),
        origin_y=_number(origin, "y", source),
        tile_cols=sizes[0],
        tile_rows=sizes[1],
        dpi=dpi,
        lods=tuple(lods),
        tile_format=str(image.get("format", "PNG")),
        storage_format=str(storage.get("storageFormat", "esriMapCacheStorageModeCompactV2")),
        packet_size=packet,
    )
    extent = None
    full = root.get("fullExtent")
    if isinstance(full, dict):
        extent = Extent(*(_number(full, key, source) for key in ("xmin", "ymin", "xmax", "ymax")))
        if extent.is_empty:
            extent = None
    return scheme, extent


def read_v2_member(
    package: ZipPackage, bundle: BundleFile, scratch: Scratch | None = None
) -> BundleIndex:
    """Decode a Compact V2 bundle stored in a zip: the first 131,136 bytes of its entry."""
    _, info, modified = package.member(bundle)
    with package._archive().open(info) as entry:
        buf = entry.read(HEADER_INDEX_SIZE)
    return summarize_index(buf, info.file_size, bundle.key.row, bundle.key.col, scratch, modified)


def v2_member_tiles(package: ZipPackage, bundle: BundleFile) -> Iterator[StoredTile]:
    """The tiles of a Compact V2 bundle stored in a zip, in file order (see :func:`v2_tiles`)."""
    with package.open_member(bundle) as (read, size):
        head = read(0, HEADER_INDEX_SIZE)
        yield from v2_tiles(head, size, read, bundle.key.row, bundle.key.col)


class TilePackage(ZipPackage):
    """A ``.tpkx`` tile package: Compact V2 bundles read inside the zip."""

    name = "tpkx"
    description = "ArcGIS tile package (.tpkx: zip of root.json and Compact V2 bundles)"
    suffix = ".tpkx"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._scratch: Scratch | None = None
        archive = self._archive()
        try:
            data = archive.read(ROOT_JSON)
        except KeyError:
            raise InvalidCacheConfig(
                f"{path}: a zip without {ROOT_JSON}; a .tpkx tile package "
                "holds root.json (an older .tpk holds conf.xml)"
            ) from None
        self._scheme, self._extent = parse_root_json(data, f"{path}!{ROOT_JSON}")
        if self._scheme.storage_format != "esriMapCacheStorageModeCompactV2":
            raise InvalidCacheConfig(
                f"{path}: root.json declares {self._scheme.storage_format}; "
                "a .tpkx holds Compact V2 bundles"
            )

    def __getstate__(self) -> dict[str, object]:
        return {**super().__getstate__(), "_scratch": None}

    def _level_entries(self) -> dict[int, list[str]]:
        levels: dict[int, list[str]] = {}
        for name in self.entries:
            parts = name.rstrip("/").split("/")
            if len(parts) >= 3 and parts[-1].endswith(".bundle"):
                match = LEVEL_NAME.match(parts[-2])
                if match:
                    levels.setdefault(int(match.group(1)), []).append(name)
        return levels

    def unknown_levels(self) -> list[str]:
        """Level folders in the package that are not among its LODs."""
        known = set(self._scheme.levels)
        return sorted(f"L{lv:02d}" for lv in self._level_entries() if lv not in known)

    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """The bundle entries of a level folder inside the zip."""
        for name in sorted(self._level_entries().get(level, [])):
            yield parse_bundle_name(level, name.rsplit("/", 1)[-1], f"{self.path}!{name}")

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """Read the header and index of a bundle inside the zip."""
        if self._scratch is None:
            self._scratch = Scratch()
        return read_v2_member(self, bundle, self._scratch)

    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tiles inside the zip, in file order."""
        return v2_member_tiles(self, bundle)
