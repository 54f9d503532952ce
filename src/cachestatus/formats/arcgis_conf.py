"""Pure parsers for ArcGIS cache configuration files: ``conf.xml`` and ``conf.cdi``.

Layout (spec §4): ``CacheInfo/TileCacheInfo/{SpatialReference/{WKT,WKID,LatestWKID},
TileOrigin/{X,Y}, TileCols, TileRows, DPI, LODInfos/LODInfo/{LevelID,Scale,Resolution}}``,
``TileImageInfo/CacheTileFormat`` and ``CacheStorageInfo/{StorageFormat,PacketSize}``;
``conf.cdi`` is an ``EnvelopeN`` with ``XMin, YMin, XMax, YMax``.

Every value is checked where it enters, by the helpers here that ``root.json`` (``.tpkx``) uses
too: level IDs, scales, resolutions, tile size, DPI, origin, extent and spatial reference. A bad
value is an :class:`InvalidCacheConfig` naming the file, the element and the value. A
configuration file is read up to :data:`CONFIG_CAP` bytes (a tiling scheme is kilobytes), and an
XML one that declares entities is refused (entity expansion is how small XML files grow huge).
"""

from __future__ import annotations

import contextlib
import math
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections.abc import Sequence
from pathlib import Path

from ..errors import CorruptBundle, InvalidCacheConfig
from ..models import BUNDLE_SIZE, LOD, Extent, SpatialReference, TilingScheme, crs_known
from .bytesource import LocalFile, Opener

#: Most bytes read of a configuration file (conf.xml, conf.cdi, root.json): a tiling scheme of
#: a hundred levels with a long WKT is tens of kilobytes.
CONFIG_CAP = 16 * 2**20
#: Highest level ID: custom schemes have a few dozen levels; beyond this, tiles would be
#: smaller than any float can place.
MAX_LEVEL = 1023
#: Largest tile side in pixels (ArcGIS makes 128 to 1024; a few use more).
MAX_TILE_SIZE = 65_536
#: Largest DPI (ArcGIS uses 90 to 400).
MAX_DPI = 100_000.0


def check_size(data: bytes, source: str, cap: int = CONFIG_CAP) -> None:
    """Refuse configuration bytes over ``cap`` (read as ``cap + 1`` bytes at most)."""
    if len(data) > cap:
        raise InvalidCacheConfig(
            f"{source}: larger than {cap:,} bytes; a tiling scheme is kilobytes, so this is "
            "not the cache's configuration (or it is damaged)"
        )


def read_config(open_source: Opener, name: str, source: str, cap: int = CONFIG_CAP) -> bytes:
    """A configuration file (``conf.xml``, ``conf.cdi``, ``root.json``) that ``open_source``
    opens by ``name`` (a file, a zip member), read up to ``cap`` + 1 bytes (the parsers refuse
    more): never inflated past them, never blocking on a FIFO named like it.

    Raises:
        InvalidCacheConfig: it is not a regular file, or cannot be read (``source`` names it).
    """
    try:
        with open_source(name) as file:
            return file.read(0, cap + 1)
    except CorruptBundle as exc:
        raise InvalidCacheConfig(f"{source}: {exc.reason}") from None
    except OSError as exc:
        raise InvalidCacheConfig(f"{source}: cannot be read ({exc.strerror or exc})") from None


def read_config_file(path: Path, cap: int = CONFIG_CAP) -> bytes:
    """A configuration file of a folder, read as :func:`read_config` reads one.

    Raises:
        InvalidCacheConfig: it is not a regular file or cannot be read.
    """
    return read_config(LocalFile, str(path), str(path), cap)


def _entity_names(data: bytes) -> list[str]:
    """The entities an XML document declares (a first pass with expat; malformed XML is
    left to the parse that follows to report)."""
    names: list[str] = []
    scan = xml.parsers.expat.ParserCreate()
    scan.EntityDeclHandler = lambda name, *_: names.append(name)
    with contextlib.suppress(xml.parsers.expat.ExpatError, LookupError, ValueError):
        scan.Parse(data, True)
    return names


