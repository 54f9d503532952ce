"""JSON a cache describes itself with: a tile package's ``root.json``, PMTiles JSON metadata,
TileJSON-style metadata (MBTiles ``metadata`` rows, a tile folder's ``metadata.json``).

JSON from a cache is read within limits, as every configuration file is: at most
:data:`~.arcgis_conf.CONFIG_CAP` bytes, arrays and objects nested at most
:data:`MAX_JSON_DEPTH` deep (counted before parsing: the parser recurses once a level). Values
are checked where they enter: a bad one is an :class:`InvalidCacheConfig` naming the source, the
key and the value.

TileJSON-style metadata (MBTiles ``metadata`` rows, which are all text, and the
``metadata.json`` that mb-util, tippecanoe and gdal2tiles write beside a tile folder, text or
JSON numbers) declares the tiles of the Web Mercator (GoogleMapsCompatible) grid:

- ``bounds`` (``west,south,east,north`` in WGS 84 degrees, text or an array) is the full extent,
  put into Web Mercator (:func:`~cachestatus.grid.web_mercator`, latitudes kept to its square,
  +-85.0511). Bounds that are a point or a line stay one: the tiles holding it are expected.
  Bounds that are not four finite numbers, or west above east, are ignored with a warning
  (:func:`declared_bounds`).
- ``minzoom``..``maxzoom`` are the levels (:func:`declared_zooms`): each is expected, built or
  not; tiles at other zooms are not scanned (a warning names them).
- ``tileSize`` is the tile size in pixels (:func:`tile_size`), 256 when absent.

Such values that cannot be used are ignored with a warning (the tiles still tell the levels and
the grid tells the extent): only a ``tileSize`` that is not one is refused, as a wrong size
would shift every scale.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidCacheConfig
from ..grid import web_mercator
from ..models import Extent
from .arcgis_conf import CONFIG_CAP, MAX_TILE_SIZE, check_size, read_config
from .bytesource import Opener

log = logging.getLogger(__name__)

#: The TileJSON-style file mb-util and tippecanoe write beside a tile folder's zoom folders.
FOLDER_METADATA = "metadata.json"
#: The most of it detection reads to learn its ``scheme`` (real ones are a few hundred bytes).
DETECT_METADATA_BYTES = 64 * 1024
#: Row orders TileJSON's ``scheme`` names: ``xyz`` (rows down, the default) and ``tms`` (up).
ROW_ORDERS = ("xyz", "tms")

#: Deepest nesting of arrays and objects read in JSON (a root.json nests 4 deep, TileJSON 5).
MAX_JSON_DEPTH = 64
#: Keys that give the tile size in pixels: ``tileSize`` (TileJSON as map libraries read it,
#: PMTiles metadata), and the spellings other writers use.
TILE_SIZE_KEYS = ("tileSize", "tilesize", "tile_size")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """How deep arrays and objects nest in JSON text (strings skipped), counted without
    parsing: the parser recurses once a level."""
    bare = np.frombuffer(_JSON_STRING.sub(b'""', data), dtype=np.uint8)
    step = np.isin(bare, (ord("["), ord("{"))).astype(np.int64) - np.isin(
        bare, (ord("]"), ord("}"))
    )
    return int(np.cumsum(step).max(initial=0))


def load_json(data: bytes, source: str, what: str = "a tile package's root.json") -> Any:
    """JSON from a cache: at most 16 MiB, nested at most :data:`MAX_JSON_DEPTH` deep.

    Args:
        data: the JSON text (already read or decompressed within the size cap).
        source: the path to name in error messages.
        what: what the JSON is, for the message about nesting.

    Raises:
        InvalidCacheConfig: too large, too deep, or not JSON.
    """
    check_size(data, source)
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise InvalidCacheConfig(
            f"{source}: JSON nested {depth:,} deep; {what} nests a few levels (at most "
            f"{MAX_JSON_DEPTH} are read)"
        )
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidCacheConfig(f"{source}: not valid JSON ({exc})") from None


def tile_size(metadata: Mapping[str, Any], source: str) -> int | None:
    """The tile size in pixels that metadata declares (``tileSize``), ``None`` when it declares
    none.

    Takes a JSON number or, as MBTiles ``metadata`` rows store every value, its text.

    Raises:
        InvalidCacheConfig: the value is not a whole number of pixels from 1 to 65,536.
    """
    for key in TILE_SIZE_KEYS:
        if key in metadata and metadata[key] is not None:
            value = metadata[key]
            break
    else:
        return None
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not (
        math.isfinite(number) and number == int(number) and 1 <= number <= MAX_TILE_SIZE
    ):
        raise InvalidCacheConfig(
            f"{source}: {key} is {value!r:.80}; a tile size is a whole number of pixels from 1 "
            f"to {MAX_TILE_SIZE:,} (256 and 512 are usual)"
        )
    return int(number)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def metadata_int(value: object) -> int | None:
    """An integer of TileJSON-style metadata (``minzoom``, ``maxzoom``), or ``None`` when the
    value is not one: text of ASCII digits (at most 12, with a sign), an integer, a float
    without a fraction. Never raises."""
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if digits.isascii() and digits.isdigit() and len(digits) <= 12:
            return int(text)
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def declared_zooms(
    metadata: Mapping[str, Any], source: str, highest: int
) -> tuple[int | None, int | None] | None:
    """``minzoom`` and ``maxzoom`` as metadata declares them, kept to ``0..highest`` (with a
    warning); ``None`` in place of one it does not declare. ``None`` when it declares neither,
    or a value that is not a zoom level, or minzoom above maxzoom (with a warning): then the
    declaration is ignored."""
    low, high = metadata.get("minzoom"), metadata.get("maxzoom")
    if low is None and high is None:
        return None
    first = None if low is None else metadata_int(low)
    last = None if high is None else metadata_int(high)
    if (low is not None and first is None) or (high is not None and last is None):
        log.warning(
            "%s: minzoom %s / maxzoom %s are not zoom levels; ignored",
            source,
            _shown(low),
            _shown(high),
        )
        return None
    kept = tuple(None if v is None else max(0, min(v, highest)) for v in (first, last))
    if kept != (first, last):
        log.warning(
            "%s: minzoom %s / maxzoom %s kept to %s / %s: the grid's levels are 0 to %d",
            source,
            first,
            last,
            kept[0],
            kept[1],
            highest,
        )
    if first is not None and last is not None and first > last:
        log.warning("%s: minzoom %s is above maxzoom %s; ignored", source, first, last)
        return None
    return kept[0], kept[1]


def declared_bounds(value: object, source: str) -> tuple[float, float, float, float] | None:
    """``bounds`` as metadata declares them (``west,south,east,north`` in WGS 84 degrees, text
    or a JSON array), kept to the world; ``None`` when absent or unusable (with a warning).

    A point or a line (west = east, or south = north) is kept: it declares the tiles holding
    it. Not four finite numbers, or west above east or south above north, is unusable.
    """
    if value is None:
        return None
    numbers: list[float] = []
    try:
        if isinstance(value, str):
            numbers = [float(v) for v in value.split(",", 4)]
        elif isinstance(value, (list, tuple)):
            for v in value[:5]:
                if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                    raise ValueError
                numbers.append(float(v))
        else:
            raise ValueError
    except (ValueError, OverflowError):
        numbers = []
    if len(numbers) != 4:
        log.warning("%s: bounds %s are not four numbers; ignored", source, _shown(value))
        return None
    west, south, east, north = numbers
    if not all(math.isfinite(v) for v in numbers):
        log.warning("%s: bounds %s are not finite; ignored", source, _shown(value))
        return None
    if not (west <= east and south <= north):
        log.warning(
            "%s: bounds %s: west is not below east or south not below north; ignored, the "
            "whole grid is expected",
            source,
            _shown(value),
        )
        return None
    if max(abs(west), abs(east)) > 180 or max(abs(south), abs(north)) > 90:
        log.warning(
            "%s: bounds %s reach beyond the world; kept to it (longitudes -180 to 180, "
            "latitudes -90 to 90)",
            source,
            _shown(value),
        )
    west, east = max(-180.0, min(west, 180.0)), max(-180.0, min(east, 180.0))
    south, north = max(-90.0, min(south, 90.0)), max(-90.0, min(north, 90.0))
    return west, south, east, north


def web_mercator_extent(bounds: tuple[float, float, float, float]) -> Extent:
    """WGS 84 ``bounds`` (west, south, east, north) as an extent in Web Mercator, the grid's
    CRS, latitudes kept to its square. A point or a line stays one."""
    west, south, east, north = bounds
    xmin, ymin = web_mercator(west, south)
    xmax, ymax = web_mercator(east, north)
    return Extent(xmin, ymin, xmax, ymax)


def zoom_levels(stored: Sequence[int], declared: tuple[int | None, int | None] | None) -> list[int]:
    """The levels of a Web Mercator cache: ``minzoom``..``maxzoom`` when declared (a bound not
    declared is the stored levels' own), else the levels holding tiles; level 0 when there is
    nothing at all."""
    if declared is None:
        return list(stored) or [0]
    low, high = declared
    if low is None:
        low = min(stored, default=high)
    if high is None:
        high = max(stored, default=low)
    if low is None or high is None or low > high:  # one bound, the tiles all past it
        return list(stored) or [0]
    return list(range(low, high + 1))


def folder_metadata(
    open_source: Opener | None, source: str, cap: int | None = None
) -> dict[str, Any]:
    """The ``metadata.json`` beside a tile folder's zoom folders, as an object: empty when there
    is none (``open_source`` is ``None``), or when it is not a JSON object (with a warning: it
    may be another tool's file, and the tiles still tell the levels). Read within the limits of
    configuration files, or ``cap`` bytes (detection: a larger file is not read).

    Args:
        open_source: what opens it (a local file, an object), called with ``source``.
        source: how messages name it (its path or URL).
        cap: the most read; ``None``: the limit of configuration files, warning when refused.
    """
    if open_source is None:
        return {}
    try:
        data = read_config(open_source, source, source, CONFIG_CAP if cap is None else cap)
        if cap is not None and len(data) > cap:
            return {}
        value = load_json(data, source, what="a tile folder's metadata.json")
    except InvalidCacheConfig as exc:
        if cap is None:
            log.warning("%s; ignored", exc)
        return {}
    if not isinstance(value, dict):
        if cap is None:
            log.warning("%s: not a JSON object; ignored", source)
        return {}
    return value


def declared_row_order(metadata: Mapping[str, Any], source: str, warn: bool = True) -> str | None:
    """TileJSON's ``scheme``: ``xyz`` or ``tms``, ``None`` when absent or neither (with a
    warning unless ``warn`` is false)."""
    value = metadata.get("scheme")
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ROW_ORDERS:
        return value.strip().lower()
    if warn:
        log.warning("%s: scheme %s is neither xyz nor tms; ignored", source, _shown(value))
    return None


def declared_format(metadata: Mapping[str, Any], source: str) -> str | None:
    """TileJSON-style ``format`` (png, jpg, webp, pbf), upper case; ``None`` when absent, or
    not a short printable word (with a warning)."""
    value = metadata.get("format")
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isprintable() and len(value) <= 16:
        return value.strip().upper()
    log.warning("%s: format %s is not a tile format; any image is fine", source, _shown(value))
    return None
