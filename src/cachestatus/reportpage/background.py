"""The report page's background: the cache's own stored tiles of whole coarse levels, as they
are stored (no decoding: holes stay holes), within a byte budget, as data URIs; or one level's
stored tiles composited into one image (``--background mosaic``), for caches whose coarse
levels alone exceed the budget."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..content import BROWSER_IMAGES, MEDIA_TYPES, RASTER, kind_of
from ..errors import CorruptBundle, UsageError
from ..formats import CacheReader
from ..formats.base import BundleFile, StoredTile
from ..grid import range_bounds, tiles_in_extent
from ..models import LevelSummary, TileRange
from ..plan import expected_extent

#: Stored bytes of background tiles a page embeds by default (about 4 MB once in base64).
DEFAULT_BUDGET = 3_000_000
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(i?)[bB]?\s*$")
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
#: A mosaic's width and height, at most, in pixels.
MOSAIC_SIZE = 4096
#: WebP quality of a mosaic (lossy: a mosaic is a picture of the cache, not its tiles).
_MOSAIC_QUALITY = 80


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
    #: ``--background mosaic``: one image (a data URI) of the level in ``levels``...
    image: str = ""
    #: ... covering this rectangle (xmin, ymin, xmax, ymax) of the map.
    image_extent: tuple[float, float, float, float] | None = None
    #: Stored tiles drawn into ``image``.
    image_tiles: int = 0

    @property
    def tile_count(self) -> int:
        """Stored tiles the background shows."""
        return len(self.tiles) or self.image_tiles

    def as_json(self) -> dict[str, Any]:
        """What the embedded page's script reads."""
        image = None
        if self.image and self.image_extent is not None:
            image = {"url": self.image, "extent": list(self.image_extent)}
        return {"levels": list(self.levels), "tiles": self.tiles, "image": image}


def _stored_tiles(reader: CacheReader, level: int) -> Iterator[StoredTile]:
    """The stored tiles of ``level`` whose storage is sound, bundle by bundle."""
    for item in reader.list_level(level):
        if not isinstance(item, BundleFile):
            continue
        try:
            stored = list(reader.read_tiles(item))
        except (CorruptBundle, OSError):
            continue  # a bundle that cannot be read shows as a hole: the page lists it
        yield from (tile for tile in stored if not tile.damage)


def _level_tiles(reader: CacheReader, level: int, room: int) -> tuple[dict[str, str], int] | None:
    """The data URIs of every drawable stored tile of ``level``, and their stored bytes; ``None``
    when they would not fit in ``room`` bytes."""
    tiles: dict[str, str] = {}
    size = 0
    for tile in _stored_tiles(reader, level):
        kind = kind_of(tile.data)
        if kind not in BROWSER_IMAGES:
            continue
        size += len(tile.data)
        if size > room:
            return None
        tiles[f"{level}/{tile.row}/{tile.col}"] = _data_uri(MEDIA_TYPES[kind], tile.data)
    return tiles, size


def _data_uri(media: str, data: bytes) -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode('ascii')}"


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


def _composite(reader: CacheReader, level: int, block: TileRange) -> tuple[bytes, str, int] | None:
    """The stored tiles of ``level`` in ``block`` drawn into one image (holes transparent),
    encoded, with its media type and the tiles drawn; ``None`` when no tile could be drawn."""
    from PIL import Image, features

    scheme = reader.scheme
    width, height = scheme.tile_cols, scheme.tile_rows
    canvas = Image.new(
        "RGBA", ((block.col1 - block.col0) * width, (block.row1 - block.row0) * height)
    )
    drawn = 0
    for tile in _stored_tiles(reader, level):
        inside = block.row0 <= tile.row < block.row1 and block.col0 <= tile.col < block.col1
        if not inside or kind_of(tile.data) not in RASTER:
            continue
        try:
            with Image.open(io.BytesIO(tile.data)) as image:
                picture = image.convert("RGBA")
        except Exception:  # Pillow raises many types for broken images: a hole, verify says why
            continue
        canvas.paste(picture, ((tile.col - block.col0) * width, (tile.row - block.row0) * height))
        drawn += 1
    if not drawn:
        return None
    out = io.BytesIO()
    if features.check("webp"):
        canvas.save(out, "WEBP", quality=_MOSAIC_QUALITY, method=4)
        return out.getvalue(), "image/webp", drawn
    canvas.save(out, "PNG", optimize=True)
    return out.getvalue(), "image/png", drawn


def background_mosaic(
    reader: CacheReader, budget: int, levels: Sequence[LevelSummary] = ()
) -> Background:
    """One level's stored tiles composited into one image (WebP, or PNG where Pillow has no
    WebP): the finest level with stored tiles whose tiles over the full extent fit in
    :data:`MOSAIC_SIZE` pixels a side and whose image fits in ``budget`` bytes. ``levels``
    (the stored ``LevelStatus``) lets levels without tiles be skipped unread."""
    scheme = reader.scheme
    extent = expected_extent(reader)
    if extent is None:
        return Background(note="the cache declares no extent to draw a mosaic of: no background")
    present = {lv.level: lv.tiles_present for lv in levels}
    too_big: list[int] = []
    for lod in sorted(scheme.lods, key=lambda lod: lod.resolution):
        block = tiles_in_extent(scheme, lod.level, extent)
        pixels = max(
            (block.col1 - block.col0) * scheme.tile_cols,
            (block.row1 - block.row0) * scheme.tile_rows,
        )
        if block.is_empty or pixels > MOSAIC_SIZE or present.get(lod.level, 1) == 0:
            continue
        made = _composite(reader, lod.level, block)
        if made is None:
            continue
        data, media, drawn = made
        if len(data) > budget:
            too_big.append(lod.level)
            continue
        bounds = range_bounds(scheme, lod.level, block)
        note = (
            f"level {lod.level} composited into one {media.split('/')[1].upper()} image "
            f"({len(data):,} bytes, {drawn:,} tiles); zoomed in, the map scales it up"
        )
        return Background(
            (lod.level,),
            stored_bytes=len(data),
            note=note,
            image=_data_uri(media, data),
            image_extent=(bounds.xmin, bounds.ymin, bounds.xmax, bounds.ymax),
            image_tiles=drawn,
        )
    if too_big:
        return Background(
            note=f"the mosaic of level {too_big[-1]}, the coarsest with tiles, exceeds the "
            f"{budget:,}-byte budget (--background-budget): no background"
        )
    return Background(
        note=f"no level with stored images fits in {MOSAIC_SIZE:,} pixels: no background"
    )