def _root(data: bytes, source: str, expected_tag: str) -> ET.Element:
    check_size(data, source)
    # Expat would expand internal entities (it bounds the expansion, but a conf.xml never
    # declares any): refused where declared, before any is used.
    declared = _entity_names(data)
    if declared:
        raise InvalidCacheConfig(
            f"{source}: declares the XML entity {declared[0]!r}; a cache configuration has "
            "none (entities can expand a small file to gigabytes)"
        )
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


def check_lods(lods: Sequence[tuple[float, float, float]], source: str, element: str) -> list[LOD]:
    """Levels from (level ID, scale, resolution) triples: IDs whole numbers 0 to
    :data:`MAX_LEVEL`, each once; scales and resolutions finite and above 0. Any number of
    levels (custom schemes have more than 32)."""
    found: list[LOD] = []
    seen: set[int] = set()
    for raw_level, scale, resolution in lods:
        if not (math.isfinite(raw_level) and raw_level == int(raw_level)):
            raise InvalidCacheConfig(
                f"{source}: {element} level ID {raw_level!r} is not a whole number"
            )
        level = int(raw_level)
        if not 0 <= level <= MAX_LEVEL:
            raise InvalidCacheConfig(
                f"{source}: {element} level ID {level} is outside 0-{MAX_LEVEL}"
            )
        if level in seen:
            raise InvalidCacheConfig(f"{source}: {element}: a LevelID appears twice ({level})")
        seen.add(level)
        for name, value in (("scale", scale), ("resolution", resolution)):
            if not (math.isfinite(value) and value > 0):
                raise InvalidCacheConfig(
                    f"{source}: {element} level {level} has {name} {value!r}; it must be above 0"
                )
        found.append(LOD(level, scale, resolution))
    if not found:
        raise InvalidCacheConfig(f"{source}: no {element} levels")
    return found


def check_tile_size(
    cols: float, rows: float, dpi: float, source: str, element: str
) -> tuple[int, int, float]:
    """Tile width and height in pixels (whole, 1 to :data:`MAX_TILE_SIZE`) and DPI (above 0)."""
    for value in (cols, rows):
        if not (math.isfinite(value) and value == int(value) and 1 <= value <= MAX_TILE_SIZE):
            raise InvalidCacheConfig(
                f"{source}: {element} tile size {cols:g} x {rows:g} pixels; each side must be a "
                f"whole number from 1 to {MAX_TILE_SIZE:,}"
            )
    if not (math.isfinite(dpi) and 0 < dpi <= MAX_DPI):
        raise InvalidCacheConfig(f"{source}: {element} DPI is {dpi!r}; it must be above 0")
    return int(cols), int(rows), dpi


def check_extent(values: Sequence[float], source: str, element: str) -> Extent:
    """An extent of finite coordinates with minimums not above maximums."""
    extent = Extent(*values)
    if (
        not all(math.isfinite(v) for v in extent)
        or extent.xmin > extent.xmax
        or extent.ymin > extent.ymax
    ):
        raise InvalidCacheConfig(
            f"{source}: {element} is {tuple(extent)}; it needs finite coordinates with "
            "xmin <= xmax and ymin <= ymax"
        )
    return extent


