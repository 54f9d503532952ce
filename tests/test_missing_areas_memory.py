"""What a scan keeps for its missing areas does not grow with the bundle files: their blocks are
bits over the level's bundle grid (:class:`~cachestatus.missing_areas.FileBlocks`), and only the
holes add to it.

The blocks a fold gives back are checked against the blocks it was given, rasterised here tile
by tile; what it keeps is measured with tracemalloc (numpy's arrays are traced), never timed.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any
from unittest.mock import patch

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cachestatus.expected import ExtentExpectation
from cachestatus.missing_areas import HOLE, FileBlocks, MissingAreas
from cachestatus.models import (
    BUNDLE_SIZE,
    BundleKey,
    BundleSet,
    BundleState,
    BundleStatus,
    RowBatch,
    TileRange,
)
from cachestatus.scan import ScanBatch

B = BUNDLE_SIZE


def _raster(blocks: Any, bounds: TileRange) -> np.ndarray:
    """How many blocks cover each tile of ``bounds``."""
    out = np.zeros((bounds.row1 - bounds.row0, bounds.col1 - bounds.col0), np.int64)
    for r0, r1, c0, c1 in np.asarray(blocks, np.int64).reshape(-1, 4).tolist():
        out[r0 - bounds.row0 : r1 - bounds.row0, c0 - bounds.col0 : c1 - bounds.col0] += 1
    return out


@st.composite
def _layouts(draw: st.DrawFn) -> tuple[TileRange, list[list[tuple[int, int, tuple]]]]:
    """Bounds not aligned to bundles, files of some of its bundles in random batches, each
    file's block its bundle clipped to the bounds or, as an area of interest cuts it, a block
    inside that."""
    row0, col0 = draw(st.integers(0, 300)), draw(st.integers(0, 300))
    bounds = TileRange(
        row0, row0 + draw(st.integers(1, 5 * B)), col0, col0 + draw(st.integers(1, 5 * B))
    )
    grid_rows = range(row0 - row0 % B, bounds.row1, B)
    grid_cols = range(col0 - col0 % B, bounds.col1, B)
    keys = [(r, c) for r in grid_rows for c in grid_cols]
    chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
    files = []
    for r, c in chosen:
        clip = (max(r, bounds.row0), min(r + B, bounds.row1), max(c, bounds.col0))
        clip = (*clip, min(c + B, bounds.col1))
        if draw(st.integers(0, 4)) == 0:  # cut by an area of interest
            r0 = draw(st.integers(clip[0], clip[1] - 1))
            c0 = draw(st.integers(clip[2], clip[3] - 1))
            clip = (r0, draw(st.integers(r0 + 1, clip[1])), c0, draw(st.integers(c0 + 1, clip[3])))
        files.append((r, c, clip))
    cuts = sorted(draw(st.lists(st.integers(0, len(files)), max_size=6)))
    batches = [files[i:j] for i, j in zip([0, *cuts], [*cuts, len(files)], strict=True)]
    return bounds, batches


@settings(max_examples=60, deadline=None)
@given(_layouts(), st.booleans(), st.sampled_from([1, 3]))
def test_file_blocks_cover_exactly_the_blocks_given(layout, bitmap, at_once):
    """Whatever the layout, the batches and whether the level's grid gets a bitmap, the blocks
    given back cover exactly the tiles of the blocks given, once each; the same blocks in the
    same order however few runs are read at a time."""
    bounds, batches = layout
    with patch.object(BundleSet, "MAX_BITS", BundleSet.MAX_BITS if bitmap else 0):
        fold = FileBlocks(bounds)
        for batch in batches:
            rows = np.array([r for r, _, _ in batch], np.int64)
            cols = np.array([c for _, c, _ in batch], np.int64)
            fold.add(rows, cols, np.array([b for _, _, b in batch], np.int64).reshape(-1, 4))
        blocks = fold.blocks()
        with patch("cachestatus.missing_areas.RUNS_AT_ONCE", at_once):
            assert np.array_equal(fold.blocks(), blocks)
    given = _raster([b for batch in batches for _, _, b in batch], bounds)
    assert np.array_equal(_raster(blocks, bounds), given)
    # A full bounds of files is one block, however many bundles.
    if given.all() and given.max() == 1:
        assert len(blocks) == 1


def _batches(expectation: ExtentExpectation, files: np.ndarray, holes: bool) -> list[ScanBatch]:
    """Scan batches of 256 rows for the bundle files at ``files`` (bundle grid cells): every
    fourth misses a tile, given as a hole when ``holes``."""
    out = []
    for start in range(0, len(files), 256):
        statuses, tagged = [], []
        for i, (gr, gc_) in enumerate(files[start : start + 256].tolist(), start):
            key = BundleKey(expectation.level, gr * B, gc_ * B)
            block, _ = expectation.window(key)
            partial = i % 4 == 0
            state = BundleState.PARTIAL if partial else BundleState.COMPLETE
            present = block.tiles - partial
            statuses.append(BundleStatus(key, state, block.tiles, present, 0, 0, 0, 0, None, block))
            if partial and holes:  # one tile, never beside another file's
                r, c = block.row0 + 1 + i % 100, block.col0 + 1
                tagged.append((expectation.level, HOLE, r, r + 1, c, c + 1))
        holes_rows = np.array(tagged, np.int64).reshape(-1, 6)
        out.append(ScanBatch(RowBatch.from_statuses(statuses), holes_rows))
    return out


def _kept_bytes(expectation: ExtentExpectation, batches: list[ScanBatch]) -> int:
    """Bytes a :class:`MissingAreas` holds once it has folded ``batches`` (made before)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        areas = MissingAreas(None, {expectation.level: expectation})  # type: ignore[arg-type]
        for batch in batches:
            areas.add(batch)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del areas
    return kept


def test_missing_area_state_grows_with_holes_not_with_files():
    """Bundle files in random order on the black squares of a 300 x 300 bundle level (no two
    side by side: no blocks merge), ten times as many the second time: what the missing areas
    keep stays put (a fold of blocks would keep 32 bytes a file); one hole per fourth file,
    kept as it must be, shows in the count."""
    level = 12
    expectation = ExtentExpectation(level, TileRange(40, 300 * B - 40, 0, 300 * B))
    cells = np.argwhere(np.indices((300, 300)).sum(axis=0) % 2 == 0)
    files = np.random.default_rng(5).permutation(cells)
    few, many = files[:4_000], files[:40_000]
    _kept_bytes(expectation, _batches(expectation, few, holes=True))  # what the first run loads
    kept_few = _kept_bytes(expectation, _batches(expectation, few, holes=False))
    kept_many = _kept_bytes(expectation, _batches(expectation, many, holes=False))
    assert kept_many - kept_few < 16 * 1024, (kept_few, kept_many)
    # 9,000 more holes of 32 bytes each are kept: the measure sees the arrays a fold keeps.
    with_holes = _kept_bytes(expectation, _batches(expectation, many, holes=True))
    assert with_holes - kept_many > 0.9 * 32 * 10_000 - 16 * 1024, (kept_many, with_holes)
