"""JSON a cache describes itself with: a tile package's ``root.json``, PMTiles JSON metadata,
TileJSON-style metadata (MBTiles ``metadata`` rows, a tile folder's ``metadata.json``).

JSON from a cache is read within limits, as every configuration file is: at most
:data:`~.arcgis_conf.CONFIG_CAP` bytes, arrays and objects nested at most
:data:`MAX_JSON_DEPTH` deep (counted before parsing: the parser recurses once a level). Values
are checked where they enter: a bad one is an :class:`InvalidCacheConfig` naming the source, the
key and the value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InvalidCacheConfig
from .arcgis_conf import MAX_TILE_SIZE, check_size

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
