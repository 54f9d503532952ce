"""What a scan covers and what it reports, decided before any bundle is read.

:func:`plan_levels` gives the levels to scan with the tiles expected on each (those sharing
interior area with :func:`expected_extent`, or with an area of interest); a :class:`ScanPolicy`
says which bundle files are read, how, and which absent bundles get a row; :func:`plans_extent`
is the map extent of the expected tiles (the status store's XY domain is built around it). All
are plain values: nothing here lists or reads the cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from . import grid
from .errors import LimitExceeded
from .expected import AreaExpectation, Expectation, ExtentExpectation
from .formats.base import CacheReader
from .models import LOD, Extent, TileRange, TilingScheme
from .request import MAX_MISSING_ROWS
from .selection import requested_levels

#: The largest tile row or column a status store holds (TaskStatus's bundleRow and bundleCol
#: are 32-bit): bundles beyond are listed as problems, MISSING rows beyond are left out.
MAX_TILE_INDEX = 2**31 - 1
#: The most tiles a level may expect: level totals are 64-bit counts in the store.
MAX_LEVEL_TILES = 2**63 - 1
#: Tile rows and columns beyond this are not exact in 64-bit floats (map coordinates).
MAX_GRID_INDEX = 2**52


@dataclass(frozen=True)
class LevelPlan:
    """One level to scan: its LOD and the tiles expected there."""

    lod: LOD
    expected: Expectation


def expected_extent(reader: CacheReader) -> Extent | None:
    """The extent expected tiles are counted against: the full extent, else the whole grid
    (``None`` for a grid whose extent is unknown: then no tile is expected)."""
    return reader.full_extent or grid.grid_extent(reader.scheme)


def _expectation(
    scheme: TilingScheme, level: int, extent: Extent | None, area: Any | None
) -> Expectation:
    if area is not None:
        return AreaExpectation(level, scheme, area)
    if extent is not None:
        return ExtentExpectation(level, grid.tiles_in_extent(scheme, level, extent))
    return ExtentExpectation(level, TileRange(0, 0, 0, 0))


def _check_limits(level: int, expected: Expectation) -> None:
    b = expected.bounds
    if max(b.row1, b.col1) > MAX_GRID_INDEX:
        raise LimitExceeded(
            f"level {level}: its expected tiles reach tile row {b.row1:,} and column {b.col1:,}; "
            f"beyond {MAX_GRID_INDEX:,} tile positions are not exact in map coordinates"
        )
    total = expected.total()
    if total > MAX_LEVEL_TILES:
        raise LimitExceeded(
            f"level {level}: {total:,} tiles expected, more than a status store counts "
            f"({MAX_LEVEL_TILES:,})"
        )


def plan_levels(
    reader: CacheReader,
    levels: Iterable[int] | None = None,
    area: Any | None = None,
    warnings: list[str] | None = None,
) -> list[LevelPlan]:
    """The levels to scan (all LODs by default) with their expected tiles.

    Args:
        reader: the open cache.
        levels: level IDs (or ranges, see :func:`~cachestatus.selection.requested_levels`);
            every LOD when ``None``.
        area: a shapely polygon in the cache's CRS: tiles sharing interior with it are expected.
            Without it, those of the full extent (or of the whole grid) are.
        warnings: with a list, levels too large to count or store (more tiles than a 64-bit
            count, an area of interest of too many tile rows there) are left out with a warning
            in it; without, they are kept as they are (``info`` shows them).

    Raises:
        UsageError: bad level values, a level the scheme lacks.
        LimitExceeded: with ``warnings``, every level asked for is too large.
    """
    scheme = reader.scheme
    extent = expected_extent(reader)
    wanted = scheme.levels if levels is None else requested_levels(scheme, levels, warnings)
    plans = []
    too_large: list[str] = []
    for level in wanted:
        try:
            expected = _expectation(scheme, level, extent, area)
            if warnings is not None:
                _check_limits(level, expected)
        except LimitExceeded as exc:
            if warnings is None:
                raise
            too_large.append(str(exc))
            continue
        plans.append(LevelPlan(scheme.lod(level), expected))
    if too_large and warnings is not None:
        if not plans:
            raise LimitExceeded(
                f"{too_large[0]}"
                + (f" (and {len(too_large) - 1} more levels)" if len(too_large) > 1 else "")
                + "; choose other levels or a smaller area"
            )
        warnings.extend(f"{message}: the level was left out" for message in too_large)
    return plans


def plans_extent(scheme: TilingScheme, plans: Sequence[LevelPlan]) -> Extent:
    """The map extent of the tiles ``plans`` expect, over every level; a unit square at the
    scheme's origin when they expect none. The status store's XY domain is built around it."""
    boxes = [
        grid.range_bounds(scheme, p.lod.level, p.expected.bounds)
        for p in plans
        if not p.expected.bounds.is_empty
    ]
    if not boxes:
        return Extent(
            scheme.origin_x, scheme.origin_y - 1.0, scheme.origin_x + 1.0, scheme.origin_y
        )
    return Extent(
        min(b.xmin for b in boxes),
        min(b.ymin for b in boxes),
        max(b.xmax for b in boxes),
        max(b.ymax for b in boxes),
    )


class AbsentRows(Enum):
    """Which bundles without a file get a ``MISSING`` row."""

    #: None: the run writes no rows (``missing``, ``verify``).
    NONE = "none"
    #: Those of the levels that have bundle files, and only when the cache declares its full
    #: extent (``rebuild``): a row per bundle of an unbuilt level, or of the whole grid taken as
    #: the extent, would only be noise; the level totals count them all the same.
    BUILT_LEVELS = "built levels"
    #: Every bundle with expected tiles, on every level (``report``: a row for every bundle of
    #: its area).
    EVERY_LEVEL = "every level"


@dataclass(frozen=True)
class ScanPolicy:
    """Which bundle files a scan reads, how much of each, and which absent bundles get a row.

    Made by the named constructors, one per operation: :meth:`rebuild`, :meth:`report`,
    :meth:`missing` and :meth:`verify`.
    """

    #: Read only the bundle files that hold expected tiles (a scan over an area of interest is
    #: about that area: files outside it are not even read).
    expected_only: bool = False
    #: Which bundles without a file get a ``MISSING`` row.
    absent_rows: AbsentRows = AbsentRows.NONE
    #: At most this many ``MISSING`` rows (``None``: no cap); level totals stay exact.
    max_missing_rows: int | None = None
    #: Also read every stored tile and count those without content.
    blank: bool = False
    #: The work judges every stored tile (``verify``).
    deep: bool = False

    @property
    def reads_tiles(self) -> bool:
        """The work on a bundle reads its tiles: bundles go to worker processes one at a time,
        in every format, from two bundles up."""
        return self.deep or self.blank

    @classmethod
    def rebuild(
        cls, max_missing_rows: int | None = MAX_MISSING_ROWS, blank: bool = False
    ) -> ScanPolicy:
        """A status store of the whole cache: every bundle file, ``MISSING`` rows on the built
        levels."""
        return cls(
            absent_rows=AbsentRows.BUILT_LEVELS, max_missing_rows=max_missing_rows, blank=blank
        )

    @classmethod
    def report(
        cls, max_missing_rows: int | None = MAX_MISSING_ROWS, blank: bool = False
    ) -> ScanPolicy:
        """A status store of an area: the files holding expected tiles, ``MISSING`` rows on
        every level."""
        return cls(
            expected_only=True,
            absent_rows=AbsentRows.EVERY_LEVEL,
            max_missing_rows=max_missing_rows,
            blank=blank,
        )

    @classmethod
    def missing(cls, area: bool = False) -> ScanPolicy:
        """The missing areas: every bundle file (with an ``area``, those holding expected
        tiles), no rows."""
        return cls(expected_only=area)

    @classmethod
    def verify(cls, area: bool = False) -> ScanPolicy:
        """The deep check: every stored tile of every bundle file (with an ``area``, of those
        holding expected tiles) read and judged."""
        return cls(expected_only=area, deep=True)


__all__ = [
    "MAX_GRID_INDEX",
    "MAX_LEVEL_TILES",
    "MAX_MISSING_ROWS",
    "MAX_TILE_INDEX",
    "AbsentRows",
    "LevelPlan",
    "ScanPolicy",
    "expected_extent",
    "plan_levels",
    "plans_extent",
]
