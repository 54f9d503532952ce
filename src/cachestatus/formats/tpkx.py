"""ArcGIS tile packages ``.tpkx``: a zip holding ``root.json`` and Compact V2 bundles, or the
same files unpacked into a folder.

``root.json`` carries the tiling scheme as ArcGIS REST JSON (``tileInfo``: ``rows``, ``cols``,
``dpi``, ``origin``, ``spatialReference``, ``lods``), the ``fullExtent``, ``storageInfo`` and
``minLOD``/``maxLOD`` (the levels the package holds). Bundles are ``tile/Lnn/R....C....bundle``
(under ``tileBundlesPath``). In a zip they are read in place, never extracted: only the first
131,136 bytes of each, as for a folder cache. An unpacked package (Esri's tile-package
specification shows one; ArcGIS Pro unpacks them) is read like a Compact V2 folder cache, with
``root.json`` in the role of ``conf.xml``.

What a package declares: ``minLOD``..``maxLOD`` are its levels, each expected whether built or
not; ``fullExtent`` (in the tiling scheme's CRS) is the full extent, and one that is a point or
a line makes the tiles holding it expected (an all-zero one is none: the whole grid).

``root.json`` is read up to 16 MiB and nested at most :data:`~.tilejson.MAX_JSON_DEPTH` deep;
its values are checked by the helpers :mod:`.arcgis_conf` uses for ``conf.xml``. A bundle
member that cannot be inflated, or declares more bytes than its compressed data can hold, is a
``CORRUPT`` bundle.
"""

from __future__ import annotations

import contextlib
import math
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import CorruptBundle, InvalidCacheConfig
from ..models import Extent, Problem, SpatialReference, TilingScheme
from .arcgis_conf import (
    check_extent,
    check_lods,
    check_spatial_reference,
    check_tile_size,
    read_config_file,
    read_member,
)
from .arcgis_folder import CONF_NAMES, LEVEL_NAME, list_level_folders, parse_bundle_name
from .base import (
    BundleFile,
    BundleIndex,
    CacheReader,
    FileHead,
    StoredTile,
    ZipPackage,
)
from .compact_v2 import HEADER_INDEX_SIZE, CompactV2Cache, Scratch, summarize_index, v2_tiles
from .tilejson import load_json

ROOT_JSON = "root.json"
#: Where bundles are when ``root.json`` does not say (``tileBundlesPath``).
BUNDLES_DIR = "tile"
V2_STORAGE = "esriMapCacheStorageModeCompactV2"
#: Most bytes deflate can make of one compressed byte (1032:1), with room to spare.
MAX_RATIO = 1100


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
        if not any(extent):  # never set; a point or a line stays one
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

    @classmethod
    def recognise(cls, path: Path, found: FileHead) -> bool:
        """A zip holding ``root.json`` at its top, whatever its name."""
        return ROOT_JSON in found.zip_names

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
        if self._scheme.storage_format != V2_STORAGE:
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


class TilePackageFolder(CompactV2Cache):
    """A ``.tpkx`` unpacked into a folder: ``root.json`` and ``tile/Lnn/R....C....bundle``.

    Read as the Compact V2 folder cache it is: the scheme and extent from ``root.json``
    (:func:`parse_root_json`), the bundles by the Compact V2 folder reader. Its default status
    store goes inside the folder, beside ``root.json``, as ArcGIS keeps ``Status.gdb`` beside
    ``conf.xml``.
    """

    name = "tpkx-folder"
    description = "ArcGIS tile package unpacked to a folder (root.json, tile/Lnn/R....C....bundle)"
    storage_formats = (V2_STORAGE,)

    def __init__(self, path: Path) -> None:
        CacheReader.__init__(self, path)
        folder = path.parent if path.is_file() and path.name == ROOT_JSON else path
        root_json = folder / ROOT_JSON
        if not root_json.exists():
            raise InvalidCacheConfig(f"{path}: no {ROOT_JSON} in it; is it an unpacked .tpkx?")
        self._scratch = None
        self.conf_path = root_json
        self.cache_dir = folder
        data = read_config_file(root_json)
        self._scheme, self._extent = parse_root_json(data, str(root_json))
        if self._scheme.storage_format != V2_STORAGE:
            raise InvalidCacheConfig(
                f"{root_json} declares {self._scheme.storage_format}; a tile package holds "
                "Compact V2 bundles"
            )
        self.layers_dir = folder / _bundles_path(load_json(data, str(root_json)), root_json)
        self._levels = list_level_folders(self.layers_dir)

    @classmethod
    def detect(cls, path: Path) -> bool:
        """A folder holding ``root.json`` (or that file itself) and no ``conf.xml``: its
        content, not its name, says it is a package (a folder of another kind is refused with
        what its ``root.json`` lacks)."""
        folder = path.parent if path.is_file() and path.name == ROOT_JSON else path
        if not folder.is_dir() or any((folder / name).exists() for name in CONF_NAMES):
            return False
        return (folder / ROOT_JSON).exists()  # a FIFO or folder so named is refused by name


def _bundles_path(root: Any, source: Path) -> str:
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
