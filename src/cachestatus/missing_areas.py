"""Missing areas: per level, the dissolved polygons of expected tiles that are not present.

A level's missing area is the expected area less the blocks of the bundle files found, plus what
those files miss: the holes of mostly built bundles, and for mostly empty ones their expected
tiles less their present ones. Polygons ready to be the area of interest of the next caching
job; their area is exactly the number of missing tiles times the area of a tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import grid
from .models import BUNDLE_SIZE, BundleSet, BundleState, LevelSummary, RowBatch, TilingScheme

#: Kinds of the tagged blocks a scan sends for partial bundles (:attr:`RowBatch.holes`).
HOLE, EXPECTED, PRESENT, SCATTERED = 0, 1, 2, -1

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
        # Per level and kind (HOLE, EXPECTED, PRESENT), the blocks gathered so far.
        self._parts: dict[int, dict[int, list[npt.NDArray[np.int64]]]] = {
            lv: {HOLE: [], EXPECTED: [], PRESENT: []} for lv in expected
        }
        self._hole_count: dict[int, int] = dict.fromkeys(expected, 0)
        self.scattered: set[int] = set()

    def add(self, batch: RowBatch) -> None:
        """Keep the blocks of the files and what they miss, from a batch of rows."""
        tagged = batch.holes
        # Mostly empty files (they sent EXPECTED blocks) stay in the expected area: what they
        # hold is taken out of it block by block instead.
        sparse = tagged[tagged[:, 1] == EXPECTED]
        sparse_keys = set(
            zip(
                sparse[:, 0].tolist(),
                (sparse[:, 2] // BUNDLE_SIZE).tolist(),
                (sparse[:, 4] // BUNDLE_SIZE).tolist(),
                strict=True,
            )
        )
        files = (batch.tiles_expected > 0) & np.array(
            [
                state != BundleState.MISSING
                and (lv, r // BUNDLE_SIZE, c // BUNDLE_SIZE) not in sparse_keys
                for state, lv, r, c in zip(
                    batch.state,
                    batch.level.tolist(),
                    batch.row.tolist(),
                    batch.col.tolist(),
                    strict=True,
                )
            ],
            dtype=np.bool_,
        )
        for level in np.unique(batch.level[files]).tolist():
            self._files[level].append(batch.tiles[files & (batch.level == level)])
        for level in np.unique(tagged[:, 0]).tolist() if len(tagged) else []:
            if level in self.scattered:
                continue
            mine = tagged[tagged[:, 0] == level]
            self._hole_count[level] += len(mine)
            if (mine[:, 1] == SCATTERED).any() or self._hole_count[level] > MAX_HOLES:
                self.scattered.add(level)
                self._parts[level] = {HOLE: [], EXPECTED: [], PRESENT: []}
                continue
            for kind, parts in self._parts[level].items():
                blocks = mine[mine[:, 1] == kind, 2:]
                if len(blocks):
                    parts.append(blocks)

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
            parts = self._parts[level]
            absent = self._absent_windows(level, found.get(level, BundleSet()))
            if absent is not None:  # the windows of absent bundles and of mostly empty files
                geometry = _union(self.scheme, level, np.concatenate([absent, *parts[EXPECTED]]))
            else:  # the expected area less the blocks of mostly built files
                geometry = _union(self.scheme, level, self.expected[level].blocks())
                if self._files[level]:
                    files = _union(self.scheme, level, np.concatenate(self._files[level]))
                    geometry = shapely.difference(geometry, files)
            if parts[PRESENT]:  # what mostly empty files hold
                present = _union(self.scheme, level, np.concatenate(parts[PRESENT]))
                geometry = shapely.difference(geometry, present)
            if parts[HOLE]:  # what mostly built files miss
                holes = _union(self.scheme, level, np.concatenate(parts[HOLE]))
                geometry = shapely.union(geometry, holes)
            out.append(MissingArea(level, summary.scale, missing, geometry))
        return out, warnings
