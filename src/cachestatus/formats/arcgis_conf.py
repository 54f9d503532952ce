"""Pure parsers for ArcGIS cache configuration files: ``conf.xml`` and ``conf.cdi``.

Layout (spec §4): ``CacheInfo/TileCacheInfo/{SpatialReference/{WKT,WKID,LatestWKID},
TileOrigin/{X,Y}, TileCols, TileRows, DPI, LODInfos/LODInfo/{LevelID,Scale,Resolution}}``,
``TileImageInfo/CacheTileFormat`` and ``CacheStorageInfo/{StorageFormat,PacketSize}``;
``conf.cdi`` is an ``EnvelopeN`` with ``XMin, YMin, XMax, YMax``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from ..errors import InvalidCacheConfig
from ..models import BUNDLE_SIZE, LOD, Extent, SpatialReference, TilingScheme


def _root(data: bytes, source: str, expected_tag: str) -> ET.Element:
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, LookupError) as exc:  # LookupError: an unknown encoding declared
        raise InvalidCacheConfig(
            f"{source}: not valid XML ({exc}); restore it from a backup "
            "or from the cache's source service"
        ) from None
    if root.tag.rsplit("}", 1)[-1] != expected_tag:
        raise InvalidCacheConfig(
            f"{source}: root element is <{root.tag}>, expected "
            f"<{expected_tag}>; is this the cache's configuration file?"
        )
    return root


def _text(node: ET.Element, path: str, source: str) -> str:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise InvalidCacheConfig(f"{source}: missing <{path}>")
    return found.text.strip()


def _number(node: ET.Element, path: str, source: str) -> float:
    text = _text(node, path, source)
    try:
        value = float(text)
    except ValueError:
        raise InvalidCacheConfig(f"{source}: <{path}> is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise InvalidCacheConfig(f"{source}: <{path}> is {text!r}, not a finite number")
    return value


def _optional_int(node: ET.Element, path: str) -> int | None:
    found = node.find(path)
    if found is None or found.text is None:
        return None
    try:
        return int(found.text.strip())
    except ValueError:
        return None


def parse_conf_xml(data: bytes, source: str = "conf.xml") -> TilingScheme:
    """Read a tiling scheme from the bytes of an ArcGIS ``conf.xml``.

    Args:
        data: the file's bytes.
        source: the path to name in error messages.

    Raises:
        InvalidCacheConfig: the XML is malformed or lacks a required element.
    """
    root = _root(data, source, "CacheInfo")
    info = root.find("TileCacheInfo")
    if info is None:
        raise InvalidCacheConfig(f"{source}: missing <TileCacheInfo>")
    sr_node = info.find("SpatialReference")
    sr = SpatialReference()
    if sr_node is not None:
        wkt = sr_node.find("WKT")
        sr = SpatialReference(
            wkid=_optional_int(sr_node, "WKID"),
            latest_wkid=_optional_int(sr_node, "LatestWKID"),
            wkt=wkt.text.strip() if wkt is not None and wkt.text else None,
        )
    lods = []
    for node in info.findall("LODInfos/LODInfo"):
        level = _number(node, "LevelID", source)
        lod = LOD(int(level), _number(node, "Scale", source), _number(node, "Resolution", source))
        if lod.resolution <= 0 or lod.scale <= 0:
            raise InvalidCacheConfig(f"{source}: level {lod.level} has a scale or resolution <= 0")
        lods.append(lod)
    if not lods:
        raise InvalidCacheConfig(f"{source}: no <LODInfos/LODInfo> levels")
    if len({lod.level for lod in lods}) != len(lods):
        raise InvalidCacheConfig(f"{source}: a LevelID appears twice in <LODInfos>")
    tile_cols = int(_number(info, "TileCols", source))
    tile_rows = int(_number(info, "TileRows", source))
    if tile_cols <= 0 or tile_rows <= 0:
        raise InvalidCacheConfig(f"{source}: tile size {tile_cols} x {tile_rows} is not positive")
    dpi_node = info.find("DPI")
    dpi = _number(info, "DPI", source) if dpi_node is not None else 96.0
    fmt = root.findtext("TileImageInfo/CacheTileFormat", default="PNG").strip() or "PNG"
    storage = root.findtext("CacheStorageInfo/StorageFormat", default="").strip()
    packet = _optional_int(root, "CacheStorageInfo/PacketSize") or BUNDLE_SIZE
    return TilingScheme(
        spatial_reference=sr,
        origin_x=_number(info, "TileOrigin/X", source),
        origin_y=_number(info, "TileOrigin/Y", source),
        tile_cols=tile_cols,
        tile_rows=tile_rows,
        dpi=dpi,
        lods=tuple(lods),
        tile_format=fmt,
        storage_format=storage or "esriMapCacheStorageModeExploded",
        packet_size=packet,
    )


def parse_conf_cdi(data: bytes, source: str = "conf.cdi") -> Extent:
    """Read the full extent from the bytes of an ArcGIS ``conf.cdi`` (``EnvelopeN``).

    Raises:
        InvalidCacheConfig: the XML is malformed, lacks a coordinate, or the envelope is empty.
    """
    root = _root(data, source, "EnvelopeN")
    extent = Extent(*(_number(root, tag, source) for tag in ("XMin", "YMin", "XMax", "YMax")))
    if extent.is_empty:
        raise InvalidCacheConfig(f"{source}: the envelope {tuple(extent)} has no area")
    return extent
