"""The deep check of stored tiles (``cachestatus verify``): every tile read and judged.

Each bundle's tiles are read in file order (:meth:`CacheReader.read_tiles`) by
:func:`check_chunk`, the work the run's executor hands the bundles to, one at a time (in worker
processes when there are several bundles and workers). A tile is bad when its storage is damaged
(a size prefix that disagrees with the index, a body past the end of the file), when it is empty,
when its bytes do not start with an image signature of the cache's tile format (an HTML error
page stored as a tile), or, with ``decode``, when Pillow cannot decode it. Damage to a whole
bundle (its header, its index) makes one bundle problem. With ``blank``, tiles without content
are counted too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from . import content
from .execute import ChunkContext
from .formats.base import BundleFile, CacheReader
from .models import CORRUPT, DAMAGED, BundleKey, Problem, Tile, TileRange, sum_levels
from .plan import LevelPlan
from .scan import UNREADABLE, unreadable


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
                at = Tile(key.level, tile.row, tile.col)
                found.problems.append(Problem(key.label, kind, reason, at=at))
            elif blank is not None and found.blank is not None and blank(tile.data):
                found.blank += 1
    except UNREADABLE as exc:
        found.problems.append(Problem(key.label, *unreadable(exc)))
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
    """:func:`check_bundle` on a list of bundles: the deep check's work (a
    :data:`~cachestatus.execute.ChunkWork`)."""
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
        return sum_levels(self.levels, LevelCheck(-1, 0.0))


class VerifyTotals:
    """Per level, the bundles and tiles checked and the bad ones, and the problems found (at
    most ``max_problems`` listed, the others counted), from the checks of the bundles.

    Args:
        plans: the levels checked.
        blank: tiles without content are counted.
        max_problems: problems listed at most.
    """

    def __init__(self, plans: Sequence[LevelPlan], blank: bool, max_problems: int) -> None:
        self._levels = {
            p.lod.level: LevelCheck(p.lod.level, p.lod.scale, blank=0 if blank else None)
            for p in plans
        }
        self.max_problems = max_problems
        self.problems: list[Problem] = []
        #: Problems found beyond the listed ones.
        self.problems_omitted = 0
        #: Tiles of no recognised kind in a cache that declares no tile type: not judged.
        self.tiles_unjudged = 0

    @property
    def levels(self) -> list[LevelCheck]:
        """The totals of each level, in the plans' order."""
        return list(self._levels.values())

    def add(self, checks: list[BundleCheck]) -> None:
        """Count the checks of a list of bundles."""
        for found in checks:
            level = self._levels[found.key.level]
            level.bundles += 1
            level.tiles += found.tiles
            level.bad += sum(1 for p in found.problems if p.tile)
            self.tiles_unjudged += found.unjudged
            if found.blank is not None and level.blank is not None:
                level.blank += found.blank
            room = max(0, self.max_problems - len(self.problems))
            self.problems.extend(found.problems[:room])
            self.problems_omitted += len(found.problems[room:])


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
    "VerifyTotals",
    "check_bundle",
    "check_chunk",
    "type_warning",
]
