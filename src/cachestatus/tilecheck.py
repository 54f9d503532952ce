"""The deep check of stored tiles (``cachestatus verify``): every tile read and judged.

Each bundle's tiles are read in file order (:meth:`CacheReader.read_tiles`), in the scanner's
worker processes. A tile is bad when its storage is damaged (a size prefix that disagrees with
the index, a body past the end of the file), when it is empty, when its bytes do not start with
an image signature of the cache's tile format (an HTML error page stored as a tile), or, with
``decode``, when Pillow cannot decode it. Damage to a whole bundle (its header, its index) makes
one bundle problem. With ``blank``, tiles without content are counted too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from . import content
from .errors import BundleChanging, CorruptBundle
from .formats.base import BundleFile, CacheReader
from .models import BundleKey, Problem, TileRange
from .scan import ChunkContext, LevelPlan

#: Problem kind of a tile whose storage is damaged (size prefix, bounds).
DAMAGED = "damaged"
#: Problem kind of a bundle that cannot be read or decoded at all.
CORRUPT = "corrupt"


def tile_address(level: int, row: int, col: int) -> str:
    """A tile as messages write it: ``L05/R1234/C5678`` (row and column in decimal)."""
    return f"L{level:02d}/R{row}/C{col}"


@dataclass
class BundleCheck:
    """What the deep check of one bundle found."""

    key: BundleKey
    #: Tiles read and judged.
    tiles: int = 0
    #: Tiles without content (``None`` when not asked for).
    blank: int | None = None
    #: One problem per bad tile, or one for the bundle when it could not be read.
    problems: list[Problem] = field(default_factory=list)
    #: Tiles of no recognised kind in a cache that declares no tile type: not judged.
    unjudged: int = 0


def check_bundle(
    reader: CacheReader,
    plan: LevelPlan,
    bundle: BundleFile,
    decode: bool = False,
    blank: content.BlankTiles | None = None,
    only_expected: bool = False,
) -> BundleCheck:
    """Read every stored tile of ``bundle`` and judge it.

    Args:
        reader: the open cache.
        plan: the bundle's level plan (its expected tiles).
        bundle: the bundle to check.
        decode: also decode raster tiles with Pillow.
        blank: count the tiles without content, with this memory of tiles already seen.
        only_expected: check only the tiles the plan expects (an area of interest was given).
    """
    key = bundle.key
    found = BundleCheck(key, blank=0 if blank is not None else None)
    kinds = reader.tile_kinds
    window = plan.expected.window(key) if only_expected else None
    try:
        for tile in reader.read_tiles(bundle):
            if window is not None and not _expected(*window, tile.row, tile.col):
                continue
            found.tiles += 1
            if not tile.damage and content.unjudged(tile.data, kinds):
                found.unjudged += 1
            verdict = (
                (DAMAGED, tile.damage)
                if tile.damage
                else content.check(tile.data, kinds)
                or (content.decode_error(tile.data) if decode else None)
            )
            if verdict is not None:
                kind, reason = verdict
                address = tile_address(key.level, tile.row, tile.col)
                found.problems.append(Problem(key.label, kind, reason, tile=address))
            elif blank is not None and found.blank is not None and blank(tile.data):
                found.blank += 1
    except BundleChanging as exc:
        found.problems.append(Problem(key.label, "in-progress", exc.reason))
    except CorruptBundle as exc:
        found.problems.append(Problem(key.label, CORRUPT, exc.reason))
    except OSError as exc:
        found.problems.append(Problem(key.label, CORRUPT, f"cannot read: {exc.strerror or exc}"))
    return found


def _expected(block: TileRange, mask: npt.NDArray[np.bool_] | None, row: int, col: int) -> bool:
    """Whether tile (``row``, ``col``) is in a bundle's expected window (its block and mask)."""
    if not (block.row0 <= row < block.row1 and block.col0 <= col < block.col1):
        return False
    return mask is None or bool(mask[row - block.row0, col - block.col0])


def check_chunk(
    context: ChunkContext,
    bundles: list[BundleFile],
    decode: bool = False,
    blank: bool = False,
    only_expected: bool = False,
) -> list[BundleCheck]:
    """:func:`check_bundle` on a list of bundles (the scanner's unit of work)."""
    tiles = context.blank_tiles if blank else None
    plans = context.plans
    return [
        check_bundle(context.reader, plans[b.key.level], b, decode, tiles, only_expected)
        for b in bundles
    ]


@dataclass
class LevelCheck:
    """Totals of the deep check of one level."""

    level: int
    scale: float
    bundles: int = 0
    tiles: int = 0
    bad: int = 0
    #: Tiles without content, ``None`` when not asked for.
    blank: int | None = None


@dataclass
class VerifyReport:
    """What ``verify`` found: per-level totals and one problem per bad tile or bundle."""

    cache: str
    format: str
    elapsed_s: float
    levels: list[LevelCheck]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Problems found beyond the listed ones (the list is capped).
    problems_omitted: int = 0
    #: Tiles of no recognised kind in a cache that declares no tile type: not judged.
    tiles_unjudged: int = 0

    @property
    def clean(self) -> bool:
        """No bad tile, no unreadable bundle."""
        return not self.problems and not self.problems_omitted

    @property
    def totals(self) -> LevelCheck:
        """The sums over all levels (level -1)."""
        total = LevelCheck(-1, 0.0)
        for lv in self.levels:
            total.bundles += lv.bundles
            total.tiles += lv.tiles
            total.bad += lv.bad
            if lv.blank is not None:
                total.blank = (total.blank or 0) + lv.blank
        return total


def type_warning(reader: CacheReader, unjudged: int) -> list[str]:
    """The one warning of a deep check of a cache that declares no tile type (none for a
    cache that declares one): its tiles could be judged only by recognised signatures."""
    if reader.tile_kinds is not None:
        return []
    return [content.undeclared_type(reader.scheme.tile_format, unjudged)]


__all__ = [
    "CORRUPT",
    "DAMAGED",
    "BundleCheck",
    "LevelCheck",
    "VerifyReport",
    "check_bundle",
    "check_chunk",
    "tile_address",
    "type_warning",
]
