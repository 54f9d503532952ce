"""Level totals of a status scan, folded from its batches of rows as they come."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .models import CORRUPT, BundleKey, BundleSet, BundleState, LevelSummary, Problem
from .plan import LevelPlan

if TYPE_CHECKING:
    from .scan import ScanBatch


class LevelTotals:
    """Per level: the bundle files found, their tiles and bytes, and a problem per ``CORRUPT``
    bundle.

    Args:
        plans: the scan's level plans (a level's expected tiles are counted from its plan).
        blank: tiles without content are counted.
        problems: where the problems go (the listing's own list: problems stay in the order
            they were found).
    """

    def __init__(self, plans: Sequence[LevelPlan], blank: bool, problems: list[Problem]) -> None:
        self._summaries = {
            p.lod.level: LevelSummary(
                p.lod.level,
                p.lod.scale,
                p.lod.resolution,
                tiles_expected=p.expected.total(),
                tiles_blank=0 if blank else None,
            )
            for p in plans
        }
        #: Per level, the bundles (row, col) that have a file.
        self.found = {p.lod.level: BundleSet(p.expected.bounds) for p in plans}
        self.problems = problems
        #: Rows folded in.
        self.rows = 0

    @property
    def levels(self) -> list[LevelSummary]:
        """The totals of each level, in the plans' order."""
        return list(self._summaries.values())

    def add(self, batch: ScanBatch) -> None:
        """Count a batch's rows in the totals of their levels."""
        rows = batch.rows
        for level_id in np.unique(rows.level).tolist():
            mine = rows.level == level_id
            level = self._summaries[level_id]
            level.bundles += int(np.count_nonzero(mine))
            level.tiles_present += int(rows.tiles_present[mine].sum())
            level.tiles_stray += int(rows.tiles_stray[mine].sum())
            level.tile_bytes += int(rows.tile_bytes[mine].sum())
            if level.tiles_blank is not None:
                level.tiles_blank += int(np.maximum(rows.tiles_blank[mine], 0).sum())
            self.found[level_id].add(rows.row[mine], rows.col[mine])
        self.problems.extend(
            Problem(BundleKey(level_id, r, c).label, CORRUPT, detail)
            for level_id, r, c, state, detail in zip(
                rows.level.tolist(),
                rows.row.tolist(),
                rows.col.tolist(),
                rows.state,
                rows.detail,
                strict=True,
            )
            if state == BundleState.CORRUPT
        )
        self.rows += len(rows)


__all__ = ["LevelTotals"]
