"""Missing areas: per level, the dissolved polygons of expected tiles that are not present.

A level's missing area is the expected area less the blocks of the bundle files found, plus the
holes inside those files: polygons ready to be the area of interest of the next caching job.
Their area is exactly the number of missing tiles times the area of a tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import grid
from .models import BundleSet, BundleState, LevelSummary, RowBatch, TilingScheme

#: Blocks of holes kept per level. A level whose missing tiles are scattered beyond this gets
#: no missing area, with a warning, rather than a polygon of millions of holes.
MAX_HOLES = 1_000_000
#: Over an area of interest, absent bundles are drawn one by one up to this many; beyond, the
#: whole expected area is drawn and the files' blocks are taken out of it.
MAX_ABSENT_BUNDLES = 100_000


@dataclass(frozen=True)
class MissingArea:
    """The missing tiles of one level as one (multi)polygon in the cache's CRS."""

    level: int
    scale: float
    tiles_missing: int
    geometry: Any


def _union(scheme: TilingScheme, level: int, blocks: npt.NDArray[np.int64]) -> Any:
    import shapely

    boxes = shapely.box(*grid.blocks_bounds(scheme, level, grid.merge_blocks(blocks)))
    # Most blocks are disjoint from most others: unioning disjoint subsets is ten times faster
    # than a plain union of thousands of boxes.
    return shapely.disjoint_subset_union_all(boxes)


class MissingAreas:
    """Gathers, during a scan, the blocks of the bundle files found and their holes."""

    def __init__(self, scheme: TilingScheme, expected: dict[int, Any]) -> None:
        self.scheme = scheme
        #: Level ID to its :class:`~cachestatus.expected.Expectation`.
        self.expected = expected
        self._files: dict[int, list[npt.NDArray[np.int64]]] = {lv: [] for lv in expected}
        self._holes: dict[int, list[npt.NDArray[np.int64]]] = {lv: [] for lv in expected}
        self._hole_count: dict[int, int] = dict.fromkeys(expected, 0)
        self.scattered: set[int] = set()

    def add(self, batch: RowBatch) -> None:
        """Keep the blocks and holes of a batch of rows."""
        files = (batch.tiles_expected > 0) & np.array(
            [state != BundleState.MISSING for state in batch.state], dtype=np.bool_
        )
        for level in np.unique(batch.level[files]).tolist():
            self._files[level].append(batch.tiles[files & (batch.level == level)])
        holes = batch.holes
        for level in np.unique(holes[:, 0]).tolist() if len(holes) else []:
            if level in self.scattered:
                continue
            blocks = holes[holes[:, 0] == level, 1:]
            self._hole_count[level] += len(blocks)
            if (blocks[:, 0] < 0).any() or self._hole_count[level] > MAX_HOLES:
                self.scattered.add(level)
                self._holes[level] = []
            else:
                self._holes[level].append(blocks)

    def _absent_windows(self, level: int, found: BundleSet) -> npt.NDArray[np.int64] | None:
        """Blocks of the expected tiles of the bundles without a file, where an area of interest
        makes the expected area costly to draw whole; ``None`` to subtract instead."""
        from .expected import AreaExpectation

        expected = self.expected[level]
        if not isinstance(expected, AreaExpectation) or not len(found):
            return None
        if expected.bundle_count() - len(found) > MAX_ABSENT_BUNDLES:
            return None
        blocks = [np.zeros((0, 4), dtype=np.int64)]
        for key in expected.bundles():
            if (key.row, key.col) in found:
                continue
            block, mask = expected.window(key)
            if mask is None:
                blocks.append(np.array([block], dtype=np.int64))
            else:
                cells = grid.mask_blocks(mask, block.row0, block.col0)
                assert cells is not None  # no limit given
                blocks.append(cells)
        return np.concatenate(blocks)

    def areas(
        self, levels: Sequence[LevelSummary], found: dict[int, BundleSet]
    ) -> tuple[list[MissingArea], list[str]]:
        """One area per level with missing tiles, and warnings for levels left out.

        ``found`` gives, per level, the bundles (row, col) that have a file.
        """
        import shapely

        out, warnings = [], []
        for summary in levels:
            missing = summary.tiles_expected - summary.tiles_present
            if missing <= 0:
                continue
            if summary.level in self.scattered:
                warnings.append(
                    f"level {summary.level}: its {missing:,} missing tiles are scattered in too "
                    "many pieces; no MissingAreas polygon was made for it"
                )
                continue
            level = summary.level
            holes = self._holes[level]
            absent = self._absent_windows(level, found.get(level, BundleSet()))
            if absent is not None:  # the windows of absent bundles, and the holes of the others
                geometry = _union(self.scheme, level, np.concatenate([absent, *holes]))
            else:  # the expected area less the files' blocks, and their holes
                geometry = _union(self.scheme, level, self.expected[level].blocks())
                if self._files[level]:
                    files = _union(self.scheme, level, np.concatenate(self._files[level]))
                    geometry = shapely.difference(geometry, files)
                if holes:
                    geometry = shapely.union(
                        geometry, _union(self.scheme, level, np.concatenate(holes))
                    )
            out.append(MissingArea(level, summary.scale, missing, geometry))
        return out, warnings
