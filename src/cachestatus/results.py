"""A run's results as people and scripts read them: level totals, problems and the report of
a rebuild. Plain values, without numpy: an unchanged rebuild answered through SQLite
(:mod:`cachestatus.unchanged`) reports with them too. :mod:`cachestatus.models` holds the
types of the scan itself and re-exports these.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from .models import Tile


def percent(present: int, expected: int) -> float | None:
    """100 x present / expected, in float64 as :func:`~cachestatus.models.percent_complete`
    computes it; ``None`` where nothing is expected."""
    if expected <= 0:
        return None
    return 100.0 * float(present) / float(expected)


@dataclass
class LevelSummary:
    """Totals of one level: one ``LevelStatus`` row. Counts are exact Python ints."""

    level: int
    scale: float
    resolution: float
    bundles: int = 0
    tiles_expected: int = 0
    tiles_present: int = 0
    tiles_stray: int = 0
    tile_bytes: int = 0
    #: Present tiles without content (``--blank``); ``None`` when not counted.
    tiles_blank: int | None = None

    @property
    def percent_complete(self) -> float | None:
        """100 x present / expected, ``None`` where nothing is expected."""
        return percent(self.tiles_present, self.tiles_expected)


@dataclass(frozen=True)
class Problem:
    """Something wrong found during a run: a corrupt bundle, a file that is not a bundle..."""

    bundle: str
    kind: str
    detail: str
    #: The tile, for a problem with one tile (``verify``).
    at: Tile | None = None

    @property
    def tile(self) -> str:
        """The tile as messages write it, ``L05/R1234/C5678``; ``""`` for a problem with no
        one tile."""
        return "" if self.at is None else self.at.address


#: The fields that name a level's totals rather than count something.
_LEVEL_NAMES = frozenset({"level", "scale", "resolution"})
_Totals = TypeVar("_Totals", bound="DataclassInstance")


def sum_levels(levels: Iterable[_Totals], total: _Totals) -> _Totals:
    """``total`` (the record of level -1) with the counts of ``levels`` added: every field but
    the level's names (level, scale, resolution). A count a level leaves ``None`` (not counted)
    adds nothing; the total's stays ``None`` unless some level counted it."""
    for level in levels:
        for f in fields(level):
            value = getattr(level, f.name)
            if f.name not in _LEVEL_NAMES and value is not None:
                setattr(total, f.name, (getattr(total, f.name) or 0) + value)
    return total


@dataclass
class StatusReport:
    """The outcome of a rebuild (or of reading a stored status back)."""

    cache: str
    format: str
    status_path: str | None
    job_id: str
    mode: str
    elapsed_s: float
    levels: list[LevelSummary]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Requests to object storage retried after a throttling or server error (``None``: the
    #: cache is local).
    requests_retried: int | None = None
    #: Bundles the run read, and bundles whose rows it reused from the previous rebuild
    #: (``None``: a status read back, not scanned).
    bundles_read: int | None = None
    bundles_reused: int | None = None

    @property
    def totals(self) -> LevelSummary:
        """The sums over all levels (level -1, no scale)."""
        return sum_levels(self.levels, LevelSummary(level=-1, scale=0.0, resolution=0.0))
