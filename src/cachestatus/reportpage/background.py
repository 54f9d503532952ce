"""The report page's background: the cache's own stored tiles of whole coarse levels, as they
are stored (no decoding: holes stay holes), within a byte budget, as data URIs."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..content import RASTER, kind_of
from ..errors import CorruptBundle, UsageError
from ..formats import CacheReader
from ..formats.base import BundleFile
from ..models import LevelSummary

#: Stored bytes of background tiles a page embeds by default (about 4 MB once in base64).
DEFAULT_BUDGET = 3_000_000
#: The tile kinds a browser draws, with their media types.
_MEDIA = {kind: f"image/{kind}" for kind in (*RASTER, "avif")}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(i?)[bB]?\s*$")
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_budget(text: str) -> int:
    """A byte count such as ``3MB``, ``500kB``, ``2MiB`` or ``1000000``.

    Raises:
        UsageError: not a size.
    """
    found = _SIZE.match(text)
    if found is None:
        raise UsageError(f"{text!r} is not a size (try 3MB, 500kB or a number of bytes)")
    number, prefix, binary = found.groups()
    unit = _UNITS[prefix.lower()]
    if binary and prefix:
        unit = 1024 ** ("kmg".index(prefix.lower()) + 1)
    return int(float(number) * unit)


@dataclass(frozen=True)
class Background:
    """Stored tiles embedded in a page: every stored tile of ``levels``, whole levels from the
    coarsest, keyed ``"level/row/col"`` (the cache's own grid) with their data URIs."""

    #: The LOD levels embedded, coarsest first: a prefix of the scheme's LODs.
    levels: tuple[int, ...] = ()
    #: ``"level/row/col"`` -> ``data:image/...;base64,...``.
    tiles: dict[str, str] = field(default_factory=dict)
    #: Stored bytes of the embedded tiles (before base64).
    stored_bytes: int = 0
    #: Why the background stops where it does, for the page's note.
    note: str = ""


def _level_tiles(reader: CacheReader, level: int, room: int) -> tuple[dict[str, str], int] | None:
    """The data URIs of every drawable stored tile of ``level``, and their stored bytes; ``None``
    when they would not fit in ``room`` bytes."""
    tiles: dict[str, str] = {}
    size = 0
    for item in reader.list_level(level):
        if not isinstance(item, BundleFile):
            continue
        try:
            stored = list(reader.read_tiles(item))
        except (CorruptBundle, OSError):
            continue  # a bundle that cannot be read shows as a hole: the page lists it
        for tile in stored:
            media = _MEDIA.get(kind_of(tile.data) or "")
            if tile.damage or media is None:
                continue
            size += len(tile.data)
            if size > room:
                return None
            encoded = base64.b64encode(tile.data).decode("ascii")
            tiles[f"{level}/{tile.row}/{tile.col}"] = f"data:{media};base64,{encoded}"
    return tiles, size


def background_tiles(
    reader: CacheReader, budget: int, levels: Sequence[LevelSummary] = ()
) -> Background:
    """The stored tiles of whole levels, from the coarsest, while their stored bytes stay within
    ``budget``. ``levels`` (the stored ``LevelStatus``) lets a level too big for what is left be
    skipped without reading it; a level the store has no size for is measured as it is read."""
    known = {lv.level: lv.tile_bytes for lv in levels}
    lods = sorted(reader.scheme.lods, key=lambda lod: -lod.resolution)
    taken: list[int] = []
    tiles: dict[str, str] = {}
    used = 0
    note = "every level of the cache is embedded"
    for lod in lods:
        room = budget - used
        found = None if known.get(lod.level, 0) > room else _level_tiles(reader, lod.level, room)
        if found is None:
            note = (
                f"levels {_span(taken)} embedded ({used:,} bytes of tiles); level {lod.level} "
                f"and finer would exceed the {budget:,}-byte budget (--background-budget)"
                if taken
                else f"level {lod.level} alone exceeds the {budget:,}-byte budget "
                "(--background-budget): no background"
            )
            break
        taken.append(lod.level)
        tiles.update(found[0])
        used += found[1]
    if taken and not tiles:
        note = "no stored tile is an image a browser draws: no background"
    return Background(tuple(taken), tiles, used, note)


def _span(levels: Sequence[int]) -> str:
    return f"{levels[0]}-{levels[-1]}" if len(levels) > 1 else str(levels[0])