def check_spatial_reference(sr: SpatialReference, source: str, element: str) -> SpatialReference:
    """The spatial reference as PROJ can use it: codes it does not know dropped, a WKT it
    cannot read dropped, an ESRI code written out as its WKT.

    A spatial reference of which nothing is usable is returned as declared: the status store is
    then written without a CRS, with a warning that names it (see
    :func:`cachestatus.store.writer.store_crs`), decided before any work.
    """
    declared = sr.user_input()
    if declared is None or crs_known(declared):
        return sr
    wkt = sr.wkt if sr.wkt and crs_known(sr.wkt) else None
    wkid, latest = (
        c if c is None or c >= 100000 or crs_known(f"EPSG:{c}") else None
        for c in (sr.wkid, sr.latest_wkid)
    )
    usable = SpatialReference(wkid, latest, wkt)
    text = usable.user_input()
    if text is not None and crs_known(text):
        return usable
    for code in (sr.latest_wkid, sr.wkid):
        if code is not None and crs_known(f"ESRI:{code}"):  # e.g. 54009, Mollweide
            from pyproj import CRS

            return SpatialReference(None, None, CRS.from_user_input(f"ESRI:{code}").to_wkt())
    del source, element  # named by the store's warning, which shows the values
    return sr


def check_scheme(
    spatial_reference: SpatialReference,
    origin: tuple[float, float],
    tile_size: tuple[int, int, float],
    lods: Sequence[LOD],
    formats: tuple[str, str],
    packet: tuple[float, str],
    source: str,
) -> TilingScheme:
    """A tiling scheme of values the other helpers checked: ``tile_size`` is
    :func:`check_tile_size`'s, ``formats`` the tile and storage formats. The packet size is
    checked here (a whole number, 1 to :data:`MAX_TILE_SIZE`): ``packet`` is its value and the
    element that declares it."""
    value, element = packet
    if not (value == int(value) and 1 <= value <= MAX_TILE_SIZE):
        raise InvalidCacheConfig(
            f"{source}: {element} is {value!r}; bundles are {BUNDLE_SIZE} tiles a side"
        )
    (cols, rows, dpi), (tile_format, storage_format) = tile_size, formats
    x, y = origin
    return TilingScheme(
        spatial_reference,
        x,
        y,
        cols,
        rows,
        dpi,
        tuple(lods),
        tile_format,
        storage_format,
        int(value),
    )


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
    lods = check_lods(
        [
            (
                _number(node, "LevelID", source),
                _number(node, "Scale", source),
                _number(node, "Resolution", source),
            )
            for node in info.findall("LODInfos/LODInfo")
        ],
        source,
        "<LODInfos/LODInfo>",
    )
    dpi_node = info.find("DPI")
    tile_cols, tile_rows, dpi = check_tile_size(
        _number(info, "TileCols", source),
        _number(info, "TileRows", source),
        _number(info, "DPI", source) if dpi_node is not None else 96.0,
        source,
        "<TileCacheInfo>",
    )
    sr = check_spatial_reference(sr, source, "<SpatialReference>")
    fmt = root.findtext("TileImageInfo/CacheTileFormat", default="PNG").strip() or "PNG"
    storage = root.findtext("CacheStorageInfo/StorageFormat", default="").strip()
    origin = (_number(info, "TileOrigin/X", source), _number(info, "TileOrigin/Y", source))
    packet = _optional_int(root, "CacheStorageInfo/PacketSize") or BUNDLE_SIZE
    return check_scheme(
        sr,
        origin,
        (tile_cols, tile_rows, dpi),
        lods,
        (fmt, storage or "esriMapCacheStorageModeExploded"),
        (packet, "<CacheStorageInfo/PacketSize>"),
        source,
    )


def parse_conf_cdi(data: bytes, source: str = "conf.cdi") -> Extent:
    """Read the full extent from the bytes of an ArcGIS ``conf.cdi`` (``EnvelopeN``).

    Raises:
        InvalidCacheConfig: the XML is malformed, lacks a coordinate, or the envelope is empty.
    """
    root = _root(data, source, "EnvelopeN")
    extent = check_extent(
        [_number(root, tag, source) for tag in ("XMin", "YMin", "XMax", "YMax")],
        source,
        "<EnvelopeN>",
    )
    if extent.is_empty:
        raise InvalidCacheConfig(f"{source}: the envelope {tuple(extent)} has no area")
    return extent
