"""ArcGIS tile packages ``.tpkx``: a zip holding ``root.json`` and Compact V2 bundles.

``root.json`` carries the tiling scheme as ArcGIS REST JSON (``tileInfo``: ``rows``, ``cols``,
``dpi``, ``origin``, ``spatialReference``, ``lods``), the ``fullExtent``, ``storageInfo`` and
``minLOD``/``maxLOD`` (the levels the package holds). Bundles are ``tile/Lnn/R....C....bundle``
(under ``tileBundlesPath``). They are read inside the zip, never extracted: only the first
131,136 bytes of each, as for a folder cache.

``root.json`` is read up to 16 MiB and nested at most :data:`MAX_JSON_DEPTH` deep; its values
are checked by the helpers :mod:`.arcgis_conf` uses for ``conf.xml``. A bundle member that
cannot be inflated, or declares more bytes than its compressed data can hold, is a ``CORRUPT``
bundle.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptBundle, InvalidCacheConfig
from ..models import Extent, Problem, SpatialReference, TilingScheme
from .arcgis_conf import (
    check_extent,
    check_lods,
    check_size,
    check_spatial_reference,
    check_tile_size,
    read_member,
)
from .arcgis_folder import LEVEL_NAME, parse_bundle_name
from .base import BundleFile, BundleIndex, StoredTile, ZipPackage
from .compact_v2 import HEADER_INDEX_SIZE, Scratch, summarize_index, v2_tiles

ROOT_JSON = "root.json"
#: Deepest nesting of arrays and objects read in JSON (a root.json nests 4 deep).
MAX_JSON_DEPTH = 64
#: Most bytes deflate can make of one compressed byte (1032:1), with room to spare.
MAX_RATIO = 1100
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """How deep arrays and objects nest in JSON text (strings skipped), counted without
    parsing: the parser recurses once a level."""
    bare = np.frombuffer(_JSON_STRING.sub(b'""', data), dtype=np.uint8)
    step = np.isin(bare, (ord("["), ord("{"))).astype(np.int64) - np.isin(
        bare, (ord("]"), ord("}"))
    )
    return int(np.cumsum(step).max(initial=0))


def load_json(data: bytes, source: str) -> Any:
    """JSON from a configuration file: at most 16 MiB, nested at most :data:`MAX_JSON_DEPTH`.

    Raises:
        InvalidCacheConfig: too large, too deep, or not JSON.
    """
    check_size(data, source)
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise InvalidCacheConfig(
            f"{source}: JSON nested {depth:,} deep; a tile package's root.json nests a few "
            f"levels (at most {MAX_JSON_DEPTH} are read)"
        )
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidCacheConfig(f"{source}: not valid JSON ({exc})") from None


@contextlib.contextmanager
def member_errors(info: zipfile.ZipInfo) -> Iterator[None]:
    """Turn what reading a damaged zip member raises into :class:`CorruptBundle`, and refuse a
    member that declares more bytes than its compressed data can hold (before inflating it)."""
    stored = info.compress_type == zipfile.ZIP_STORED
    if (stored and info.file_size != info.compress_size) or (
        info.file_size > MAX_RATIO * max(info.compress_size, 1)
    ):
        raise CorruptBundle(
            f"the zip entry declares {info.file_size:,} bytes from {info.compress_size:,} "
            "compressed bytes, more than its compression can hold"
        )
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, ValueError) as exc:
        # RuntimeError: encrypted; NotImplementedError (a RuntimeError): unknown compression.
        raise CorruptBundle(f"the zip entry cannot be read ({type(exc).__name__}: {exc})") from None


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
    root = load_json(data, source)
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
    cols, rows, dpi = check_tile_size(
        _number(info, "cols", source),
        _number(info, "rows", source),
        _optional(info, "dpi", 96.0, source),
        source,
        "tileInfo",
    )
    packet = _optional(storage, "packetSize", 128, source)
    if not (packet == int(packet) and 1 <= packet <= 65_536):
        raise InvalidCacheConfig(
            f"{source}: storageInfo.packetSize is {packet!r}; bundles are 128 tiles a side"
        )
    scheme = TilingScheme(
        spatial_reference=check_spatial_reference(
            _spatial_reference(info.get("spatialReference") or root.get("spatialReference")),
            source,
            "tileInfo.spatialReference",
        ),
        origin_x=_number(origin, "x", source),
        origin_y=_number(origin, "y", source),
        tile_cols=cols,
        tile_rows=rows,
        dpi=dpi,
        lods=tuple(lods),
        tile_format=str(image.get("format", "PNG"))[:40],
        storage_format=str(storage.get("storageFormat", "esriMapCacheStorageModeCompactV2"))[:80],
        packet_size=int(packet),
    )
    extent = None
    full = root.get("fullExtent")
    if isinstance(full, dict):
        extent = check_extent(
            [_number(full, key, source) for key in ("xmin", "ymin", "xmax", "ymax")],
            source,
            "fullExtent",
        )
        if extent.is_empty:
            extent = None
    return scheme, extent


def read_v2_member(
    package: ZipPackage, bundle: BundleFile, scratch: Scratch | None = None
) -> BundleIndex:
    """Decode a Compact V2 bundle stored in a zip: the first 131,136 bytes of its entry."""
    _, info, modified = package.member(bundle)
    with member_errors(info), package._archive().open(info) as entry:
        buf = entry.read(HEADER_INDEX_SIZE)
    return summarize_index(buf, info.file_size, bundle.key.row, bundle.key.col, scratch, modified)


def v2_member_tiles(package: ZipPackage, bundle: BundleFile) -> Iterator[StoredTile]:
    """The tiles of a Compact V2 bundle stored in a zip, in file order (see :func:`v2_tiles`)."""
    _, info, _ = package.member(bundle)
    with member_errors(info), package.open_member(bundle) as (read, size):
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
            data = read_member(archive, ROOT_JSON, f"{path}!{ROOT_JSON}")
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
